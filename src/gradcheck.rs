//! Finite-difference gradient checks: the proof that backpropagation is right.
//!
//! For a parameter entry w, the central difference
//!
//! ```text
//! dL/dw  ~  (L(w + h) - L(w - h)) / (2h)        (error O(h^2))
//! ```
//!
//! is compared with the gradient backprop computed, by the relative error
//! `|a - b| / max(|a|, |b|, floor)`. In f32 with h = 1e-2 and a loss of order 1, agreement
//! to about 1e-3 is expected; a wrong backward pass is off by O(1).
//!
//! A finite difference that straddles a ReLU kink or a max-pool tie measures a different
//! slope than the gradient; tests keep their inputs away from those, and the whole-network
//! check samples a few entries per tensor, so an isolated kink shows as one outlier.

use crate::error::Result;
use crate::model::Model;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The result of checking one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorCheck {
    /// `layers.{i}.weight` or `layers.{i}.bias`.
    pub name: String,
    /// Entries compared.
    pub checked: usize,
    /// Largest relative error among them.
    pub max_rel_error: f64,
}

/// Relative error with a floor on the denominator, so that two tiny numbers do not
/// count as far apart: `|a - b| / max(|a|, |b|, floor)`.
pub fn rel_error(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(floor)
}

/// Checks up to `per_tensor` entries of every parameter tensor of `model` on the batch
/// `(x, labels)` with step `h`, choosing the entries from `seed`.
pub fn check_model(
    model: &mut Model,
    x: &Tensor,
    labels: &[usize],
    per_tensor: usize,
    h: f32,
    seed: u64,
) -> Result<Vec<TensorCheck>> {
    model.compute_gradients(x, labels)?;
    let analytic: Vec<(String, Vec<f32>)> = model
        .named_params()
        .into_iter()
        .map(|(name, p)| (name, p.grad.data().to_vec()))
        .collect();
    let mut rng = Rng::for_purpose(seed, "gradcheck");
    let mut out = Vec::new();
    for (t, (name, grad)) in analytic.iter().enumerate() {
        let len = grad.len();
        let entries: Vec<usize> = if len <= per_tensor {
            (0..len).collect()
        } else {
            (0..per_tensor).map(|_| rng.below(len)).collect()
        };
        let mut worst = 0.0f64;
        for &e in &entries {
            let numeric = central_difference(model, x, labels, t, e, h)?;
            worst = worst.max(rel_error(numeric, f64::from(grad[e]), 1e-3));
        }
        out.push(TensorCheck {
            name: name.clone(),
            checked: entries.len(),
            max_rel_error: worst,
        });
    }
    Ok(out)
}

/// (L(w + h) - L(w - h)) / 2h for entry `e` of parameter tensor `t`.
fn central_difference(
    model: &mut Model,
    x: &Tensor,
    labels: &[usize],
    t: usize,
    e: usize,
    h: f32,
) -> Result<f64> {
    let original = model.params_mut()[t].value.data()[e];
    let loss_at = |v: f32, m: &mut Model| -> Result<f64> {
        m.params_mut()[t].value.data_mut()[e] = v;
        let k = m.classes();
        let logits = m.forward(x)?;
        Ok(f64::from(crate::loss::cross_entropy_only(
            logits.data(),
            labels,
            k,
        )))
    };
    let plus = loss_at(original + h, model)?;
    let minus = loss_at(original - h, model)?;
    model.params_mut()[t].value.data_mut()[e] = original;
    // The actual step in f32 may differ from h by rounding; divide by what was applied.
    let step = f64::from(original + h) - f64::from(original - h);
    Ok((plus - minus) / step)
}
