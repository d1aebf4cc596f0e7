//! im2col and col2im: turning a convolution into one matrix multiply.
//!
//! For one sample x of shape (C, H, W) and a convolution geometry (kh, kw, S, pad), the
//! column matrix `cols` has C*kh*kw rows and H'*W' columns:
//!
//! ```text
//! cols[(c*kh + i)*kw + j][oy*W' + ox] = x[c][oy*S + i - pad_top][ox*S + j - pad_left]
//! ```
//!
//! (zero where the index falls in the padding). Then the convolution is
//! `y[K, H'W'] = W[K, C kh kw] * cols` (report 1, eq. 1), and its input gradient is
//! `dcols = W^T * dy`, scattered back with [`col2im`], which adds every column entry into the
//! input pixel it was copied from.

use super::geom::ConvGeom;

/// The output columns `lo..hi` whose input column `ox*S + j - pad_left` falls inside the
/// image (0..W) for kernel column j; the others read padding.
pub(super) fn valid_range(g: &ConvGeom, j: usize) -> (usize, usize) {
    let (s, pl) = (g.stride, g.pad_left);
    let lo = if pl > j { (pl - j).div_ceil(s) } else { 0 };
    let hi = if g.w + pl > j {
        ((g.w - 1 + pl - j) / s + 1).min(g.out_w)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Fills `cols` (length C*kh*kw * H'*W') from one sample `x` (length C*H*W).
pub fn im2col(x: &[f32], g: &ConvGeom, cols: &mut [f32]) {
    im2col_on(crate::kernels::simd(), x, g, cols)
}

/// [`im2col`] on the kernels of `simd` (or the best family below it that this CPU has):
/// every family writes the same values.
pub fn im2col_on(simd: crate::kernels::Simd, x: &[f32], g: &ConvGeom, cols: &mut [f32]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    let ohw = g.out_h * g.out_w;
    debug_assert_eq!(x.len(), g.c * g.h * g.w);
    debug_assert_eq!(cols.len(), g.patch_len() * ohw);
    // At stride 1 with AVX-512 or AVX2, each row is one masked load and store per 16 (or 8)
    // columns: at 14 or 28 columns, the loop below spent more time in calls to memset and
    // memcpy (which the compiler makes of its fills and copies) than in moving data.
    #[cfg(target_arch = "x86_64")]
    if g.stride == 1 {
        use crate::kernels::Simd;
        match simd.or_below() {
            // SAFETY: AVX-512F is available (`or_below` returns only families this CPU
            // supports); the kernel checks the stride and the lengths.
            Simd::Avx512 => return unsafe { super::avx512::im2col_stride1(x, g, cols) },
            // SAFETY: AVX2 is available (as above); the kernel checks the rest.
            Simd::Avx2 => return unsafe { super::avx2::im2col_stride1(x, g, cols) },
            Simd::Portable => {}
        }
    }
    im2col_portable(x, g, cols)
}

/// [`im2col`] without the AVX-512 and AVX2 paths, whatever the CPU: the loops every other case runs,
/// kept callable so that the tests compare both on any machine.
pub fn im2col_portable(x: &[f32], g: &ConvGeom, cols: &mut [f32]) {
    let ohw = g.out_h * g.out_w;
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let out = &mut cols[row * ohw..(row + 1) * ohw];
                // Output columns lo..hi read the image; ix = ox*S + j - pad_left.
                let (lo, hi) = valid_range(g, j);
                let ix0 = (lo * g.stride + j).saturating_sub(g.pad_left);
                for (oy, dst) in out.chunks_exact_mut(g.out_w).enumerate() {
                    let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                    let inside = iy >= 0 && iy < g.h as isize && lo < hi;
                    if !inside {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if g.stride == 1 {
                        // (The compiler makes a call to memcpy of this loop, costly for
                        // rows of a few dozen floats: the SIMD paths avoid it.)
                        for (d, &v) in dst[lo..hi].iter_mut().zip(&src[ix0..ix0 + hi - lo]) {
                            *d = v;
                        }
                    } else {
                        for (d, &v) in dst[lo..hi]
                            .iter_mut()
                            .zip(src[ix0..].iter().step_by(g.stride))
                        {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx[c][y][x] = sum of every cols entry copied from (c, y, x)`.
/// Overwrites `dx` (length C*H*W).
pub fn col2im(cols: &[f32], g: &ConvGeom, dx: &mut [f32]) {
    let ohw = g.out_h * g.out_w;
    dx.fill(0.0);
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let src = &cols[row * ohw..(row + 1) * ohw];
                let (lo, hi) = valid_range(g, j);
                if lo >= hi {
                    continue;
                }
                let ix0 = lo * g.stride + j - g.pad_left;
                for (oy, s_full) in src.chunks_exact(g.out_w).enumerate() {
                    let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let s_row = &s_full[lo..hi];
                    if g.stride == 1 {
                        for (d, &v) in dst[ix0..ix0 + hi - lo].iter_mut().zip(s_row) {
                            *d += v;
                        }
                    } else {
                        for (d, &v) in dst[ix0..].iter_mut().step_by(g.stride).zip(s_row) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}
