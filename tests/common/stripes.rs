//! 8x8 images of 3 classes that differ by where they are bright (0: top rows, 1: left
//! columns, 2: bottom rows), with noise that depends on the image's index.

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
