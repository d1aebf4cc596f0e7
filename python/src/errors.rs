//! The library's errors as Python exceptions, with the message the command line prints after
//! `error: `: `ValueError` for a bad argument, option, config or shape; `OSError` (its
//! subclass for the cause: `FileNotFoundError`, `PermissionError`, ...) for a file that cannot
//! be read or written or whose contents are not what they should be; `FloatingPointError` for
//! a run that diverged.

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyFloatingPointError, PyIsADirectoryError,
    PyNotADirectoryError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;

/// `e` as the Python exception a user of the package expects.
pub fn to_py(e: cnn::Error) -> PyErr {
    use cnn::Error as E;
    let msg = e.to_string();
    match &e {
        E::Io { source, .. } | E::Write { source, .. } => os_error(source, &msg),
        E::Data { .. } | E::Model { .. } | E::Download { .. } => PyOSError::new_err(msg),
        E::Diverged(_) => PyFloatingPointError::new_err(msg),
        E::Shape { .. } | E::Config { .. } | E::Invalid(_) | E::Usage(_) => {
            PyValueError::new_err(msg)
        }
    }
}

/// The `OSError` subclass Python raises for `source` (as `open()` would), with the command
/// line's message alone, which names the file (setting `errno` and `filename` would make
/// Python's `str()` of it another text).
fn os_error(source: &std::io::Error, msg: &str) -> PyErr {
    use std::io::ErrorKind as K;
    let msg = msg.to_string();
    match source.kind() {
        K::NotFound => PyFileNotFoundError::new_err(msg),
        K::PermissionDenied => PyPermissionError::new_err(msg),
        K::AlreadyExists => PyFileExistsError::new_err(msg),
        K::IsADirectory => PyIsADirectoryError::new_err(msg),
        K::NotADirectory => PyNotADirectoryError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

/// `ValueError(msg)`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Result of the library, as a Python result.
pub trait OrPy<T> {
    fn or_py(self) -> PyResult<T>;
}

impl<T> OrPy<T> for cnn::Result<T> {
    fn or_py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
