//! Compute kernels shared by the layers: window geometry ([`geom`]), matrix views ([`mat`])
//! and the matrix multiply that takes them, the
//! im2col transform and max pooling with their run-time dispatch to AVX-512 or AVX2+FMA
//! ([`Simd`]), keeping the thread pool awake during a computation ([`threads`]), and
//! Winograd's F(2x2, 3x3) for 3x3 stride-1 convolutions with 8 or more input channels
//! ([`winograd`]; `CNN_NO_WINOGRAD` set to anything makes them use im2col instead).
//!
//! Each fast kernel has a plain reference version beside it (`*_naive`) that the tests
//! compare it with.
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod conv_relu_pool;
pub mod depthwise;
pub mod direct;
pub mod gemm;
pub mod geom;
pub mod im2col;
pub mod mat;
pub mod matvec;
pub mod pool;
pub mod threads;
pub mod transpose;
pub mod winograd;

use std::sync::OnceLock;

/// Which family of kernels runs: our AVX-512 kernels ([`avx512`]), our AVX2+FMA kernels
/// ([`avx2`]), or the portable code (the `matrixmultiply` crate for products, plain loops
/// for the rest).
///
/// The AVX2 kernels compute every element in the same order as the AVX-512 ones (the same
/// chain of FMAs, the same 16 partial sums of a dot product and the same tree adding them),
/// so the two paths give the same bits; the portable path rounds differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    Avx512,
    Avx2,
    Portable,
}

impl Simd {
    /// Whether this CPU can run the kernels of `self` (the portable ones run anywhere).
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Simd::Avx512 | Simd::Avx2 => false,
            Simd::Portable => true,
        }
    }

    /// `self` if this CPU supports it, otherwise the best family below it that it does:
    /// what a kernel asked for `self` runs, so no choice can execute an instruction the CPU
    /// lacks.
    pub fn or_below(self) -> Simd {
        [Simd::Avx512, Simd::Avx2, Simd::Portable]
            .into_iter()
            .skip_while(|s| *s != self)
            .find(|s| s.supported())
            .unwrap_or(Simd::Portable)
    }

    /// Every family this CPU supports, best first (whatever the environment says): the
    /// tests run each kernel on all of them.
    pub fn all_supported() -> Vec<Simd> {
        [Simd::Avx512, Simd::Avx2, Simd::Portable]
            .into_iter()
            .filter(|s| s.supported())
            .collect()
    }
}

/// The kernels every computation uses, chosen once per process: the best family the CPU
/// supports, lowered by the environment: `CNN_NO_AVX512` (set to anything) makes an
/// AVX-512 CPU take the AVX2+FMA path, `CNN_NO_SIMD` forces the portable path. They let one
/// machine measure and test the paths of other CPUs.
#[inline]
pub fn simd() -> Simd {
    static CHOSEN: OnceLock<Simd> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let wanted = if std::env::var_os("CNN_NO_SIMD").is_some() {
            Simd::Portable
        } else if std::env::var_os("CNN_NO_AVX512").is_some() {
            Simd::Avx2
        } else {
            Simd::Avx512
        };
        wanted.or_below()
    })
}

/// Whether the AVX-512 kernels run in this process ([`simd`] chose them).
#[inline]
pub fn avx512_available() -> bool {
    simd() == Simd::Avx512
}

/// Calls `f` compiled for the best instruction set that [`simd`] chose: plain element-wise
/// Rust marked `#[inline(always)]` (and the closure itself, `#[inline(always)] || ...`) is
/// vectorised 4 lanes wide for baseline x86-64 and 8 or 16 wide inside `with_avx2` or
/// `with_avx512`. Used for Winograd's transforms and BatchNorm's passes: code whose
/// arithmetic does not depend on the vector width (no reassociation, no fused
/// multiply-adds), so every width gives the same bits.
#[inline(always)]
pub fn on_best_simd<R>(f: impl FnOnce() -> R) -> R {
    match simd() {
        // SAFETY: `simd()` chooses only a family this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { with_avx512(f) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { with_avx2(f) },
        _ => f(),
    }
}

/// `f()` with AVX-512F enabled for the code inlined into it.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f()` with AVX2 enabled for the code inlined into it.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Asks the CPU to start loading every cache line of `bytes` into its caches, without
/// waiting for them: a hint, with no effect on any result. A loop that reads scattered
/// blocks of memory (a batch of images drawn at random from a data set) otherwise waits
/// for each block's first line in turn; with the loads issued up front they travel
/// together. Does nothing off x86-64.
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch never faults and writes nothing; the address is that of an
        // element of `bytes` anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}
