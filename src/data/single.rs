//! Single inputs for prediction: one image file, or the images of one IDX file or CIFAR-10
//! batch file (no labels needed).

use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use std::path::PathBuf;

use super::folder::{decode, decode_bytes, is_image_name, push_fitted};
use super::idx::read_idx_file;
use crate::error::{Error, Result};

/// True when `path` is an IDX images file, told by its content: the magic `00 00 08 03`,
/// possibly inside gzip.
pub fn is_idx_file(path: &Path) -> Result<bool> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 4];
    let mut raw = BufReader::new(file);
    let n = read_up_to(&mut raw, &mut head).map_err(|e| Error::io(path, e))?;
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut gz = GzDecoder::new(file);
        let mut inner = [0u8; 4];
        // A corrupt gzip is not an IDX file; the IDX reader reports it properly if asked.
        let got = read_up_to(&mut gz, &mut inner).unwrap_or(0);
        return Ok(got == 4 && inner == [0, 0, 8, 3]);
    }
    Ok(n == 4 && head == [0, 0, 8, 3])
}

/// True when `path` names a CIFAR-10 batch file: a name ending in `.bin`, the format having
/// no magic number to tell it by ([`super::load_cifar_images`] checks its size).
pub fn is_cifar_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(super::cifar::is_batch_name)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

/// The images of an IDX images file, as CHW bytes one after the other, and their shape
/// (1, rows, cols).
pub fn load_idx_images(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let idx = read_idx_file(path, 3)?;
    Ok((idx.data, [1, idx.dims[1], idx.dims[2]]))
}

/// One image file decoded to CHW bytes of `shape` (C, H, W): converted to C channels (1 =
/// luma, 3 = RGB) and, if `resize`, scaled to H x W; a different size is otherwise an error.
pub fn load_image(path: &Path, shape: [usize; 3], resize: bool) -> Result<Vec<u8>> {
    let img = decode(path)?;
    let mut out = Vec::with_capacity(shape.iter().product());
    push_fitted(&img, path, shape, resize, "the model's input", &mut out)?;
    Ok(out)
}

/// [`load_image`] for an image already in memory (an upload); `name` stands for it in errors.
pub fn image_from_bytes(
    name: &Path,
    bytes: &[u8],
    shape: [usize; 3],
    resize: bool,
) -> Result<Vec<u8>> {
    let img = decode_bytes(name, bytes)?;
    let mut out = Vec::with_capacity(shape.iter().product());
    push_fitted(&img, name, shape, resize, "the model's input", &mut out)?;
    Ok(out)
}

/// How deep [`image_files_under`] goes below the folder it is given.
const MAX_DEPTH: usize = 16;

/// Every image file (`.png`, `.jpg`, `.jpeg`, `.bmp`, by name) in `dir` and its sub-folders,
/// sorted by path, skipping hidden entries (names starting with `.`) and going at most 16
/// levels down. A folder holding no image is an error naming it.
pub fn image_files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, 0, &mut out)?;
    if out.is_empty() {
        return Err(super::data_err(
            dir,
            "holds no .png, .jpg, .jpeg or .bmp image (sub-folders included)",
        ));
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, depth + 1, out)?;
            }
        } else if is_image_name(&name) {
            out.push(path);
        }
    }
    Ok(())
}
