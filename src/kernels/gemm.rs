//! Single-precision matrix multiply, `C = op(A) * op(B) + beta * C`, row-major.
//!
//! Dimension letters: C is M x N, op(A) is M x K, op(B) is K x N. `op(X)` is X or its
//! transpose: a transposed A is stored K x M, a transposed B is stored N x K.
//!
//! The fast path is the `matrixmultiply` crate (packed operands, cache blocking, AVX2/FMA
//! chosen at run time); [`gemm_naive`] is the triple loop it is tested against.
//!
//! Determinism: every element of C is a sum over k in an order that depends only on K, not
//! on M, N or how rows are split across threads, so results are bit-identical whatever the
//! thread count.

use rayon::prelude::*;

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

/// Rows of C per parallel task in [`par_gemm`]: fixed, so the split does not depend on the
/// number of threads.
const ROW_BLOCK: usize = 16;

/// [`gemm`] with the rows of C split across rayon's threads in blocks of 16 rows.
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
    if m * n * k < 64 * 64 * 64 || m <= ROW_BLOCK {
        return gemm(m, n, k, a, ta, b, tb, beta, c);
    }
    c[..m * n]
        .par_chunks_mut(ROW_BLOCK * n)
        .enumerate()
        .for_each(|(blk, c_rows)| {
            let r0 = blk * ROW_BLOCK;
            let rows = c_rows.len() / n;
            match ta {
                // Rows r0.. of A are contiguous.
                Trans::No => gemm(rows, n, k, &a[r0 * k..], ta, b, tb, beta, c_rows),
                // A is stored K x M: its columns r0..r0+rows start at offset r0 and keep
                // the leading dimension M.
                Trans::Yes => gemm_strided_at(rows, n, k, &a[r0..], m, b, tb, beta, c_rows),
            }
        });
}

/// gemm where A is stored transposed with leading dimension `lda` (>= rows), starting at
/// column 0 of `a`.
#[allow(clippy::too_many_arguments)]
fn gemm_strided_at(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    assert!(k == 0 || a.len() > (k - 1) * lda + m - 1);
    assert!(b.len() >= k * n && c.len() >= m * n);
    let (rsb, csb) = strides(tb, k, n);
    // SAFETY: A is addressed at i + p*lda for i < m, p < k, checked above; B and C as in gemm.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            1,
            lda as isize,
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
            let mut par = c0.clone();
            par_gemm(m, n, k, &a, ta, &b, tb, beta, &mut par);
            close(&par, &want, k);
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
