//! Writing files atomically: nothing we write is ever seen half-written.
//!
//! [`write_atomic`] writes to a temporary file in the same folder, flushes and syncs it,
//! renames it over the target (an atomic replace on POSIX file systems) and syncs the folder
//! so the rename itself survives a crash. A process killed at any moment leaves either the
//! old file or the new one, whole.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The temporary name used while writing `path`: `.NAME.tmp-PID-N` in the same folder, N
/// counting this process's writes so two threads never share one.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// True for the temporary names [`write_atomic`] uses: `.NAME.tmp-PID-N`.
pub fn is_temp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .and_then(|(_, rest)| rest.split_once('-'))
            .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Writes `bytes` to `path` atomically (see the module doc). A write that fails (a full
/// disk, a file-size limit) removes the temporary file and returns [`Error::Write`]; the
/// previous file at `path`, if any, is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(path);
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(path, e));
    }
    Ok(())
}

/// The error of a failed atomic write of `path`, made before anything was renamed over it:
/// [`Error::Write`], saying whether a previous file there is kept.
pub(crate) fn write_error(path: &Path, source: std::io::Error) -> Error {
    Error::Write {
        path: path.into(),
        source,
        kept: path.is_file(),
    }
}

/// Syncs the folder holding `path`, so that a rename into it is durable. Best effort: some
/// file systems do not support syncing a directory.
pub(crate) fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Reads a whole file, refusing one larger than `cap` bytes before reading it.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > cap {
        return Err(Error::Data {
            file: path.into(),
            msg: format!(
                "file is {} bytes, more than the {} allowed",
                meta.len(),
                cap
            ),
        });
    }
    fs::read(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_atomic_into_a_missing_folder_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing/a.txt");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.starts_with(&format!("writing {}: ", p.display())), "{e}");
        assert!(!e.contains("previous file"), "{e}");
    }

    #[test]
    fn full_disk_and_file_size_limit_are_said_plainly_with_the_kept_file() {
        let p = Path::new("runs/x/model.safetensors");
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(
            Error::Write {
                path: p.into(),
                source: full,
                kept: true
            }
            .to_string(),
            "writing runs/x/model.safetensors: no space left on device (the previous file is kept)"
        );
        let big = std::io::Error::from(std::io::ErrorKind::FileTooLarge);
        assert_eq!(
            Error::Write {
                path: p.into(),
                source: big,
                kept: false
            }
            .to_string(),
            "writing runs/x/model.safetensors: file too large for the file-size limit \
             (`ulimit -f`) or the file system"
        );
    }
}
