//! Data augmentation of training batches: random shifts, horizontal flips and random
//! erasing, on the fly.
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
//! erase p: with probability p, a rectangle of the H x W image (after the shift and the flip)
//!          becomes 0 in every channel, 0 of the normalised image (the data's mean colour
//!          with --normalize, black without). Up to 10 attempts draw
//!              a = H W s,  s uniform in [0.02, 0.33]      (the area erased)
//!              r = e^t,    t uniform in [ln 0.3, ln 3.3]  (the aspect ratio, log-uniform)
//!              h = round(sqrt(a r)),  w = round(sqrt(a / r))  (halves to even)
//!          and the first with h < H and w < W places the h x w rectangle at a top row
//!          uniform in 0..=H - h and a left column uniform in 0..=W - w. When none of the 10
//!          fits, nothing is erased.
//! ```
//!
//! A shift with a flip is torchvision's `RandomCrop(size=(H, W), padding=S)` (zero padding,
//! crop offsets uniform in 0..=2S, so the image moves by -S..=S) followed by
//! `RandomHorizontalFlip()`, on the image before `ToTensor` and `Normalize`: its black
//! padding is a black pixel after normalisation, as the fill here. Erasing is torchvision's
//! `RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)` (the same draws, its
//! `get_params`), applied last, after `Normalize`, as torchvision's documentation orders it.
//! The draws come from our generator ([`crate::rng`]) in f64 where torchvision draws
//! float32 numbers from its own, so the distributions are the same and the streams are not;
//! `tests/fixtures/random_erasing.json` holds rectangles torchvision's own `RandomErasing`
//! chose from given draws, which [`erase_box`] reproduces from the same draws.
//!
//! Flips suit clothes (Fashion-MNIST) and not digits, so nothing is on by default.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Which augmentations to apply. The default applies none.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Augment {
    /// S: the largest shift in pixels, along each axis. 0: no shift.
    pub shift: usize,
    /// Flip half the images left to right.
    pub flip: bool,
    /// p: the probability of erasing a rectangle of an image ([`erase_box`]), 0 to 1. 0: never.
    #[serde(default)]
    pub erase: f32,
}

/// The range of the share of the image that erasing draws its area from: torchvision's
/// `RandomErasing` default `scale`.
pub const ERASE_SCALE: (f64, f64) = (0.02, 0.33);
/// The range of the aspect ratio (height / width) that erasing draws from, log-uniformly:
/// torchvision's `RandomErasing` default `ratio`.
pub const ERASE_RATIO: (f64, f64) = (0.3, 3.3);
/// How many area and ratio draws erasing makes before it gives up: torchvision's.
pub const ERASE_ATTEMPTS: usize = 10;

/// The rectangle erasing chose: rows `top..top + height`, columns `left..left + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasedBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// The random numbers erasing draws: a uniform number in [0, 1) and a uniform whole number
/// in `0..n`. [`Rng`] gives them in training; the tests replay torchvision's.
pub trait Draws {
    fn uniform(&mut self) -> f64;
    fn below(&mut self, n: usize) -> usize;
}

impl Draws for Rng {
    fn uniform(&mut self) -> f64 {
        Rng::uniform(self)
    }
    fn below(&mut self, n: usize) -> usize {
        Rng::below(self, n)
    }
}

/// Whether to erase, and where, in an `h` x `w` image, with probability `p`: torchvision's
/// `RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3)).forward` and `get_params`, draw for
/// draw (see the [module documentation](self)). The draws, in order: one uniform number
/// (erase when below `p`); then, for each attempt, the area's share and the log of the ratio
/// (uniform numbers scaled to their ranges); then, for the attempt that fits, the top row and
/// the left column (whole numbers). `None` when nothing is erased: not drawn, or no attempt
/// fit.
pub fn erase_box(h: usize, w: usize, p: f64, draws: &mut impl Draws) -> Option<ErasedBox> {
    if draws.uniform() >= p {
        return None;
    }
    let area = (h * w) as f64;
    let (lo, hi) = (ERASE_RATIO.0.ln(), ERASE_RATIO.1.ln());
    for _ in 0..ERASE_ATTEMPTS {
        let share = ERASE_SCALE.0 + (ERASE_SCALE.1 - ERASE_SCALE.0) * draws.uniform();
        let erase_area = area * share;
        let ratio = (lo + (hi - lo) * draws.uniform()).exp();
        // Python's round(): halves to even.
        let height = (erase_area * ratio).sqrt().round_ties_even() as usize;
        let width = (erase_area / ratio).sqrt().round_ties_even() as usize;
        if !(height < h && width < w) {
            continue;
        }
        let top = draws.below(h - height + 1);
        let left = draws.below(w - width + 1);
        return Some(ErasedBox {
            top,
            left,
            height,
            width,
        });
    }
    None
}

impl Augment {
    /// True when nothing is changed.
    pub fn is_identity(&self) -> bool {
        self.shift == 0 && !self.flip && self.erase <= 0.0
    }

    /// Changes `x`, one image of shape `[C, H, W]` (already normalised), in place, with the
    /// draws of `rng` (the image's own stream: [`stream`]): the shift and the flip, then the
    /// erasing. `fill[c]` is the normalised value of a black pixel in channel c, which a
    /// shift brings in; `scratch` is a reusable buffer.
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
        if self.shift > 0 || self.flip {
            self.shift_and_flip(x, shape, fill, rng, scratch);
        }
        if self.erase > 0.0 {
            if let Some(b) = erase_box(h, w, f64::from(self.erase), rng) {
                for ch in 0..c {
                    let plane = &mut x[ch * h * w..(ch + 1) * h * w];
                    for row in plane.chunks_mut(w).skip(b.top).take(b.height) {
                        row[b.left..b.left + b.width].fill(0.0);
                    }
                }
            }
        }
    }

    /// The shift and the flip of [`Augment::apply`].
    fn shift_and_flip(
        &self,
        x: &mut [f32],
        shape: [usize; 3],
        fill: &[f32],
        rng: &mut Rng,
        scratch: &mut Vec<f32>,
    ) {
        let span = 2 * self.shift + 1;
        let dy = rng.below(span) as isize - self.shift as isize;
        let dx = rng.below(span) as isize - self.shift as isize;
        let flip = self.flip && rng.below(2) == 1;
        let [c, h, w] = shape;
        scratch.clear();
        scratch.extend_from_slice(&x[..c * h * w]);
        place(scratch, x, shape, [dy, dx], flip, fill);
    }
}

/// Writes the `[C, H, W]` image `src` into `dst` moved by `dy` rows and `dx` columns and,
/// with `flip`, mirrored first: dst[c][y][x] = src[c][y - dy][x'] with x' = W - 1 - (x - dx)
/// when flipped, x - dx when not, or `fill[c]` where that falls outside the image. The
/// shift and flip of training ([`Augment::apply`]) and the views of the test-time
/// augmentation ([`crate::train::TestViews`]).
pub fn place(
    src: &[f32],
    dst: &mut [f32],
    shape: [usize; 3],
    [dy, dx]: [isize; 2],
    flip: bool,
    fill: &[f32],
) {
    let [c, h, w] = shape;
    for ch in 0..c {
        let src = &src[ch * h * w..(ch + 1) * h * w];
        let dst = &mut dst[ch * h * w..(ch + 1) * h * w];
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
            flip: true,
            ..Augment::default()
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
            ..Augment::default()
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
            erase: 0.5,
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

    /// Draws given in advance, as torchvision's calls would return them (see
    /// scripts/make-erasing-fixture.py): `below(n)` is floor(u n).
    struct Replay(Vec<f64>, usize);

    impl Draws for Replay {
        fn uniform(&mut self) -> f64 {
            self.1 += 1;
            self.0[self.1 - 1]
        }
        fn below(&mut self, n: usize) -> usize {
            (self.uniform() * n as f64) as usize
        }
    }

    /// The rectangle erasing sets to 0, if it sets any pixel.
    fn erased(b: Option<ErasedBox>) -> Option<ErasedBox> {
        b.filter(|b| b.height > 0 && b.width > 0)
    }

    #[test]
    fn erasing_picks_the_rectangle_torchvision_picks_from_the_same_draws() {
        #[derive(serde::Deserialize)]
        struct Case {
            shape: [usize; 3],
            p: f64,
            draws: Vec<f64>,
            erased: Option<[usize; 4]>,
        }
        #[derive(serde::Deserialize)]
        struct Fixture {
            cases: Vec<Case>,
        }
        let fixture: Fixture =
            serde_json::from_str(include_str!("../tests/fixtures/random_erasing.json")).unwrap();
        assert!(fixture.cases.len() > 100);
        let mut seen = (0, 0, 0);
        for (i, case) in fixture.cases.iter().enumerate() {
            let [_, h, w] = case.shape;
            let mut replay = Replay(case.draws.clone(), 0);
            let got = erased(erase_box(h, w, case.p, &mut replay));
            let want = case.erased.map(|[top, left, height, width]| ErasedBox {
                top,
                left,
                height,
                width,
            });
            assert_eq!(got, want, "case {i}: {:?} p {}", case.shape, case.p);
            assert_eq!(replay.1, case.draws.len(), "case {i}: draws used");
            seen.0 += usize::from(want.is_some());
            seen.1 += usize::from(want.is_none() && case.draws.len() == 1);
            seen.2 += usize::from(case.draws.len() == 1 + 2 * ERASE_ATTEMPTS);
        }
        // Erased, not drawn, and every attempt failing, all among the cases.
        assert!(seen.0 > 50 && seen.1 > 10 && seen.2 > 0, "{seen:?}");
    }

    #[test]
    fn erasing_by_hand() {
        // 10x10, p = 1: the first attempt draws 33% of the area, at a ratio of 3.3 (h =
        // round(sqrt(33 x 3.3)) = 10, not below 10): refused. The second draws 17.5% (a =
        // 17.5) at ratio sqrt(0.3 x 3.3) = 0.99499 (t = 1/2): h = round(sqrt(17.41)) = 4,
        // w = round(sqrt(17.59)) = 4. Then the top row floor(0.5 x 7) = 3 and the left column
        // floor(0.99 x 7) = 6.
        let mut replay = Replay(vec![0.2, 1.0, 1.0, 0.5, 0.5, 0.5, 0.99], 0);
        let b = erase_box(10, 10, 1.0, &mut replay).unwrap();
        let want = ErasedBox {
            top: 3,
            left: 6,
            height: 4,
            width: 4,
        };
        assert_eq!((b, replay.1), (want, 7));
        // A first draw of p or more erases nothing and draws nothing else.
        let mut replay = Replay(vec![0.7], 0);
        assert_eq!(erase_box(10, 10, 0.7, &mut replay), None);
        assert_eq!(replay.1, 1);
    }

    /// Erases one 2x32x32 image of ones with `p` and the stream of image `index`; returns it.
    fn erase_ones(p: f32, index: usize) -> Vec<f32> {
        let a = Augment {
            erase: p,
            ..Augment::default()
        };
        let mut x = vec![1.0; 2 * 32 * 32];
        a.apply(
            &mut x,
            [2, 32, 32],
            &[-1.0, -1.0],
            &mut stream(5, 2, index),
            &mut Vec::new(),
        );
        x
    }

    #[test]
    fn an_erased_region_is_one_rectangle_of_zeros_in_every_channel() {
        let mut erased_images = 0;
        for index in 0..200 {
            let x = erase_ones(0.5, index);
            let zeros: Vec<usize> = (0..x.len()).filter(|&k| x[k] == 0.0).collect();
            assert!(x.iter().all(|&v| v == 0.0 || v == 1.0));
            if zeros.is_empty() {
                continue;
            }
            erased_images += 1;
            let (plane0, plane1) = x.split_at(32 * 32);
            assert_eq!(plane0, plane1, "the same rectangle in every channel");
            let (rows, cols): (Vec<usize>, Vec<usize>) = zeros
                .iter()
                .filter(|&&k| k < 1024)
                .map(|&k| (k / 32, k % 32))
                .unzip();
            let (top, bottom) = (*rows.iter().min().unwrap(), *rows.iter().max().unwrap());
            let (left, right) = (*cols.iter().min().unwrap(), *cols.iter().max().unwrap());
            let area = (bottom - top + 1) * (right - left + 1);
            assert_eq!(rows.len(), area, "image {index}: not a rectangle");
        }
        assert!(
            (70..=130).contains(&erased_images),
            "{erased_images} of 200"
        );
    }

    #[test]
    fn erasing_statistics_follow_the_scale_and_ratio_ranges() {
        // Over many images of 32x32: the share erased is p; each rectangle fits, its area is
        // 2% to 33% of the image and its ratio 0.3 to 3.3, give or take the rounding of each
        // side to a whole pixel; the mean area is near (0.02 + 0.33) / 2 of the image.
        let (n, p) = (20_000, 0.5);
        let (mut count, mut area_sum) = (0usize, 0usize);
        for index in 0..n {
            let Some(b) = erase_box(32, 32, p, &mut stream(9, 0, index)) else {
                continue;
            };
            count += 1;
            let (h, w) = (b.height as f64, b.width as f64);
            assert!(b.top + b.height <= 32 && b.left + b.width <= 32, "{b:?}");
            assert!(b.height < 32 && b.width < 32, "{b:?}");
            // Each side is within 1/2 of its exact value sqrt(a r) or sqrt(a / r).
            let (a_lo, a_hi) = (0.02 * 1024.0, 0.33 * 1024.0);
            assert!(
                (h - 0.5) * (w - 0.5) <= a_hi && (h + 0.5) * (w + 0.5) >= a_lo,
                "{b:?}"
            );
            assert!(
                (h - 0.5) / (w + 0.5) <= 3.3 && (h + 0.5) / (w - 0.5) >= 0.3,
                "{b:?}"
            );
            area_sum += b.height * b.width;
        }
        let share = count as f64 / n as f64;
        // 20,000 draws: one standard deviation of the share is 0.0035.
        assert!((share - p).abs() < 0.02, "erased {share} of the images");
        let mean_area = area_sum as f64 / count as f64 / 1024.0;
        assert!((mean_area - 0.175).abs() < 0.01, "mean area {mean_area}");

        // A small image, where the rectangle often does not fit: the sides stay below the
        // image's; on 3x3 one attempt in few fits, and p = 1 still erases most images.
        let mut erased = 0;
        for index in 0..2000 {
            if let Some(b) = erase_box(3, 3, 1.0, &mut stream(9, 1, index)) {
                assert!(b.height < 3 && b.width < 3, "{b:?}");
                erased += usize::from(b.height * b.width > 0);
            }
        }
        assert!(erased > 1000, "{erased} of 2000");
        // A tall image: tall rectangles fit, wide ones are refused.
        for index in 0..2000 {
            if let Some(b) = erase_box(64, 8, 1.0, &mut stream(9, 2, index)) {
                assert!(b.height < 64 && b.width < 8, "{b:?}");
            }
        }
    }

    #[test]
    fn erasing_draws_after_the_shift_and_the_flip_and_sets_pixels_to_zero_only() {
        // The shift and flip of an image are drawn first, as before erasing existed.
        let a = Augment {
            shift: 2,
            flip: true,
            erase: 0.0,
        };
        let b = Augment { erase: 1.0, ..a };
        let run = |aug: Augment| {
            let mut x: Vec<f32> = (1..=64).map(|v| v as f32).collect();
            aug.apply(
                &mut x,
                [1, 8, 8],
                &[-1.0],
                &mut stream(4, 0, 7),
                &mut Vec::new(),
            );
            x
        };
        let (shifted, erased) = (run(a), run(b));
        for (s, e) in shifted.iter().zip(&erased) {
            assert!(e == s || *e == 0.0, "erasing changes pixels to 0 only");
        }
        assert!(Augment::default().is_identity() && !b.is_identity());
    }
}
