//! Layers run together, for speed: the only code outside `src/layers/` that knows layer
//! kinds by name. Each fused run computes what its layers compute one by one, in the same
//! order, so the outputs and gradients are the same bits; what goes is memory traffic and
//! waiting between the layers.
//!
//! - [`conv_pool`]: in training, a Conv2D and the MaxPool2D after it, forward and backward,
//!   block by block of samples, so that the convolution's output and its gradient stay in
//!   the cache of the thread that made them.
//! - [`batch_one`]: in inference on one image, a one-channel Conv2D, the pooling after it
//!   and a Dense layer, each of the two threads carrying its half through all three.
//!
//! Which layers run fused is decided once, when the model is built ([`super::plan`]); the
//! layers keep their kernels and passes, and lend this module what it needs through
//! narrow `pub(crate)` methods (a convolution's forward pass with work after each block,
//! its backward pass with dL/dy made block by block, a pooling's record of winners and its
//! backward for some samples, the one-image halves of each layer).

pub mod batch_one;
pub mod conv_pool;
