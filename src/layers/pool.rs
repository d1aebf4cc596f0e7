//! MaxPool2D and AvgPool2D over a batch, forward and backward.
//!
//! Legend: N batch, C channels, H, W input size, ph, pw window, S stride, H', W' output size
//! with H' = floor((H - ph) / S) + 1 (no padding; windows that would run past the edge are
//! dropped, as PyTorch does).
//!
//! Max pooling (report 1, eq. 7):
//!
//! ```text
//! y[n][c][oy][ox] = max_{i < ph, j < pw} x[n][c][oy*S + i][ox*S + j]
//! dL/dx[...]      = dy[n][c][oy][ox] at the position of that maximum, 0 elsewhere
//!                   (summed where overlapping windows share a maximum)
//! ```
//!
//! Average pooling:
//!
//! ```text
//! y[n][c][oy][ox] = (1 / (ph pw)) sum_{i, j} x[n][c][oy*S + i][ox*S + j]
//! dL/dx[...]      = sum over the windows covering the pixel of dy / (ph pw)
//! ```
//!
//! Every (n, c) plane is independent, so planes run in parallel (at least one sample's C
//! planes per task: a plane alone is too little work to pay for a task) and results do not
//! depend on the thread count. On a tie, max pooling takes the first maximum in row-major order.

use rayon::prelude::*;

use super::spec::PoolGeom;
use crate::kernels::pool::{max_pool_2x2_fast, max_pool_plane};

/// Max pooling. Forward records the flat index (within its plane) of each maximum, which
/// backward routes the gradient to.
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, C, H', W']`.
#[derive(Debug, Clone)]
pub struct MaxPool2D {
    pub geom: PoolGeom,
    argmax: Vec<u32>,
}

impl MaxPool2D {
    pub fn new(geom: PoolGeom) -> MaxPool2D {
        MaxPool2D {
            geom,
            argmax: Vec::new(),
        }
    }

    /// y = max over each window, for `n` samples.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let planes = n * g.c;
        self.argmax.resize(planes * ohw, 0);
        y[..planes * ohw]
            .par_chunks_mut(ohw)
            .with_min_len(g.c)
            .zip(self.argmax.par_chunks_mut(ohw))
            .zip(x[..planes * hw].par_chunks(hw))
            .for_each(|((y_p, arg_p), x_p)| {
                if g.ph == 2 && g.pw == 2 && g.stride == 2 {
                    return max_pool_2x2_fast(&g, x_p, y_p, arg_p);
                }
                max_pool_plane(&g, x_p, y_p, arg_p);
            });
    }

    /// For each output of the last forward pass, the index within its (n, c) plane of the
    /// input that won its window.
    pub fn argmax(&self) -> &[u32] {
        &self.argmax
    }

    /// dL/dx: each dy goes to the input position that won its window.
    pub fn backward(&self, dy: &[f32], dx: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let planes = n * g.c;
        dx[..planes * hw]
            .par_chunks_mut(hw)
            .with_min_len(g.c)
            .zip(self.argmax.par_chunks(ohw))
            .zip(dy[..planes * ohw].par_chunks(ohw))
            .for_each(|((dx_p, arg_p), dy_p)| {
                dx_p.fill(0.0);
                for (&a, &d) in arg_p.iter().zip(dy_p) {
                    dx_p[a as usize] += d;
                }
            });
    }
}

/// Average pooling.
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, C, H', W']`.
#[derive(Debug, Clone)]
pub struct AvgPool2D {
    pub geom: PoolGeom,
}

impl AvgPool2D {
    pub fn new(geom: PoolGeom) -> AvgPool2D {
        AvgPool2D { geom }
    }

    /// y = mean over each window, for `n` samples.
    pub fn forward(&self, x: &[f32], y: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let scale = 1.0 / (g.ph * g.pw) as f32;
        y[..n * g.c * ohw]
            .par_chunks_mut(ohw)
            .with_min_len(g.c)
            .zip(x[..n * g.c * hw].par_chunks(hw))
            .for_each(|(y_p, x_p)| {
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let mut s = 0.0;
                        for i in 0..g.ph {
                            let row = (oy * g.stride + i) * g.w + ox * g.stride;
                            s += x_p[row..row + g.pw].iter().sum::<f32>();
                        }
                        y_p[oy * g.out_w + ox] = s * scale;
                    }
                }
            });
    }

    /// dL/dx: each dy spread evenly over its window.
    pub fn backward(&self, dy: &[f32], dx: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let scale = 1.0 / (g.ph * g.pw) as f32;
        dx[..n * g.c * hw]
            .par_chunks_mut(hw)
            .with_min_len(g.c)
            .zip(dy[..n * g.c * ohw].par_chunks(ohw))
            .for_each(|(dx_p, dy_p)| {
                dx_p.fill(0.0);
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let d = dy_p[oy * g.out_w + ox] * scale;
                        for i in 0..g.ph {
                            let row = (oy * g.stride + i) * g.w + ox * g.stride;
                            dx_p[row..row + g.pw].iter_mut().for_each(|v| *v += d);
                        }
                    }
                }
            });
    }
}
