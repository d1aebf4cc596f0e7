//! Tests of the library: layers against hand-computed values, finite differences and
//! PyTorch, the fast kernels against the naive ones, learning, the property tests of the
//! parsers and loaders, files written by earlier versions, and the real datasets.

// Helpers, from tests/common (its mod.rs says why each crate names the files it uses).
#[path = "../common/bytes.rs"]
mod bytes;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/fixtures.rs"]
mod fixtures;
#[path = "../common/shared.rs"]
mod shared;

mod fuzz_props;
mod gradcheck;
mod grouped;
mod hand_examples;
mod harness;
mod kernels;
mod learning;
mod legacy_files;
mod pytorch_reference;
mod shared_data;
