//! The AVX-512 kernels of [`super::avx512`] for CPUs with AVX2 and FMA but no AVX-512 (most
//! laptops, AMD Zen 2 and 3), chosen at run time (see [`super::simd`]).
//!
//! The vectors are 8 lanes wide and there are 16 of them, so the tiles are smaller:
//!
//! * **broadcast** ([`gemm_bcast`]): `C[i][j0..j0+16] += A[i][p] * B[p][j0..j0+16]` for
//!   p = 0, 1, ..., K-1, a tile of up to 6 rows x 16 columns of C in 12 registers; each
//!   step loads 2 vectors of B and broadcasts 6 scalars of A for 12 fused multiply-adds.
//! * **dot** ([`gemm_dot`]): `C[i][j] = sum_p A[i][p] * B[j][p]`, a tile of 4 x 3 dot
//!   products, each kept as 16 lanes (lane l sums the p with p mod 16 = l, as in the
//!   AVX-512 kernel): lanes 0-7 in one pass over p, then lanes 8-15 in a second, the 16
//!   lanes added by the same tree at the end.
//!
//! Same bits as the AVX-512 path: each element of C is computed by the same operations in
//! the same order as there (the broadcast kernel's chain of FMAs over p from the same
//! start; the dot kernel's 16 lane chains and the pairwise tree that adds lane l + 8, then
//! l + 4, l + 2 and l + 1 to lane l). Only the tiles differ, and no element's arithmetic depends on its tile, so
//! neither the tiling nor the thread count changes a bit (tested against the AVX-512
//! kernels where the CPU has both).
//!
//! Edges: AVX2 has masked loads (`vmaskmovps`: masked-off lanes touch no memory, read as
//! 0), slower than plain ones, so the broadcast kernel has a separate instance for a
//! partial column tile; partial vectors are stored through a buffer (the masked store is
//! microcode on AMD CPUs); a partial row tile uses a kernel instantiated for fewer rows.
//!
//! Safety: as in [`super::avx512`], the kernels are `unsafe fn`s on bare views ([`MatPtr`],
//! [`MatPtrMut`], [`Dims`]); [`super::gemm`] checks the bounds once, on slices.

use std::arch::x86_64::*;

use super::avx512::Start;
use super::mat::{Dims, MatPtr, MatPtrMut};

/// Columns of C per broadcast tile: two 8-lane vectors.
const NR: usize = 16;
/// Rows of C per broadcast tile (12 accumulators, 2 vectors of B and a broadcast scalar:
/// 15 of the 16 vector registers).
const MR: usize = 6;
/// Steps of p per block of the broadcast kernel: a KC x 16 block of B is 36 KB, within
/// a 48 KB L1 (32 KB on older CPUs, where it still mostly fits in L1 and L2 serves the
/// rest).
const KC: usize = 576;
/// Rows and columns of C per dot tile: 12 accumulators, 3 vectors of B and one of A in the
/// 16 registers, for one half of the 16 lane chains at a time (see [`dot_half`]).
const DR: usize = 4;
const DS: usize = 3;
/// Steps of p per block of a dot tile: 7 rows of 512 floats (14 KB) stay in L1 between the
/// two halves.
const DOT_BLOCK: usize = 512;

thread_local! {
    /// Each thread's buffer for a packed KC x 16 block of B.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Eight -1s then eight 0s: the 8 lanes from `8 - n` on are the mask of the first n lanes.
static MASK_SOURCE: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// The mask of the first `n` (0..=8) of 8 lanes: all bits set in lanes l < n.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn lanes_upto(n: usize) -> __m256i {
    let n = n.min(8);
    // SAFETY: 8 - n is in 0..=8, so the 8 ints read from there lie inside the 16 of
    // MASK_SOURCE; an unaligned load needs no alignment.
    unsafe { _mm256_loadu_si256(MASK_SOURCE.as_ptr().add(8 - n) as *const __m256i) }
}

/// The masks of the two vectors of a tile `cols` wide (0..=16).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn masks(cols: usize) -> (__m256i, __m256i) {
    (lanes_upto(cols), lanes_upto(cols.saturating_sub(8)))
}

/// Loads the two vectors of a row at `p`: all 16 lanes if `FULL`, else the lanes of the
/// masks (the others read as 0).
///
/// # Safety
/// AVX2 must be available; the 16 floats from `p` (if `FULL`), or those of the masks'
/// lanes, must be readable. Masked-off lanes touch no memory (so the second address may
/// lie past the row when its mask is empty).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load2<const FULL: bool>(p: *const f32, m: (__m256i, __m256i)) -> (__m256, __m256) {
    // SAFETY: by the caller's word (above); unaligned loads need no alignment.
    unsafe {
        if FULL {
            (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
        } else {
            (
                _mm256_maskload_ps(p, m.0),
                _mm256_maskload_ps(p.wrapping_add(8), m.1),
            )
        }
    }
}

/// Stores the first `cols` (16 if `FULL`) lanes of two vectors to a row at `p`.
///
/// A partial row is two masked stores (`vmaskmovps`, microcode on AMD's CPUs). A copy
/// through a buffer on the stack had been faster, until it compiled to a call to memmove:
/// see docs/PERFORMANCE.md, "The AVX2+FMA path".
///
/// # Safety
/// AVX must be available; the `cols` floats from `p` must be writable.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store2<const FULL: bool>(p: *mut f32, cols: usize, v: (__m256, __m256)) {
    // SAFETY: by the caller's word, 16 floats (FULL) or `cols` from p are writable;
    // unaligned stores need no alignment.
    unsafe {
        if FULL {
            _mm256_storeu_ps(p, v.0);
            _mm256_storeu_ps(p.add(8), v.1);
        } else {
            // Masked stores (masked-off lanes touch no memory), not a copy through a stack
            // array, which is a call to memmove per partial tile row.
            let (m0, m1) = masks(cols);
            _mm256_maskstore_ps(p, m0, v.0);
            _mm256_maskstore_ps(p.add(8), m1, v.1);
        }
    }
}

/// Stores the first `n` (at most 8) lanes of `v` to `p`, as [`store2`] does.
///
/// # Safety
/// AVX must be available; the `n` values of `T` (4 bytes each) from `p` must be writable.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_first<T: Copy + Default>(p: *mut T, n: usize, v: __m256i) {
    const { assert!(std::mem::size_of::<T>() == 4) };
    // SAFETY: `t` holds 8 four-byte values, the 32 bytes stored; the caller makes the n
    // values from p writable.
    unsafe {
        if n == 8 {
            _mm256_storeu_si256(p as *mut __m256i, v);
        } else {
            // A masked store: copying the lanes out one by one through a stack array was
            // a call to memmove per partial vector (1.7% of LeNet's training step, from
            // its pooling of 14- and 7-wide rows).
            _mm256_maskstore_epi32(p as *mut i32, lanes_upto(n), v);
        }
    }
}

/// One broadcast tile of `R` rows and `cols` columns (16 if `FULL`, else 1..=16):
/// `C[r][j] = start + sum_p A[r][p] * B[p][j]`, p < k in order, then `max(C, 0)` if `relu`.
///
/// # Safety
/// AVX2 and FMA must be available. `b` has contiguous rows (column stride 1). Every
/// A(r, p), B(p, j), C(r, j) for r < R, p < k, j < cols, and `bias[r]` for
/// [`Start::Bias`], must lie inside the allocation its pointer points into, and C must not
/// overlap A, B or the bias.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn bcast_tile<const R: usize, const FULL: bool>(
    k: usize,
    cols: usize,
    a: MatPtr,
    b: MatPtr,
    c: MatPtrMut,
    start: Start,
    relu: bool,
) {
    if !FULL && cols <= 8 {
        // SAFETY: passed on from the caller, for cols <= 8.
        return unsafe { bcast_tile_half::<R>(k, cols, a, b, c, start, relu) };
    }
    let m = masks(cols);
    let mut acc0 = [_mm256_setzero_ps(); R];
    let mut acc1 = [_mm256_setzero_ps(); R];
    match start {
        Start::Zero => {}
        // SAFETY: C(r, j) is in bounds for r < R, j < cols (caller): the lanes `load2`
        // reads.
        Start::C => unsafe {
            for r in 0..R {
                (acc0[r], acc1[r]) = load2::<FULL>(c.at(r, 0), m);
            }
        },
        // SAFETY: bias[r] is in bounds for r < R (caller).
        Start::Bias(bias) => unsafe {
            for r in 0..R {
                acc0[r] = _mm256_set1_ps(*bias.add(r));
                acc1[r] = acc0[r];
            }
        },
    }
    let (rsa, ldb) = (a.row_stride, b.row_stride);
    for p in 0..k {
        // SAFETY: B(p, j) for j < cols and A(r, p) for r < R are in bounds (caller); B's
        // row is contiguous, and `load2` reads only its columns j < cols.
        unsafe {
            let (b0, b1) = load2::<FULL>(b.ptr.add(p * ldb), m);
            let ap = a.at(0, p);
            for r in 0..R {
                let av = _mm256_set1_ps(*ap.add(r * rsa));
                acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
            }
        }
    }
    if relu {
        // max_ps returns its second operand when the first is NaN: 0, as f32::max does.
        let zero = _mm256_setzero_ps();
        for r in 0..R {
            acc0[r] = _mm256_max_ps(acc0[r], zero);
            acc1[r] = _mm256_max_ps(acc1[r], zero);
        }
    }
    for r in 0..R {
        // SAFETY: C(r, j) for j < cols is in bounds and overlaps no operand (caller);
        // `store2` writes only those columns.
        unsafe { store2::<FULL>(c.at(r, 0), cols, (acc0[r], acc1[r])) };
    }
}

/// [`bcast_tile`] for a tile of at most 8 columns: one vector per row, so half the
/// multiply-adds of a two-vector tile whose second vector is all masked off (Winograd's
/// products leave out their last 8 columns of 64, spare slots). The same operations per
/// column, so the same bits.
///
/// # Safety
/// As for [`bcast_tile`], with `cols` <= 8.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn bcast_tile_half<const R: usize>(
    k: usize,
    cols: usize,
    a: MatPtr,
    b: MatPtr,
    c: MatPtrMut,
    start: Start,
    relu: bool,
) {
    let m = lanes_upto(cols);
    let mut acc = [_mm256_setzero_ps(); R];
    match start {
        Start::Zero => {}
        // SAFETY: C(r, j) is in bounds for r < R, j < cols (caller): the lanes of the mask.
        Start::C => unsafe {
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_maskload_ps(c.at(r, 0), m);
            }
        },
        // SAFETY: bias[r] is in bounds for r < R (caller).
        Start::Bias(bias) => unsafe {
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_set1_ps(*bias.add(r));
            }
        },
    }
    let (rsa, ldb) = (a.row_stride, b.row_stride);
    for p in 0..k {
        // SAFETY: B(p, j) for j < cols and A(r, p) for r < R are in bounds (caller); the
        // masked load reads only B's columns j < cols.
        unsafe {
            let bv = _mm256_maskload_ps(b.ptr.add(p * ldb), m);
            let ap = a.at(0, p);
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(_mm256_set1_ps(*ap.add(r * rsa)), bv, *acc);
            }
        }
    }
    for (r, acc) in acc.iter_mut().enumerate() {
        if relu {
            // As in bcast_tile: 0 for NaN, as f32::max gives.
            *acc = _mm256_max_ps(*acc, _mm256_setzero_ps());
        }
        // SAFETY: C(r, j) for j < cols is in bounds and overlaps no operand (caller).
        unsafe { _mm256_maskstore_ps(c.at(r, 0), m, *acc) };
    }
}

/// Copies rows p < kc of B's `cols`-wide block (B(p, j), j < cols <= 16) to
/// `buf[p*16 + j]`, zero-filling j >= cols. Returns the copy as a view (row stride 16).
///
/// # Safety
/// AVX2 must be available, `b` has contiguous rows, and every B(p, j) above is in bounds.
///
/// # Panics
/// If `buf` is shorter than kc x 16.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b(kc: usize, b: MatPtr, cols: usize, buf: &mut [f32]) -> MatPtr {
    assert!(buf.len() >= kc * NR, "packing buffer too short");
    let m = masks(cols);
    let dst = buf.as_mut_ptr();
    for p in 0..kc {
        // SAFETY: B's row p is in bounds for j < cols (caller) and the masked loads read no
        // other column; `dst` has kc x 16 elements (asserted), so the 16 floats of row
        // p < kc fit.
        unsafe {
            let v = load2::<false>(b.at(p, 0), m);
            store2::<true>(dst.add(p * NR), NR, v);
        }
    }
    MatPtr {
        ptr: buf.as_ptr(),
        row_stride: NR,
        col_stride: 1,
    }
}

/// `C[M x N] = start + A[M x K] * B[K x N]`, then `max(C, 0)` if `relu`, where A has any
/// strides and B contiguous rows: [`super::avx512::gemm_bcast`] on 8-lane vectors, with
/// the same bits.
///
/// # Safety
/// AVX2 and FMA must be available ([`super::Simd::supported`]). Every A(i, p), B(p, j) and
/// C(i, j) for i < m, j < n, p < k, and `bias[i]` for [`Start::Bias`], must lie inside the
/// allocation its pointer points into, and C must not overlap A, B or the bias.
///
/// # Panics
/// If B's column stride is not 1 or K is 0.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_bcast(d: Dims, a: MatPtr, b: MatPtr, c: MatPtrMut, start: Start, relu: bool) {
    assert_eq!(b.col_stride, 1, "gemm_bcast: B's rows must be contiguous");
    assert!(d.k > 0, "gemm_bcast: K is 0");
    let Dims { m, n, k } = d;
    if m == 0 || n == 0 {
        return;
    }
    // As in the AVX-512 kernel: blocks of KC steps of p outside (the running sum goes
    // through C exactly, so the blocking changes no bit), then 16-column strips, each
    // block of B packed when its rows are far apart and several row tiles read it.
    let pack = b.row_stride > NR && m > MR && k > 16;
    PACKED_B.with(|buf| {
        let mut buf = buf.borrow_mut();
        if pack {
            buf.resize(KC * NR, 0.0);
        }
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // Only the first block starts from `start`; only the last applies ReLU.
            let start = if k0 == 0 { start } else { Start::C };
            let relu = relu && k0 + kc == k;
            // SAFETY: m > 0 and k0 < k, so (0, k0) is an element of A.
            let a0 = unsafe { a.block(0, k0) };
            for j0 in (0..n).step_by(NR) {
                let cols = NR.min(n - j0);
                // SAFETY: (k0, j0) is an element of B and (0, j0) one of C.
                let (bj, cj) = unsafe { (b.block(k0, j0), c.block(0, j0)) };
                let bj = if pack {
                    // SAFETY: AVX2 is available (caller); B(k0 + p, j0 + j) for p < kc,
                    // j < cols is in bounds, and B's rows are contiguous (asserted above).
                    unsafe { pack_b(kc, bj, cols, &mut buf) }
                } else {
                    bj
                };
                let block = Dims { m, n: cols, k: kc };
                // SAFETY: AVX2 and FMA are available (caller); rows 0..m of A and C, the
                // block's kc steps of A and B, its cols columns of B (or all 16 of the
                // copy) and of C, and the bias values are in bounds (caller), and C
                // overlaps none of them.
                unsafe {
                    if cols == NR {
                        strip::<true>(block, a0, bj, cj, start, relu);
                    } else {
                        strip::<false>(block, a0, bj, cj, start, relu);
                    }
                }
            }
        }
    });
}

/// The row tiles of one column strip of [`gemm_bcast`]: rows 0..m, columns 0..n (all
/// 16 if `FULL`, else n < 16), steps 0..k of the block.
///
/// # Safety
/// As for [`bcast_tile`] with R = m.
#[target_feature(enable = "avx2,fma")]
unsafe fn strip<const FULL: bool>(
    d: Dims,
    a: MatPtr,
    b: MatPtr,
    c: MatPtrMut,
    start: Start,
    relu: bool,
) {
    let Dims { m, n: cols, k: kc } = d;
    let mut i0 = 0;
    while i0 + MR <= m {
        // SAFETY: rows i0..i0+MR <= m of A and C and bias values i0..i0+MR (caller).
        unsafe {
            let (ai, ci, si) = (a.block(i0, 0), c.block(i0, 0), start.rows_from(i0));
            bcast_tile::<MR, FULL>(kc, cols, ai, b, ci, si, relu);
        }
        i0 += MR;
    }
    if i0 == m {
        return;
    }
    // SAFETY: i0 < m, so row i0 of A and C and bias[i0] are in bounds.
    let (ai, ci, si) = unsafe { (a.block(i0, 0), c.block(i0, 0), start.rows_from(i0)) };
    // SAFETY: as for the full tiles above, for the last m - i0 < MR rows.
    unsafe {
        match m - i0 {
            1 => bcast_tile::<1, FULL>(kc, cols, ai, b, ci, si, relu),
            2 => bcast_tile::<2, FULL>(kc, cols, ai, b, ci, si, relu),
            3 => bcast_tile::<3, FULL>(kc, cols, ai, b, ci, si, relu),
            4 => bcast_tile::<4, FULL>(kc, cols, ai, b, ci, si, relu),
            5 => bcast_tile::<5, FULL>(kc, cols, ai, b, ci, si, relu),
            _ => unreachable!("row tail is below MR"),
        }
    }
}

/// The sum of 16 lanes held as two vectors (lanes 0-7 in `lo`, 8-15 in `hi`), in the tree
/// of the AVX-512 dot kernel: lane l plus lane l+8, then l+4, l+2, l+1.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn lane_sum_16(lo: __m256, hi: __m256) -> f32 {
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
    _mm_cvtss_f32(s1)
}

/// Half of the 16 lane chains of an R x S dot tile over the steps `p0..p1` (`p0` a
/// multiple of 16, `p1` one too or K): lanes `off..off + 8` (`off` is 0 or 8) of each
/// 16-step chunk, that is the chains of the p with p mod 16 in that range, added to `acc`.
/// The two halves are independent chains, so computing them one after the other changes
/// no bit and lets a tile of 12 accumulators fit in the 16 registers.
///
/// # Safety
/// As for [`dot_tile`], for p < p1.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot_half<const R: usize, const S: usize>(
    (p0, p1): (usize, usize),
    a: MatPtr,
    b: MatPtr,
    off: usize,
    acc: &mut [[__m256; S]; R],
) {
    let (lda, ldb) = (a.row_stride, b.row_stride);
    let full = p0 + (p1 - p0) / 16 * 16;
    for p in (p0 + off..full).step_by(16) {
        // SAFETY: the rows of A and B are contiguous and in bounds for p < p1 (caller), and
        // p + 8 <= full <= p1; unaligned loads need no alignment.
        unsafe {
            let mut bv = [_mm256_setzero_ps(); S];
            for (s, v) in bv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(b.ptr.add(s * ldb + p));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_loadu_ps(a.ptr.add(r * lda + p));
                for s in 0..S {
                    acc_r[s] = _mm256_fmadd_ps(av, bv[s], acc_r[s]);
                }
            }
        }
    }
    let rest = (p1 - full).saturating_sub(off);
    if rest > 0 {
        // The last chunk is partial: its masked-off lanes read nothing and add +0, as the
        // AVX-512 kernel's do.
        let m = lanes_upto(rest);
        let p = full + off;
        // SAFETY: the masks enable the lanes p..p1 of the rows, in bounds (caller);
        // masked-off lanes touch no memory.
        unsafe {
            let mut bv = [_mm256_setzero_ps(); S];
            for (s, v) in bv.iter_mut().enumerate() {
                *v = _mm256_maskload_ps(b.ptr.add(s * ldb + p), m);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_maskload_ps(a.ptr.add(r * lda + p), m);
                for s in 0..S {
                    acc_r[s] = _mm256_fmadd_ps(av, bv[s], acc_r[s]);
                }
            }
        }
    }
}

/// Both halves of [`dot_half`] over all of K in one pass: lanes 0..8 of each 16-step chunk
/// into `lo`, lanes 8..16 into `hi`, each chain in the same order as there, so the same
/// bits. For tiles whose 2 R S accumulators fit in the registers (S = 1).
///
/// # Safety
/// As for [`dot_tile`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot_both<const R: usize, const S: usize>(
    k: usize,
    a: MatPtr,
    b: MatPtr,
    lo: &mut [[__m256; S]; R],
    hi: &mut [[__m256; S]; R],
) {
    let (lda, ldb) = (a.row_stride, b.row_stride);
    let full = k / 16 * 16;
    for p in (0..full).step_by(16) {
        // SAFETY: the rows of A and B are contiguous and in bounds for p < k (caller), and
        // p + 16 <= full <= k; unaligned loads need no alignment.
        unsafe {
            for s in 0..S {
                let (b0, b1) = (
                    _mm256_loadu_ps(b.ptr.add(s * ldb + p)),
                    _mm256_loadu_ps(b.ptr.add(s * ldb + p + 8)),
                );
                for r in 0..R {
                    let row = a.ptr.add(r * lda + p);
                    lo[r][s] = _mm256_fmadd_ps(_mm256_loadu_ps(row), b0, lo[r][s]);
                    hi[r][s] = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(8)), b1, hi[r][s]);
                }
            }
        }
    }
    // The last chunk, if partial, as dot_half does it (its steps start at `full`, a
    // multiple of 16, and hold no whole chunk).
    // SAFETY: passed on from the caller, for p < k.
    unsafe {
        dot_half::<R, S>((full, k), a, b, 0, lo);
        dot_half::<R, S>((full, k), a, b, 8, hi);
    }
}

/// One dot tile of R x S (at most 4 x 3) elements: `C[r][s] = (beta_one ? C[r][s] : 0) +
/// sum_p A[r][p] * B[s][p]`, in 16 lane chains as [`super::avx512::gemm_dot`].
///
/// # Safety
/// AVX2 and FMA must be available; `a` and `b` have contiguous rows. A(r, p), B(s, p) for
/// p < k and C(r, s), for r < R, s < S, must lie inside the allocations their pointers
/// point into, and C must not overlap A or B.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_tile<const R: usize, const S: usize>(
    k: usize,
    a: MatPtr,
    b: MatPtr,
    c: MatPtrMut,
    beta_one: bool,
) {
    let mut lo = [[_mm256_setzero_ps(); S]; R];
    let mut hi = lo;
    if S == 1 {
        // One column (a matrix-vector product, Dense at batch 1): both halves' 2 R
        // accumulators fit in the registers, so each row's 64 bytes of a chunk are read in
        // one step (report 1 at batch 1 with CNN_NO_AVX512=1: about 18 -> 16.6 us,
        // `cnn bench --inference-batch 1`).
        // SAFETY: passed on from the caller, for p < k.
        unsafe { dot_both::<R, S>(k, a, b, &mut lo, &mut hi) };
    } else {
        // Both halves block by block, so that the second reads the rows' block from L1
        // (over all of K, a Dense layer's rows, 50 KB for 4 rows of 3136, would be read
        // twice from L2 or memory).
        for p0 in (0..k).step_by(DOT_BLOCK) {
            let steps = (p0, (p0 + DOT_BLOCK).min(k));
            // SAFETY: passed on from the caller, for p < steps.1 <= k.
            unsafe {
                dot_half::<R, S>(steps, a, b, 0, &mut lo);
                dot_half::<R, S>(steps, a, b, 8, &mut hi);
            }
        }
    }
    for r in 0..R {
        for s in 0..S {
            let sum = lane_sum_16(lo[r][s], hi[r][s]);
            // SAFETY: C(r, s) is in bounds for r < R, s < S and overlaps no operand (caller).
            unsafe {
                let out = c.at(r, s);
                *out = if beta_one { *out + sum } else { sum };
            }
        }
    }
}

/// [`super::avx512::matvec_tile`] on 8-lane vectors: each row's 16 lane chains as two
/// vectors (lanes 0..8 and 8..16 of every step), added by the same lane tree, so the same
/// bits.
///
/// # Safety
/// AVX2 and FMA must be available.
///
/// # Panics
/// Unless 1 <= rows <= `matvec::TILE_ROWS`, `tile` holds rows x ceil(k / 16) x 16 floats,
/// `x` k and `out` rows.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn matvec_tile(tile: &[f32], rows: usize, x: &[f32], k: usize, out: &mut [f32]) {
    assert!(
        (1..=super::matvec::TILE_ROWS).contains(&rows)
            && tile.len() >= rows * k.div_ceil(16) * 16
            && x.len() >= k
            && out.len() >= rows,
        "matvec_tile: {rows} rows of {k} in {} floats, {} inputs, {} outputs",
        tile.len(),
        x.len(),
        out.len()
    );
    // The rows four at a time: 8 accumulators and x's two vectors in the 16 registers.
    let mut r0 = 0;
    while r0 < rows {
        let n = 4.min(rows - r0);
        // SAFETY: the lengths are as matvec_rows reads and writes them (asserted); rows
        // r0 .. r0 + n of the tile are in it.
        unsafe {
            let (t, xp, o) = (tile.as_ptr(), x.as_ptr(), &mut out[r0..]);
            match n {
                4 => matvec_rows::<4>(t, rows, r0, xp, k, o),
                3 => matvec_rows::<3>(t, rows, r0, xp, k, o),
                2 => matvec_rows::<2>(t, rows, r0, xp, k, o),
                _ => matvec_rows::<1>(t, rows, r0, xp, k, o),
            }
        }
        r0 += n;
    }
}

/// [`matvec_tile`] for `R` of the tile's `rows` rows, from row `r0`.
///
/// # Safety
/// AVX2 and FMA must be available; `tile` holds rows x ceil(k / 16) x 16 floats, r0 + R
/// <= rows, `x` holds k floats and `out` R.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn matvec_rows<const R: usize>(
    tile: *const f32,
    rows: usize,
    r0: usize,
    x: *const f32,
    k: usize,
    out: &mut [f32],
) {
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = lo;
    let steps = k.div_ceil(16);
    for q in 0..steps {
        // The last step may be partial: x's lanes past k read as 0 (masked), the tile's
        // padding is 0, and 0 * 0 is added as the dot kernels add it.
        let m = masks(k - 16 * q);
        // SAFETY: x's lanes of the masks (< k; all 16 when 16 q + 16 <= k) and the step's
        // rows r0 .. r0 + R of the tile are in bounds (caller); masked-off lanes touch no
        // memory.
        unsafe {
            let (b0, b1) = if 16 * q + 16 <= k {
                load2::<true>(x.add(16 * q), m)
            } else {
                load2::<false>(x.add(16 * q), m)
            };
            for r in 0..R {
                let row = tile.add((q * rows + r0 + r) * 16);
                lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(row), b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(8)), b1, hi[r]);
            }
        }
    }
    for r in 0..R {
        out[r] = lane_sum_16(lo[r], hi[r]);
    }
}

/// `C[M x N] = (beta_one ? C : 0) + A[M x K] * B[N x K]^T`, rows of A and B contiguous:
/// [`super::avx512::gemm_dot`] on 8-lane vectors, with the same bits.
///
/// # Safety
/// AVX2 and FMA must be available ([`super::Simd::supported`]). Every A(i, p), B(j, p) and
/// C(i, j) for i < m, j < n, p < k must lie inside the allocation its pointer points into,
/// and C must not overlap A or B.
///
/// # Panics
/// If A's or B's column stride is not 1.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_dot(d: Dims, a: MatPtr, b: MatPtr, c: MatPtrMut, beta_one: bool) {
    assert!(
        a.col_stride == 1 && b.col_stride == 1,
        "gemm_dot: the rows of A and B must be contiguous"
    );
    let Dims { m, n, k } = d;
    for i0 in (0..m).step_by(DR) {
        let rows = DR.min(m - i0);
        for j0 in (0..n).step_by(DS) {
            let cols = DS.min(n - j0);
            // SAFETY: i0 < m and j0 < n: row i0 of A, row j0 of B and C(i0, j0) are in
            // bounds (caller).
            let (ai, bj, cij) = unsafe { (a.block(i0, 0), b.block(j0, 0), c.block(i0, j0)) };
            // SAFETY (each arm): AVX2 and FMA are available (caller); the tile's rows
            // i0..i0+rows <= m of A and C and rows j0..j0+cols <= n of B are in bounds,
            // rows contiguous (asserted).
            macro_rules! tile {
                ($(($r:literal, $s:literal))*) => {
                    match (rows, cols) {
                        $(($r, $s) => unsafe { dot_tile::<$r, $s>(k, ai, bj, cij, beta_one) },)*
                        _ => unreachable!("dot tile larger than DR x DS"),
                    }
                };
            }
            tile!((4, 3)(4, 2)(4, 1)(3, 3)(3, 2)(3, 1)(2, 3)(2, 2)(2, 1)(1, 3)(1, 2)(1, 1));
        }
    }
}

/// [`super::avx512::max_pool_2x2`] 8 outputs at a time: max pooling of one plane with 2x2
/// windows and stride 2, the same result as `kernels::pool`'s scalar loop (first maximum
/// in row-major order wins, NaN never wins, an all-NaN window gives its first value).
/// Without `ARG`, `arg` is not touched, as there.
///
/// # Safety
/// AVX2 must be available; `x` holds an `h` x `w` plane, `y` (and `arg` with `ARG`) hold
/// `out_h` x `out_w` with 2 out_h <= h and 2 out_w <= w.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn max_pool_2x2<const ARG: bool>(
    x: &[f32],
    w: usize,
    out_h: usize,
    out_w: usize,
    y: &mut [f32],
    arg: &mut [u32],
) {
    let two_lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    for oy in 0..out_h {
        let r0 = 2 * oy * w;
        for ox0 in (0..out_w).step_by(8) {
            let lanes = 8.min(out_w - ox0);
            let m_in = masks(2 * lanes);
            // The window's rows 2 oy and 2 oy + 1 (< h) from column 2 ox0 on: inside x,
            // as 2 out_h <= h, 2 out_w <= w and x holds h x w (caller).
            // SAFETY: the offsets are those of elements of x (above).
            let (top, bot) = unsafe {
                let top = x.as_ptr().add(r0 + 2 * ox0);
                (top, top.add(w))
            };
            let split = |p: *const f32| {
                // SAFETY: the row's 2 lanes elements from `p` (all 16 when lanes = 8, else
                // those of the masks), columns 2 ox0 .. 2 (ox0 + lanes) <= w of the row, are
                // inside x. Masked-off lanes touch no memory.
                let (lo, hi) = unsafe {
                    if lanes == 8 {
                        load2::<true>(p, m_in)
                    } else {
                        load2::<false>(p, m_in)
                    }
                };
                // shuffle_ps takes lanes 0, 2 (or 1, 3) of each 128-bit half of lo then hi:
                // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6]; permuting the 64-bit pairs to
                // (0, 2, 1, 3) puts them in order.
                let even = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                let odd = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
                let order = |v: __m256| {
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
                };
                (order(even), order(odd))
            };
            let (t0, t1) = split(top);
            let (b0, b1) = split(bot);
            let mut best = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut out = t0;
            let mut at = _mm256_setzero_si256();
            let offsets = [0, 1, w as i32, w as i32 + 1];
            for (v, off) in [t0, t1, b0, b1].into_iter().zip(offsets) {
                let win = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
                best = _mm256_blendv_ps(best, v, win);
                out = _mm256_blendv_ps(out, v, win);
                if ARG {
                    at = _mm256_blendv_epi8(at, _mm256_set1_epi32(off), _mm256_castps_si256(win));
                }
            }
            let o = oy * out_w + ox0;
            // SAFETY: lanes o .. o + lanes <= out_h x out_w are inside y (and arg with ARG)
            // (caller).
            unsafe { store_first(y.as_mut_ptr().add(o), lanes, _mm256_castps_si256(out)) };
            if ARG {
                // Index in the plane: r0 + 2 (ox0 + lane) + offset of the winner.
                let base = _mm256_add_epi32(_mm256_set1_epi32((r0 + 2 * ox0) as i32), two_lanes);
                let idx = _mm256_add_epi32(base, at);
                // SAFETY: as for y.
                unsafe { store_first(arg.as_mut_ptr().add(o), lanes, idx) };
            }
        }
    }
}

/// One row of im2col at stride 1: `dst[ox] = src[ox + shift]` for `lo <= ox < hi`, 0 for
/// the other ox < `len` (the padding), 8 columns per masked load and store. The masked-off
/// lanes are never read, so `src + ox + shift` may point outside the row there.
///
/// # Safety
/// AVX2 must be available; `dst[..len]` must be writable and `src[ox + shift]` readable
/// for every ox in `lo..hi` (`lo..hi` within `0..len`).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn shifted_row(
    src: *const f32,
    shift: isize,
    lo: usize,
    hi: usize,
    dst: *mut f32,
    len: usize,
) {
    let mut c0 = 0;
    while c0 < len {
        let lanes = 8.min(len - c0);
        let (a, b) = (
            lo.saturating_sub(c0).min(lanes),
            hi.saturating_sub(c0).min(lanes),
        );
        let from = src.wrapping_offset(c0 as isize + shift);
        // SAFETY: the loads read only the lanes c0 + l in lo..hi (all 8 when a = 0 and
        // b = 8; else those of the mask, the first b lanes without the first a), whose
        // sources the caller guarantees readable (masked-off lanes touch no memory, hence
        // `wrapping_offset`); the store writes lanes c0 + l < len of `dst`, writable by the
        // caller's word.
        unsafe {
            let v = if a == 0 && b == 8 {
                _mm256_loadu_ps(from)
            } else {
                _mm256_maskload_ps(from, _mm256_andnot_si256(lanes_upto(a), lanes_upto(b)))
            };
            store_first(dst.add(c0), lanes, _mm256_castps_si256(v));
        }
        c0 += 8;
    }
}

/// im2col (see `kernels::im2col`) at stride 1: every row of `cols` from `shifted_row`.
///
/// # Safety
/// AVX2 must be available.
///
/// # Panics
/// If `g.stride` is not 1 or `x` or `cols` is shorter than the geometry needs.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn im2col_stride1(x: &[f32], g: &crate::kernels::geom::ConvGeom, cols: &mut [f32]) {
    let (ohw, ow) = (g.out_h * g.out_w, g.out_w);
    assert!(g.stride == 1, "im2col_stride1 at stride {}", g.stride);
    assert!(x.len() >= g.c * g.h * g.w && cols.len() >= g.patch_len() * ohw);
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let out = &mut cols[row * ohw..(row + 1) * ohw];
                let (lo, hi) = super::im2col::valid_range(g, j);
                let shift = j as isize - g.pad_left as isize;
                for oy in 0..g.out_h {
                    // Input row iy = oy + i - pad_top; outside the image the row is padding.
                    let iy = (oy + i) as isize - g.pad_top as isize;
                    let (lo, hi, start) = if iy >= 0 && iy < g.h as isize && lo < hi {
                        (lo, hi, iy as usize * g.w)
                    } else {
                        (0, 0, 0)
                    };
                    // SAFETY: AVX2 is available (caller). For ox in lo..hi (within 0..ow),
                    // ox + shift is a column of row iy (valid_range), so
                    // `plane[start + ox + shift]` is inside the plane; `out` holds the
                    // out_h rows of ow outputs, so row oy's ow values are writable.
                    unsafe {
                        let src = plane.as_ptr().add(start);
                        shifted_row(src, shift, lo, hi, out.as_mut_ptr().add(oy * ow), ow);
                    }
                }
            }
        }
    }
}

/// [`super::avx512::conv9_flat`] 16 outputs at a time in two vectors of 8: a one-channel
/// 3x3 convolution read in place, `y[k][p] = act(b[k] + sum_r w[k][r] x_r[p])` for p <
/// `ohw`, each output the same chain of fused multiply-adds from the bias, so the same
/// bits. Input lanes outside the image (the column masks) and past the outputs are loaded
/// as 0 by masked loads; partial vectors of outputs are stored through a buffer. Each
/// weight, broadcast once, serves both vectors: with one vector per broadcast, the loads
/// (9 inputs and 36 weights per 36 multiply-adds of 4 filters) outnumbered the
/// multiply-adds (`scripts/compare-simd.py` on report 1, AVX2 against AVX-512 at batch
/// 1000: 1.47x -> 1.18x).
///
/// # Safety
/// AVX2 and FMA must be available. `x.src` holds `offsets[r] + p` for every r < 9 and p <
/// ohw where the masks are set, `x.col_masks` (which must be Some) ceil(ohw / 16)
/// entries; `w` holds K x 9 floats, `bias` K and `y` K x ohw, not overlapping the inputs,
/// with `k` = K.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn conv9_flat(
    x: super::direct::Inputs9,
    w: *const f32,
    bias: *const f32,
    k: usize,
    ohw: usize,
    relu: bool,
    y: *mut f32,
) {
    let Some(col_masks) = x.col_masks else {
        unreachable!("conv9_flat reads the plane in place, with column masks")
    };
    let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    // The lanes of the 8 bits of `bits` as a vector mask.
    let lanes = |bits: u32| {
        _mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32(bits as i32), lane_bits),
            lane_bits,
        )
    };
    let mut f = 0;
    while f < k {
        let group = if f + 4 <= k { 4 } else { 1 };
        for p in (0..ohw).step_by(16) {
            // Outputs p .. p + n0 in the first vector, p + 8 .. p + 8 + n1 in the second.
            let n0 = 8.min(ohw - p);
            let n1 = (ohw - p).saturating_sub(8).min(8);
            // SAFETY: one mask entry per 16 outputs (caller).
            let m16 = unsafe { *col_masks.add(p / 16) };
            let cols = [
                m16.map(|m| lanes(u32::from(m) & ((1u32 << n0) - 1))),
                m16.map(|m| lanes((u32::from(m) >> 8) & ((1u32 << n1) - 1))),
            ];
            let outs = Outputs {
                p,
                n: [n0, n1],
                stride: ohw,
            };
            // SAFETY: filters f .. f + group (<= k) have 9 weights, a bias and ohw outputs,
            // of which p .. p + n0 + n1 (caller); x as the caller guarantees.
            unsafe {
                let (w, b, y) = (w.add(9 * f), bias.add(f), y.add(f * ohw));
                if group == 4 {
                    conv9_filters::<4>(&x, &cols, w, b, relu, outs, y);
                } else {
                    conv9_filters::<1>(&x, &cols, w, b, relu, outs, y);
                }
            }
        }
        f += group;
    }
}

/// Filters per group of [`conv9_relu_pool2`]: 8 accumulators and the 4 input vectors of a
/// padded row in the 16 registers.
const POOL_FILTERS: usize = 2;

/// One sample's 3x3 convolution with ReLU and 2x2 max pooling (see
/// `kernels::conv_relu_pool`), the AVX-512 kernel's arithmetic on 8 lanes: each pooled
/// row in two vectors (px < 8 and 8 <= px < `ow`), each output the chain bias, then the
/// nine products in order, by fused multiply-adds; so the same bits.
///
/// # Safety
/// AVX2 and FMA must be available. `planes` holds 2 `oh` + 2 padded rows, each an even
/// and an odd half of `HALF_ROW` floats (`kernels::conv_relu_pool`'s layout); `w` holds K
/// x 9 floats, `bias` K, `y` K x `oh` x `ow` not overlapping them, with `k` = K and 1 <=
/// `ow` <= 16.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn conv9_relu_pool2(
    planes: *const f32,
    w: *const f32,
    bias: *const f32,
    k: usize,
    oh: usize,
    ow: usize,
    y: *mut f32,
) {
    let row = 2 * super::conv_relu_pool::HALF_ROW;
    let plane = oh * ow;
    let mut f = 0;
    while f < k {
        let group = if f + POOL_FILTERS <= k {
            POOL_FILTERS
        } else {
            1
        };
        for py in 0..oh {
            for c0 in (0..ow).step_by(8) {
                let mask = lanes_upto(ow - c0);
                // SAFETY: padded rows 2 py .. 2 py + 4 <= 2 oh + 2 are in `planes`, and
                // columns c0 .. c0 + 9 <= 17 of their halves; filters f .. f + group <= k
                // have their weights and bias, and pooled row py of their planes is in y,
                // columns c0 .. ow of it (caller).
                unsafe {
                    let (x, w, b) = (planes.add(2 * py * row + c0), w.add(9 * f), bias.add(f));
                    let y = y.add(f * plane + py * ow + c0);
                    if group == POOL_FILTERS {
                        pool_row::<POOL_FILTERS>(x, row, w, b, mask, y, plane);
                    } else {
                        pool_row::<1>(x, row, w, b, mask, y, plane);
                    }
                }
            }
        }
        f += group;
    }
}

/// [`conv9_relu_pool2`] for `F` filters on 8 columns of one pooled row: the four padded
/// rows from `x` (`row` floats apart) give the window's upper output row (their rows 0, 1,
/// 2) and lower one (rows 1, 2, 3), each at even and odd columns: four accumulators per
/// filter.
///
/// # Safety
/// AVX2 and FMA must be available; `x` holds four padded rows `row` floats apart, 9 floats
/// of each of their halves from `x`; `w` F x 9 floats, `bias` F, and `y` F rows `y_stride`
/// apart writable in the lanes of `mask`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn pool_row<const F: usize>(
    x: *const f32,
    row: usize,
    w: *const f32,
    bias: *const f32,
    mask: __m256i,
    y: *mut f32,
    y_stride: usize,
) {
    let half = super::conv_relu_pool::HALF_ROW;
    // acc[f]: the upper row's even and odd columns, then the lower row's.
    let mut acc = [[_mm256_setzero_ps(); 4]; F];
    for (f, a) in acc.iter_mut().enumerate() {
        // SAFETY: bias[f] is in bounds (caller).
        *a = [_mm256_set1_ps(unsafe { *bias.add(f) }); 4];
    }
    for r in 0..4 {
        // E, O, E from 1, O from 1 of padded row r: window columns 0, 1, 2 of an even
        // output column are v[0], v[1], v[2]; of an odd one v[1], v[2], v[3].
        // SAFETY: 9 floats of each half of row r are readable (caller).
        let v = unsafe {
            let e = x.add(r * row);
            let o = e.add(half);
            [
                _mm256_loadu_ps(e),
                _mm256_loadu_ps(o),
                _mm256_loadu_ps(e.add(1)),
                _mm256_loadu_ps(o.add(1)),
            ]
        };
        for (f, a) in acc.iter_mut().enumerate() {
            // Window row i = r for the upper output row, r - 1 for the lower.
            for (out, i) in [(0, r), (2, r.wrapping_sub(1))] {
                if i > 2 {
                    continue;
                }
                for j in 0..3 {
                    // SAFETY: w[9 f + 3 i + j] is in bounds (caller).
                    let wv = _mm256_set1_ps(unsafe { *w.add(9 * f + 3 * i + j) });
                    a[out] = _mm256_fmadd_ps(wv, v[j], a[out]);
                    a[out + 1] = _mm256_fmadd_ps(wv, v[j + 1], a[out + 1]);
                }
            }
        }
    }
    let zero = _mm256_setzero_ps();
    for (f, a) in acc.iter().enumerate() {
        // ReLU first (max_ps gives its second operand, +0, for NaN and -0), then the
        // maximum of four values that hold no NaN and no -0: one value in any order.
        let [p, q, s, t] = a.map(|v| _mm256_max_ps(v, zero));
        let m = _mm256_max_ps(_mm256_max_ps(p, q), _mm256_max_ps(s, t));
        // SAFETY: row f of y, the lanes of mask, is writable (caller).
        unsafe { _mm256_maskstore_ps(y.add(f * y_stride), mask, m) };
    }
}

/// Which outputs of each filter's plane [`conv9_filters`] computes: `n[0]` from `p` and
/// `n[1]` from `p + 8` (0 to 8 each), the planes `stride` apart.
#[derive(Clone, Copy)]
struct Outputs {
    p: usize,
    n: [usize; 2],
    stride: usize,
}

/// [`conv9_flat`] for `R` filters on two vectors of outputs: for each vector v, the first
/// `n[v]` values of `y[r * stride + p + 8 v ..]` = act(bias[r] + sum_q w[9 r + q] x_q), the
/// inputs x_q loaded with the column lanes `cols[v][q % 3]`.
///
/// # Safety
/// AVX2 and FMA must be available; `x` as [`conv9_flat`] says for the outputs named;
/// `w` holds R x 9 floats, `bias` R, and `y` R planes `stride` apart whose outputs named are
/// writable and overlap no input.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn conv9_filters<const R: usize>(
    x: &super::direct::Inputs9,
    cols: &[[__m256i; 3]; 2],
    w: *const f32,
    bias: *const f32,
    relu: bool,
    outs: Outputs,
    y: *mut f32,
) {
    let mut a = [[_mm256_setzero_ps(); 2]; R];
    for (r, acc) in a.iter_mut().enumerate() {
        // SAFETY: bias[r] is in bounds (caller).
        *acc = [_mm256_set1_ps(unsafe { *bias.add(r) }); 2];
    }
    for q in 0..9 {
        let src = x.src.wrapping_add(x.offsets[q] + outs.p);
        // SAFETY: src[..8] and src[8..16] are in bounds for the enabled lanes (caller);
        // masked-off lanes (all of the second vector's when n[1] = 0) touch no memory and
        // read as 0.
        let (x0, x1) = unsafe {
            (
                _mm256_maskload_ps(src, cols[0][q % 3]),
                _mm256_maskload_ps(src.wrapping_add(8), cols[1][q % 3]),
            )
        };
        for (r, acc) in a.iter_mut().enumerate() {
            // SAFETY: w[9 r + q] is in bounds (caller).
            let wv = _mm256_set1_ps(unsafe { *w.add(9 * r + q) });
            acc[0] = _mm256_fmadd_ps(wv, x0, acc[0]);
            acc[1] = _mm256_fmadd_ps(wv, x1, acc[1]);
        }
    }
    for (r, acc) in a.iter().enumerate() {
        for (v, &out) in acc.iter().enumerate() {
            if outs.n[v] == 0 {
                continue;
            }
            // max_ps returns its second operand when the first is NaN: 0, as f32::max does
            // (and as the AVX-512 kernel).
            let out = if relu {
                _mm256_max_ps(out, _mm256_setzero_ps())
            } else {
                out
            };
            // SAFETY: row r's outputs p + 8 v .. + n[v] are writable (caller).
            unsafe {
                let at = y.add(r * outs.stride + outs.p + 8 * v);
                store_first(at, outs.n[v], _mm256_castps_si256(out));
            }
        }
    }
}
