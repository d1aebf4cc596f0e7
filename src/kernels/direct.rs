//! A direct 3x3, stride-1 convolution of one input channel (the first layer of every
//! example network), for outputs up to 32 wide: each output row of every filter is 9
//! fused multiply-adds on vectors of the padded input, with no im2col matrix in between.
//!
//! ```text
//! y[k][oy][ox] = act(b[k] + sum_{i, j} w[k][3 i + j] * xp[oy + i][ox + j])
//! ```
//!
//! (`xp` the zero-padded plane). The products are added in the order of im2col's rows,
//! starting from the bias, which is the chain of fused multiply-adds the broadcast GEMM
//! kernel computes for the same output: the two paths give the same bits, and the GEMM path
//! is the reference the tests hold this one to. AVX-512 only; elsewhere the GEMM path runs.

use super::geom::ConvGeom;
use super::Simd;

/// Row stride of the padded plane: room for 32 outputs and the 2 extra columns of a 3x3
/// window, rounded up to whole 16-lane vectors.
pub const CONV3_ROW: usize = 48;

/// Whether [`conv3x3`] computes the convolution `g` on this CPU: 3x3, stride 1, one input
/// channel, 1 to 32 outputs across, and AVX-512 chosen.
pub fn applies(g: &ConvGeom) -> bool {
    (g.c, g.kh, g.kw, g.stride) == (1, 3, 3, 1)
        && (1..=32).contains(&g.out_w)
        && g.out_h >= 1
        && super::simd() == Simd::Avx512
}

/// Floats of the padded plane [`conv3x3`] needs as scratch: (H' + 2) rows of [`CONV3_ROW`].
pub fn scratch_len(g: &ConvGeom) -> usize {
    (g.out_h + 2) * CONV3_ROW
}

/// Writes `x` `[H, W]` zero-padded by (pad_top, pad_left) into `xp`, rows [`CONV3_ROW`]
/// apart: the rows and columns a 3x3 window over H' x W' outputs reads.
fn pad_plane(g: &ConvGeom, x: &[f32], xp: &mut [f32]) {
    xp.fill(0.0);
    let rows = g.out_h + 2;
    let cols = g.w.min(CONV3_ROW.saturating_sub(g.pad_left));
    for (y, row) in x.chunks(g.w).take(g.h).enumerate() {
        let py = y + g.pad_top;
        if py >= rows {
            break;
        }
        xp[py * CONV3_ROW + g.pad_left..][..cols].copy_from_slice(&row[..cols]);
    }
}

/// One sample's convolution `y = act(conv(x) + b)`, ReLU if `relu`, for `g` where
/// [`applies`] is true: `x` `[1, H, W]`, `w` `[K, 1, 3, 3]`, `y` `[K, H', W']`; `xp` is
/// scratch of [`scratch_len`] floats.
///
/// # Panics
/// If [`applies`] is false for `g` or a slice is too short.
pub fn conv3x3(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    relu: bool,
    xp: &mut [f32],
    y: &mut [f32],
) {
    assert!(
        applies(g),
        "conv3x3: not a 3x3 stride-1 one-channel convolution on AVX-512: {g:?}"
    );
    let (k, oh, ow) = (g.k, g.out_h, g.out_w);
    assert!(x.len() >= g.h * g.w && w.len() >= k * 9 && bias.len() >= k && y.len() >= k * oh * ow);
    let xp = &mut xp[..scratch_len(g)];
    pad_plane(g, x, xp);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is available (`applies`); xp holds (oh + 2) rows of CONV3_ROW, w K x 9,
    // bias K and y K x oh x ow floats (asserted), y is borrowed mutably so overlaps no
    // input, and 1 <= ow <= 32 (`applies`).
    unsafe {
        super::avx512::conv3x3_plane(
            xp.as_ptr(),
            w.as_ptr(),
            bias.as_ptr(),
            k,
            oh,
            ow,
            relu,
            y.as_mut_ptr(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("applies() is false off x86_64, {relu} {}", xp.len());
}
