//! Tests of the library: layers against hand-computed values, finite differences and
//! PyTorch, the fast kernels against the naive ones, learning, the property tests of the
//! parsers and loaders, and the real datasets.

#[path = "../common/mod.rs"]
mod common;

mod fuzz_props;
mod gradcheck;
mod hand_examples;
mod harness;
mod kernels;
mod learning;
mod legacy_files;
mod pytorch_reference;
mod shared_data;
