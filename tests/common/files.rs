//! Test files written into folders: IDX pairs of images and labels, grayscale PNG images.

use std::path::{Path, PathBuf};

use crate::bytes::{idx_images, idx_labels, png_bytes};

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

/// Writes a grayscale PNG, pixel (x, y) = `pixel(x, y)`.
pub fn write_png(path: &Path, width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) {
    std::fs::write(path, png_bytes(width, height, pixel))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
