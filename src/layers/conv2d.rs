//! Conv2D: a 2-D convolution over a batch, forward and backward.
//!
//! Legend: N batch, C input channels, H, W input size, K filters, kh, kw kernel,
//! S stride, P padding, H', W' output size (see [`ConvGeom`]).
//!
//! Forward (report 1, eq. 1, with stride and padding):
//!
//! ```text
//! y[n][k][oy][ox] = b[k] + sum_{c, i, j} w[k][c][i][j] * x[n][c][oy*S + i - P][ox*S + j - P]
//! ```
//!
//! Backward, given dy = dL/dy:
//!
//! ```text
//! dL/db[k]          = sum_{n, oy, ox} dy[n][k][oy][ox]
//! dL/dw[k][c][i][j] = sum_{n, oy, ox} dy[n][k][oy][ox] * x[n][c][oy*S + i - P][ox*S + j - P]
//! dL/dx[n][c][y][x] = sum of dy[n][k][oy][ox] * w[k][c][i][j] over every (k, oy, ox, i, j)
//!                     with oy*S + i - P = y and ox*S + j - P = x
//! ```
//!
//! The fast path lowers each sample with im2col to a matrix multiply
//! (`y_n = W * cols_n`, `dW = sum_n dy_n * cols_n^T`, `dcols_n = W^T * dy_n`), samples in
//! parallel. The weight gradient sums over the batch in fixed blocks of [`GRAD_BLOCK`]
//! samples merged in order, so the result does not depend on the number of threads.

use rayon::prelude::*;

use super::param::Param;
use super::spec::ConvGeom;
use crate::kernels::gemm::{gemm, Trans};
use crate::kernels::im2col::{col2im, im2col};

/// Samples per block of the weight-gradient reduction (fixed: see the module doc).
pub const GRAD_BLOCK: usize = 4;

/// A convolution layer with weight `[K, C, kh, kw]` and bias `[K]` (PyTorch's layout).
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, K, H', W']`.
#[derive(Debug, Clone)]
pub struct Conv2D {
    pub geom: ConvGeom,
    pub weight: Param,
    pub bias: Param,
    /// im2col of every sample of the last forward batch, `[N, C kh kw, H' W']`, kept for
    /// the weight gradient.
    cols: Vec<f32>,
    /// Partial weight gradients, one per block of samples.
    partial: Vec<f32>,
}

impl Conv2D {
    /// A layer with zero weights (the model initialises them).
    pub fn new(geom: ConvGeom) -> Conv2D {
        Conv2D {
            geom,
            weight: Param::zeros(&[geom.k, geom.c, geom.kh, geom.kw]),
            bias: Param::zeros(&[geom.k]),
            cols: Vec::new(),
            partial: Vec::new(),
        }
    }

    /// y = conv(x) + b for a batch of `n` samples.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        let (rows, ohw) = (g.patch_len(), g.out_h * g.out_w);
        self.cols.resize(n * rows * ohw, 0.0);
        let w = self.weight.value.data();
        let b = self.bias.value.data();
        y[..n * out_len]
            .par_chunks_mut(out_len)
            .zip(self.cols.par_chunks_mut(rows * ohw))
            .zip(x[..n * in_len].par_chunks(in_len))
            .for_each(|((y_n, cols), x_n)| {
                im2col(x_n, &g, cols);
                for (k, row) in y_n.chunks_mut(ohw).enumerate() {
                    row.fill(b[k]);
                }
                gemm(g.k, ohw, rows, w, Trans::No, cols, Trans::No, 1.0, y_n);
            });
    }

    /// Sets the weight and bias gradients from `dy` and, if `dx` is given, writes dL/dx.
    /// Must follow a [`Conv2D::forward`] on the same batch.
    pub fn backward(&mut self, dy: &[f32], dx: Option<&mut [f32]>, n: usize) {
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        let (rows, ohw) = (g.patch_len(), g.out_h * g.out_w);
        let wlen = g.k * rows;

        // dL/db[k] = sum over n and pixels, in a fixed order.
        let db = self.bias.grad.data_mut();
        db.fill(0.0);
        for dy_n in dy[..n * out_len].chunks(out_len) {
            for (k, row) in dy_n.chunks(ohw).enumerate() {
                db[k] += row.iter().sum::<f32>();
            }
        }

        // dL/dW = sum_n dy_n[K, H'W'] * cols_n^T, in fixed blocks of samples.
        let blocks = n.div_ceil(GRAD_BLOCK);
        self.partial.resize(blocks * wlen, 0.0);
        let cols = &self.cols;
        self.partial
            .par_chunks_mut(wlen)
            .enumerate()
            .for_each(|(blk, part)| {
                let mut beta = 0.0;
                for s in blk * GRAD_BLOCK..((blk + 1) * GRAD_BLOCK).min(n) {
                    let dy_s = &dy[s * out_len..(s + 1) * out_len];
                    let cols_s = &cols[s * rows * ohw..(s + 1) * rows * ohw];
                    gemm(
                        g.k,
                        rows,
                        ohw,
                        dy_s,
                        Trans::No,
                        cols_s,
                        Trans::Yes,
                        beta,
                        part,
                    );
                    beta = 1.0;
                }
            });
        let dw = self.weight.grad.data_mut();
        dw.copy_from_slice(&self.partial[..wlen]);
        for part in self.partial[wlen..blocks * wlen].chunks(wlen) {
            dw.iter_mut().zip(part).for_each(|(d, p)| *d += p);
        }

        // dL/dx_n = col2im(W^T[C kh kw, K] * dy_n), reusing the cols buffer.
        if let Some(dx) = dx {
            let w = self.weight.value.data();
            dx[..n * in_len]
                .par_chunks_mut(in_len)
                .zip(self.cols.par_chunks_mut(rows * ohw))
                .zip(dy[..n * out_len].par_chunks(out_len))
                .for_each(|((dx_n, dcols), dy_n)| {
                    gemm(rows, ohw, g.k, w, Trans::Yes, dy_n, Trans::No, 0.0, dcols);
                    col2im(dcols, &g, dx_n);
                });
        }
    }
}

/// Reference forward by the definition (six nested loops), for tests.
pub fn conv2d_forward_naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0.0; n * g.k * g.out_h * g.out_w];
    for s in 0..n {
        for k in 0..g.k {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let mut acc = f64::from(b[k]);
                    for c in 0..g.c {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[((s * g.c + c) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((k * g.c + c) * g.kh + i) * g.kw + j];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    y[((s * g.k + k) * g.out_h + oy) * g.out_w + ox] = acc as f32;
                }
            }
        }
    }
    y
}

/// Reference backward by the definition: returns (dx, dw, db).
pub fn conv2d_backward_naive(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0f64; n * g.c * g.h * g.w];
    let mut dw = vec![0.0f64; g.k * g.patch_len()];
    let mut db = vec![0.0f64; g.k];
    for s in 0..n {
        for k in 0..g.k {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let d = f64::from(dy[((s * g.k + k) * g.out_h + oy) * g.out_w + ox]);
                    db[k] += d;
                    for c in 0..g.c {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = ((s * g.c + c) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((k * g.c + c) * g.kh + i) * g.kw + j;
                                dw[wi] += d * f64::from(x[xi]);
                                dx[xi] += d * f64::from(w[wi]);
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dx), f(dw), f(db))
}
