//! A one-channel 3x3 convolution with ReLU and the 2x2 max pooling after it, in one pass
//! that never stores the convolution's output: the inference path of every example
//! network's first two layers.
//!
//! ```text
//! c[k][oy][ox]  = relu(b[k] + sum_{i, j < 3} w[k][3 i + j] * xp[oy + i][ox + j])
//! y[k][py][px]  = max(c[k][2 py][2 px], c[k][2 py][2 px + 1],
//!                     c[k][2 py + 1][2 px], c[k][2 py + 1][2 px + 1])
//! ```
//!
//! (`xp` the plane zero-padded by one on every side: "same" padding at stride 1.)
//!
//! **Layout.** Each padded row is split into its even and odd columns, `E[r][t] = xp[r][2 t]`
//! and `O[r][t] = xp[r][2 t + 1]`. The window of output column 2 px reads padded columns
//! 2 px, 2 px + 1, 2 px + 2, which are `E[px], O[px], E[px + 1]`; that of column 2 px + 1
//! reads `O[px], E[px + 1], O[px + 1]`. So one vector of lanes px = 0, 1, ... of each of
//! the four (`E`, `O`, `E` from 1, `O` from 1) gives both columns of every pooling window,
//! and the pooling is three maxima of whole vectors: no shuffles, no stores of `c`.
//!
//! **Same bits.** Each `c` is the chain of fused multiply-adds of the direct kernel and of
//! the GEMM path (from the bias, the nine products in the order of r = 3 i + j): the
//! padded rows are visited in order, each giving window row i to the upper output row and
//! i - 1 to the lower. ReLU leaves no NaN and no -0 (`max(v, 0)` gives +0 for NaN, -0 and
//! +0), so the maximum of the four is one value whatever the order of comparison, the
//! value the pooling layer picks. The tests hold the kernel to the two layers run one
//! after the other, bit for bit.
//!
//! AVX-512 (a pooled row up to 16 wide in one vector) and AVX2+FMA (two vectors of 8);
//! elsewhere [`applies`] is false and the layers run one after the other.

use super::geom::{ConvGeom, PoolGeom};
use super::Simd;

/// Floats between the starts of a padded row's even and odd halves, and twice that between
/// padded rows: room for 17 values of each half (a vector of 16 read from column 1).
pub const HALF_ROW: usize = 32;

/// Whether [`conv3x3_relu_pool2`] computes convolution `g` with ReLU (`relu`) followed by
/// pooling `p` on this CPU: a one-channel 3x3 window at stride 1 with "same" padding
/// (outputs as large as the input), a 2x2 stride-2 pooling of all of its output, even
/// height and width, and a width of at most 32.
pub fn applies(g: &ConvGeom, p: &PoolGeom, relu: bool) -> bool {
    applies_on(super::simd(), g, p, relu)
}

/// [`applies`] for the kernels of `simd` (or the best family below it that this CPU has).
pub fn applies_on(simd: Simd, g: &ConvGeom, p: &PoolGeom, relu: bool) -> bool {
    let conv = (g.c, g.kh, g.kw, g.stride, g.pad_top, g.pad_left) == (1, 3, 3, 1, 1, 1)
        && (g.out_h, g.out_w) == (g.h, g.w);
    let pool = (p.ph, p.pw, p.stride) == (2, 2, 2)
        && (p.c, p.h, p.w) == (g.k, g.out_h, g.out_w)
        && (2 * p.out_h, 2 * p.out_w) == (g.out_h, g.out_w);
    let size = g.h >= 2 && (2..=32).contains(&g.w);
    let simd = matches!(simd.or_below(), Simd::Avx512 | Simd::Avx2);
    relu && conv && pool && size && simd
}

/// The kernel's split padded plane, kept by the caller from sample to sample: its zeros
/// (the padding, and past the row's end) are written once per geometry, and each sample
/// writes only where its values land.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    planes: Vec<f32>,
    /// (H, W) of the plane whose zeros are in place.
    for_size: (usize, usize),
}

impl Scratch {
    /// The sample `x` `[H, W]` split into the even and odd columns of its padded rows:
    /// padded row r's even half at `r * 2 HALF_ROW`, its odd half [`HALF_ROW`] after it.
    fn split(&mut self, g: &ConvGeom, x: &[f32]) -> &[f32] {
        let len = (g.h + 2) * 2 * HALF_ROW;
        if self.for_size != (g.h, g.w) || self.planes.len() != len {
            self.planes.clear();
            self.planes.resize(len, 0.0);
            self.for_size = (g.h, g.w);
        }
        for (y, row) in x.chunks_exact(g.w).take(g.h).enumerate() {
            // Column c of the row is padded column c + 1: its even columns c = 2 t go to
            // the odd half at t, its odd ones c = 2 t + 1 to the even half at t + 1.
            let (even, odd) =
                self.planes[(y + 1) * 2 * HALF_ROW..][..2 * HALF_ROW].split_at_mut(HALF_ROW);
            super::transpose::deinterleave(row, odd, &mut even[1..]);
        }
        &self.planes
    }
}

/// One sample through the convolution `g` with ReLU and the pooling after it, where
/// [`applies`] holds for (`g`, its pooling, ReLU): `x` `[1, H, W]`, `w` `[K, 1, 3, 3]`,
/// `bias` `[K]`, `y` `[K, H/2, W/2]`.
///
/// # Panics
/// If [`applies`] is false or a slice is too short.
pub fn conv3x3_relu_pool2(
    g: &ConvGeom,
    p: &PoolGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    sc: &mut Scratch,
    y: &mut [f32],
) {
    conv3x3_relu_pool2_on(super::simd(), g, p, x, w, bias, sc, y)
}

/// [`conv3x3_relu_pool2`] on the kernels of `simd` (or the best family below it that this
/// CPU has): every family gives the same bits.
///
/// # Panics
/// If [`applies_on`] is false for `simd`, or a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_relu_pool2_on(
    simd: Simd,
    g: &ConvGeom,
    p: &PoolGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    sc: &mut Scratch,
    y: &mut [f32],
) {
    assert!(
        applies_on(simd, g, p, true),
        "conv3x3_relu_pool2: no kernel for {g:?} and {p:?} on {simd:?}"
    );
    let (k, oh, ow) = (g.k, p.out_h, p.out_w);
    assert!(
        x.len() >= g.h * g.w && w.len() >= 9 * k && bias.len() >= k && y.len() >= k * oh * ow,
        "conv3x3_relu_pool2: slices too short for {g:?}"
    );
    let planes = sc.split(g, x);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the family's instructions are available (`applies_on` lowers `simd` to one
    // this CPU has, and none off x86_64). `planes` holds H + 2 padded rows of 2 HALF_ROW
    // floats, so the four rows from 2 py (py < oh = H / 2) are in it, and a vector of 16
    // read from column 0 or 1 of a half ends by its column 16 < HALF_ROW. w holds K x 9,
    // bias K and y K x oh x ow floats (asserted), ow <= 16 (`applies_on`); y is borrowed
    // mutably, so it overlaps no input.
    unsafe {
        let (planes, w, b, y) = (planes.as_ptr(), w.as_ptr(), bias.as_ptr(), y.as_mut_ptr());
        if simd.or_below() == Simd::Avx512 {
            super::avx512::conv9_relu_pool2(planes, w, b, k, oh, ow, y);
        } else {
            super::avx2::conv9_relu_pool2(planes, w, b, k, oh, ow, y);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("applies() is false off x86_64, {}", planes.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::geom::Padding;
    use crate::kernels::{direct, pool};
    use crate::rng::Rng;

    fn geoms(k: usize, h: usize, w: usize) -> (ConvGeom, PoolGeom) {
        let g = ConvGeom::new([1, h, w], k, (3, 3), 1, Padding::Same).unwrap();
        let p = PoolGeom::new("MaxPool2D", [k, h, w], (2, 2), 2).unwrap();
        (g, p)
    }

    /// The two layers one after the other: the direct kernel's convolution with ReLU,
    /// then max pooling by its definition.
    fn apart(simd: Simd, g: &ConvGeom, p: &PoolGeom, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; g.k * g.out_h * g.out_w];
        let mut sc = direct::Scratch::default();
        direct::conv3x3_on(simd, g, x, w, b, true, &mut sc, &mut c);
        let (hw, ohw) = (g.out_h * g.out_w, p.out_h * p.out_w);
        let mut y = vec![0.0; g.k * ohw];
        for (c_p, y_p) in c.chunks(hw).zip(y.chunks_mut(ohw)) {
            pool::max_pool_plane(p, c_p, y_p, None);
        }
        y
    }

    /// The vector families this CPU has: the ones with a kernel here.
    fn families() -> Vec<Simd> {
        let all = Simd::all_supported().into_iter();
        all.filter(|&s| s != Simd::Portable).collect()
    }

    #[test]
    fn it_gives_the_bits_of_the_convolution_then_the_pooling_for_every_size() {
        let mut rng = Rng::new(5);
        for simd in families() {
            for (k, h, w) in [(16, 28, 28), (1, 2, 2), (5, 4, 32), (9, 6, 18), (3, 30, 10)] {
                let (g, p) = geoms(k, h, w);
                assert!(applies_on(simd, &g, &p, true), "{g:?}");
                let x: Vec<f32> = (0..h * w).map(|_| rng.normal() as f32).collect();
                let wt: Vec<f32> = (0..9 * k).map(|_| rng.normal() as f32).collect();
                let b: Vec<f32> = (0..k).map(|_| rng.normal() as f32 * 0.1).collect();
                let want = apart(simd, &g, &p, &x, &wt, &b);
                let mut got = vec![f32::NAN; want.len()];
                let mut sc = Scratch::default();
                conv3x3_relu_pool2_on(simd, &g, &p, &x, &wt, &b, &mut sc, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{simd:?} k={k} {h}x{w}");
                // The same scratch on a second sample: its zeros stayed in place.
                let x2: Vec<f32> = x.iter().map(|v| -v).collect();
                conv3x3_relu_pool2_on(simd, &g, &p, &x2, &wt, &b, &mut sc, &mut got);
                assert_eq!(bits(&got), bits(&apart(simd, &g, &p, &x2, &wt, &b)));
            }
        }
    }

    /// NaN, infinities and signed zeros in the input and the weights: ReLU turns NaN and
    /// -0 into +0 before the maxima, so they come out as the pooling layer's.
    #[test]
    fn nan_infinity_and_signed_zeros_come_out_as_the_layers_give_them() {
        let (g, p) = geoms(6, 8, 8);
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            1.5,
            -2.0,
        ];
        let x: Vec<f32> = (0..64)
            .map(|i| specials[(i * 5) % specials.len()])
            .collect();
        let w: Vec<f32> = (0..54)
            .map(|i| specials[(i * 3 + 1) % specials.len()])
            .collect();
        let b = [0.0, -0.0, f32::NAN, 1.0, -1.0, f32::INFINITY];
        for simd in families() {
            let want = apart(simd, &g, &p, &x, &w, &b);
            let mut got = vec![1.0; want.len()];
            conv3x3_relu_pool2_on(simd, &g, &p, &x, &w, &b, &mut Scratch::default(), &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{simd:?}");
        }
    }

    #[test]
    fn it_takes_only_the_geometry_it_was_written_for() {
        let (g, p) = geoms(4, 28, 28);
        assert!(!applies_on(Simd::Portable, &g, &p, true));
        if let Some(&simd) = families().first() {
            assert!(applies_on(simd, &g, &p, true));
            assert!(
                !applies_on(simd, &g, &p, false),
                "no ReLU: NaN would order the maxima"
            );
            let (odd, p_odd) = geoms(4, 28, 27);
            assert!(!applies_on(simd, &odd, &p_odd, true), "odd width");
            let (wide, p_wide) = geoms(4, 8, 34);
            assert!(!applies_on(simd, &wide, &p_wide, true), "wider than 32");
            let valid = ConvGeom::new([1, 28, 28], 4, (3, 3), 1, Padding::Valid).unwrap();
            let p_valid = PoolGeom::new("MaxPool2D", [4, 26, 26], (2, 2), 2).unwrap();
            assert!(!applies_on(simd, &valid, &p_valid, true), "no padding");
            let p3 = PoolGeom::new("MaxPool2D", [4, 28, 28], (3, 3), 2).unwrap();
            assert!(!applies_on(simd, &g, &p3, true), "3x3 pooling");
        }
    }
}
