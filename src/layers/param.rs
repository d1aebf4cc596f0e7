//! A trainable parameter: its value and the gradient of the loss with respect to it.

use crate::tensor::Tensor;

/// A parameter tensor and its gradient, of the same shape.
///
/// Backward passes overwrite `grad` with dL/d(value) for the current mini-batch (they do not
/// accumulate across batches).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub value: Tensor,
    pub grad: Tensor,
}

impl Param {
    /// A zero parameter of `shape`, with a zero gradient.
    pub fn zeros(shape: &[usize]) -> Param {
        Param {
            value: Tensor::zeros(shape),
            grad: Tensor::zeros(shape),
        }
    }
}

/// A layer's saved state that gradients do not train (BatchNorm's running statistics and
/// batch count): written to model files and checkpoints beside the parameters, read back on
/// load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Buffer<'a> {
    /// An f32 tensor (`running_mean`, `running_var`).
    F32(&'a Tensor),
    /// An I64 scalar, as PyTorch saves `num_batches_tracked`.
    I64(i64),
}

/// Mutable access to a [`Buffer`].
#[derive(Debug)]
pub enum BufferMut<'a> {
    F32(&'a mut Tensor),
    I64(&'a mut i64),
}
