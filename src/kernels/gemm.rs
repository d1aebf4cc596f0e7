//! Single-precision matrix multiply, `C = op(A) * op(B) + beta * C`, row-major.
//!
//! Dimension letters: C is M x N, op(A) is M x K, op(B) is K x N. `op(X)` is X or its
//! transpose: a transposed A is stored K x M, a transposed B is stored N x K.
//!
//! The fast path, chosen at run time: our own AVX-512 kernels ([`super::avx512`]) on CPUs
//! that have AVX-512F, otherwise the `matrixmultiply` crate (packed operands, cache blocking,
//! AVX2/FMA chosen at run time, portable code elsewhere; [`gemm_portable`] forces it).
//! [`gemm_naive`] is the triple loop both are tested against.
//!
//! [`par_gemm`] splits C into fixed tiles (one kernel call each) run on rayon's threads;
//! [`par_gemv`] is the M = 1 case (Dense at batch 1) as dot products over A's rows.
//!
//! Determinism: every element of C is a sum over k in an order that depends only on K, not
//! on M, N or how C is split into tiles, so results are bit-identical whatever the thread
//! count.

use rayon::prelude::*;

use super::avx512_available as avx512;

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trans {
    No,
    Yes,
}

/// Row and column strides of a row-major operand of logical shape rows x cols.
fn strides(trans: Trans, rows: usize, cols: usize) -> (isize, isize) {
    match trans {
        Trans::No => (cols as isize, 1),
        Trans::Yes => (1, rows as isize),
    }
}

fn check(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &[f32]) {
    assert!(a.len() >= m * k, "gemm: A has {} < {}", a.len(), m * k);
    assert!(b.len() >= k * n, "gemm: B has {} < {}", b.len(), k * n);
    assert!(c.len() >= m * n, "gemm: C has {} < {}", c.len(), m * n);
}

/// `C[M x N] = op(A)[M x K] * op(B)[K x N] + beta * C`, on one thread.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    check(m, n, k, a, b, c);
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = strides(ta, m, k);
    let (rsb, csb) = strides(tb, k, n);
    // SAFETY: the asserts in `check` guarantee every index the strides reach is in bounds:
    // A spans m*k elements, B k*n and C m*n, each addressed with row-major strides.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            (a.as_ptr(), rsa, csa),
            (b.as_ptr(), rsb, csb),
            beta,
            c.as_mut_ptr(),
            n,
        )
    }
}

/// `Y[M x N] = max(W[M x K] * X[K x N] + bias, 0)` (ReLU only if `relu`), with `bias[i]`
/// added to every element of row i, on one thread: a convolution's forward pass with its
/// bias and activation. On AVX-512 the bias is the accumulators' starting value and ReLU is
/// applied as they are stored, so Y is written once instead of three times (fill with the
/// bias, accumulate the product, apply ReLU), which is what [`gemm_bias_relu_portable`]
/// does: the same bits when N > 1, where its product also runs on the broadcast kernel.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias_relu(
    m: usize,
    n: usize,
    k: usize,
    w: &[f32],
    x: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
) {
    check(m, n, k, w, x, y);
    assert!(bias.len() >= m, "gemm: bias has {} < {}", bias.len(), m);
    #[cfg(target_arch = "x86_64")]
    if avx512() && m > 0 && n > 0 && k > 0 {
        let ep = super::avx512::Epilogue {
            bias: bias.as_ptr(),
            relu,
        };
        // SAFETY: AVX-512 is available; the asserts above bound every index: W is m x k
        // (rows k apart), X is k x n and Y m x n (rows n apart), bias has m values.
        unsafe {
            super::avx512::gemm_bcast(
                m,
                n,
                k,
                w.as_ptr(),
                k,
                1,
                x.as_ptr(),
                n,
                false,
                y.as_mut_ptr(),
                n,
                ep,
            );
        }
        return;
    }
    gemm_bias_relu_portable(m, n, k, w, x, bias, relu, y)
}

/// [`gemm_bias_relu`] in three passes (the reference it is tested against, and the path on
/// CPUs without AVX-512).
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias_relu_portable(
    m: usize,
    n: usize,
    k: usize,
    w: &[f32],
    x: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
) {
    for (row, &b) in y[..m * n].chunks_mut(n.max(1)).zip(bias) {
        row.fill(b);
    }
    gemm(m, n, k, w, Trans::No, x, Trans::No, 1.0, y);
    if relu {
        y[..m * n].iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// [`gemm`] on the `matrixmultiply` path whatever the CPU: the portable fallback, kept
/// callable so that tests cover it on machines where the AVX-512 path is chosen.
#[allow(clippy::too_many_arguments)]
pub fn gemm_portable(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    check(m, n, k, a, b, c);
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = strides(ta, m, k);
    let (rsb, csb) = strides(tb, k, n);
    // SAFETY: as in `gemm`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// An operand given as (pointer, row stride, column stride).
type Operand = (*const f32, isize, isize);

/// The one place a product is dispatched to a kernel, by the operands' strides:
/// A and op(B) both contiguous along K -> the AVX-512 dot kernel; op(B)'s rows contiguous
/// -> the AVX-512 broadcast kernel; anything else, a beta other than 0 or 1, or a CPU
/// without AVX-512 -> `matrixmultiply`. C(i, j) is `c[i*ldc + j]`.
///
/// # Safety
/// For i < m, j < n, p < k, A(i, p) = `a[i*rsa + p*csa]`, B(p, j) = `b[p*rsb + j*csb]` and
/// C(i, j) must lie inside their allocations, and C must not overlap A or B.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    (a, rsa, csa): Operand,
    (b, rsb, csb): Operand,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if avx512() && (beta == 0.0 || beta == 1.0) && k > 0 {
        let beta_one = beta == 1.0;
        if csa == 1 && rsb == 1 {
            let (lda, ldb) = (rsa as usize, csb as usize);
            return super::avx512::gemm_dot(m, n, k, a, lda, b, ldb, beta_one, c, ldc);
        }
        if csb == 1 {
            let (rsa, csa, ldb) = (rsa as usize, csa as usize, rsb as usize);
            let none = super::avx512::Epilogue::NONE;
            return super::avx512::gemm_bcast(m, n, k, a, rsa, csa, b, ldb, beta_one, c, ldc, none);
        }
    }
    matrixmultiply::sgemm(
        m,
        k,
        n,
        1.0,
        a,
        rsa,
        csa,
        b,
        rsb,
        csb,
        beta,
        c,
        ldc as isize,
        1,
    );
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
/// It depends only on the shape, never on the number of threads. Splits fall on whole
/// tiles of the AVX-512 broadcast kernel (12 rows, 32 columns), so no task computes a
/// half-empty vector that a single task would not.
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
            // Too narrow to split by columns: halve M (to whole 12-row kernel tiles).
            mb = m.div_ceil(2).div_ceil(12) * 12;
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
struct TilePtr(*mut f32);
// SAFETY: the pointer is only dereferenced (by matrixmultiply) inside disjoint tiles of C,
// so no two threads touch the same element, and C outlives the parallel loop.
unsafe impl Send for TilePtr {}
// SAFETY: as above.
unsafe impl Sync for TilePtr {}
impl TilePtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`gemm`] with C split into fixed tiles (see `tile_plan`) computed on rayon's threads.
///
/// Both kernels (ours and matrixmultiply, which sums each element of C over k in blocks of a
/// fixed size with the same micro-kernel whatever the tile) compute an element of C in an
/// order that depends only on K, so the result is bit-identical to [`gemm`] and to any
/// thread count (tested).
#[allow(clippy::too_many_arguments)]
pub fn par_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    check(m, n, k, a, b, c);
    if m == 0 || n == 0 {
        return;
    }
    let (mb, nb) = tile_plan(m, n, k);
    if mb >= m && nb >= n {
        return gemm(m, n, k, a, ta, b, tb, beta, c);
    }
    let (rsa, csa) = strides(ta, m, k);
    let (rsb, csb) = strides(tb, k, n);
    let (tiles_m, tiles_n) = (m.div_ceil(mb), n.div_ceil(nb));
    let cp = TilePtr(c.as_mut_ptr());
    (0..tiles_m * tiles_n).into_par_iter().for_each(|t| {
        let (r0, c0) = ((t / tiles_n) * mb, (t % tiles_n) * nb);
        let (rows, cols) = (mb.min(m - r0), nb.min(n - c0));
        // SAFETY: `check` asserted A, B and C hold m*k, k*n and m*n elements. The tile reads
        // rows r0..r0+rows of op(A) (offset r0*rsa, then i*rsa + p*csa with i < rows,
        // p < k: all inside A), columns c0..c0+cols of op(B) (likewise inside B) and writes
        // C[r0+i][c0+j] for i < rows, j < cols, inside C. Tiles are disjoint, so no element
        // of C is written by two tasks, and `c` is borrowed mutably for the whole loop.
        unsafe {
            gemm_raw(
                rows,
                cols,
                k,
                (a.as_ptr().offset(r0 as isize * rsa), rsa, csa),
                (b.as_ptr().offset(c0 as isize * csb), rsb, csb),
                beta,
                cp.get().add(r0 * n + c0),
                n,
            );
        }
    });
}

/// Dot product in a fixed order: 16 interleaved partial sums (lane l takes the elements
/// with index = l mod 16), added pairwise at the end, then the tail in order. Written so the
/// compiler vectorises it; the order depends only on the length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = pairwise_sum(acc);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Sum in the fixed order of [`dot`]: 16 interleaved partial sums added pairwise, then the
/// tail. A plain `iter().sum()` is one chain of dependent additions (4 cycles each), which
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

/// The 16 partial sums of [`dot`] and [`sum`] added pairwise: lane l plus lane l+8, then
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

/// Output rows per parallel task in [`par_gemv`] (fixed, independent of the thread count).
const GEMV_ROWS: usize = 32;

/// Matrix-vector product `y[O] = A[O x I] * x[I] + beta * y`, A row-major: a dot product
/// over each contiguous row of A ([`dot`]), rows in parallel in fixed blocks of 32.
/// This is Dense's forward at batch 1 (`y = W x + b`), where a packed GEMM would spend
/// most of its time packing W.
pub fn par_gemv(o: usize, i: usize, a: &[f32], x: &[f32], beta: f32, y: &mut [f32]) {
    assert!(a.len() >= o * i, "gemv: A has {} < {}", a.len(), o * i);
    assert!(x.len() >= i && y.len() >= o, "gemv: x or y too short");
    let x = &x[..i];
    // Rows r0.. of y, as many as `ys` holds.
    let rows = |r0: usize, ys: &mut [f32]| {
        let a_rows = &a[r0 * i..(r0 + ys.len()) * i];
        if avx512() && (beta == 0.0 || beta == 1.0) {
            // The AVX-512 dot kernel (4 rows of A against x at a time).
            gemm(ys.len(), 1, i, a_rows, Trans::No, x, Trans::No, beta, ys);
            return;
        }
        for (row, yr) in a_rows.chunks(i).zip(ys.iter_mut()) {
            let d = dot(row, x);
            *yr = if beta == 0.0 { d } else { d + beta * *yr };
        }
    };
    if o * i < PAR_MIN_WORK / 4 {
        return rows(0, &mut y[..o]);
    }
    y[..o]
        .par_chunks_mut(GEMV_ROWS)
        .enumerate()
        .for_each(|(blk, ys)| rows(blk * GEMV_ROWS, ys));
}

/// The reference: `C = op(A) * op(B) + beta * C` by the definition
/// `C[i][j] = sum_p A[i][p] * B[p][j]`, accumulated in f64.
#[allow(clippy::too_many_arguments)]
pub fn gemm_naive(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    check(m, n, k, a, b, c);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let av = match ta {
                    Trans::No => a[i * k + p],
                    Trans::Yes => a[p * m + i],
                };
                let bv = match tb {
                    Trans::No => b[p * n + j],
                    Trans::Yes => b[j * k + p],
                };
                s += f64::from(av) * f64::from(bv);
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

    #[test]
    fn two_by_two_by_hand() {
        // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0.0; 4];
        gemm(2, 2, 2, &a, Trans::No, &b, Trans::No, 0.0, &mut c);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        // A^T * B = [1 3; 2 4] * [5 6; 7 8] = [26 30; 38 44]
        gemm(2, 2, 2, &a, Trans::Yes, &b, Trans::No, 0.0, &mut c);
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
    }

    fn close(a: &[f32], b: &[f32], k: usize) {
        let tol = 1e-5 * (k as f32).sqrt() * 4.0;
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fast_gemm_equals_naive(m in 1usize..80, n in 1usize..80, k in 1usize..300,
                                  ta in any::<bool>(), tb in any::<bool>(), beta in prop::sample::select(vec![0.0f32, 1.0]),
                                  seed in any::<u64>()) {
            let ta = if ta { Trans::Yes } else { Trans::No };
            let tb = if tb { Trans::Yes } else { Trans::No };
            let a = random(m * k, seed);
            let b = random(k * n, seed ^ 1);
            let c0 = random(m * n, seed ^ 2);
            let mut want = c0.clone();
            gemm_naive(m, n, k, &a, ta, &b, tb, beta, &mut want);
            let mut got = c0.clone();
            gemm(m, n, k, &a, ta, &b, tb, beta, &mut got);
            close(&got, &want, k);
            let mut portable = c0.clone();
            gemm_portable(m, n, k, &a, ta, &b, tb, beta, &mut portable);
            close(&portable, &want, k);
            let mut par = c0.clone();
            par_gemm(m, n, k, &a, ta, &b, tb, beta, &mut par);
            close(&par, &want, k);
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
            gemm_naive(o, 1, i, &a, Trans::No, &x, Trans::No, beta, &mut want);
            let mut got = y0.clone();
            par_gemv(o, i, &a, &x, beta, &mut got);
            close(&got, &want, i);
        }

        #[test]
        fn tiled_par_gemm_equals_naive_on_large_shapes(m in 1usize..600, n in 1usize..600, k in 1usize..1200,
                                  ta in any::<bool>(), tb in any::<bool>(), beta in prop::sample::select(vec![0.0f32, 1.0]),
                                  seed in any::<u64>()) {
            let ta = if ta { Trans::Yes } else { Trans::No };
            let tb = if tb { Trans::Yes } else { Trans::No };
            let a = random(m * k, seed);
            let b = random(k * n, seed ^ 1);
            let c0 = random(m * n, seed ^ 2);
            let mut want = c0.clone();
            gemm_naive(m, n, k, &a, ta, &b, tb, beta, &mut want);
            let mut par = c0.clone();
            par_gemm(m, n, k, &a, ta, &b, tb, beta, &mut par);
            close(&par, &want, k);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The fused kernel against fill + product + ReLU: bit-equal, since both start each
        /// element's chain of FMAs from the bias and add the products in the same order
        /// (K up to 600 crosses the kernel's 288-step blocks).
        #[test]
        fn fused_bias_and_relu_equal_the_three_passes(m in 1usize..40, n in 1usize..100,
                k in 1usize..600, relu in any::<bool>(), seed in 0u64..1000) {
            let w = random(m * k, seed);
            let x = random(k * n, seed + 1);
            let bias = random(m, seed + 2);
            let mut fused = vec![f32::NAN; m * n];
            let mut passes = vec![f32::NAN; m * n];
            gemm_bias_relu(m, n, k, &w, &x, &bias, relu, &mut fused);
            gemm_bias_relu_portable(m, n, k, &w, &x, &bias, relu, &mut passes);
            if avx512() && n > 1 {
                // Same bits: the portable path also runs the broadcast kernel for its product
                // (at N = 1 it takes the dot kernel, which sums in another order).
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&fused), bits(&passes));
            }
            // And the fused result against the definition.
            let mut reference = vec![0.0; m * n];
            gemm_naive(m, n, k, &w, Trans::No, &x, Trans::No, 0.0, &mut reference);
            for i in 0..m {
                for j in 0..n {
                    let mut v = reference[i * n + j] + bias[i];
                    if relu { v = v.max(0.0); }
                    let got = fused[i * n + j];
                    prop_assert!((got - v).abs() <= 1e-4 * (1.0 + (k as f32).sqrt()),
                        "({}, {}): {} vs {}", i, j, got, v);
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
    fn dot_by_hand() {
        let a: Vec<f32> = (1..=37).map(|v| v as f32).collect();
        let b = vec![1.0; 37];
        assert_eq!(dot(&a, &b), (37 * 38 / 2) as f32);
        assert_eq!(dot(&[], &[]), 0.0);
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
        // Dense forward at batch 32 (Y^T = W X^T): two tasks of whole 12-row tiles.
        assert_eq!(tile_plan(128, 32, 3136), (72, 32));
    }

    #[test]
    fn gemm_paths_are_bit_identical_in_pools_of_1_2_and_3_threads() {
        // Shapes of the layers (Dense fwd, dW, dX; conv), K > 1000, ragged edges, M = 1.
        let shapes = [
            (32, 128, 3136, Trans::No, Trans::Yes),
            (128, 3136, 32, Trans::Yes, Trans::No),
            (32, 3136, 128, Trans::No, Trans::No),
            (16, 2000, 9, Trans::No, Trans::No),
            (16, 9, 1500, Trans::No, Trans::Yes),
            (300, 517, 1100, Trans::Yes, Trans::Yes),
            (1, 128, 3136, Trans::No, Trans::Yes),
        ];
        let run = |threads: usize| -> Vec<Vec<f32>> {
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
                    par_gemm(m, n, k, &a, ta, &b, tb, 1.0, &mut c);
                    out.push(c);
                    if tb == Trans::Yes && ta == Trans::No {
                        // y = B x with B stored N x K (Dense's W): the gemv path.
                        let mut y = random(n, s as u64 + 300);
                        par_gemv(n, k, &b, &a[..k], 1.0, &mut y);
                        out.push(y);
                    }
                }
                out
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        // And the tiled product equals the single-task one.
        for (s, &(m, n, k, ta, tb)) in shapes.iter().enumerate() {
            let a = random(m * k, s as u64);
            let b = random(k * n, s as u64 + 100);
            let mut single = random(m * n, s as u64 + 200);
            gemm(m, n, k, &a, ta, &b, tb, 1.0, &mut single);
            let mut par = random(m * n, s as u64 + 200);
            par_gemm(m, n, k, &a, ta, &b, tb, 1.0, &mut par);
            assert_eq!(single, par, "{m}x{n}x{k}");
        }
    }

    #[test]
    fn par_gemm_is_bit_identical_to_gemm() {
        let (m, n, k) = (130, 70, 300);
        for ta in [Trans::No, Trans::Yes] {
            let a = random(m * k, 1);
            let b = random(k * n, 2);
            let mut one = vec![0.0; m * n];
            gemm(m, n, k, &a, ta, &b, Trans::No, 0.0, &mut one);
            let mut par = vec![0.0; m * n];
            par_gemm(m, n, k, &a, ta, &b, Trans::No, 0.0, &mut par);
            assert_eq!(one, par);
        }
    }
}
