//! The one error type of the library.
//!
//! Every fallible function returns [`Result<T>`]. Variants are structured so that the CLI can
//! print a one-line message naming the file, the line and what was expected.

use std::path::PathBuf;

/// Everything that can go wrong in `cnn`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor or layer got a shape it cannot work with.
    #[error("{op}: expected shape {expected}, got {got}")]
    Shape {
        op: &'static str,
        expected: String,
        got: String,
    },

    /// A mistake in a network config file, with its 1-based position.
    #[error("{file}:{line}:{col}: {msg}")]
    Config {
        file: String,
        line: usize,
        col: usize,
        msg: String,
    },

    /// A data file (IDX, labels.txt, image) that is malformed.
    #[error("{file}: {msg}")]
    Data { file: PathBuf, msg: String },

    /// A model or checkpoint file that is malformed or does not match its config.
    #[error("{file}: {msg}")]
    Model { file: PathBuf, msg: String },

    /// Training went numerically wrong (NaN or infinity).
    #[error("{0}")]
    Diverged(String),

    /// A value given by the caller (an option, a hyper-parameter) that is out of range.
    #[error("{0}")]
    Invalid(String),

    /// Options that cannot work together or with what is on disk (a resume that would not
    /// continue the run, a run folder that would be overwritten), found before anything was
    /// written. The command line exits with code 2 (bad usage) for it.
    #[error("{0}")]
    Usage(String),

    /// A download that failed or whose bytes are not the expected ones, with its URL (or the
    /// local file copied).
    #[error("{url}: {msg}")]
    Download { url: String, msg: String },

    /// An I/O error, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file that could not be written (a full disk, a file-size limit, a missing folder...).
    /// Files are written atomically ([`crate::io::write_atomic`]), so nothing half-written is
    /// left behind: `kept` says that a previous file at `path` is still there, whole.
    #[error("writing {path}: {}{}", write_reason(.source), if *.kept { " (the previous file is kept)" } else { "" })]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        kept: bool,
    },
}

/// Why a write failed, in words: a full disk, a file-size limit and a quota are said plainly
/// (the system's own text for them varies and is easy to misread); anything else is the
/// system's message.
fn write_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull => "no space left on device".into(),
        ErrorKind::FileTooLarge => {
            "file too large for the file-size limit (`ulimit -f`) or the file system".into()
        }
        ErrorKind::QuotaExceeded => "disk quota exceeded".into(),
        _ => e.to_string(),
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A shape error with the shapes formatted as `[a, b, c]`.
    pub fn shape(op: &'static str, expected: &[usize], got: &[usize]) -> Error {
        Error::Shape {
            op,
            expected: format!("{expected:?}"),
            got: format!("{got:?}"),
        }
    }
}
