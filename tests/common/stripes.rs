//! 8x8 images of 3 classes that differ by where they are bright (0: top rows, 1: left
//! columns, 2: bottom rows), with noise that depends on the image's index, as bytes, IDX
//! files and PNG images.

use std::path::Path;

use crate::files::{write_idx, write_png};

/// Pixel `(r, c)` of a noisy 8x8 image of class `class` (0: top rows bright, 1: left columns
/// bright, 2: bottom rows bright), varied by `i`.
pub fn stripes_pixel(class: usize, i: usize, r: usize, c: usize) -> u8 {
    let bright = match class {
        0 => r < 3,
        1 => c < 3,
        _ => r >= 5,
    };
    let noise = ((i * 31 + r * 7 + c * 13) % 21) as u8;
    if bright {
        190 + noise
    } else {
        5 + noise
    }
}

/// The 64 bytes of image `i`; its last pixel is `i`, so that no two images are equal.
pub fn stripes_image(class: usize, i: usize) -> Vec<u8> {
    let mut img: Vec<u8> = (0..64)
        .map(|k| stripes_pixel(class, i, k / 8, k % 8))
        .collect();
    img[63] = i as u8;
    img
}

/// Writes `PREFIX-images-idx3-ubyte` and `PREFIX-labels-idx1-ubyte` into `dir`: `n` images
/// of classes 0, 1, 2 in turn.
pub fn write_stripes_idx(dir: &Path, prefix: &str, n: usize) {
    let pixels: Vec<u8> = (0..n).flat_map(|i| stripes_image(i % 3, i)).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    write_idx(dir, prefix, 8, 8, &pixels, &labels);
}

/// Writes image `i` of class `class` as an 8x8 PNG at `path`, making its folder.
pub fn write_stripes_png(path: &Path, class: usize, i: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = stripes_image(class, i);
    write_png(path, 8, 8, |x, y| img[(y * 8 + x) as usize]);
}
