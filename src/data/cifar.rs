//! CIFAR-10's binary format ("the binary version, suitable for C programs"): files of
//! fixed-size records, no header.
//!
//! Each record is a label byte (the class index, 0..=9) then the image's 3,072 bytes: the red
//! plane, the green plane and the blue plane, each 32x32 row-major, which is our CHW order
//! as it stands. The official files hold 10,000 records each: `data_batch_1.bin` to
//! `data_batch_5.bin` are the training set, `test_batch.bin` the test set, and
//! `batches.meta.txt` names the classes, one a line. `cifar-10-binary.tar.gz` unpacks them
//! into `cifar-10-batches-bin/`; a folder holding that folder is read as that folder.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{data_err, line_err, Dataset, Split};
use crate::error::{Error, Result};
use crate::text::thousands;

/// CIFAR-10's classes, in label order (what `batches.meta.txt` says).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The shape of every image: 3 planes (R, G, B) of 32x32.
pub const SHAPE: [usize; 3] = [3, 32, 32];
/// Bytes of one image.
const IMAGE: usize = 3 * 32 * 32;
/// Bytes of one record: the label byte and the image.
pub(crate) const RECORD: usize = 1 + IMAGE;
/// The folder the official tarball unpacks into.
pub(crate) const SUBFOLDER: &str = "cifar-10-batches-bin";
/// The class names file.
pub(crate) const META: &str = "batches.meta.txt";
/// The test set's file.
pub(crate) const TEST_FILE: &str = "test_batch.bin";
/// The largest batch file read: 1 GiB (an official one is 30,730,000 bytes).
const MAX_FILE: u64 = 1 << 30;
/// The largest `batches.meta.txt` read.
const MAX_META: u64 = 64 << 10;

/// The files of the training set, `data_batch_1.bin` to `data_batch_5.bin`.
pub(crate) fn train_names() -> Vec<String> {
    (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
}

/// True for the name of a file in CIFAR's binary format: one ending in `.bin`.
pub(crate) fn is_batch_name(name: &str) -> bool {
    name.len() > 4 && name.to_ascii_lowercase().ends_with(".bin")
}

/// The folder holding CIFAR-10's batch files, if `dir` is one (it holds `data_batch_1.bin`
/// or `test_batch.bin`) or holds one as `cifar-10-batches-bin/`.
pub(crate) fn batches_dir(dir: &Path) -> Option<PathBuf> {
    let holds =
        |d: &Path| d.join(TEST_FILE).is_file() || train_names().iter().any(|n| d.join(n).is_file());
    if holds(dir) {
        return Some(dir.to_path_buf());
    }
    let sub = dir.join(SUBFOLDER);
    holds(&sub).then_some(sub)
}

/// True when `dir` is a CIFAR-10 folder holding the test set (`test_batch.bin`).
pub(crate) fn has_test_file(dir: &Path) -> bool {
    batches_dir(dir).is_some_and(|d| d.join(TEST_FILE).is_file())
}

/// The class names of the batch files in `dir`: `batches.meta.txt`'s lines when it is there,
/// else [`CIFAR10_CLASSES`].
pub(crate) fn classes(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(META);
    if !path.is_file() {
        return Ok(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_META + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    if bytes.len() as u64 > MAX_META {
        return Err(data_err(
            &path,
            format!(
                "longer than {} bytes: not a list of class names",
                thousands(u128::from(MAX_META))
            ),
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| data_err(&path, "not UTF-8 text: expected one class name a line"))?;
    // The official file ends with a blank line.
    let names: Vec<String> = text
        .trim_end()
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    if names.iter().all(String::is_empty) {
        return Err(data_err(
            &path,
            "names no class: expected one class name a line",
        ));
    }
    if let Some(i) = names.iter().position(String::is_empty) {
        return Err(line_err(
            &path,
            i + 1,
            "blank line between class names: expected one class name a line",
        ));
    }
    if names.len() > 256 {
        return Err(data_err(
            &path,
            format!(
                "names {} classes: a label byte counts at most 256",
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// Loads one split of the CIFAR-10 folder `dir` (as given: the folder itself or the one
/// holding `cifar-10-batches-bin/`): the `data_batch_N.bin` files there for
/// [`Split::Train`], `test_batch.bin` for [`Split::Test`].
pub(crate) fn load_dir(dir: &Path, split: Split) -> Result<Dataset> {
    let Some(batches) = batches_dir(dir) else {
        return Err(data_err(
            dir,
            format!("no CIFAR-10 batch files here ({TEST_FILE}, data_batch_1.bin, ...)"),
        ));
    };
    let files: Vec<PathBuf> = match split {
        Split::Train => train_names()
            .iter()
            .map(|n| batches.join(n))
            .filter(|p| p.is_file())
            .collect(),
        Split::Test => Some(batches.join(TEST_FILE))
            .filter(|p| p.is_file())
            .into_iter()
            .collect(),
    };
    if files.is_empty() {
        let (missing, there, what, other, other_split) = match split {
            Split::Train => (
                "data_batch_1.bin to data_batch_5.bin",
                TEST_FILE,
                "training",
                "test",
                "test",
            ),
            Split::Test => (TEST_FILE, "data_batch_*.bin", "test", "training", "train"),
        };
        return Err(data_err(
            &batches,
            format!(
                "no {missing}: this folder only holds the {other} set ({there}), not the \
                 {what} set; pass --split {other_split} (cnn data export), or give a batch \
                 file itself as the data"
            ),
        ));
    }
    let classes = classes(&batches)?;
    let mut ds = Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        shape: SHAPE,
        classes,
        source: String::new(),
    };
    for f in &files {
        read_batch(f, &mut ds)?;
    }
    ds.source = match &files[..] {
        [one] => one.display().to_string(),
        [first, .., last] => format!(
            "{} ({} to {})",
            batches.display(),
            name_of(first),
            name_of(last)
        ),
        [] => unreachable!("checked above"),
    };
    Ok(ds)
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Loads one batch file, its class names from the `batches.meta.txt` beside it.
pub(crate) fn load_single(path: &Path) -> Result<Dataset> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut ds = Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        shape: SHAPE,
        classes: classes(dir.unwrap_or(Path::new(".")))?,
        source: path.display().to_string(),
    };
    read_batch(path, &mut ds)?;
    Ok(ds)
}

/// The images of a batch file, labels unread (so not checked), for prediction: CHW bytes
/// one after the other, and their shape (3, 32, 32).
pub fn load_cifar_images(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let bytes = read_records(path)?;
    let mut images = Vec::with_capacity(bytes.len() / RECORD * IMAGE);
    for record in bytes.chunks_exact(RECORD) {
        images.extend_from_slice(&record[1..]);
    }
    Ok((images, SHAPE))
}

/// Appends the records of the batch file `path` to `ds`, each label checked against
/// `ds.classes`.
fn read_batch(path: &Path, ds: &mut Dataset) -> Result<()> {
    let bytes = read_records(path)?;
    let k = ds.classes.len();
    let n = bytes.len() / RECORD;
    ds.images.reserve(n * IMAGE);
    ds.labels.reserve(n);
    for (r, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0];
        if usize::from(label) >= k {
            let why = if k == CIFAR10_CLASSES.len() {
                "CIFAR-10 has 10 classes, labels 0 to 9".to_string()
            } else {
                format!("{META} names {k} classes, labels 0 to {}", k - 1)
            };
            return Err(data_err(
                path,
                format!(
                    "record {r} (byte offset {}): label {label} is above {} ({why})",
                    thousands((r * RECORD) as u128),
                    k - 1
                ),
            ));
        }
        ds.labels.push(u16::from(label));
        ds.images.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// The bytes of the batch file `path`, checked to be a whole number of records (at least
/// one), its size checked before anything is read.
fn read_records(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    check_size(path, len)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 != len {
        // Changed while it was read: say what was read.
        check_size(path, bytes.len() as u64)?;
    }
    Ok(bytes)
}

/// Refuses a batch file of `len` bytes that is empty, too large, or not a whole number of
/// 3,073-byte records.
fn check_size(path: &Path, len: u64) -> Result<()> {
    let record = RECORD as u64;
    if len == 0 {
        return Err(data_err(
            path,
            "empty: a CIFAR-10 batch file holds records of 3,073 bytes",
        ));
    }
    if len > MAX_FILE {
        return Err(data_err(
            path,
            format!(
                "{} bytes, more than the limit of {} bytes for one batch file",
                thousands(u128::from(len)),
                thousands(u128::from(MAX_FILE))
            ),
        ));
    }
    if !len.is_multiple_of(record) {
        let whole = len / record;
        let cifar100 = if len.is_multiple_of(record + 1) {
            "; its size fits CIFAR-100's records of 3,074 bytes (two label bytes), which are \
             not read"
        } else {
            ""
        };
        return Err(data_err(
            path,
            format!(
                "{} bytes is not a whole number of 3,073-byte records (a label byte and \
                 3,072 pixel bytes): record {whole} (byte offset {}) is cut short after {} \
                 bytes{cifar100}",
                thousands(u128::from(len)),
                thousands(u128::from(whole * record)),
                len % record
            ),
        ));
    }
    Ok(())
}
