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
