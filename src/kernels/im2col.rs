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

use crate::layers::spec::ConvGeom;

/// Fills `cols` (length C*kh*kw * H'*W') from one sample `x` (length C*H*W).
pub fn im2col(x: &[f32], g: &ConvGeom, cols: &mut [f32]) {
    let ohw = g.out_h * g.out_w;
    debug_assert_eq!(x.len(), g.c * g.h * g.w);
    debug_assert_eq!(cols.len(), g.patch_len() * ohw);
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let out = &mut cols[row * ohw..(row + 1) * ohw];
                for oy in 0..g.out_h {
                    let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                    let dst = &mut out[oy * g.out_w..(oy + 1) * g.out_w];
                    if iy < 0 || iy >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                        *d = if ix < 0 || ix >= g.w as isize {
                            0.0
                        } else {
                            src[ix as usize]
                        };
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
                for oy in 0..g.out_h {
                    let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for ox in 0..g.out_w {
                        let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                        if ix >= 0 && ix < g.w as isize {
                            dst[ix as usize] += src[oy * g.out_w + ox];
                        }
                    }
                }
            }
        }
    }
}
