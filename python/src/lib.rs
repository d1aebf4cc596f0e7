//! `import cnn`: the library from Python and NumPy. The extension module
//! `cnn._cnn`, which `python/cnn/__init__.py` re-exports: `cnn.Model` ([`model`]),
//! `Model.fit` ([`fit`]), `cnn.datasets.load` ([`datasets`]).
//!
//! The GIL is released around every computation, which runs on the worker threads of
//! [`pools`]; NumPy arrays are read in place ([`arrays`]); every library error becomes the
//! Python exception a user expects, with the command line's message ([`errors`]).

mod arrays;
mod datasets;
mod errors;
mod fit;
mod model;
mod pools;

use pyo3::prelude::*;

#[pymodule]
fn _cnn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(datasets::load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(fit::fit_options, m)?)?;
    Ok(())
}
