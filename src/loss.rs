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
    assert_eq!(logits.len(), n * k, "logits for {n} samples of {k} classes");
    assert_eq!(grad.len(), n * k);
    let mut total = 0.0f64;
    let inv_n = 1.0 / n as f32;
    for ((z, g), &y) in logits.chunks(k).zip(grad.chunks_mut(k)).zip(labels) {
        assert!(y < k, "label {y} out of range for {k} classes");
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (gi, &zi) in g.iter_mut().zip(z) {
            *gi = (zi - m).exp();
            sum += *gi;
        }
        total += f64::from(m + sum.ln() - z[y]);
        for gi in g.iter_mut() {
            *gi = *gi / sum * inv_n;
        }
        g[y] -= inv_n;
    }
    (total / n as f64) as f32
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
