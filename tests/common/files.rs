//! Test files written into folders: text, IDX pairs of images and labels, grayscale PNG
//! images.

use std::path::{Path, PathBuf};

use crate::bytes::{idx_images, idx_labels, png_bytes};

/// Writes `text` into `dir/name`; returns its path.
pub fn write_text(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
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

/// Writes a grayscale PNG, pixel (x, y) = `pixel(x, y)`.
pub fn write_png(path: &Path, width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) {
    std::fs::write(path, png_bytes(width, height, pixel))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Writes `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` into `dir`: 24 images
/// 1x8x8 with labels 0, 1, 2, 0, ..., byte k of the images being (37 k + salt) mod 251, a
/// sawtooth with nothing to learn, for tests of a run's options and files; another `salt`
/// gives other images.
pub fn write_sawtooth_idx(dir: &Path, salt: u32) {
    let n = 24u32;
    let pixels: Vec<u8> = (0..n * 64).map(|k| ((k * 37 + salt) % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    write_idx(dir, "train", 8, 8, &pixels, &labels);
}
