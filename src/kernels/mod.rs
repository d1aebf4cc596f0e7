//! Compute kernels shared by the layers: window geometry ([`geom`]), matrix views ([`mat`])
//! and the matrix multiply that takes them, the
//! im2col transform and max pooling with their run-time dispatch to AVX-512, and
//! keeping the thread pool awake during a computation ([`threads`]).
//!
//! Each fast kernel has a plain reference version beside it (`*_naive`) that the tests
//! compare it with.
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod gemm;
pub mod geom;
pub mod im2col;
pub mod mat;
pub mod pool;
pub mod threads;

/// Whether our AVX-512 kernels run on this CPU (see [`avx512::available`]); false on other
/// architectures.
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}
