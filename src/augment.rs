//! Data augmentation of training batches: random shifts and horizontal flips, on the fly.
//!
//! Each training image is changed as it is gathered into its batch, never on disk and never
//! for the test set. The changes of image i in epoch e come from a random stream derived from
//! the run's seed, e and i alone, so a run gives the same bytes for any thread count and a
//! resumed run draws what the stopped run would have.
//!
//! ```text
//! shift S: dy, dx uniform in -S..=S;  out[c][y][x] = in[c][y - dy][x - dx], or the value of a
//!          black pixel where (y - dy, x - dx) falls outside the image (zero fill)
//! flip:    with probability 1/2, out[c][y][x] = in[c][y][W - 1 - x]
//! ```
//!
//! Flips suit clothes (Fashion-MNIST) and not digits, so nothing is on by default.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Which augmentations to apply. The default applies none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Augment {
    /// S: the largest shift in pixels, along each axis. 0: no shift.
    pub shift: usize,
    /// Flip half the images left to right.
    pub flip: bool,
}

impl Augment {
    /// True when nothing is changed.
    pub fn is_identity(&self) -> bool {
        self.shift == 0 && !self.flip
    }

    /// Changes `x`, one image of shape `[C, H, W]` (already normalised), in place, with the
    /// draws of `rng` (the image's own stream: [`stream`]). `fill[c]` is the normalised value
    /// of a black pixel in channel c; `scratch` is a reusable buffer.
    pub fn apply(
        &self,
        x: &mut [f32],
        shape: [usize; 3],
        fill: &[f32],
        rng: &mut Rng,
        scratch: &mut Vec<f32>,
    ) {
        if self.is_identity() {
            return;
        }
        let [c, h, w] = shape;
        let span = 2 * self.shift + 1;
        let dy = rng.below(span) as isize - self.shift as isize;
        let dx = rng.below(span) as isize - self.shift as isize;
        let flip = self.flip && rng.below(2) == 1;
        scratch.clear();
        scratch.extend_from_slice(&x[..c * h * w]);
        for ch in 0..c {
            let src = &scratch[ch * h * w..(ch + 1) * h * w];
            let dst = &mut x[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                for xo in 0..w {
                    let sy = y as isize - dy;
                    let sx0 = xo as isize - dx;
                    let sx = if flip { w as isize - 1 - sx0 } else { sx0 };
                    let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                    dst[y * w + xo] = if inside {
                        src[sy as usize * w + sx as usize]
                    } else {
                        fill.get(ch).copied().unwrap_or(0.0)
                    };
                }
            }
        }
    }
}

/// The random stream of image `index` of the training set in epoch `epoch` of a run seeded
/// with `seed`.
pub fn stream(seed: u64, epoch: usize, index: usize) -> Rng {
    let base = Rng::for_purpose(seed, "augment").next_u64();
    let mut r = Rng::new(
        base ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407)
            ^ (index as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25),
    );
    r.next_u64();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1x3x4 image with values 1..=12.
    fn image() -> Vec<f32> {
        (1..=12).map(|v| v as f32).collect()
    }

    #[test]
    fn nothing_changes_without_augmentation() {
        let mut x = image();
        Augment::default().apply(
            &mut x,
            [1, 3, 4],
            &[0.0],
            &mut stream(1, 0, 0),
            &mut Vec::new(),
        );
        assert_eq!(x, image());
    }

    #[test]
    fn a_flip_reverses_every_row_and_a_shift_moves_the_image_and_fills_with_black() {
        // Find draws of each kind among the images of one epoch, then check them by hand.
        let flip = Augment {
            shift: 0,
            flip: true,
        };
        let (mut flipped, mut kept) = (0, 0);
        for index in 0..40 {
            let mut x = image();
            flip.apply(
                &mut x,
                [1, 3, 4],
                &[-1.0],
                &mut stream(3, 1, index),
                &mut Vec::new(),
            );
            if x == image() {
                kept += 1;
            } else {
                assert_eq!(x, [4., 3., 2., 1., 8., 7., 6., 5., 12., 11., 10., 9.]);
                flipped += 1;
            }
        }
        assert!(flipped > 5 && kept > 5, "{flipped} flipped, {kept} kept");

        let shift = Augment {
            shift: 1,
            flip: false,
        };
        for index in 0..40 {
            let mut x = image();
            shift.apply(
                &mut x,
                [1, 3, 4],
                &[-1.0],
                &mut stream(3, 1, index),
                &mut Vec::new(),
            );
            // Every value is either from the image, in order along rows, or the fill.
            let kept: Vec<f32> = x.iter().copied().filter(|&v| v != -1.0).collect();
            assert!(kept.windows(2).all(|p| p[0] < p[1]), "{x:?}");
            // A shift of (dy, dx) keeps (3 - |dy|) (4 - |dx|) pixels: 6, 8, 9 or 12.
            assert!([6, 8, 9, 12].contains(&kept.len()), "{x:?}");
        }
    }

    #[test]
    fn the_draw_depends_on_seed_epoch_and_index_only() {
        let a = Augment {
            shift: 2,
            flip: true,
        };
        let run = |seed, epoch, index| {
            let mut x: Vec<f32> = (0..64).map(|v| v as f32).collect();
            a.apply(
                &mut x,
                [1, 8, 8],
                &[0.0],
                &mut stream(seed, epoch, index),
                &mut Vec::new(),
            );
            x
        };
        assert_eq!(run(1, 2, 3), run(1, 2, 3));
        let others = [run(2, 2, 3), run(1, 3, 3), run(1, 2, 4)];
        assert!(others.iter().any(|o| *o != run(1, 2, 3)));
    }
}
