//! The IDX format of MNIST: a big-endian header then unsigned bytes, optionally gzipped.

use super::{data_err, Dataset, Split, FASHION_MNIST_CLASSES};
use crate::error::{Error, Result};
use flate2::bufread::GzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Largest amount of data (after decompression) one IDX file may hold: 1 GiB.
pub(crate) const MAX_IDX_BYTES: u64 = 1 << 30;

/// The parsed contents of one IDX file.
#[derive(Debug)]
pub(crate) struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// True for a file name that looks like an IDX images file.
pub(crate) fn is_images_name(name: &str) -> bool {
    name.contains("images-idx3-ubyte") || name.contains("images.idx3-ubyte")
}

/// True when `dir` holds any IDX images or labels file.
pub(crate) fn has_idx_files(dir: &Path) -> Result<bool> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.contains("idx3-ubyte") || name.contains("idx1-ubyte") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The first existing file among `{prefix}-{kind}-idx{n}-ubyte`, `{prefix}-{kind}.idx{n}-ubyte`,
/// each with or without `.gz`.
fn find(dir: &Path, prefix: &str, kind: &str, n: u8) -> Option<PathBuf> {
    for sep in ["-", "."] {
        for ext in ["", ".gz"] {
            let p = dir.join(format!("{prefix}-{kind}{sep}idx{n}-ubyte{ext}"));
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// True when `dir` is an IDX folder holding a test split (`t10k-images-idx3-ubyte`, with or
/// without `.gz`), or the built-in demo set (`demo`); see [`super::has_test_split`].
pub(crate) fn has_idx_test_split(dir: &Path) -> bool {
    super::is_demo(dir) || (dir.is_dir() && find(dir, "t10k", "images", 3).is_some())
}

/// Loads one split of an IDX folder.
pub(crate) fn load_dir(dir: &Path, split: Split) -> Result<Dataset> {
    let (prefix, other, what, other_what, other_split) = match split {
        Split::Train => ("train", "t10k", "training", "test", "test"),
        Split::Test => ("t10k", "train", "test", "training", "train"),
    };
    let Some(images) = find(dir, prefix, "images", 3) else {
        let msg = if let Some(there) = find(dir, other, "images", 3) {
            format!(
                "no {prefix}-images-idx3-ubyte[.gz]: this folder only holds the {other_what} \
                 set ({other}-*), not the {what} set; pass --split {other_split} (cnn data \
                 export), or give the images file itself as the data ({})",
                there.display()
            )
        } else {
            format!("no {prefix}-images-idx3-ubyte[.gz] in this folder")
        };
        return Err(data_err(dir, msg));
    };
    let Some(labels) = find(dir, prefix, "labels", 1) else {
        return Err(data_err(
            dir,
            format!(
                "{} has no labels file beside it: expected {prefix}-labels-idx1-ubyte[.gz]",
                images.display()
            ),
        ));
    };
    load_pair(&images, &labels)
}

/// Loads an images file and the labels file beside it (`images` → `labels` in the name).
pub(crate) fn load_single(images: &Path) -> Result<Dataset> {
    let name = images
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let base = name
        .replace("images-idx3-ubyte", "labels-idx1-ubyte")
        .replace("images.idx3-ubyte", "labels.idx1-ubyte");
    let base = base.strip_suffix(".gz").unwrap_or(&base).to_string();
    let dir = images.parent().unwrap_or(Path::new(""));
    let labels = [dir.join(&base), dir.join(format!("{base}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            data_err(
                images,
                format!("no labels file beside it: expected {base} or {base}.gz"),
            )
        })?;
    load_pair(images, &labels)
}

fn load_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let img = read_idx_file(images, 3)?;
    let lab = read_idx_file(labels, 1)?;
    let fashion = images
        .to_string_lossy()
        .to_ascii_lowercase()
        .contains("fashion");
    let classes: Option<Vec<String>> = fashion.then(|| {
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    assemble(
        img,
        lab,
        images,
        labels,
        classes,
        images.display().to_string(),
    )
}

/// Builds a dataset from parsed IDX images and labels, checking they agree. `classes`, when
/// known, bounds the labels; otherwise the classes are "0" up to the largest label, so a
/// file holding only 0s and 1s is a 2-class set.
pub(crate) fn assemble(
    img: Idx,
    lab: Idx,
    images_path: &Path,
    labels_path: &Path,
    classes: Option<Vec<String>>,
    source: String,
) -> Result<Dataset> {
    let (n, rows, cols) = (img.dims[0], img.dims[1], img.dims[2]);
    if lab.dims[0] != n {
        return Err(data_err(
            labels_path,
            format!(
                "has {} labels but {} has {n} images; the counts must match",
                lab.dims[0],
                images_path.display()
            ),
        ));
    }
    let max = lab.data.iter().copied().max().unwrap_or(0) as usize;
    let classes = match classes {
        Some(c) => {
            if let Some(i) = lab.data.iter().position(|&l| l as usize >= c.len()) {
                return Err(data_err(
                    labels_path,
                    format!(
                        "label {} of item {i} (byte offset {}) is out of range: expected a \
                         class index below {}",
                        lab.data[i],
                        8 + i,
                        c.len()
                    ),
                ));
            }
            c
        }
        None => (0..=max).map(|i| i.to_string()).collect(),
    };
    Ok(Dataset {
        images: img.data,
        labels: lab.data.iter().map(|&l| u16::from(l)).collect(),
        shape: [1, rows, cols],
        classes,
        source,
    })
}

/// Reads an IDX file with `ndims` dimensions (3 for images, 1 for labels).
pub(crate) fn read_idx_file(path: &Path, ndims: u8) -> Result<Idx> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_idx(BufReader::new(file), path, Some(len), ndims, MAX_IDX_BYTES)
}

/// Reads as many bytes as fit in `buf`, stopping early only at the end of the stream.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Parses an IDX stream (gzip-compressed or not, told by its first two bytes `1f 8b`).
///
/// `file_len` is the length of an uncompressed file when known, checked against the header
/// before anything is allocated; `cap` bounds the data size a header may declare (and thus
/// how far a gzip stream is ever inflated: never more than `cap` plus the header and one byte.
pub(crate) fn read_idx<R: BufRead>(
    mut r: R,
    path: &Path,
    file_len: Option<u64>,
    ndims: u8,
    cap: u64,
) -> Result<Idx> {
    let head = r.fill_buf().map_err(|e| Error::io(path, e))?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let (mut stream, file_len): (Box<dyn Read + '_>, Option<u64>) = if gz {
        (
            Box::new(GzDecoder::new(r).take(cap.saturating_add(64))),
            None,
        )
    } else {
        (Box::new(r.take(cap.saturating_add(64))), file_len)
    };
    let z = if gz {
        " (after gzip decompression)"
    } else {
        ""
    };
    let zz = if gz { " after gzip decompression" } else { "" };
    let io = |e: std::io::Error| {
        if gz {
            data_err(path, format!("corrupt gzip data: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    let what = if ndims == 3 {
        "3 (images: count, rows, cols)"
    } else {
        "1 (labels: count)"
    };

    let mut magic = [0u8; 4];
    let got = read_full(&mut stream, &mut magic).map_err(io)?;
    if got < 4 {
        return Err(data_err(
            path,
            format!("truncated: {got} bytes{z}, shorter than the 4-byte IDX magic number"),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(data_err(
            path,
            format!(
                "not an IDX file: expected magic 00 00 08 0{ndims}, got {:02x} {:02x} {:02x} {:02x}",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(data_err(
            path,
            format!(
                "unsupported IDX data type 0x{:02x} at byte 2: expected 0x08 (unsigned byte)",
                magic[2]
            ),
        ));
    }
    if magic[3] != ndims {
        return Err(data_err(
            path,
            format!("has {} dimensions (byte 3), expected {what}", magic[3]),
        ));
    }
    let header_len = 4 + 4 * u64::from(ndims);
    let mut raw = vec![0u8; 4 * ndims as usize];
    let got = read_full(&mut stream, &mut raw).map_err(io)?;
    if got < raw.len() {
        return Err(data_err(
            path,
            format!(
                "truncated: the header ends at byte {}{z}, expected {header_len} header bytes",
                4 + got
            ),
        ));
    }
    let dims: Vec<u64> = raw
        .chunks_exact(4)
        .map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let shown = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" x ");
    if ndims == 3 && (dims[1] == 0 || dims[2] == 0) {
        return Err(data_err(
            path,
            format!(
                "image size {} x {} (bytes 8..16): rows and columns must be at least 1",
                dims[1], dims[2]
            ),
        ));
    }
    let size = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&s| s <= cap)
        .ok_or_else(|| {
            data_err(
                path,
                format!(
                    "header declares {shown} bytes of data, more than the limit of {cap} bytes"
                ),
            )
        })?;
    let expected_total = header_len + size;
    if let Some(len) = file_len {
        if len < expected_total {
            return Err(data_err(
                path,
                format!(
                    "truncated: the header declares {shown} = {size} data bytes, so the file \
                     should be {expected_total} bytes, but it has {len}"
                ),
            ));
        }
        if len > expected_total {
            return Err(data_err(
                path,
                format!(
                    "over-long: the header declares {shown} = {size} data bytes, so the file \
                     should be {expected_total} bytes, but it has {len} (unexpected data from \
                     byte offset {expected_total})"
                ),
            ));
        }
    }
    // The capacity is trusted only when the file length confirmed it; otherwise the buffer
    // grows as data actually arrives.
    let mut data = Vec::with_capacity(if file_len.is_some() { size as usize } else { 0 });
    (&mut stream)
        .take(size + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    let got = data.len() as u64;
    if got < size {
        return Err(data_err(
            path,
            format!(
                "truncated: the header declares {shown} = {size} data bytes, but the data ends \
                 after {got} bytes (byte offset {}{zz})",
                header_len + got
            ),
        ));
    }
    if got > size {
        return Err(data_err(
            path,
            format!(
                "over-long: data continues past the {size} bytes the header declares \
                 ({shown}), at byte offset {expected_total}{zz}"
            ),
        ));
    }
    Ok(Idx {
        dims: dims.iter().map(|&d| d as usize).collect(),
        data,
    })
}
