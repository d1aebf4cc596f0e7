//! The bytes of the files tests write or feed to the loaders: IDX (the MNIST format: a
//! big-endian header `0x00 0x00 0x08 NDIMS`, one u32 per dimension, then one unsigned byte
//! per value), grayscale PNG, and gzip.

use std::io::Write;

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

/// The bytes of a `width` x `height` grayscale PNG, pixel (x, y) = `pixel(x, y)`.
pub fn png_bytes(width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_fn(width, height, |x, y| image::Luma([pixel(x, y)]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// `bytes` compressed as a gzip stream.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}
