//! Dense (fully connected): z = W x + b (report 1, eq. 11-12), over a batch.
//!
//! Legend: N batch, I inputs (the input flattened in C, H, W order), O units.
//!
//! ```text
//! forward:  Y[N, O]  = X[N, I] * W^T[I, O] + b        (y_n = W x_n + b for each sample)
//! backward: dW[O, I] = dY^T[O, N] * X[N, I]           (sum over the batch)
//!           db[O]    = sum_n dY[n, :]
//!           dX[N, I] = dY[N, O] * W[O, I]
//! ```

use super::param::Param;
use crate::kernels::gemm::{par_gemm, par_gemv, Trans};

/// A fully connected layer with weight `[O, I]` and bias `[O]` (PyTorch's `nn.Linear`).
///
/// # Shapes
/// input `[N, ...]` with I elements per sample (read flattened), output `[N, O]`.
#[derive(Debug, Clone)]
pub struct Dense {
    pub inputs: usize,
    pub units: usize,
    pub weight: Param,
    pub bias: Param,
}

impl Dense {
    /// A layer with zero weights (the model initialises them).
    pub fn new(inputs: usize, units: usize) -> Dense {
        Dense {
            inputs,
            units,
            weight: Param::zeros(&[units, inputs]),
            bias: Param::zeros(&[units]),
        }
    }

    /// Y = X W^T + b for `n` samples.
    pub fn forward(&self, x: &[f32], y: &mut [f32], n: usize) {
        let (i, o) = (self.inputs, self.units);
        let b = self.bias.value.data();
        for row in y[..n * o].chunks_mut(o) {
            row.copy_from_slice(b);
        }
        let w = self.weight.value.data();
        if n == 1 {
            // One sample: y = W x + b as dot products over W's rows (no packing).
            par_gemv(o, i, w, x, 1.0, y);
        } else {
            par_gemm(n, o, i, x, Trans::No, w, Trans::Yes, 1.0, y);
        }
    }

    /// Sets dW and db from `dy`; writes dX if asked.
    pub fn backward(&mut self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, n: usize) {
        let (i, o) = (self.inputs, self.units);
        let db = self.bias.grad.data_mut();
        db.fill(0.0);
        for row in dy[..n * o].chunks(o) {
            db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        }
        let dw = self.weight.grad.data_mut();
        par_gemm(o, i, n, dy, Trans::Yes, x, Trans::No, 0.0, dw);
        if let Some(dx) = dx {
            let w = self.weight.value.data();
            par_gemm(n, i, o, dy, Trans::No, w, Trans::No, 0.0, dx);
        }
    }
}
