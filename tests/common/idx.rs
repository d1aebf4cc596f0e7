//! IDX files (the MNIST format): a big-endian header `0x00 0x00 0x08 NDIMS`, one u32 per
//! dimension, then one unsigned byte per value.

use std::path::{Path, PathBuf};

/// The header of an IDX file of unsigned bytes with these dimensions. Tests of malformed
/// files pass any `ndims` and `dims`, consistent or not.
pub fn idx_header(ndims: u8, dims: &[u32]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, ndims];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

/// A whole images file: `pixels` holds `n` images of `rows` x `cols`, row-major, one after
/// the other, where n = pixels.len() / (rows * cols).
pub fn idx_images(rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let size = (rows * cols) as usize;
    assert_eq!(pixels.len() % size, 0, "whole images of {rows}x{cols}");
    let mut v = idx_header(3, &[(pixels.len() / size) as u32, rows, cols]);
    v.extend_from_slice(pixels);
    v
}

/// A whole labels file.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = idx_header(1, &[labels.len() as u32]);
    v.extend_from_slice(labels);
    v
}

/// Writes `PREFIX-images-idx3-ubyte` and `PREFIX-labels-idx1-ubyte` into `dir` (creating
/// it), one label per image; returns the images file's path, which `--data` accepts as well
/// as the folder.
pub fn write_idx(
    dir: &Path,
    prefix: &str,
    rows: u32,
    cols: u32,
    pixels: &[u8],
    labels: &[u8],
) -> PathBuf {
    assert_eq!(
        pixels.len(),
        labels.len() * (rows * cols) as usize,
        "one label per image"
    );
    std::fs::create_dir_all(dir).unwrap();
    let images = dir.join(format!("{prefix}-images-idx3-ubyte"));
    std::fs::write(&images, idx_images(rows, cols, pixels)).unwrap();
    std::fs::write(
        dir.join(format!("{prefix}-labels-idx1-ubyte")),
        idx_labels(labels),
    )
    .unwrap();
    images
}
