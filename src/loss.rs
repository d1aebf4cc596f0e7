//! Softmax and cross-entropy, fused into one numerically stable step.
//!
//! For logits z (one row of K classes per sample) and true class y:
//!
//! ```text
//! p_i  = e^{z_i} / sum_j e^{z_j}                        (softmax, report 1 eq. 6)
//! L    = -log p_y = log sum_j e^{z_j} - z_y             (cross-entropy, report 1 eq. 8)
//!      = m + log sum_j e^{z_j - m} - z_y,  m = max_j z_j  (log-sum-exp: no overflow, and
//!                                                       no log(0), so report 2's epsilon
//!                                                       is not needed)
//! dL/dz_i = p_i - [i = y]
//! ```
//!
//! Over a batch of N samples the loss is the mean, so each row of the gradient is divided by
//! N: every parameter gradient is then the batch average (report 2, section 7), as in
//! PyTorch's `cross_entropy`.

/// Mean softmax cross-entropy of `logits` (`n` rows of `k`) against `labels`; writes
/// dL/dlogits into `grad` (same layout). Returns the mean loss.
///
/// # Panics
/// If a label is `>= k` or the lengths disagree (broken internal invariant: data loaders
/// check labels against the class count).
pub fn softmax_cross_entropy(logits: &[f32], labels: &[usize], k: usize, grad: &mut [f32]) -> f32 {
    let n = labels.len();
    let mut terms = Vec::with_capacity(n);
    softmax_cross_entropy_terms(logits, labels, k, 0.0, n, grad, &mut terms);
    mean_of_terms(&terms, n)
}

/// The mean loss from the samples' terms: their sum in sample order, in f64, over `n`.
pub fn mean_of_terms(terms: &[f64], n: usize) -> f32 {
    let total = terms.iter().fold(0.0f64, |s, t| s + t);
    (total / n as f64) as f32
}

/// [`softmax_cross_entropy_smoothed`] for the `labels.len()` samples of a batch of
/// `batch` (more when the batch is split over processes: [`crate::distributed`]), without
/// the mean: writes dL/dlogits divided by `batch`, and pushes each sample's loss onto
/// `terms`, whose sum over the batch in sample order, over `batch`, is the mean loss
/// ([`mean_of_terms`]).
///
/// # Panics
/// As [`softmax_cross_entropy_smoothed`].
pub fn softmax_cross_entropy_terms(
    logits: &[f32],
    labels: &[usize],
    k: usize,
    eps: f32,
    batch: usize,
    grad: &mut [f32],
    terms: &mut Vec<f64>,
) {
    assert!(
        (0.0..1.0).contains(&eps),
        "label smoothing {eps} outside [0, 1)"
    );
    let n = labels.len();
    assert_eq!(logits.len(), n * k, "logits for {n} samples of {k} classes");
    assert_eq!(grad.len(), n * k);
    let inv_n = 1.0 / batch as f32;
    let uniform = eps / k as f32;
    for ((z, g), &y) in logits.chunks(k).zip(grad.chunks_mut(k)).zip(labels) {
        assert!(y < k, "label {y} out of range for {k} classes");
        let (m, sum) = shifted_exps(z, g);
        if eps == 0.0 {
            terms.push(f64::from(m + sum.ln() - z[y]));
            for gi in g.iter_mut() {
                *gi = *gi / sum * inv_n;
            }
            g[y] -= inv_n;
            continue;
        }
        let lse = f64::from(m) + f64::from(sum.ln());
        let z_sum: f64 = z.iter().map(|&v| f64::from(v)).sum();
        terms.push(lse - f64::from(1.0 - eps) * f64::from(z[y]) - f64::from(uniform) * z_sum);
        for gi in g.iter_mut() {
            *gi = (*gi / sum - uniform) * inv_n;
        }
        g[y] -= (1.0 - eps) * inv_n;
    }
}

/// Mean softmax cross-entropy against targets smoothed by `eps` (PyTorch's
/// `CrossEntropyLoss(label_smoothing=eps)`); writes dL/dlogits into `grad`. Returns the mean
/// loss. With K classes, each sample's target is a mix of its one-hot label and the uniform
/// distribution:
///
/// ```text
/// q_i     = (1 - eps) [i = y] + eps / K
/// L       = -sum_i q_i log p_i = lse(z) - (1 - eps) z_y - (eps / K) sum_i z_i
///           (sum_i q_i = 1, and log p_i = z_i - lse(z))
/// dL/dz_i = p_i - q_i
/// ```
///
/// divided by N over a batch. `eps = 0` is [`softmax_cross_entropy`], to the bit.
///
/// # Panics
/// As [`softmax_cross_entropy`], and if `eps` is outside [0, 1) (the run's options are
/// checked before training).
pub fn softmax_cross_entropy_smoothed(
    logits: &[f32],
    labels: &[usize],
    k: usize,
    eps: f32,
    grad: &mut [f32],
) -> f32 {
    assert!(
        (0.0..1.0).contains(&eps),
        "label smoothing {eps} outside [0, 1)"
    );
    let n = labels.len();
    let mut terms = Vec::with_capacity(n);
    softmax_cross_entropy_terms(logits, labels, k, eps, n, grad, &mut terms);
    mean_of_terms(&terms, n)
}

/// Writes `e^{z_i - m}` into `g` for one row of logits, with m = max_i z_i, and returns
/// `(m, sum_i e^{z_i - m})`: the stable parts of both softmax and log-sum-exp.
fn shifted_exps(z: &[f32], g: &mut [f32]) -> (f32, f32) {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (gi, &zi) in g.iter_mut().zip(z) {
        *gi = (zi - m).exp();
        sum += *gi;
    }
    (m, sum)
}

/// Mean softmax cross-entropy without the gradient (for evaluation).
pub fn cross_entropy_only(logits: &[f32], labels: &[usize], k: usize) -> f32 {
    let mut total = 0.0f64;
    for (z, &y) in logits.chunks(k).zip(labels) {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = z.iter().map(|&zi| (zi - m).exp()).sum();
        total += f64::from(m + sum.ln() - z[y]);
    }
    (total / labels.len().max(1) as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_smoothing_by_hand() {
        // K = 2, z = (0, 0), y = 0, eps = 0.2: p = (0.5, 0.5), q = (0.9, 0.1);
        // L = lse - 0.8 z_0 - 0.1 (z_0 + z_1) = ln 2; dL/dz = p - q = (-0.4, 0.4).
        let mut g = [0.0; 2];
        let loss = softmax_cross_entropy_smoothed(&[0.0, 0.0], &[0], 2, 0.2, &mut g);
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-7, "{loss}");
        assert!(
            (g[0] + 0.4).abs() < 1e-7 && (g[1] - 0.4).abs() < 1e-7,
            "{g:?}"
        );
    }

    #[test]
    fn label_smoothing_0_is_plain_cross_entropy_to_the_bit() {
        let z = [1.5, -0.25, 3.0, 0.5, 0.0, -2.0];
        let (mut a, mut b) = ([0.0; 6], [0.0; 6]);
        let la = softmax_cross_entropy(&z, &[2, 0], 3, &mut a);
        let lb = softmax_cross_entropy_smoothed(&z, &[2, 0], 3, 0.0, &mut b);
        assert_eq!(la.to_bits(), lb.to_bits());
        assert_eq!(a, b);
    }

    #[test]
    fn uniform_logits_give_log_k() {
        // All logits equal: p = 1/k, L = log k; gradient (1/k - [i=y]) / n.
        let mut g = [0.0; 4];
        let l = softmax_cross_entropy(&[0.0, 0.0, 5.0, 5.0], &[0, 1], 2, &mut g);
        assert!((l - 2f32.ln()).abs() < 1e-6);
        assert_eq!(g, [-0.25, 0.25, 0.25, -0.25]);
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let mut g = [0.0; 3];
        let l = softmax_cross_entropy(&[1000.0, 0.0, -1000.0], &[1], 3, &mut g);
        assert!((l - 1000.0).abs() < 1e-3, "{l}");
        assert!(g.iter().all(|v| v.is_finite()));
    }
}
