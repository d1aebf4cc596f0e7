//! Writing files atomically: nothing we write is ever seen half-written.
//!
//! [`write_atomic`] writes to a temporary file in the same folder, flushes and syncs it,
//! renames it over the target (an atomic replace on POSIX file systems) and syncs the folder
//! so the rename itself survives a crash. A process killed at any moment leaves either the
//! old file or the new one, whole.
//!
//! Only a regular file (or a path with nothing there yet) is replaced that way; what else
//! may be at the path is decided by [`target`]:
//!
//! - a character device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe) is written
//!   through: opened and written in place, with no temporary file and no rename, so it stays
//!   what it is (`cnn export model.safetensors /dev/stdout | ...` works);
//! - a symbolic link to a regular file keeps being a link: the file it leads to (resolved to
//!   its final path) is replaced atomically, in that file's folder; a link to a device or a
//!   FIFO is written through like the device itself;
//! - a directory, a block device, a socket, or a link to one or to nothing is refused, with
//!   an [`Error::Write`] naming the path and what is there; nothing is written.

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

/// How a write to a path is done, by what is there (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Write a temporary file beside this path and rename it over: the path itself, or the
    /// regular file a symbolic link leads to.
    Replace(PathBuf),
    /// A character device or a FIFO: open it and write, no temporary file, no rename.
    WriteThrough,
}

/// How to write to `path`: [`Target::Replace`] when nothing is there or a regular file is
/// (directly or through symbolic links), [`Target::WriteThrough`] for a character device or a
/// FIFO, an [`Error::Write`] naming what is there for anything else.
pub(crate) fn target(path: &Path) -> Result<Target> {
    let refuse = |what: String| {
        Err(Error::Write {
            path: path.into(),
            source: std::io::Error::other(what),
            kept: false,
        })
    };
    let link = match fs::symlink_metadata(path) {
        // Nothing there (or nothing we can look at: the write itself says why).
        Err(_) => return Ok(Target::Replace(path.into())),
        Ok(m) => m.file_type().is_symlink(),
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return refuse("it is a symbolic link to nothing; write to a file instead".into())
        }
        Err(e) => return Err(write_error(path, e)),
    };
    let kind = file_kind(&meta.file_type());
    match kind {
        "regular file" if link => {
            let real = fs::canonicalize(path).map_err(|e| write_error(path, e))?;
            Ok(Target::Replace(real))
        }
        "regular file" => Ok(Target::Replace(path.into())),
        "character device" | "FIFO" => Ok(Target::WriteThrough),
        _ => refuse(format!(
            "it is {}{}, not a file",
            if link { "a symbolic link to " } else { "" },
            with_article(kind)
        )),
    }
}

/// What a file type is, in words.
fn file_kind(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "character device";
        }
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

fn with_article(kind: &str) -> String {
    match kind {
        "FIFO" => "a FIFO".into(),
        _ => format!("a {kind}"),
    }
}

/// Writes `bytes` to `path` atomically (see the module doc). A write that fails (a full
/// disk, a file-size limit) removes the temporary file and returns [`Error::Write`]; the
/// previous file at `path`, if any, is untouched. A character device or a FIFO at `path` is
/// written through instead, and a directory, socket or block device refused.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let real = match target(path)? {
        Target::Replace(real) => real,
        Target::WriteThrough => return write_through(path, bytes),
    };
    let tmp = temp_path(&real);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &real)?;
        sync_dir(&real);
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(path, e));
    }
    Ok(())
}

/// Writes `bytes` into the device or FIFO at `path` as it is: no temporary file, no rename
/// (and no sync, which devices such as `/dev/null` refuse). Opening a FIFO waits for a reader.
fn write_through(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| write_error(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.flush())
        .map_err(|e| write_error(path, e))
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

    /// Makes a FIFO at `path`.
    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    #[cfg(unix)]
    fn kind(path: &Path) -> &'static str {
        file_kind(&fs::symlink_metadata(path).unwrap().file_type())
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_written_through_and_stays_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        mkfifo(&p);
        let reader = {
            let p = p.clone();
            std::thread::spawn(move || fs::read(p).unwrap())
        };
        write_atomic(&p, b"through the pipe").unwrap();
        // Checked first: a FIFO replaced by a file would leave the reader waiting forever.
        assert_eq!(kind(&p), "FIFO");
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    /// `/dev/null` is written through: no temporary file beside it and no rename over it
    /// (which, run as root, replaced `/dev/null` with a regular file).
    #[cfg(unix)]
    #[test]
    fn dev_null_is_written_through_and_stays_a_character_device() {
        let null = Path::new("/dev/null");
        assert_eq!(target(null).unwrap(), Target::WriteThrough);
        write_atomic(null, b"nothing").unwrap();
        assert_eq!(kind(null), "character device");
    }

    /// A character device of our own (the same device as `/dev/null`, made with mknod, which
    /// needs root: skipped otherwise) stays a device after a write: the test that showed the
    /// replacement without risking the real `/dev/null`.
    #[cfg(unix)]
    #[test]
    fn a_character_device_node_is_not_replaced() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("null");
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } != 0 {
            eprintln!("skipped: mknod needs root");
            return;
        }
        write_atomic(&p, b"gone").unwrap();
        assert_eq!(kind(&p), "character device");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_directory_is_refused_in_one_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("out");
        fs::create_dir(&d).unwrap();
        let e = write_atomic(&d, b"x").unwrap_err().to_string();
        assert_eq!(
            e,
            format!("writing {}: it is a directory, not a file", d.display())
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        assert!(d.is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.ends_with("it is a socket, not a file"), "{e}");
        assert_eq!(kind(&p), "socket");
    }

    /// A link to a regular file stays a link; the file it leads to gets the bytes, replaced
    /// atomically in its own folder.
    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_to_a_file_stays_a_link_and_its_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("model.onnx");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.onnx");
        std::os::unix::fs::symlink("real/model.onnx", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(&real_dir).unwrap().count(),
            1,
            "no temporary left"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary left"
        );
    }

    /// A link to nothing is refused rather than replaced by a file (or followed to create
    /// a file somewhere the user may not expect).
    #[cfg(unix)]
    #[test]
    fn a_dangling_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("missing/file", &link).unwrap();
        let e = write_atomic(&link, b"x").unwrap_err().to_string();
        assert!(
            e.ends_with("it is a symbolic link to nothing; write to a file instead"),
            "{e}"
        );
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
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
