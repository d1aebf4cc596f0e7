//! The real datasets in `../shared/data` beside the repository (see its README.md there).
//! Tests that need them must not pass silently without them.

use std::path::PathBuf;

/// `../shared/data/NAME` (a folder or a file), if it exists.
///
/// When it does not: if the environment variable `CI` is set, the test panics with a message
/// naming the path, since CI always has the data; otherwise this prints `skipped: PATH not
/// found` to stderr and returns `None`, and the test returns early:
///
/// ```ignore
/// let Some(dir) = common::shared_data("fashion-mnist") else { return };
/// ```
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} not found, and CI is set: the real datasets must be in ../shared/data",
            path.display()
        );
    }
    eprintln!("skipped: {} not found", path.display());
    None
}
