//! Max pooling of one (H, W) plane: the general loop (the definition), the 2x2 stride-2 loop,
//! and its AVX-512 and AVX2 versions, chosen at run time. Each takes a resolved
//! [`PoolGeom`] and writes, for every output, the maximum and, when given somewhere to put
//! it (training, where backward routes the gradient through it), its flat index in the
//! plane.
//!
//! ```text
//! y[oy][ox] = max_{i < ph, j < pw} x[oy*S + i][ox*S + j]
//! ```
//!
//! On a tie the first maximum in row-major order wins; NaN never wins.

use super::geom::PoolGeom;

/// Max pooling of one plane, any window and stride: the definition. The winners' indices
/// go to `arg_p` if given.
pub fn max_pool_plane(g: &PoolGeom, x_p: &[f32], y_p: &mut [f32], mut arg_p: Option<&mut [u32]>) {
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let mut best = f32::NEG_INFINITY;
            let mut at = (oy * g.stride) * g.w + ox * g.stride;
            for i in 0..g.ph {
                let row = (oy * g.stride + i) * g.w + ox * g.stride;
                for (j, &v) in x_p[row..row + g.pw].iter().enumerate() {
                    // `>` keeps the first maximum. NaN never wins, so an
                    // all-NaN window keeps its first index and outputs NaN.
                    // Written as selects, not a branch: on real data the
                    // winner is unpredictable and a mispredicted branch per
                    // element cost 4-5x the whole loop.
                    let win = v > best;
                    best = if win { v } else { best };
                    at = if win { row + j } else { at };
                }
            }
            y_p[oy * g.out_w + ox] = x_p[at];
            if let Some(arg_p) = arg_p.as_deref_mut() {
                arg_p[oy * g.out_w + ox] = at as u32;
            }
        }
    }
}

/// [`max_pool_2x2`], 16 outputs at a time with AVX-512 or 8 with AVX2 where the CPU has
/// them.
pub fn max_pool_2x2_fast(g: &PoolGeom, x_p: &[f32], y_p: &mut [f32], arg_p: Option<&mut [u32]>) {
    max_pool_2x2_on(crate::kernels::simd(), g, x_p, y_p, arg_p)
}

/// [`max_pool_2x2`] on the kernels of `simd` (or the best family below it that this CPU
/// has): every family writes the same values and indices.
pub fn max_pool_2x2_on(
    simd: crate::kernels::Simd,
    g: &PoolGeom,
    x_p: &[f32],
    y_p: &mut [f32],
    arg_p: Option<&mut [u32]>,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::{avx2, avx512, Simd};
        let simd = simd.or_below();
        if simd != Simd::Portable {
            // The sizes are checked here, not in the kernel: there (with the geometry
            // passed in) the same checks made the layer's forward pass 2% slower, measured.
            let ohw = g.out_h * g.out_w;
            assert!(2 * g.out_h <= g.h && 2 * g.out_w <= g.w && x_p.len() >= g.h * g.w);
            assert!(y_p.len() >= ohw && arg_p.as_ref().is_none_or(|a| a.len() >= ohw));
            let (w, oh, ow) = (g.w, g.out_h, g.out_w);
            // SAFETY: the family's instructions are available (`or_below` returns only
            // families this CPU supports) and the plane sizes were just checked; without
            // ARG the kernels do not touch `arg`.
            unsafe {
                match (simd, arg_p) {
                    (Simd::Avx512, Some(a)) => avx512::max_pool_2x2::<true>(x_p, w, oh, ow, y_p, a),
                    (Simd::Avx512, None) => {
                        avx512::max_pool_2x2::<false>(x_p, w, oh, ow, y_p, &mut [])
                    }
                    (_, Some(a)) => avx2::max_pool_2x2::<true>(x_p, w, oh, ow, y_p, a),
                    (_, None) => avx2::max_pool_2x2::<false>(x_p, w, oh, ow, y_p, &mut []),
                }
            };
            return;
        }
    }
    max_pool_2x2(g, x_p, y_p, arg_p)
}

/// Max pooling of one plane with 2x2 windows and stride 2 (the common case): the same
/// result as the general loop (first maximum in row-major order, NaN never wins), with the
/// window's four values read from two row slices and the winner kept with selects.
pub fn max_pool_2x2(g: &PoolGeom, x_p: &[f32], y_p: &mut [f32], mut arg_p: Option<&mut [u32]>) {
    let (w, ow) = (g.w, g.out_w);
    assert!(2 * g.out_h <= g.h && 2 * ow <= w && x_p.len() >= g.h * w);
    for oy in 0..g.out_h {
        let r0 = 2 * oy * w;
        let top = &x_p[r0..r0 + 2 * ow];
        let bot = &x_p[r0 + w..r0 + w + 2 * ow];
        let y_row = &mut y_p[oy * ow..(oy + 1) * ow];
        for (ox, (yv, (t, b))) in y_row
            .iter_mut()
            .zip(top.chunks_exact(2).zip(bot.chunks_exact(2)))
            .enumerate()
        {
            let c = r0 + 2 * ox;
            let mut best = f32::NEG_INFINITY;
            let (mut out, mut at) = (t[0], c);
            for (v, idx) in [(t[0], c), (t[1], c + 1), (b[0], c + w), (b[1], c + w + 1)] {
                let win = v > best;
                best = if win { v } else { best };
                out = if win { v } else { out };
                at = if win { idx } else { at };
            }
            *yv = out;
            if let Some(arg_p) = arg_p.as_deref_mut() {
                arg_p[oy * ow + ox] = at as u32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_2x2_path_equals_the_general_loop_with_ties_and_nan() {
        for (h, w) in [(2, 2), (5, 7), (28, 28), (3, 9), (9, 70), (4, 33)] {
            let g = PoolGeom {
                c: 1,
                h,
                w,
                ph: 2,
                pw: 2,
                stride: 2,
                out_h: h / 2,
                out_w: w / 2,
            };
            let mut r = Rng::new((h * 100 + w) as u64);
            // Few distinct values, so windows often tie; some NaN and -inf.
            let x: Vec<f32> = (0..h * w)
                .map(|_| match r.below(8) {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    v => v as f32 % 3.0,
                })
                .collect();
            let ohw = g.out_h * g.out_w;
            let (mut y1, mut a1) = (vec![0.0; ohw], vec![0; ohw]);
            let (mut y2, mut a2) = (vec![0.0; ohw], vec![0; ohw]);
            max_pool_plane(&g, &x, &mut y1, Some(&mut a1));
            max_pool_2x2(&g, &x, &mut y2, Some(&mut a2));
            assert_eq!(a1, a2);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y1), bits(&y2));
            // Without indices (inference), the same values.
            let mut y4 = vec![0.0; ohw];
            max_pool_plane(&g, &x, &mut y4, None);
            assert_eq!(bits(&y1), bits(&y4));
            max_pool_2x2(&g, &x, &mut y4, None);
            assert_eq!(bits(&y1), bits(&y4));
            // And the AVX-512 and AVX2 paths, where this CPU has them.
            for simd in crate::kernels::Simd::all_supported() {
                let (mut y3, mut a3) = (vec![0.0; ohw], vec![0; ohw]);
                max_pool_2x2_on(simd, &g, &x, &mut y3, Some(&mut a3));
                assert_eq!(a1, a3, "{simd:?}");
                assert_eq!(bits(&y1), bits(&y3), "{simd:?}");
                let mut y5 = vec![0.0; ohw];
                max_pool_2x2_on(simd, &g, &x, &mut y5, None);
                assert_eq!(bits(&y1), bits(&y5), "{simd:?} without indices");
            }
        }
    }
}
