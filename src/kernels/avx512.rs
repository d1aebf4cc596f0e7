//! Our own AVX-512 matrix-multiply micro-kernels, chosen at run time on CPUs that have
//! AVX-512F (see [`super::simd`]); [`super::avx2`] has the same kernels for AVX2+FMA, and
//! elsewhere [`super::gemm`] uses the `matrixmultiply` crate.
//!
//! The shapes of a small CNN's products are thin (report 1's convolution is 16 x 784 x 9,
//! its Dense backward 128 x 3136 x 32), so these kernels read their operands where they lie,
//! with no packing: packing a 1.6 MB weight matrix to multiply it by 32 rows costs as much as
//! the multiply. Two kernels cover every product of the layers:
//!
//! * **broadcast** ([`gemm_bcast`]), for B with contiguous rows (column stride 1):
//!   `C[i][j0..j0+32] += A[i][p] * B[p][j0..j0+32]` for p = 0, 1, ..., K-1. A tile of up to
//!   12 rows x 32 columns of C lives in 24 vector registers; each step loads 2 vectors of B
//!   and broadcasts 12 scalars of A (any strides) for 24 fused multiply-adds.
//! * **dot** ([`gemm_dot`]), for A and B both contiguous along K (`C = A * B^T`, B's rows
//!   contiguous):
//!   `C[i][j] = sum_p A[i][p] * B[j][p]`, a tile of 4 x 4 dot products at once, 16 lanes
//!   each (lane l sums the p with p mod 16 = l), the lanes of all 16 added pairwise at the
//!   end by one shuffle network.
//!
//! Determinism: in both kernels the arithmetic that produces one element of C depends only
//! on K (a chain of FMAs over p in order; or the same 16 lane chains and the same final
//! tree), never on the tile the element falls in or on M and N. So any split of C into
//! tiles, and any thread count, gives the same bits.
//!
//! Edges: a partial column tile uses masked loads and stores (masked-off lanes touch no
//! memory); a partial row tile uses a kernel instantiated for fewer rows.
//!
//! Safety: the matrix kernels are `unsafe fn`s on bare views ([`MatPtr`], [`MatPtrMut`]
//! and [`Dims`]); [`super::gemm`] checks the bounds once, on slices, before calling them.

use super::direct::{Inputs9, CONV3_ROW};
use super::mat::{Dims, MatPtr, MatPtrMut};
use std::arch::x86_64::*;

/// Columns of C per broadcast tile: two 16-lane vectors.
const NR: usize = 32;
/// Rows of C per broadcast tile (24 accumulators of the 32 vector registers).
const MR: usize = 12;
/// Steps of p per block of the broadcast kernel: a KC x 32 block of B is 36 KB, within the
/// 48 KB L1 of the development machine. 288 = 32 x 3 x 3, so a 3x3 convolution over 32
/// channels (LeNet's second) runs in one block: 256 split it into 256 + 32 and made its
/// forward pass 2% slower.
const KC: usize = 288;

thread_local! {
    /// Each thread's buffer for a packed KC x 32 block of B.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Rows and columns of C per dot tile.
const DR: usize = 4;
const DS: usize = 4;

/// Lane masks of the two vectors of a tile `cols` wide (1..=32).
fn masks(cols: usize) -> (__mmask16, __mmask16) {
    let low = |c: usize| -> __mmask16 {
        if c >= 16 {
            0xFFFF
        } else {
            ((1u32 << c) - 1) as __mmask16
        }
    };
    (low(cols), low(cols.saturating_sub(16)))
}

/// What each element of C starts from before the broadcast kernel adds the products to it.
/// A bias lets a convolution's output be written once (see [`gemm_bcast`]).
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// 0: `C = A B`.
    Zero,
    /// C's current value: `C += A B`.
    C,
    /// `bias[i]` for row i, one value per row of C: `C = A B + bias`.
    Bias(*const f32),
}

impl Start {
    /// The same start for the rows of C from row `i0` on.
    ///
    /// # Safety
    /// For [`Start::Bias`], `bias + i0` must stay inside the bias's allocation (one past its
    /// end at most).
    pub(super) unsafe fn rows_from(self, i0: usize) -> Start {
        match self {
            // SAFETY: the caller keeps `i0` within the bias's m values (or one past them).
            Start::Bias(bias) => Start::Bias(unsafe { bias.add(i0) }),
            other => other,
        }
    }
}

/// One broadcast tile of `R` rows and `cols` (1..=32) columns:
/// `C[r][j] = start + sum_p A[r][p] * B[p][j]`, p < k in order, then `max(C, 0)` if `relu`.
///
/// # Safety
/// AVX-512F must be available. `b` has contiguous rows (column stride 1). Every A(r, p),
/// B(p, j), C(r, j) for r < R, p < k, j < cols, and `bias[r]` for [`Start::Bias`], must lie
/// inside the allocation its pointer points into, and C must not overlap A, B or the bias.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bcast_tile<const R: usize>(
    k: usize,
    cols: usize,
    a: MatPtr,
    b: MatPtr,
    c: MatPtrMut,
    start: Start,
    relu: bool,
) {
    let (m0, m1) = masks(cols);
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    match start {
        Start::Zero => {}
        // SAFETY: C(r, j) is in bounds for r < R, j < cols (caller); a masked load touches
        // only the lanes of its mask (the columns j < cols; `wrapping_add` because the
        // second vector's address may lie past C when its mask is empty), and an unaligned
        // load needs no alignment.
        Start::C => unsafe {
            for r in 0..R {
                let cr = c.at(r, 0);
                acc0[r] = _mm512_maskz_loadu_ps(m0, cr);
                acc1[r] = _mm512_maskz_loadu_ps(m1, cr.wrapping_add(16));
            }
        },
        // SAFETY: bias[r] is in bounds for r < R (caller).
        Start::Bias(bias) => unsafe {
            for r in 0..R {
                acc0[r] = _mm512_set1_ps(*bias.add(r));
                acc1[r] = acc0[r];
            }
        },
    }
    let (rsa, ldb) = (a.row_stride, b.row_stride);
    for p in 0..k {
        // SAFETY: B(p, j) for j < cols and A(r, p) for r < R are in bounds (caller); B's
        // row is contiguous, and the masked loads read only its columns j < cols (as
        // above for the second vector's address).
        unsafe {
            let bp = b.ptr.add(p * ldb);
            let b0 = _mm512_maskz_loadu_ps(m0, bp);
            let b1 = _mm512_maskz_loadu_ps(m1, bp.wrapping_add(16));
            let ap = a.at(0, p);
            for r in 0..R {
                let av = _mm512_set1_ps(*ap.add(r * rsa));
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
        }
    }
    if relu {
        // max_ps returns its second operand when the first is NaN: 0, as f32::max does.
        let zero = _mm512_setzero_ps();
        for r in 0..R {
            acc0[r] = _mm512_max_ps(acc0[r], zero);
            acc1[r] = _mm512_max_ps(acc1[r], zero);
        }
    }
    for r in 0..R {
        // SAFETY: C(r, j) for j < cols is in bounds and overlaps no operand (caller); the
        // masked stores write only those columns (as above for the second address).
        unsafe {
            let cr = c.at(r, 0);
            _mm512_mask_storeu_ps(cr, m0, acc0[r]);
            _mm512_mask_storeu_ps(cr.wrapping_add(16), m1, acc1[r]);
        }
    }
}

/// Copies rows p < kc of B's `cols`-wide block (B(p, j), j < cols <= 32) to
/// `buf[p*32 + j]`, zero-filling j >= cols: two masked vector moves per row instead of a
/// `memcpy` call for 128 bytes. Returns the copy as a view (row stride 32).
///
/// # Safety
/// AVX-512F must be available, `b` has contiguous rows, and every B(p, j) above is in
/// bounds.
///
/// # Panics
/// If `buf` is shorter than kc x 32.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(kc: usize, b: MatPtr, cols: usize, buf: &mut [f32]) -> MatPtr {
    assert!(buf.len() >= kc * NR, "packing buffer too short");
    let (m0, m1) = masks(cols);
    let dst = buf.as_mut_ptr();
    for p in 0..kc {
        // SAFETY: B's row p is in bounds for j < cols (caller) and the masked loads read no
        // other column (as in `bcast_tile`); `dst` has kc x 32 elements (asserted), so both
        // 16-lane stores of row p < kc fit. Unaligned loads and stores need no alignment.
        unsafe {
            let src = b.at(p, 0);
            let v0 = _mm512_maskz_loadu_ps(m0, src);
            let v1 = _mm512_maskz_loadu_ps(m1, src.wrapping_add(16));
            _mm512_storeu_ps(dst.add(p * NR), v0);
            _mm512_storeu_ps(dst.add(p * NR + 16), v1);
        }
    }
    MatPtr {
        ptr: buf.as_ptr(),
        row_stride: NR,
        col_stride: 1,
    }
}

/// `C[M x N] = start + A[M x K] * B[K x N]`, then `max(C, 0)` if `relu`, where A has any
/// strides and B contiguous rows. With [`Start::Bias`] and `relu`, a convolution's output
/// is written once: its bias is the accumulators' first value and ReLU is applied as they
/// are stored.
///
/// # Safety
/// AVX-512F must be available ([`super::Simd::supported`]). Every A(i, p), B(p, j) and C(i, j) for
/// i < m, j < n, p < k, and `bias[i]` for [`Start::Bias`], must lie inside the allocation
/// its pointer points into, and C must not overlap A, B or the bias.
///
/// # Panics
/// If B's column stride is not 1 or K is 0.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_bcast(d: Dims, a: MatPtr, b: MatPtr, c: MatPtrMut, start: Start, relu: bool) {
    assert_eq!(b.col_stride, 1, "gemm_bcast: B's rows must be contiguous");
    assert!(d.k > 0, "gemm_bcast: K is 0");
    let Dims { m, n, k } = d;
    if m == 0 || n == 0 {
        return;
    }
    // Blocks of KC steps of p outside, then column strips: one KC x 32 block of B (36 KB)
    // is reused from L1 by every row tile, and the M x KC panel of A (144 KB for a Dense
    // layer of 128 units) stays in L2 for every strip instead of being read again from
    // memory per strip. Splitting p into blocks keeps each element's
    // chain of FMAs in order (the running sum is stored to C and loaded back, exactly), so
    // the blocking changes no bit. When B's rows are far apart (row stride > 32) and
    // several row tiles will read the block, it is first copied to a contiguous buffer.
    let pack = b.row_stride > NR && m > MR && k > 16;
    PACKED_B.with(|buf| {
        let mut buf = buf.borrow_mut();
        if pack {
            buf.resize(KC * NR, 0.0);
        }
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // Only the first block starts from `start` (later ones add to what C holds);
            // only the last applies ReLU.
            let start = if k0 == 0 { start } else { Start::C };
            let relu = relu && k0 + kc == k;
            // SAFETY: m > 0 and k0 < k, so (0, k0) is an element of A.
            let a0 = unsafe { a.block(0, k0) };
            for j0 in (0..n).step_by(NR) {
                let cols = NR.min(n - j0);
                // SAFETY: (k0, j0) is an element of B and (0, j0) one of C: k0 < k, j0 < n,
                // and m > 0.
                let (bj, cj) = unsafe { (b.block(k0, j0), c.block(0, j0)) };
                let bj = if pack {
                    // SAFETY: AVX-512F is available (caller); B(k0 + p, j0 + j) for p < kc,
                    // j < cols is in bounds, and B's rows are contiguous (asserted above).
                    unsafe { pack_b(kc, bj, cols, &mut buf) }
                } else {
                    bj
                };
                let mut i0 = 0;
                while i0 + MR <= m {
                    // SAFETY: AVX-512F is available (caller). Rows i0..i0+MR (<= m) of A and
                    // C, columns k0..k0+kc (<= k) of A, rows k0..k0+kc and columns
                    // j0..j0+cols (<= n) of B (or all of its copy), and bias values
                    // i0..i0+MR: all in bounds (caller); C overlaps none of them.
                    unsafe {
                        let (ai, ci, si) = (a0.block(i0, 0), cj.block(i0, 0), start.rows_from(i0));
                        bcast_tile::<MR>(kc, cols, ai, bj, ci, si, relu);
                    }
                    i0 += MR;
                }
                if i0 == m {
                    continue;
                }
                // SAFETY: i0 < m, so row i0 of A and C and bias[i0] are in bounds.
                let (ai, ci, si) =
                    unsafe { (a0.block(i0, 0), cj.block(i0, 0), start.rows_from(i0)) };
                macro_rules! tail {
                    ($($r:literal)*) => {
                        match m - i0 {
                            $($r => bcast_tile::<$r>(kc, cols, ai, bj, ci, si, relu),)*
                            _ => unreachable!("row tail is below MR"),
                        }
                    };
                }
                // SAFETY: as for the full tiles above, for the last m - i0 < MR rows.
                unsafe { tail!(1 2 3 4 5 6 7 8 9 10 11) };
            }
        }
    });
}

/// The lane sums of 16 vectors at once: returns `out` with `out[q]` = the sum of the 16
/// lanes of `v[q]`, each added pairwise in the same fixed tree as `lane_sum` (the tests'
/// reference): lane l plus lane l+8, then l+4, l+2, l+1. Four levels of shuffles and adds (15 adds for 16 sums)
/// instead of 16 separate reductions.
#[target_feature(enable = "avx512f")]
fn lane_sums_16(v: &[__m512; 16]) -> [f32; 16] {
    // Level 1: quarters (q0 + q2, q1 + q3) of two vectors side by side: u[i] holds the
    // 8 partial sums l + (l+8) of v[2i] in its low half and of v[2i+1] in its high half.
    let mut u = [_mm512_setzero_ps(); 8];
    for (i, ui) in u.iter_mut().enumerate() {
        let (x, y) = (v[2 * i], v[2 * i + 1]);
        *ui = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
        );
    }
    // Level 2: quarter j of w[i] holds the 4 partial sums l + (l+4) of v[4i + j].
    let mut w = [_mm512_setzero_ps(); 4];
    for (i, wi) in w.iter_mut().enumerate() {
        let (x, y) = (u[2 * i], u[2 * i + 1]);
        *wi = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
        );
    }
    // Level 3, within each 128-bit quarter j: lanes (l + (l+2)) of v[j] then of v[j+4]
    // (from w[0], w[1]); likewise v[8 + j], v[12 + j] from w[2], w[3].
    let z0 = _mm512_add_ps(
        _mm512_shuffle_ps::<0b01_00_01_00>(w[0], w[1]),
        _mm512_shuffle_ps::<0b11_10_11_10>(w[0], w[1]),
    );
    let z1 = _mm512_add_ps(
        _mm512_shuffle_ps::<0b01_00_01_00>(w[2], w[3]),
        _mm512_shuffle_ps::<0b11_10_11_10>(w[2], w[3]),
    );
    // Level 4: lane 4j + t of the result is the total of v[j + 4t].
    let sums = _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(z0, z1),
        _mm512_shuffle_ps::<0b11_01_11_01>(z0, z1),
    );
    let mut t = [0.0f32; 16];
    // SAFETY: `t` holds the 16 floats the store writes; an unaligned store needs no
    // alignment.
    unsafe { _mm512_storeu_ps(t.as_mut_ptr(), sums) };
    let mut out = [0.0f32; 16];
    for j in 0..4 {
        for k in 0..4 {
            out[j + 4 * k] = t[4 * j + k];
        }
    }
    out
}

/// One vector's lane sum by the tree of [`lane_sums_16`], one lane at a time: the
/// reference that the shuffle network is tested against.
#[cfg(test)]
fn lane_sum(lanes: [f32; 16]) -> f32 {
    let mut t = lanes;
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            t[l] += t[l + w];
        }
    }
    t[0]
}

/// One dot tile of R x S (at most 4 x 4) elements: `C[r][s] = (beta_one ? C[r][s] : 0) +
/// sum_p A[r][p] * B[s][p]`. Unused accumulators of the 4 x 4 set stay zero, so every
/// element goes through the same reduction whatever the tile's size.
///
/// # Safety
/// AVX-512F must be available; `a` and `b` have contiguous rows (column stride 1). A(r, p),
/// B(s, p) for p < k and C(r, s), for r < R, s < S, must lie inside the allocations their
/// pointers point into, and C must not overlap A or B.
#[target_feature(enable = "avx512f")]
unsafe fn dot_tile<const R: usize, const S: usize>(
    k: usize,
    a: MatPtr,
    b: MatPtr,
    c: MatPtrMut,
    beta_one: bool,
) {
    let mut acc = [_mm512_setzero_ps(); DR * DS];
    let (lda, ldb) = (a.row_stride, b.row_stride);
    for p in (0..k).step_by(16) {
        // The last step may be partial: its masked-off lanes read nothing and add +0.
        let mask = if p + 16 <= k {
            0xFFFF
        } else {
            ((1u32 << (k - p)) - 1) as __mmask16
        };
        // SAFETY: the rows of A and B are contiguous and in bounds for p < k (caller); the
        // masked loads read only the lanes p..min(p + 16, k), and need no alignment.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); S];
            for (s, v) in bv.iter_mut().enumerate() {
                *v = _mm512_maskz_loadu_ps(mask, b.ptr.add(s * ldb + p));
            }
            for r in 0..R {
                let av = _mm512_maskz_loadu_ps(mask, a.ptr.add(r * lda + p));
                for s in 0..S {
                    acc[r * DS + s] = _mm512_fmadd_ps(av, bv[s], acc[r * DS + s]);
                }
            }
        }
    }
    let sums = lane_sums_16(&acc);
    for r in 0..R {
        for s in 0..S {
            // SAFETY: C(r, s) is in bounds for r < R, s < S and overlaps no operand (caller).
            unsafe {
                let out = c.at(r, s);
                let sum = sums[r * DS + s];
                *out = if beta_one { *out + sum } else { sum };
            }
        }
    }
}

/// One tile of `kernels::matvec`'s packed matrix times x: `out[r] = sum_p A[r][p] x[p]`
/// for the tile's `rows` rows, each by [`gemm_dot`]'s 16 lane chains and lane tree, so the
/// same bits as a one-column product there.
///
/// # Safety
/// AVX-512F must be available.
///
/// # Panics
/// Unless 1 <= rows <= `matvec::TILE_ROWS`, `tile` holds rows x ceil(k / 16) x 16 floats,
/// `x` k and `out` rows.
#[target_feature(enable = "avx512f")]
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
    // SAFETY: the lengths are as matvec_rows reads and writes them (asserted).
    unsafe {
        let (t, xp) = (tile.as_ptr(), x.as_ptr());
        match rows {
            8 => matvec_rows::<8>(t, xp, k, out),
            7 => matvec_rows::<7>(t, xp, k, out),
            6 => matvec_rows::<6>(t, xp, k, out),
            5 => matvec_rows::<5>(t, xp, k, out),
            4 => matvec_rows::<4>(t, xp, k, out),
            3 => matvec_rows::<3>(t, xp, k, out),
            2 => matvec_rows::<2>(t, xp, k, out),
            _ => matvec_rows::<1>(t, xp, k, out),
        }
    }
}

/// [`matvec_tile`] for `R` rows.
///
/// # Safety
/// AVX-512F must be available; `tile` holds R x ceil(k / 16) x 16 floats, `x` k, `out` R.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn matvec_rows<const R: usize>(tile: *const f32, x: *const f32, k: usize, out: &mut [f32]) {
    let mut acc = [_mm512_setzero_ps(); 16];
    let full = k / 16;
    for q in 0..full {
        // SAFETY: x[16 q .. 16 q + 16] (16 q + 16 <= k) and the step's R vectors of the
        // tile are in bounds (caller); unaligned loads need no alignment.
        unsafe {
            let bv = _mm512_loadu_ps(x.add(16 * q));
            for (r, acc) in acc.iter_mut().enumerate().take(R) {
                let av = _mm512_loadu_ps(tile.add((q * R + r) * 16));
                *acc = _mm512_fmadd_ps(av, bv, *acc);
            }
        }
    }
    if full * 16 < k {
        // The last step is partial: x's masked-off lanes read nothing and are 0, the
        // tile's padding is 0, and 0 * 0 is added as gemm_dot's masked step adds it.
        let mask = ((1u32 << (k - full * 16)) - 1) as __mmask16;
        // SAFETY: the mask enables x[16 full .. k]; the step's R vectors are in the tile.
        unsafe {
            let bv = _mm512_maskz_loadu_ps(mask, x.add(16 * full));
            for (r, acc) in acc.iter_mut().enumerate().take(R) {
                let av = _mm512_loadu_ps(tile.add((full * R + r) * 16));
                *acc = _mm512_fmadd_ps(av, bv, *acc);
            }
        }
    }
    let sums = lane_sums_16(&acc);
    out[..R].copy_from_slice(&sums[..R]);
}

/// `C[M x N] = (beta_one ? C : 0) + A[M x K] * B[N x K]^T`: each element of C is the dot
/// product of a row of A and a row of B, both contiguous (column stride 1).
///
/// # Safety
/// AVX-512F must be available ([`super::Simd::supported`]). Every A(i, p), B(j, p) and C(i, j) for
/// i < m, j < n, p < k must lie inside the allocation its pointer points into, and C must
/// not overlap A or B.
///
/// # Panics
/// If A's or B's column stride is not 1.
#[target_feature(enable = "avx512f")]
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
            macro_rules! tile {
                ($(($r:literal, $s:literal))*) => {
                    match (rows, cols) {
                        // SAFETY: the tile's rows i0..i0+rows < m of A and C and rows
                        // j0..j0+cols < n of B are in bounds, rows contiguous (asserted).
                        $(($r, $s) => unsafe { dot_tile::<$r, $s>(k, ai, bj, cij, beta_one) },)*
                        _ => unreachable!("dot tile larger than DR x DS"),
                    }
                };
            }
            tile!(
                (4, 4)(4, 3)(4, 2)(4, 1)(3, 4)(3, 3)(3, 2)(3, 1)(2, 4)(2, 3)(2, 2)(2, 1)(1, 4)(
                    1, 3
                )(1, 2)(1, 1)
            );
        }
    }
}

/// Max pooling of one plane with 2x2 windows and stride 2, 16 outputs at a time: the same
/// result as `kernels::pool`'s scalar loop (first maximum in row-major order wins, NaN never
/// wins, an all-NaN window gives its first value). The even and odd columns of the window's
/// two rows are separated with one permute each; the winner is kept with masked moves.
/// With `ARG` the winner's index goes to `arg`; without it (inference, where no backward
/// pass needs it) `arg` is not touched and the pass takes half the time.
///
/// # Safety
/// AVX-512F must be available; `x` holds an `h` x `w` plane, `y` (and `arg` with `ARG`)
/// hold `out_h` x `out_w` with 2 out_h <= h and 2 out_w <= w.
#[target_feature(enable = "avx512f")]
pub unsafe fn max_pool_2x2<const ARG: bool>(
    x: &[f32],
    w: usize,
    out_h: usize,
    out_w: usize,
    y: &mut [f32],
    arg: &mut [u32],
) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let two_lanes = _mm512_slli_epi32::<1>(_mm512_setr_epi32(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    for oy in 0..out_h {
        let r0 = 2 * oy * w;
        for ox0 in (0..out_w).step_by(16) {
            let lanes = 16.min(out_w - ox0);
            let m_out = ((1u32 << lanes) - 1) as __mmask16;
            let (m_lo, m_hi) = masks(2 * lanes);
            // The window's rows 2 oy and 2 oy + 1 (< h) from column 2 ox0 on: inside x,
            // as 2 out_h <= h, 2 out_w <= w and x holds h x w (caller). (Pointers, not
            // subslices: bounds checks here made the loop 15% slower.)
            // SAFETY: the offsets are those of elements of x (above).
            let (top, bot) = unsafe {
                let top = x.as_ptr().add(r0 + 2 * ox0);
                (top, top.add(w))
            };
            let split = |p: *const f32| {
                // SAFETY: the masks enable the row's 2 lanes elements from `p` (first 16,
                // then the rest), columns 2 ox0 .. 2 (ox0 + lanes) <= w of the row: inside
                // x. Masked-off lanes touch no memory (so the second address may lie past
                // x's end when its mask is empty: `wrapping_add`), and unaligned loads need
                // no alignment.
                let (lo, hi) = unsafe {
                    (
                        _mm512_maskz_loadu_ps(m_lo, p),
                        _mm512_maskz_loadu_ps(m_hi, p.wrapping_add(16)),
                    )
                };
                (
                    _mm512_permutex2var_ps(lo, even, hi),
                    _mm512_permutex2var_ps(lo, odd, hi),
                )
            };
            let (t0, t1) = split(top);
            let (b0, b1) = split(bot);
            let mut best = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut out = t0;
            let mut at = _mm512_setzero_si512();
            let offsets = [0, 1, w as i32, w as i32 + 1];
            for (v, off) in [t0, t1, b0, b1].into_iter().zip(offsets) {
                let win = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                best = _mm512_mask_mov_ps(best, win, v);
                out = _mm512_mask_mov_ps(out, win, v);
                if ARG {
                    at = _mm512_mask_mov_epi32(at, win, _mm512_set1_epi32(off));
                }
            }
            let o = oy * out_w + ox0;
            // SAFETY: `m_out` enables lanes o .. o + lanes <= out_h x out_w, inside y (and
            // arg with ARG) (caller); unaligned stores need no alignment.
            unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(o), m_out, out) };
            if ARG {
                // Index in the plane: r0 + 2 (ox0 + lane) + offset of the winner.
                let base = _mm512_add_epi32(_mm512_set1_epi32((r0 + 2 * ox0) as i32), two_lanes);
                let idx = _mm512_add_epi32(base, at);
                // SAFETY: as for y; u32 and i32 have the same size.
                unsafe {
                    _mm512_mask_storeu_epi32(arg.as_mut_ptr().add(o) as *mut i32, m_out, idx)
                };
            }
        }
    }
}

/// One row of im2col at stride 1: `dst[ox] = src[ox + shift]` for `lo <= ox < hi`, 0 for
/// the other ox < `len` (the padding), 16 columns per masked load and store. The masked-off
/// lanes are never read, so `src + ox + shift` may point outside the row there.
///
/// # Safety
/// AVX-512F must be available; `dst[..len]` must be writable and `src[ox + shift]` readable
/// for every ox in `lo..hi` (`lo..hi` within `0..len`).
#[target_feature(enable = "avx512f")]
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
        let lanes = 16.min(len - c0);
        let (a, b) = (
            lo.saturating_sub(c0).min(lanes),
            hi.saturating_sub(c0).min(lanes),
        );
        // masks(n).0 has the low n of 16 lanes set (n <= 16 here).
        let upto = |n: usize| masks(n).0;
        let valid = if b > a { upto(b) & !upto(a) } else { 0 };
        // SAFETY: `valid` enables the lanes c0 + l in lo..hi, whose sources the caller
        // guarantees readable (masked-off lanes touch no memory, hence `wrapping_offset`);
        // the store writes lanes c0 + l < len of `dst`, writable by the caller's word.
        unsafe {
            let v = _mm512_maskz_loadu_ps(valid, src.wrapping_offset(c0 as isize + shift));
            _mm512_mask_storeu_ps(dst.add(c0), upto(lanes), v);
        }
        c0 += 16;
    }
}

/// im2col (see `kernels::im2col`) at stride 1: every row of `cols` from `shifted_row`,
/// so padding costs nothing and no row needs a call to memset or memcpy.
///
/// # Safety
/// AVX-512F must be available.
///
/// # Panics
/// If `g.stride` is not 1 or `x` or `cols` is shorter than the geometry needs.
#[target_feature(enable = "avx512f")]
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
                    // SAFETY: AVX-512F is available (caller). For ox in lo..hi (within
                    // 0..ow), ox + shift is a column of row iy (valid_range), so
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

/// A one-channel 3x3 convolution read in place, 16 outputs of the flattened plane at a
/// time: `y[k][p] = act(b[k] + sum_r w[k][r] x_r[p])` for p < `ohw`, with `x_r[p]` the
/// input under weight r (read as [`Inputs9`] says, 0 in cleared lanes), ReLU if `relu`.
/// The nine input vectors of each 16 outputs are loaded once for all the filters, and each
/// output is the chain of `conv3_rows` (and the broadcast GEMM kernel): from the bias, the 9 products in order by fused
/// multiply-adds, so the same bits.
///
/// # Safety
/// AVX-512F must be available. `x.src` holds `offsets[r] + p` for every r < 9 and p <
/// ohw where the masks are set, `x.col_masks` (which must be Some) ceil(ohw / 16)
/// entries; `w` holds K x 9 floats, `bias` K and `y` K x ohw, not overlapping the inputs,
/// with `k` = K.
#[target_feature(enable = "avx512f")]
pub unsafe fn conv9_flat(
    x: Inputs9,
    w: *const f32,
    bias: *const f32,
    k: usize,
    ohw: usize,
    relu: bool,
    y: *mut f32,
) {
    let zero = _mm512_setzero_ps();
    assert!(
        x.col_masks.is_some(),
        "conv9_flat reads the plane in place, with column masks"
    );
    // Filters in groups of 8, each group over the whole plane: 8 output planes written at
    // a time (all K at once, from one load of the inputs, were too many streams of
    // stores when the outputs go to memory).
    let mut f = 0;
    while f < k {
        let group = if f + 8 <= k { 8 } else { 1 };
        for p in (0..ohw).step_by(16) {
            // SAFETY: one mask entry per vector of outputs (caller).
            let (mask, cols) = unsafe { output_lanes(&x, p, ohw) };
            let mut xv = [zero; 9];
            for (r, v) in xv.iter_mut().enumerate() {
                // SAFETY: src[offsets[r] + p ..] is in bounds for the enabled lanes (caller).
                *v = unsafe { _mm512_maskz_loadu_ps(cols[r % 3], x.src.add(x.offsets[r] + p)) };
            }
            let at = f * ohw + p;
            // SAFETY: filters f .. f + group (<= k) have 9 weights, a bias and ohw outputs
            // (caller).
            unsafe {
                let (w, b, y) = (w.add(9 * f), bias.add(f), y.add(at));
                if group == 8 {
                    conv9_filters::<8>(&xv, w, b, relu, mask, y, ohw);
                } else {
                    conv9_filters::<1>(&xv, w, b, relu, mask, y, ohw);
                }
            }
        }
        f += group;
    }
}

/// [`conv9_flat`] for `R` filters on one vector of outputs: `y[r * y_stride ..]` (the lanes
/// of `mask`) = act(bias[r] + sum_q w[9 r + q] xv[q]).
///
/// # Safety
/// AVX-512F must be available; `w` holds R x 9 floats, `bias` R, and `y` R rows `y_stride`
/// apart writable in the lanes of `mask`, overlapping no input.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn conv9_filters<const R: usize>(
    xv: &[__m512; 9],
    w: *const f32,
    bias: *const f32,
    relu: bool,
    mask: __mmask16,
    y: *mut f32,
    y_stride: usize,
) {
    let mut acc = [_mm512_setzero_ps(); R];
    for (r, a) in acc.iter_mut().enumerate() {
        // SAFETY: bias[r] and w[9 r + q] are in bounds (caller).
        unsafe {
            *a = _mm512_set1_ps(*bias.add(r));
            for (q, &v) in xv.iter().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(9 * r + q)), v, *a);
            }
        }
        if relu {
            // max_ps returns its second operand when the first is NaN: 0, as f32::max does.
            *a = _mm512_max_ps(*a, _mm512_setzero_ps());
        }
        // SAFETY: row r of y, the lanes of mask, is writable (caller).
        unsafe { _mm512_mask_storeu_ps(y.add(r * y_stride), mask, *a) };
    }
}

/// The lanes of the 16 outputs from `p` that exist (below `ohw`), and for each window
/// column j (0, 1, 2) those of them whose input lies inside the image: `x`'s column masks
/// for that vector of outputs, or all of them when it has none (an im2col matrix).
///
/// # Safety
/// `x.col_masks`, if any, holds an entry for vector `p / 16`.
#[inline]
unsafe fn output_lanes(x: &Inputs9, p: usize, ohw: usize) -> (__mmask16, [__mmask16; 3]) {
    let mask = masks(ohw - p).0;
    let cols = match x.col_masks {
        // SAFETY: entry p / 16 is in bounds (caller).
        Some(t) => unsafe { (*t.add(p / 16)).map(|m| m & mask) },
        None => [mask; 3],
    };
    (mask, cols)
}

/// Filters per group of [`conv9_relu_pool2`]: 16 accumulators and the 4 input vectors of a
/// padded row in registers.
const POOL_FILTERS: usize = 4;

/// One sample's 3x3 convolution with ReLU and 2x2 max pooling (see
/// `kernels::conv_relu_pool`): for each filter k and pooled row py, the 16 lanes px < `ow`
/// of `y[k][py]` = the maximum of the four ReLU outputs of the window, each the chain
/// bias, then the nine products in order, by fused multiply-adds.
///
/// # Safety
/// AVX-512F must be available. `planes` holds 2 `oh` + 2 padded rows, each an even and an
/// odd half of `HALF_ROW` floats (`kernels::conv_relu_pool`'s layout); `w` holds K x 9
/// floats, `bias` K, `y` K x `oh` x `ow` not overlapping them, with `k` = K and 1 <= `ow`
/// <= 16.
#[target_feature(enable = "avx512f")]
pub unsafe fn conv9_relu_pool2(
    planes: *const f32,
    w: *const f32,
    bias: *const f32,
    k: usize,
    oh: usize,
    ow: usize,
    y: *mut f32,
) {
    let mask = masks(ow).0;
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
            // SAFETY: padded rows 2 py .. 2 py + 4 <= 2 oh + 2 are in `planes`, filters f ..
            // f + group <= k have their weights and bias, and pooled row py of their planes
            // is in y (caller).
            unsafe {
                let (x, w, b) = (planes.add(2 * py * row), w.add(9 * f), bias.add(f));
                let y = y.add(f * plane + py * ow);
                if group == POOL_FILTERS {
                    pool_row::<POOL_FILTERS>(x, row, w, b, mask, y, plane);
                } else {
                    pool_row::<1>(x, row, w, b, mask, y, plane);
                }
            }
        }
        f += group;
    }
}

/// [`conv9_relu_pool2`] for `F` filters on one pooled row: the four padded rows from `x`
/// (`row` floats apart) give the window's upper output row (their rows 0, 1, 2) and lower
/// one (rows 1, 2, 3), each at even and odd columns: four accumulators per filter.
///
/// # Safety
/// AVX-512F must be available; `x` holds four padded rows `row` floats apart, `w` F x 9
/// floats, `bias` F, and `y` F rows `y_stride` apart writable in the lanes of `mask`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pool_row<const F: usize>(
    x: *const f32,
    row: usize,
    w: *const f32,
    bias: *const f32,
    mask: __mmask16,
    y: *mut f32,
    y_stride: usize,
) {
    let half = super::conv_relu_pool::HALF_ROW;
    // acc[f]: the upper row's even and odd columns, then the lower row's.
    let mut acc = [[_mm512_setzero_ps(); 4]; F];
    for (f, a) in acc.iter_mut().enumerate() {
        // SAFETY: bias[f] is in bounds (caller).
        *a = [_mm512_set1_ps(unsafe { *bias.add(f) }); 4];
    }
    for r in 0..4 {
        // E, O, E from 1, O from 1 of padded row r: window columns 0, 1, 2 of an even
        // output column are v[0], v[1], v[2]; of an odd one v[1], v[2], v[3].
        // SAFETY: 17 floats of each half of row r are readable (caller).
        let v = unsafe {
            let e = x.add(r * row);
            let o = e.add(half);
            [
                _mm512_loadu_ps(e),
                _mm512_loadu_ps(o),
                _mm512_loadu_ps(e.add(1)),
                _mm512_loadu_ps(o.add(1)),
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
                    let wv = _mm512_set1_ps(unsafe { *w.add(9 * f + 3 * i + j) });
                    a[out] = _mm512_fmadd_ps(wv, v[j], a[out]);
                    a[out + 1] = _mm512_fmadd_ps(wv, v[j + 1], a[out + 1]);
                }
            }
        }
    }
    let zero = _mm512_setzero_ps();
    for (f, a) in acc.iter().enumerate() {
        // ReLU first (max_ps gives its second operand, +0, for NaN and -0), then the
        // maximum of four values that hold no NaN and no -0: one value in any order.
        let [p, q, s, t] = a.map(|v| _mm512_max_ps(v, zero));
        let m = _mm512_max_ps(_mm512_max_ps(p, q), _mm512_max_ps(s, t));
        // SAFETY: row f of y, the lanes of mask, is writable (caller).
        unsafe { _mm512_mask_storeu_ps(y.add(f * y_stride), mask, m) };
    }
}

/// Filters per group of [`weight_grad9`]: the 10 lane accumulators of each (9 weights and
/// the bias) are added up 16 at a time by [`lane_sums_16`].
const WG_FILTERS: usize = 16;

/// One sample's weight and bias gradients of a convolution with nine weights per filter
/// (C kh kw = 9), ReLU (if `relu`) undone on the way:
///
/// ```text
/// d[k][p]   = 0 if relu and y[k][p] <= 0, else dy[k][p]
/// db[k]    += sum_p d[k][p]
/// dw[k][r]  = (beta_one ? dw[k][r] : 0) + sum_p d[k][p] * x_r[p]
/// ```
///
/// for p < `ohw`, with `x_r[p]` the input value under weight r for output p (read as
/// [`Inputs9`] says). It reads dy and y once, where the path it replaces reads them in
/// three passes: the activation's backward (which writes d over dy), `gemm::sum` per plane
/// for the bias, and [`gemm_dot`] on im2col's matrix for the weights. The arithmetic is
/// theirs, in their order: the bias as 16 lane sums of the whole vectors of d (plain adds
/// from zero), added pairwise, then the remaining `ohw mod 16` values one by one; each
/// weight as [`gemm_dot`]'s 16 chains of fused multiply-adds over p (the last vector
/// masked) and its lane tree. So the two paths give the same bits, and the GEMM path is the
/// reference it is tested against. Two filters at a time share each input vector: 18
/// chains and 2 bias sums stay in registers for the whole pass.
///
/// # Safety
/// AVX-512F must be available. `src` holds `offsets[r] + p` for every r < 9 and p < ohw
/// (at least where the masks are set), `col_masks` (if any) ceil(ohw / 16) entries, `dy` and
/// `y` K x ohw floats, `dw` K x 9 and `db` K, with `k` = K; `dw` and `db` overlap no input.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn weight_grad9(
    x: Inputs9,
    dy: *const f32,
    y: *const f32,
    relu: bool,
    k: usize,
    ohw: usize,
    beta_one: bool,
    dw: *mut f32,
    db: *mut f32,
) {
    let zero = _mm512_setzero_ps();
    let tail = ohw % 16;
    for k0 in (0..k).step_by(WG_FILTERS) {
        let n = WG_FILTERS.min(k - k0);
        let mut acc = [zero; WG_FILTERS * 10];
        let mut tails = [[0.0f32; 16]; WG_FILTERS];
        let mut f = 0;
        while f < n {
            let at = (k0 + f) * ohw;
            // SAFETY: filters k0 + f (and k0 + f + 1 for a pair, < k) have ohw values of dy
            // and y from `at`; x as the caller guarantees.
            unsafe {
                let (d, yy) = (dy.add(at), y.add(at));
                if f + 2 <= n {
                    grad9_filters::<2>(x, d, yy, relu, ohw, &mut acc[f * 10..], &mut tails[f..]);
                    f += 2;
                } else {
                    grad9_filters::<1>(x, d, yy, relu, ohw, &mut acc[f * 10..], &mut tails[f..]);
                    f += 1;
                }
            }
        }
        let mut sums = [0.0f32; WG_FILTERS * 10];
        for (q, group) in acc[..n * 10].chunks(16).enumerate() {
            let mut v = [zero; 16];
            v[..group.len()].copy_from_slice(group);
            sums[q * 16..][..group.len()].copy_from_slice(&lane_sums_16(&v)[..group.len()]);
        }
        for f in 0..n {
            let kk = k0 + f;
            // SAFETY: filter kk < k has 9 weights and a bias in dw and db (caller).
            unsafe {
                for r in 0..9 {
                    let out = dw.add(kk * 9 + r);
                    let s = sums[f * 10 + r];
                    *out = if beta_one { *out + s } else { s };
                }
                let bias = tails[f][..tail]
                    .iter()
                    .fold(sums[f * 10 + 9], |s, &t| s + t);
                *db.add(kk) += bias;
            }
        }
    }
}

/// [`weight_grad9`]'s pass over `F` (1 or 2) filters: their planes of dy and y start at `dy`
/// and `y`, `ohw` apart. Writes each filter's 9 weight chains and its bias sum (of the
/// whole vectors) to `acc[10 f ..]`, and its last partial vector of d to `tails[f]`.
///
/// # Safety
/// As [`weight_grad9`], with `dy` and `y` holding F x ohw floats.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn grad9_filters<const F: usize>(
    x: Inputs9,
    dy: *const f32,
    y: *const f32,
    relu: bool,
    ohw: usize,
    acc: &mut [__m512],
    tails: &mut [[f32; 16]],
) {
    let zero = _mm512_setzero_ps();
    let mut a = [[zero; 10]; F];
    for p in (0..ohw).step_by(16) {
        let whole = p + 16 <= ohw;
        // SAFETY: one mask entry per vector of outputs, if any (caller).
        let (mask, cols) = unsafe { output_lanes(&x, p, ohw) };
        let mut d = [zero; F];
        for f in 0..F {
            // The same line of the next filters' planes (of the next sample after the last
            // filters), asked for now: from memory, this pass is bound by waiting for dy
            // and y, and 4 planes at a time are too few streams for the prefetcher alone.
            // A prefetch never faults, so past the end of dy it costs nothing.
            let next = (2 * F + f) * ohw + p;
            _mm_prefetch::<_MM_HINT_T0>(dy.wrapping_add(next).cast());
            if relu {
                _mm_prefetch::<_MM_HINT_T0>(y.wrapping_add(next).cast());
            }
            // SAFETY: the mask enables values p..min(p + 16, ohw) of filter f's planes
            // (caller); masked-off lanes touch no memory and read as 0.
            unsafe {
                d[f] = _mm512_maskz_loadu_ps(mask, dy.add(f * ohw + p));
                if relu {
                    let yv = _mm512_maskz_loadu_ps(mask, y.add(f * ohw + p));
                    d[f] =
                        _mm512_mask_mov_ps(d[f], _mm512_cmp_ps_mask::<_CMP_LE_OQ>(yv, zero), zero);
                }
            }
            if whole {
                a[f][9] = _mm512_add_ps(a[f][9], d[f]);
            } else {
                // SAFETY: tails[f] holds 16 floats; an unaligned store needs no alignment.
                unsafe { _mm512_storeu_ps(tails[f].as_mut_ptr(), d[f]) };
            }
        }
        for r in 0..9 {
            // SAFETY: src[offsets[r] + p ..] is in bounds for the enabled lanes (caller).
            let v = unsafe { _mm512_maskz_loadu_ps(cols[r % 3], x.src.add(x.offsets[r] + p)) };
            for f in 0..F {
                a[f][r] = _mm512_fmadd_ps(d[f], v, a[f][r]);
            }
        }
    }
    for f in 0..F {
        acc[f * 10..][..10].copy_from_slice(&a[f]);
    }
}

/// `R` filters of a 3x3, stride-1 convolution over one input channel, on one output row:
/// `y[r][j] = bias[r] + sum_{i, jj} w[r][3 i + jj] * xp[i][j + jj]` for j < cols (1..=32),
/// the 9 products added in that order by fused multiply-adds, then `max(y, 0)` if `relu`.
/// That is the chain [`bcast_tile`] computes for the same output from im2col's columns, so
/// the two give the same bits.
///
/// # Safety
/// AVX-512F must be available. `xp` points at 3 rows of [`CONV3_ROW`] floats (columns
/// j + jj < cols + 2 read, masked); `w` at R x 9 weights, `bias` at R values, and `y` at R
/// rows of `cols` floats `y_stride` apart, overlapping no input.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn conv3_rows<const R: usize>(
    xp: *const f32,
    cols: usize,
    w: *const f32,
    bias: *const f32,
    relu: bool,
    y: *mut f32,
    y_stride: usize,
) {
    let (m0, m1) = masks(cols);
    // The 9 shifted input vectors of each half of the row, in the order of the weights.
    let mut x0 = [_mm512_setzero_ps(); 9];
    let mut x1 = [_mm512_setzero_ps(); 9];
    for i in 0..3 {
        for jj in 0..3 {
            // SAFETY: row i, columns jj.. of the padded plane are in bounds for the lanes
            // of the masks (caller); masked loads touch no other memory.
            unsafe {
                let p = xp.add(i * CONV3_ROW + jj);
                x0[3 * i + jj] = _mm512_maskz_loadu_ps(m0, p);
                x1[3 * i + jj] = _mm512_maskz_loadu_ps(m1, p.wrapping_add(16));
            }
        }
    }
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    for r in 0..R {
        // SAFETY: bias[r] is in bounds (caller).
        acc0[r] = _mm512_set1_ps(unsafe { *bias.add(r) });
        acc1[r] = acc0[r];
    }
    for p in 0..9 {
        for r in 0..R {
            // SAFETY: w[r][p] is in bounds (caller).
            let wv = _mm512_set1_ps(unsafe { *w.add(r * 9 + p) });
            acc0[r] = _mm512_fmadd_ps(wv, x0[p], acc0[r]);
            acc1[r] = _mm512_fmadd_ps(wv, x1[p], acc1[r]);
        }
    }
    let zero = _mm512_setzero_ps();
    for r in 0..R {
        if relu {
            // max_ps returns its second operand when the first is NaN: 0, as f32::max does.
            acc0[r] = _mm512_max_ps(acc0[r], zero);
            acc1[r] = _mm512_max_ps(acc1[r], zero);
        }
        // SAFETY: row r of y, columns < cols, is in bounds and overlaps no input (caller);
        // masked stores write only those columns.
        unsafe {
            let yr = y.add(r * y_stride);
            _mm512_mask_storeu_ps(yr, m0, acc0[r]);
            _mm512_mask_storeu_ps(yr.wrapping_add(16), m1, acc1[r]);
        }
    }
}

/// A 3x3, stride-1 convolution of one input channel, direct (no im2col):
/// `y[k][oy][ox] = act(bias[k] + sum_{i, j} w[k][3 i + j] * xp[oy + i][ox + j])` for K
/// filters and an output of `oh` x `ow` (ow <= 32), where `xp` is the input plane already
/// padded, rows [`CONV3_ROW`] floats apart. The same bits as im2col and [`gemm_bcast`].
///
/// # Safety
/// AVX-512F must be available. `xp` holds (oh + 2) x [`CONV3_ROW`] floats, `w` K x 9,
/// `bias` K, `y` K x oh x ow, not overlapping the inputs; 1 <= ow <= 32.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv3x3_plane(
    xp: *const f32,
    w: *const f32,
    bias: *const f32,
    k: usize,
    oh: usize,
    ow: usize,
    relu: bool,
    y: *mut f32,
) {
    let plane = oh * ow;
    for oy in 0..oh {
        let mut r = 0;
        // SAFETY: rows oy..oy + 3 of xp, filters r.., and output row oy of each filter's
        // plane are in bounds (caller: xp has oh + 2 rows, w and bias K filters, y K
        // planes of oh x ow).
        unsafe {
            let x_row = xp.add(oy * CONV3_ROW);
            while r + 4 <= k {
                let y_at = y.add(r * plane + oy * ow);
                conv3_rows::<4>(x_row, ow, w.add(r * 9), bias.add(r), relu, y_at, plane);
                r += 4;
            }
            while r < k {
                let y_at = y.add(r * plane + oy * ow);
                conv3_rows::<1>(x_row, ow, w.add(r * 9), bias.add(r), relu, y_at, plane);
                r += 1;
            }
        }
    }
}

/// Panics unless `e_len` >= ceil(n / 2) and `o_len` >= floor(n / 2): the even and odd
/// halves of `n` interleaved values. Inlined: it runs once per image row, and as a call it
/// took about 5% of the Winograd transforms' time.
#[inline(always)]
fn assert_halves(what: &str, n: usize, e_len: usize, o_len: usize) {
    assert!(
        e_len >= n.div_ceil(2) && o_len >= n / 2,
        "{what}: halves of {e_len} and {o_len} values for {n}"
    );
}

/// The masks of a chunk of `lanes` (1..=16) interleaved values: of the chunk, of its even
/// half (ceil(lanes / 2) values) and of its odd half (floor(lanes / 2)).
#[inline(always)]
fn pair_masks(lanes: usize) -> (__mmask16, __mmask16, __mmask16) {
    (
        masks(lanes).0,
        masks(lanes.div_ceil(2)).0,
        masks(lanes / 2).0,
    )
}

/// `e[t] = src[2 t]`, `o[t] = src[2 t + 1]` for the `src.len()` values of `src` (`e` gets
/// the last one when there is an odd number): 16 values per masked load, split by two
/// permutes. Pure data movement,
/// so the same result as the scalar loop it replaces.
///
/// # Safety
/// AVX-512F must be available.
///
/// # Panics
/// If `e` has fewer than ceil(n / 2) or `o` fewer than floor(n / 2) values, n = `src.len()`.
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn deinterleave(src: &[f32], e: &mut [f32], o: &mut [f32]) {
    let n = src.len();
    assert_halves("deinterleave", n, e.len(), o.len());
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    for c0 in (0..n).step_by(16) {
        let (m_in, m_e, m_o) = pair_masks(16.min(n - c0));
        // SAFETY: the masks enable src[c0 .. c0 + lanes] (< n), e[c0/2 .. (c0 + lanes)/2
        // rounded up] and o[c0/2 .. (c0 + lanes)/2]: in bounds (asserted). Masked-off
        // lanes touch no memory; unaligned accesses need no alignment.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m_in, src.as_ptr().add(c0));
            let h = c0 / 2;
            _mm512_mask_storeu_ps(e.as_mut_ptr().add(h), m_e, _mm512_permutexvar_ps(even, v));
            _mm512_mask_storeu_ps(o.as_mut_ptr().add(h), m_o, _mm512_permutexvar_ps(odd, v));
        }
    }
}

/// `dst[2 t] = e[t]`, `dst[2 t + 1] = o[t]` over `dst`'s length: the inverse of
/// [`deinterleave`], 16 values per masked store.
///
/// # Safety
/// AVX-512F must be available.
///
/// # Panics
/// If `e` has fewer than ceil(n / 2) or `o` fewer than floor(n / 2) values, n = `dst.len()`.
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn interleave(e: &[f32], o: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    assert_halves("interleave", n, e.len(), o.len());
    // Lane 2 t takes e[t] (index t of the first operand), lane 2 t + 1 takes o[t] (index
    // 16 + t, the second).
    let idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    for c0 in (0..n).step_by(16) {
        let (m_out, m_e, m_o) = pair_masks(16.min(n - c0));
        // SAFETY: as in `deinterleave`, with the roles of loads and stores exchanged.
        unsafe {
            let h = c0 / 2;
            let ev = _mm512_maskz_loadu_ps(m_e, e.as_ptr().add(h));
            let ov = _mm512_maskz_loadu_ps(m_o, o.as_ptr().add(h));
            let v = _mm512_permutex2var_ps(ev, idx, ov);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(c0), m_out, v);
        }
    }
}

/// The 16 x 16 transpose of the rows `r`: lane j of result i is lane i of `r[j]`. Four
/// stages of shuffles (pairs, quads, 128-bit halves, 256-bit halves).
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let b = 4 * i;
        u[b] = _mm512_shuffle_ps::<0b01_00_01_00>(t[b], t[b + 2]);
        u[b + 1] = _mm512_shuffle_ps::<0b11_10_11_10>(t[b], t[b + 2]);
        u[b + 2] = _mm512_shuffle_ps::<0b01_00_01_00>(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_shuffle_ps::<0b11_10_11_10>(t[b + 1], t[b + 3]);
    }
    for h in 0..2 {
        let b = 8 * h;
        for i in 0..4 {
            t[b + i] = _mm512_shuffle_f32x4::<0x88>(u[b + i], u[b + 4 + i]);
            t[b + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(u[b + i], u[b + 4 + i]);
        }
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        out[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
        out[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
    }
    out
}

/// `dst[j][i] = src[i][j]` for `src` `rows` x `cols` and `dst` `cols` x `rows`, row-major
/// with row strides `ld_src` and `ld_dst`, in 16 x 16 blocks of vectors, masked at the
/// edges. Pure data movement: the same result as the scalar loop.
///
/// # Safety
/// AVX-512F must be available.
///
/// # Panics
/// If a stride is shorter than its rows or a slice does not hold its matrix.
#[target_feature(enable = "avx512f")]
pub unsafe fn transpose(
    src: &[f32],
    ld_src: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    ld_dst: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        ld_src >= cols
            && ld_dst >= rows
            && src.len() >= (rows - 1) * ld_src + cols
            && dst.len() >= (cols - 1) * ld_dst + rows,
        "transpose: buffers do not hold {rows} x {cols}"
    );
    for i0 in (0..rows).step_by(16) {
        let h = 16.min(rows - i0);
        for j0 in (0..cols).step_by(16) {
            let w = 16.min(cols - j0);
            let (m_in, m_out) = (masks(w).0, masks(h).0);
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate().take(h) {
                // SAFETY: the mask enables src[(i0 + i) ld_src + j0 ..][..w], inside src
                // (asserted); masked-off lanes touch no memory, unaligned loads need no
                // alignment.
                *v = unsafe {
                    _mm512_maskz_loadu_ps(m_in, src.as_ptr().add((i0 + i) * ld_src + j0))
                };
            }
            let t = transpose_16x16(r);
            for (j, v) in t.iter().enumerate().take(w) {
                // SAFETY: as above, dst[(j0 + j) ld_dst + i0 ..][..h].
                unsafe {
                    _mm512_mask_storeu_ps(dst.as_mut_ptr().add((j0 + j) * ld_dst + i0), m_out, *v)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_shuffle_network_sums_each_vector_in_the_tree_order_of_lane_sum() {
        if !super::super::Simd::Avx512.supported() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let mut r = Rng::new(7);
        // Values of very different magnitudes, so any other order of the adds would round
        // differently somewhere.
        let lanes: Vec<[f32; 16]> = (0..16)
            .map(|_| {
                std::array::from_fn(|_| (r.normal() * 10f64.powi(r.below(12) as i32 - 6)) as f32)
            })
            .collect();
        // SAFETY: AVX-512F is available (checked above); loads read 16 floats of an array.
        let got = unsafe {
            let v: [__m512; 16] = std::array::from_fn(|q| _mm512_loadu_ps(lanes[q].as_ptr()));
            lane_sums_16(&v)
        };
        for q in 0..16 {
            assert_eq!(got[q].to_bits(), lane_sum(lanes[q]).to_bits(), "vector {q}");
        }
    }

    #[test]
    fn interleave_and_deinterleave_move_every_value_to_its_place_for_every_length() {
        if !super::super::Simd::Avx512.supported() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        for n in 0..50usize {
            let src: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            // One spare value after each half: a write past its place would show there.
            let (mut e, mut o) = (vec![-1.0; n.div_ceil(2) + 1], vec![-1.0; n / 2 + 1]);
            // SAFETY: AVX-512F is available (checked above).
            unsafe { deinterleave(&src, &mut e, &mut o) };
            for t in 0..n.div_ceil(2) {
                assert_eq!(e[t], src[2 * t], "n {n}, e[{t}]");
            }
            for t in 0..n / 2 {
                assert_eq!(o[t], src[2 * t + 1], "n {n}, o[{t}]");
            }
            assert_eq!(
                (e[n.div_ceil(2)], o[n / 2]),
                (-1.0, -1.0),
                "n {n}: wrote past a half"
            );
            let mut back = vec![-1.0; n + 1];
            // SAFETY: as above.
            unsafe { interleave(&e, &o, &mut back[..n]) };
            assert_eq!(&back[..n], &src[..], "n {n}");
            assert_eq!(back[n], -1.0, "n {n}: wrote past the row");
        }
    }
}
