//! `cnn`: a convolutional neural network library written from scratch.
//!
//! Every layer's forward and backward pass, the loss, the optimisers and the data pipeline are
//! written here, with the formula beside the code. Start with [`layers::spec`] for what a
//! network is made of.

pub mod error;
pub mod kernels;
pub mod layers;
pub mod rng;
pub mod tensor;

pub use error::{Error, Result};
pub use tensor::Tensor;
pub mod bench;
pub mod gradcheck;
pub mod init;
pub mod io;
pub mod loss;
pub mod model;
pub mod optim;
