//! `cnn.datasets.load`: a dataset as `cnn train --data` reads it, as NumPy arrays.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use cnn::data::{self, Dataset, LoadOptions, Split};

use crate::errors::OrPy;
use crate::model::array;

/// `(images [N, C, H, W] uint8, labels [N] int64)` of `ds`.
fn arrays<'py>(py: Python<'py>, ds: Dataset) -> PyResult<Bound<'py, PyTuple>> {
    let [c, h, w] = ds.shape;
    let n = ds.len();
    let labels: Vec<i64> = ds.labels.iter().map(|&l| i64::from(l)).collect();
    let x = array(py, &[n, c, h, w], ds.images)?;
    let y = array(py, &[n], labels)?;
    PyTuple::new(py, [x.into_any(), y.into_any()])
}

/// The training and test sets at `path` (or the built-in demo set for `"demo"`):
/// `((x_train, y_train), (x_test, y_test), classes)`; the test pair is `(None, None)` for a
/// dataset without a test split (only IDX and CIFAR-10 folders and the demo set have one).
#[pyfunction]
#[pyo3(signature = (path, channels=None, size=None, resize=false))]
pub fn load_dataset<'py>(
    py: Python<'py>,
    path: PathBuf,
    channels: Option<usize>,
    size: Option<(usize, usize)>,
    resize: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let opts = |split| LoadOptions {
        split,
        channels,
        size,
        resize,
    };
    let (train, test) = py
        .detach(|| -> cnn::Result<(Dataset, Option<Dataset>)> {
            let train = data::load(&path, &opts(Split::Train))?;
            let test = if data::has_test_split(&path) {
                Some(data::load(&path, &opts(Split::Test))?.map_to_classes(&train.classes)?)
            } else {
                None
            };
            Ok((train, test))
        })
        .or_py()?;
    let classes = train.classes.clone();
    let train = arrays(py, train)?;
    let test = match test {
        Some(t) => arrays(py, t)?,
        None => PyTuple::new(py, [py.None(), py.None()])?,
    };
    PyTuple::new(
        py,
        [
            train.into_any(),
            test.into_any(),
            classes.into_pyobject(py)?.into_any(),
        ],
    )
}
