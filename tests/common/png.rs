//! Grayscale PNG images made from a function of the pixel position.

use std::path::Path;

/// The pixels of a `width` x `height` grayscale image, pixel (x, y) = `pixel(x, y)`.
fn gray(width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) -> image::GrayImage {
    image::GrayImage::from_fn(width, height, |x, y| image::Luma([pixel(x, y)]))
}

/// Writes a grayscale PNG, pixel (x, y) = `pixel(x, y)`.
pub fn write_png(path: &Path, width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) {
    gray(width, height, pixel)
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The bytes of a grayscale PNG, pixel (x, y) = `pixel(x, y)`.
pub fn png_bytes(width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    gray(width, height, pixel)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}
