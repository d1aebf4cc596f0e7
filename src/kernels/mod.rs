//! Compute kernels shared by the layers: matrix multiply and the im2col transform.
//!
//! Each fast kernel has a plain reference version beside it (`*_naive`) that the tests
//! compare it with.
pub mod gemm;
pub mod im2col;
