//! Single-precision matrix multiply, `C = A * B + beta * C`, on matrix views.
//!
//! Dimension letters: C is M x N, A is M x K, B is K x N. The operands are [`MatRef`]s (a
//! slice with its shape and strides, so a transposed operand is a view, [`MatRef::t`]) and
//! C is a [`MatMut`]; each product checks once that the shapes agree, and the views'
//! constructors have already checked that their slices hold every element.
//!
//! The fast path, chosen at run time ([`super::simd`]): our own AVX-512 kernels
//! ([`super::avx512`]) on CPUs that have AVX-512F, the same kernels on 8-lane vectors
//! ([`super::avx2`], the same bits) on CPUs with AVX2 and FMA, otherwise the
//! `matrixmultiply` crate (packed operands, cache blocking, portable code;
//! [`gemm_portable`] forces it). Each product has an `_on` form that takes the
//! [`Simd`] family to run, so the tests compare every family this CPU has.
//! [`gemm_naive`] is the triple loop they are all tested against.
//!
//! [`par_gemm`] splits C into fixed tiles (one kernel call each) run on rayon's threads.
//!
//! Determinism: every element of C is a sum over k in an order that depends only on K, not
//! on M, N or how C is split into tiles, so results are bit-identical whatever the thread
//! count.

use rayon::prelude::*;

pub use super::mat::{Dims, MatMut, MatPtr, MatPtrMut, MatRef};
use super::simd;
pub use super::Simd;

/// The size of `C = A * B`, from the operands' shapes.
///
/// # Panics
/// Unless A is M x K, B is K x N and C is M x N; the message names `what` and the shapes.
fn dims(what: &str, a: &MatRef, b: &MatRef, c: &MatMut) -> Dims {
    assert!(
        a.cols() == b.rows() && a.rows() == c.rows() && b.cols() == c.cols(),
        "{what}: A is {a}, B is {b}, C is {} x {}; they must be M x K, K x N and M x N",
        c.rows(),
        c.cols()
    );
    Dims {
        m: a.rows(),
        n: b.cols(),
        k: a.cols(),
    }
}

/// `C[M x N] = A[M x K] * B[K x N] + beta * C`, on one thread.
///
/// # Panics
/// If the shapes disagree.
pub fn gemm(a: MatRef, b: MatRef, beta: f32, c: MatMut) {
    gemm_on(simd(), a, b, beta, c)
}

/// [`gemm`] on the kernels of `simd` (or the best family below it that this CPU has).
///
/// # Panics
/// If the shapes disagree.
pub fn gemm_on(simd: Simd, a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    let d = dims("gemm", &a, &b, &c);
    if d.m == 0 || d.n == 0 {
        return;
    }
    // SAFETY: each view holds every element of its shape (the views' invariant) and the
    // shapes are d's (checked by `dims`); C is borrowed mutably, so it overlaps neither
    // A nor B.
    unsafe { gemm_raw(simd, d, a.as_ptr(), b.as_ptr(), beta, c.as_ptr()) }
}

/// [`gemm`] into the first N columns of each row of `c`, which has N' >= N: the columns
/// after them are left as they are. For a product whose last columns nobody reads
/// (Winograd's spare slots); each element written is the one [`gemm`] writes.
///
/// # Panics
/// Unless A is M x K, B is K x N and C is M x N' with N <= N'.
pub fn gemm_leading_cols(a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    assert!(
        a.cols() == b.rows() && a.rows() == c.rows() && b.cols() <= c.cols(),
        "gemm_leading_cols: A is {a}, B is {b}, C is {} x {}; they must be M x K, K x N and \
         M x N' with N <= N'",
        c.rows(),
        c.cols()
    );
    let d = Dims {
        m: a.rows(),
        n: b.cols(),
        k: a.cols(),
    };
    if d.m == 0 || d.n == 0 {
        return;
    }
    // SAFETY: A and B hold every element of their shapes (the views' invariant) and the
    // shapes are d's (checked); C's pointer has a row stride of N' >= N, so element (i, j),
    // i < M, j < N, lies inside C's M x N'; C is borrowed mutably, so it overlaps neither
    // A nor B.
    unsafe { gemm_raw(simd(), d, a.as_ptr(), b.as_ptr(), beta, c.as_ptr()) }
}

/// `Y[M x N] = max(W[M x K] * X[K x N] + bias, 0)` (ReLU only if `relu`), with `bias[i]`
/// added to every element of row i, on one thread: a convolution's forward pass with its
/// bias and activation. On AVX-512 the bias is the accumulators' starting value and ReLU is
/// applied as they are stored, so Y is written once instead of three times (fill with the
/// bias, accumulate the product, apply ReLU), which is what [`gemm_bias_relu_portable`]
/// does: the same bits when N > 1, where its product also runs on the broadcast kernel.
/// Likewise on AVX2+FMA.
///
/// # Panics
/// If the shapes disagree or `bias` has fewer than M values.
pub fn gemm_bias_relu(w: MatRef, x: MatRef, bias: &[f32], relu: bool, y: MatMut) {
    gemm_bias_relu_on(simd(), w, x, bias, relu, y)
}

/// [`gemm_bias_relu`] on the kernels of `simd` (or the best family below it that this CPU
/// has).
///
/// # Panics
/// As [`gemm_bias_relu`].
pub fn gemm_bias_relu_on(
    simd: Simd,
    w: MatRef,
    x: MatRef,
    bias: &[f32],
    relu: bool,
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))] mut y: MatMut,
) {
    let d = dims("gemm_bias_relu", &w, &x, &y);
    assert!(
        bias.len() >= d.m,
        "gemm_bias_relu: bias has {} < {} values",
        bias.len(),
        d.m
    );
    #[cfg(target_arch = "x86_64")]
    if d.m > 0 && d.n > 0 && d.k > 0 && x.rows_contiguous() {
        let start = super::avx512::Start::Bias(bias.as_ptr());
        let (wp, xp, yp) = (w.as_ptr(), x.as_ptr(), y.as_ptr());
        // Both kernels' instructions are available when `or_below` returns their family
        // (it returns only families this CPU supports), and X's rows are contiguous (just
        // checked). The views hold every element of their shapes, which are d's (`dims`);
        // the bias has M values (asserted); Y is borrowed mutably, so it overlaps no input.
        match simd.or_below() {
            // SAFETY: as above, AVX-512F available.
            Simd::Avx512 => unsafe {
                return super::avx512::gemm_bcast(d, wp, xp, yp, start, relu);
            },
            // SAFETY: as above, AVX2 and FMA available.
            Simd::Avx2 => unsafe {
                return super::avx2::gemm_bcast(d, wp, xp, yp, start, relu);
            },
            Simd::Portable => {}
        }
    }
    gemm_bias_relu_passes(simd, w, x, bias, relu, y)
}

/// [`gemm_bias_relu`] in three passes on the portable path (the reference it is tested
/// against, and the path on CPUs without AVX2).
pub fn gemm_bias_relu_portable(w: MatRef, x: MatRef, bias: &[f32], relu: bool, y: MatMut) {
    gemm_bias_relu_passes(Simd::Portable, w, x, bias, relu, y)
}

/// [`gemm_bias_relu`] in three passes (fill with the bias, accumulate the product on the
/// kernels of `simd`, apply ReLU).
pub fn gemm_bias_relu_passes(
    simd: Simd,
    w: MatRef,
    x: MatRef,
    bias: &[f32],
    relu: bool,
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))] mut y: MatMut,
) {
    let d = dims("gemm_bias_relu", &w, &x, &y);
    assert!(
        bias.len() >= d.m,
        "gemm_bias_relu: bias has {} < {} values",
        bias.len(),
        d.m
    );
    for (row, &b) in y.as_mut_slice().chunks_mut(d.n.max(1)).zip(bias) {
        row.fill(b);
    }
    gemm_on(simd, w, x, 1.0, y.rb());
    if relu {
        y.as_mut_slice().iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// [`gemm`] on the `matrixmultiply` path whatever the CPU: the portable fallback, kept
/// callable so that tests cover it on machines where the AVX-512 path is chosen.
pub fn gemm_portable(a: MatRef, b: MatRef, beta: f32, c: MatMut) {
    gemm_on(Simd::Portable, a, b, beta, c)
}

/// `C = A * B + beta * C` by `matrixmultiply`.
///
/// # Safety
/// For i < m, j < n, p < k, A(i, p), B(p, j) and C(i, j) must lie inside the allocations
/// their pointers point into, and C must not overlap A or B.
unsafe fn sgemm(d: Dims, a: MatPtr, b: MatPtr, beta: f32, c: MatPtrMut) {
    // Strides fit in isize: each is at most an allocation's length.
    let (rsa, csa) = (a.row_stride as isize, a.col_stride as isize);
    let (rsb, csb) = (b.row_stride as isize, b.col_stride as isize);
    // SAFETY: matrixmultiply reads A(i, p) at `a + i*rsa + p*csa`, B(p, j) likewise and
    // writes C(i, j) at `c + i*ldc + j`: in bounds and not overlapping, by the caller.
    unsafe {
        matrixmultiply::sgemm(
            d.m,
            d.k,
            d.n,
            1.0,
            a.ptr,
            rsa,
            csa,
            b.ptr,
            rsb,
            csb,
            beta,
            c.ptr,
            c.row_stride as isize,
            1,
        );
    }
}

/// The one place a product is dispatched to a kernel, by the family `simd` (lowered to
/// one this CPU has) and the operands' strides: A and B both contiguous along K -> the dot
/// kernel; B's rows contiguous -> the broadcast kernel; anything else, a beta other than 0
/// or 1, or the portable family -> `matrixmultiply`.
///
/// # Safety
/// For i < m, j < n, p < k, A(i, p), B(p, j) and C(i, j) must lie inside the allocations
/// their pointers point into, and C must not overlap A or B.
unsafe fn gemm_raw(simd: Simd, d: Dims, a: MatPtr, b: MatPtr, beta: f32, c: MatPtrMut) {
    // Off x86-64 every family is the portable one.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    #[cfg(target_arch = "x86_64")]
    if (beta == 0.0 || beta == 1.0) && d.k > 0 {
        use super::avx512::Start;
        use super::{avx2, avx512};
        let beta_one = beta == 1.0;
        let simd = simd.or_below();
        if simd != Simd::Portable && a.col_stride == 1 && b.row_stride == 1 {
            // SAFETY: the family's instructions are available (`or_below`); A's rows and
            // B^T's rows (B's columns) are contiguous (checked); bounds and overlap by the
            // caller.
            return unsafe {
                match simd {
                    Simd::Avx512 => avx512::gemm_dot(d, a, b.t(), c, beta_one),
                    _ => avx2::gemm_dot(d, a, b.t(), c, beta_one),
                }
            };
        }
        if simd != Simd::Portable && b.col_stride == 1 {
            let start = if beta_one { Start::C } else { Start::Zero };
            // SAFETY: the family's instructions are available (`or_below`) and B's rows
            // are contiguous (checked); K > 0 (checked); bounds and overlap by the caller.
            return unsafe {
                match simd {
                    Simd::Avx512 => avx512::gemm_bcast(d, a, b, c, start, false),
                    _ => avx2::gemm_bcast(d, a, b, c, start, false),
                }
            };
        }
    }
    // SAFETY: the caller's guarantees are sgemm's contract.
    unsafe { sgemm(d, a, b, beta, c) }
}

/// Largest tile of C that one parallel task of [`par_gemm`] computes: rows, columns.
const TILE_M: usize = 256;
const TILE_N: usize = 256;
/// Below this many multiply-adds a product runs as one task.
const PAR_MIN_WORK: usize = 1 << 18;
/// A tile should carry at least this many FLOPs; narrower tiles are widened.
const TILE_MIN_FLOPS: usize = 1 << 20;

/// The tile size `(rows, cols)` of C that [`par_gemm`] splits an M x N x K product into.
///
/// It depends only on the shape, never on the number of threads. Column splits fall on
/// whole tiles of the AVX-512 broadcast kernel (32 columns), so no task computes a
/// half-empty vector that a single task would not. A row split halves M exactly (to a
/// multiple of 4), even where that leaves each half a partial 12-row tile: two equal halves
/// finish together, while whole 12-row tiles gave report 1's Dense forward pass at batch
/// 32 (M = 128) tasks of 72 and 56 rows, and the pass took as long as the 72.
fn tile_plan(m: usize, n: usize, k: usize) -> (usize, usize) {
    if m * n * k < PAR_MIN_WORK {
        return (m, n);
    }
    let mut mb = m.min(TILE_M);
    let mut nb = if n > TILE_N {
        TILE_N
    } else if m <= TILE_M && n >= 64 {
        // One row tile only: halve N (to whole 32-column kernel tiles) so two tasks can run.
        n.div_ceil(2).div_ceil(32) * 32
    } else {
        if (24..=TILE_M).contains(&m) {
            // Too narrow to split by columns: halve M.
            mb = m.div_ceil(2).div_ceil(4) * 4;
        }
        n
    };
    while nb < n && 2 * mb * nb * k < TILE_MIN_FLOPS {
        nb *= 2;
    }
    (mb, nb.min(n))
}

/// C's base pointer, shared by the tasks of [`par_gemm`]; each task writes a disjoint tile.
#[derive(Clone, Copy)]
struct TilePtr(MatPtrMut);
// SAFETY: the pointer is only dereferenced (by the kernels) inside disjoint tiles of C,
// so no two threads touch the same element, and C outlives the parallel loop.
unsafe impl Send for TilePtr {}
// SAFETY: as above.
unsafe impl Sync for TilePtr {}
impl TilePtr {
    fn get(self) -> MatPtrMut {
        self.0
    }
}

/// [`gemm`] with C split into fixed tiles (see `tile_plan`) computed on rayon's threads.
///
/// Both kernels (ours and matrixmultiply, which sums each element of C over k in blocks of a
/// fixed size with the same micro-kernel whatever the tile) compute an element of C in an
/// order that depends only on K, so the result is bit-identical to [`gemm`] and to any
/// thread count (tested).
///
/// # Panics
/// If the shapes disagree.
pub fn par_gemm(a: MatRef, b: MatRef, beta: f32, c: MatMut) {
    par_gemm_on(simd(), a, b, beta, c)
}

/// [`par_gemm`] on the kernels of `simd` (or the best family below it that this CPU has).
///
/// # Panics
/// If the shapes disagree.
pub fn par_gemm_on(simd: Simd, a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    let d = dims("par_gemm", &a, &b, &c);
    if d.m == 0 || d.n == 0 {
        return;
    }
    let Dims { m, n, k } = d;
    let (mb, nb) = tile_plan(m, n, k);
    if mb >= m && nb >= n {
        return gemm_on(simd, a, b, beta, c);
    }
    let (tiles_m, tiles_n) = (m.div_ceil(mb), n.div_ceil(nb));
    let cp = TilePtr(c.as_ptr());
    (0..tiles_m * tiles_n).into_par_iter().for_each(|t| {
        let (r0, c0) = ((t / tiles_n) * mb, (t % tiles_n) * nb);
        let (rows, cols) = (mb.min(m - r0), nb.min(n - c0));
        let (a_t, b_t) = (a.block(r0, 0, rows, k), b.block(0, c0, k, cols));
        let tile = Dims {
            m: rows,
            n: cols,
            k,
        };
        // SAFETY: `a_t` and `b_t` are views (bounds kept by `block`) of shapes rows x k
        // and k x cols. The tile writes C(r0 + i, c0 + j) for i < rows, j < cols: inside
        // C, since r0 + rows <= m and c0 + cols <= n, and (r0, c0) is an element of C.
        // Tiles are disjoint, so no element of C is written by two tasks, and `c` is
        // borrowed mutably for the whole loop, so it overlaps neither A nor B.
        unsafe {
            let c_t = cp.get().block(r0, c0);
            gemm_raw(simd, tile, a_t.as_ptr(), b_t.as_ptr(), beta, c_t);
        }
    });
}

/// Sum in a fixed order: 16 interleaved partial sums (lane l takes the elements with index
/// = l mod 16) added pairwise, then the tail in order; the order depends only on the
/// length. A plain `iter().sum()` is one chain of dependent additions (4 cycles each), which
/// made the bias gradient the slowest part of a convolution's backward pass; 16 chains
/// vectorise.
pub fn sum(a: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let chunks = a.chunks_exact(L);
    let rest = chunks.remainder();
    for x in chunks {
        for l in 0..L {
            acc[l] += x[l];
        }
    }
    rest.iter().fold(pairwise_sum(acc), |s, x| s + x)
}

/// The 16 partial sums of [`sum`] added pairwise: lane l plus lane l+8, then
/// l+4, l+2, l+1.
fn pairwise_sum(mut acc: [f32; 16]) -> f32 {
    let mut w = acc.len();
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    acc[0]
}

/// The reference: `C = A * B + beta * C` by the definition
/// `C[i][j] = sum_p A[i][p] * B[p][j]`, accumulated in f64.
pub fn gemm_naive(a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    let Dims { m, n, k } = dims("gemm_naive", &a, &b, &c);
    let c = c.as_mut_slice();
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += f64::from(a.get(i, p)) * f64::from(b.get(p, j));
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta * c[i * n + j]
            };
            c[i * n + j] = s as f32 + old;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..len).map(|_| r.normal() as f32).collect()
    }

    /// The `rows` x `cols` operand in `data`: stored as such, or, if `t`, stored
    /// `cols` x `rows` and used transposed.
    fn op(data: &[f32], rows: usize, cols: usize, t: bool) -> MatRef<'_> {
        if t {
            MatRef::new(data, cols, rows).t()
        } else {
            MatRef::new(data, rows, cols)
        }
    }

    #[test]
    #[should_panic(expected = "gemm: A is 2 x 3 matrix (strides 3, 1), B is 2 x 2 matrix")]
    fn shapes_that_disagree_are_refused_with_the_shapes_in_the_message() {
        let (a, b, mut c) = ([0.0; 6], [0.0; 4], [0.0; 4]);
        gemm(
            MatRef::new(&a, 2, 3),
            MatRef::new(&b, 2, 2),
            0.0,
            MatMut::new(&mut c, 2, 2),
        );
    }

    /// The product into a wider C writes the bits `gemm` writes into C's leading columns and
    /// leaves the others as they were, for fresh and accumulated sums (beta 0 and 1), over
    /// widths that end a 16-column tile exactly, in its first half and in its second.
    #[test]
    fn a_product_into_leading_columns_writes_those_alone() {
        let mut r = crate::rng::Rng::new(5);
        for (m, k, n, wide) in [
            (7, 9, 8, 12),
            (13, 32, 56, 64),
            (5, 3, 21, 40),
            (6, 4, 16, 17),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| r.normal() as f32).collect();
            let b: Vec<f32> = (0..k * wide).map(|_| r.normal() as f32).collect();
            let start: Vec<f32> = (0..m * wide).map(|_| r.normal() as f32).collect();
            let (am, bm) = (
                MatRef::new(&a, m, k),
                MatRef::new(&b, k, wide).block(0, 0, k, n),
            );
            for beta in [0.0, 1.0] {
                let mut got = start.clone();
                gemm_leading_cols(am, bm, beta, MatMut::new(&mut got, m, wide));
                let mut want: Vec<f32> = (0..m * n).map(|i| start[i / n * wide + i % n]).collect();
                gemm(am, bm, beta, MatMut::new(&mut want, m, n));
                for i in 0..m {
                    let row = &got[i * wide..(i + 1) * wide];
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&row[..n]), bits(&want[i * n..(i + 1) * n]), "{m}x{n}");
                    assert_eq!(bits(&row[n..]), bits(&start[i * wide + n..(i + 1) * wide]));
                }
            }
        }
    }

    #[test]
    fn two_by_two_by_hand() {
        // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0.0; 4];
        let (am, bm) = (MatRef::new(&a, 2, 2), MatRef::new(&b, 2, 2));
        gemm(am, bm, 0.0, MatMut::new(&mut c, 2, 2));
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        // A^T * B = [1 3; 2 4] * [5 6; 7 8] = [26 30; 38 44]
        gemm(am.t(), bm, 0.0, MatMut::new(&mut c, 2, 2));
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
    }

    fn close(a: &[f32], b: &[f32], k: usize) {
        let tol = 1e-5 * (k as f32).sqrt() * 4.0;
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every kernel family this CPU has (AVX-512, AVX2+FMA, portable), one thread and
        /// tiled over threads, against the definition.
        #[test]
        fn fast_gemm_equals_naive(m in 1usize..80, n in 1usize..80, k in 1usize..300,
                                  ta in any::<bool>(), tb in any::<bool>(), beta in prop::sample::select(vec![0.0f32, 1.0]),
                                  seed in any::<u64>()) {
            let (a, b) = (random(m * k, seed), random(k * n, seed ^ 1));
            let (a, b) = (op(&a, m, k, ta), op(&b, k, n, tb));
            let c0 = random(m * n, seed ^ 2);
            let mut want = c0.clone();
            gemm_naive(a, b, beta, MatMut::new(&mut want, m, n));
            for simd in Simd::all_supported() {
                let mut got = c0.clone();
                gemm_on(simd, a, b, beta, MatMut::new(&mut got, m, n));
                close(&got, &want, k);
                let mut par = c0.clone();
                par_gemm_on(simd, a, b, beta, MatMut::new(&mut par, m, n));
                close(&par, &want, k);
            }
            let mut portable = c0.clone();
            gemm_portable(a, b, beta, MatMut::new(&mut portable, m, n));
            close(&portable, &want, k);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn gemv_equals_naive(o in 1usize..300, i in 1usize..2000, beta in prop::sample::select(vec![0.0f32, 1.0]),
                             seed in any::<u64>()) {
            let a = random(o * i, seed);
            let x = random(i, seed ^ 1);
            let y0 = random(o, seed ^ 2);
            let mut want = y0.clone();
            let (am, xm) = (MatRef::new(&a, o, i), MatRef::new(&x, i, 1));
            gemm_naive(am, xm, beta, MatMut::new(&mut want, o, 1));
            for simd in Simd::all_supported() {
                let mut got = y0.clone();
                gemm_on(simd, am, xm, beta, MatMut::new(&mut got, o, 1));
                close(&got, &want, i);
            }
        }

        #[test]
        fn tiled_par_gemm_equals_naive_on_large_shapes(m in 1usize..600, n in 1usize..600, k in 1usize..1200,
                                  ta in any::<bool>(), tb in any::<bool>(), beta in prop::sample::select(vec![0.0f32, 1.0]),
                                  seed in any::<u64>()) {
            let (a, b) = (random(m * k, seed), random(k * n, seed ^ 1));
            let (a, b) = (op(&a, m, k, ta), op(&b, k, n, tb));
            let c0 = random(m * n, seed ^ 2);
            let mut want = c0.clone();
            gemm_naive(a, b, beta, MatMut::new(&mut want, m, n));
            for simd in Simd::all_supported() {
                let mut par = c0.clone();
                par_gemm_on(simd, a, b, beta, MatMut::new(&mut par, m, n));
                close(&par, &want, k);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The AVX2 kernels compute each element by the same operations in the same order
        /// as the AVX-512 ones, so the two give the same bits (broadcast kernel with every
        /// start, dot kernel, the matrix-vector product, K across the blocks of both).
        /// Runs only on a CPU with both.
        #[test]
        fn avx2_and_avx512_kernels_give_the_same_bits(m in 1usize..70, n in 1usize..70,
                k in 1usize..700, ta in any::<bool>(), tb in any::<bool>(),
                beta in prop::sample::select(vec![0.0f32, 1.0]), relu in any::<bool>(),
                seed in any::<u64>()) {
            if !(Simd::Avx512.supported() && Simd::Avx2.supported()) {
                return Ok(());
            }
            let (a, b) = (random(m * k, seed), random(k * n, seed ^ 1));
            let (am, bm) = (op(&a, m, k, ta), op(&b, k, n, tb));
            let c0 = random(m * n, seed ^ 2);
            let run = |simd| {
                let mut c = c0.clone();
                par_gemm_on(simd, am, bm, beta, MatMut::new(&mut c, m, n));
                let mut fused = vec![f32::NAN; m * n];
                let bm = MatRef::new(&b, k, n);
                gemm_bias_relu_on(simd, MatRef::new(&a, m, k), bm, &c0[..m], relu,
                                  MatMut::new(&mut fused, m, n));
                let mut y = c0[..m].to_vec();
                let x = MatRef::new(&b[..k], k, 1);
                gemm_on(simd, MatRef::new(&a, m, k), x, beta, MatMut::new(&mut y, m, 1));
                (bits(&c), bits(&fused), bits(&y))
            };
            prop_assert_eq!(run(Simd::Avx512), run(Simd::Avx2));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The fused kernel against fill + product + ReLU on each SIMD family: bit-equal,
        /// since both start each element's chain of FMAs from the bias and add the products
        /// in the same order (K up to 600 crosses the kernels' blocks of 288 and 576 steps).
        #[test]
        fn fused_bias_and_relu_equal_the_three_passes(m in 1usize..40, n in 1usize..100,
                k in 1usize..600, relu in any::<bool>(), seed in 0u64..1000) {
            let w = random(m * k, seed);
            let x = random(k * n, seed + 1);
            let bias = random(m, seed + 2);
            let (wm, xm) = (MatRef::new(&w, m, k), MatRef::new(&x, k, n));
            let mut reference = vec![0.0; m * n];
            gemm_naive(wm, xm, 0.0, MatMut::new(&mut reference, m, n));
            for simd in Simd::all_supported() {
                let mut fused = vec![f32::NAN; m * n];
                let mut passes = vec![f32::NAN; m * n];
                gemm_bias_relu_on(simd, wm, xm, &bias, relu, MatMut::new(&mut fused, m, n));
                gemm_bias_relu_passes(simd, wm, xm, &bias, relu, MatMut::new(&mut passes, m, n));
                if simd != Simd::Portable && n > 1 {
                    // Same bits: the passes' product also runs the broadcast kernel (at
                    // N = 1 it takes the dot kernel, which sums in another order).
                    prop_assert_eq!(bits(&fused), bits(&passes));
                }
                // And the fused result against the definition.
                for i in 0..m {
                    for j in 0..n {
                        let mut v = reference[i * n + j] + bias[i];
                        if relu { v = v.max(0.0); }
                        let got = fused[i * n + j];
                        prop_assert!((got - v).abs() <= 1e-4 * (1.0 + (k as f32).sqrt()),
                            "{:?} ({}, {}): {} vs {}", simd, i, j, got, v);
                    }
                }
            }
        }
    }

    #[test]
    fn sum_by_hand_and_against_f64() {
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(sum(&[1.5]), 1.5);
        // 1 + 2 + ... + 40 = 820, exact in f32 in any order.
        let v: Vec<f32> = (1..=40).map(|i| i as f32).collect();
        assert_eq!(sum(&v), 820.0);
        let r = random(1000, 3);
        let exact: f64 = r.iter().map(|&x| f64::from(x)).sum();
        assert!(
            (f64::from(sum(&r)) - exact).abs() < 1e-3,
            "{} vs {exact}",
            sum(&r)
        );
    }

    #[test]
    fn tile_plan_covers_c_and_ignores_threads() {
        for &(m, n, k) in &[
            (32, 128, 3136),
            (128, 3136, 32),
            (32, 3136, 128),
            (1024, 1024, 1024),
            (16, 25088, 9),
            (3, 5, 7),
        ] {
            let (mb, nb) = tile_plan(m, n, k);
            assert!(
                mb >= 1 && mb <= m && nb >= 1 && nb <= n,
                "{m}x{n}x{k}: {mb}x{nb}"
            );
        }
        assert_eq!(tile_plan(32, 128, 3136), (32, 64));
        assert_eq!(tile_plan(1024, 1024, 1024), (256, 256));
        // Dense forward at batch 32 (Y^T = W X^T): two tasks of 64 rows.
        assert_eq!(tile_plan(128, 32, 3136), (64, 32));
    }

    #[test]
    fn gemm_paths_are_bit_identical_in_pools_of_1_2_and_3_threads() {
        // Shapes of the layers (Dense fwd, dW, dX; conv), K > 1000, ragged edges, M = 1.
        let shapes = [
            (32, 128, 3136, false, true),
            (128, 3136, 32, true, false),
            (32, 3136, 128, false, false),
            (16, 2000, 9, false, false),
            (16, 9, 1500, false, true),
            (300, 517, 1100, true, true),
            (1, 128, 3136, false, true),
        ];
        // On every SIMD family this CPU has.
        let run = |simd: Simd, threads: usize| -> Vec<Vec<f32>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut out = Vec::new();
                for (s, &(m, n, k, ta, tb)) in shapes.iter().enumerate() {
                    let a = random(m * k, s as u64);
                    let b = random(k * n, s as u64 + 100);
                    let mut c = random(m * n, s as u64 + 200);
                    let (am, bm) = (op(&a, m, k, ta), op(&b, k, n, tb));
                    par_gemm_on(simd, am, bm, 1.0, MatMut::new(&mut c, m, n));
                    out.push(c);
                    if tb && !ta {
                        // y = B x with B stored N x K (Dense's W): the one-sample product.
                        let mut y = random(n, s as u64 + 300);
                        let x = MatRef::new(&a[..k], k, 1);
                        gemm_on(simd, bm.t(), x, 1.0, MatMut::new(&mut y, n, 1));
                        out.push(y);
                    }
                }
                out
            })
        };
        for simd in Simd::all_supported() {
            let one = run(simd, 1);
            assert_eq!(one, run(simd, 2), "{simd:?}");
            assert_eq!(one, run(simd, 3), "{simd:?}");
        }
        // And the tiled product equals the single-task one.
        for (s, &(m, n, k, ta, tb)) in shapes.iter().enumerate() {
            let a = random(m * k, s as u64);
            let b = random(k * n, s as u64 + 100);
            let mut single = random(m * n, s as u64 + 200);
            let (am, bm) = (op(&a, m, k, ta), op(&b, k, n, tb));
            gemm(am, bm, 1.0, MatMut::new(&mut single, m, n));
            let mut par = random(m * n, s as u64 + 200);
            par_gemm(am, bm, 1.0, MatMut::new(&mut par, m, n));
            assert_eq!(single, par, "{m}x{n}x{k}");
        }
    }

    #[test]
    fn par_gemm_is_bit_identical_to_gemm() {
        let (m, n, k) = (130, 70, 300);
        for (simd, ta) in Simd::all_supported()
            .into_iter()
            .flat_map(|s| [(s, false), (s, true)])
        {
            let a = random(m * k, 1);
            let b = random(k * n, 2);
            let mut one = vec![0.0; m * n];
            let (am, bm) = (op(&a, m, k, ta), MatRef::new(&b, k, n));
            gemm_on(simd, am, bm, 0.0, MatMut::new(&mut one, m, n));
            let mut par = vec![0.0; m * n];
            par_gemm_on(simd, am, bm, 0.0, MatMut::new(&mut par, m, n));
            assert_eq!(one, par, "{simd:?}");
        }
    }
}
