//! `cnn`: a convolutional neural network library written from scratch.
//!
//! Every layer's forward and backward pass, the loss, the optimisers and the data pipeline are
//! written here, with the formula beside the code. A tour, in the order a network is built:
//!
//! - [`config`]: report 1's text config file, parsed into a [`layers::NetworkSpec`];
//! - [`layers`]: one module per layer kind, holding its config keys, shape inference,
//!   counts, summary text and forward and backward pass; [`examples`]: the built-in networks;
//! - [`kernels`]: matrix multiply (our AVX-512 tiles, `matrixmultiply` elsewhere) and
//!   im2col, with the naive references they are tested against, and
//!   [`kernels::threads::with_awake_workers`] for running a computation without waiting on
//!   sleeping worker threads;
//! - [`loss`], [`optim`], [`init`]: softmax cross-entropy, SGD/momentum/Adam, initialisation;
//! - [`model`]: the sequential network; [`train`]: the training loop; [`gradcheck`]: the
//!   proof that backprop is right;
//! - [`data`]: IDX files, image folders, the built-in demo set;
//! - [`metrics`], [`plot`]: confusion matrix and per-class scores, charts with an embedded
//!   font; [`visualize`]: a network's filters and what each layer sees of one image;
//! - [`model_file`], [`checkpoint`], [`io`]: safetensors files, resumable runs, atomic writes;
//! - [`onnx`]: a model file as an ONNX graph and back (`cnn export`, `cnn import`);
//! - [`distributed`]: data-parallel training over MPI processes, the same bytes as one;
//! - [`run`]: a training run with its run folder (data, checkpoints, metrics, plots,
//!   report), what `cnn train` and `cnn sweep` drive.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod distributed;
pub mod early_stop;
pub mod error;
pub mod examples;
pub mod gradcheck;
pub mod init;
pub mod io;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod model_file;
pub mod monitor;
mod names;
pub mod onnx;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod summary;
pub mod tensor;
pub mod text;
pub mod train;
pub mod visualize;

pub use error::{Error, Result};
pub use tensor::Tensor;
