//! Finite-difference gradient checks: the proof that backpropagation is right.
//!
//! For a parameter entry w, the central difference
//!
//! ```text
//! dL/dw  ~  (L(w + h) - L(w - h)) / (2h)        (error O(h^2))
//! ```
//!
//! is compared with the gradient backprop computed. Per entry the relative error is
//! `|a - b| / max(|a|, |b|, floor)` ([`rel_error`], used by the layer tests). For a whole
//! tensor, [`check_model`] reports the norm-wise error `max_i |a_i - b_i| / max_i max(|a_i|,
//! |b_i|)` over the sampled entries: f32 rounding of the loss (about 1e-7 of its value,
//! divided by 2h) is then judged against the tensor's gradient scale, not against an entry
//! that happens to be near zero. With h = 1e-2, agreement to about 1e-3 is expected; a wrong
//! backward pass is off by O(1).
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
    /// Entries skipped because every step size crossed a kink. A tensor with 0 checked
    /// entries is unverified, not verified.
    pub skipped: usize,
    /// Norm-wise relative error over the checked entries:
    /// `max |backprop - numeric| / max(max |backprop|, max |numeric|)`.
    pub max_rel_error: f64,
}

/// A hash of the piecewise-linear choices of `model`'s last forward pass: the sign pattern of
/// every ReLU / LeakyReLU output and the winning position of every max-pool window.
pub fn kink_signature(model: &Model) -> u64 {
    use crate::layers::{Activation, Op};
    // FNV-1a over the choices, in layer order.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u64| {
        h ^= v;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for (i, layer) in model.layers.iter().enumerate() {
        if matches!(
            layer.activation(),
            Activation::Relu | Activation::LeakyRelu(_)
        ) {
            if let Some(y) = model.activation(i) {
                y.data().iter().for_each(|&v| eat(u64::from(v > 0.0)));
            }
        }
        if let Op::MaxPool2D(p) = &layer.op {
            p.argmax().iter().for_each(|&a| eat(u64::from(a)));
        }
    }
    h
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
        // Every entry when the tensor is small, else random entries until `per_tensor` are
        // checked (or 10 times as many were tried, when kinks are everywhere).
        let entries: Vec<usize> = if len <= per_tensor {
            (0..len).collect()
        } else {
            (0..10 * per_tensor).map(|_| rng.below(len)).collect()
        };
        let (mut max_diff, mut scale, mut checked, mut skipped) = (0.0f64, 0.0f64, 0, 0);
        for &e in &entries {
            if checked == per_tensor {
                break;
            }
            match kink_free_difference(model, x, labels, t, e, h)? {
                Some(numeric) => {
                    let analytic = f64::from(grad[e]);
                    checked += 1;
                    max_diff = max_diff.max((numeric - analytic).abs());
                    scale = scale.max(numeric.abs()).max(analytic.abs());
                }
                None => skipped += 1,
            }
        }
        out.push(TensorCheck {
            name: name.clone(),
            checked,
            skipped,
            max_rel_error: if scale > 0.0 {
                max_diff / scale
            } else {
                max_diff
            },
        });
    }
    Ok(out)
}

/// The central difference at the largest of h, h/2, h/5, h/10 whose two evaluations make the
/// same piecewise-linear choices as the unperturbed network; `None` if every one crosses a
/// kink.
fn kink_free_difference(
    model: &mut Model,
    x: &Tensor,
    labels: &[usize],
    t: usize,
    e: usize,
    h: f32,
) -> Result<Option<f64>> {
    model.forward(x)?;
    let base = kink_signature(model);
    for scale in [1.0, 0.5, 0.2, 0.1] {
        let (numeric, same) = central_difference(model, x, labels, t, e, h * scale, base)?;
        if same {
            return Ok(Some(numeric));
        }
    }
    Ok(None)
}

/// (L(w + h) - L(w - h)) / 2h for entry `e` of parameter tensor `t`, and whether both
/// evaluations kept the kink signature `base`.
fn central_difference(
    model: &mut Model,
    x: &Tensor,
    labels: &[usize],
    t: usize,
    e: usize,
    h: f32,
    base: u64,
) -> Result<(f64, bool)> {
    let original = model.params_mut()[t].value.data()[e];
    let loss_at = |v: f32, m: &mut Model| -> Result<(f64, u64)> {
        m.params_mut()[t].value.data_mut()[e] = v;
        let k = m.classes();
        let logits = m.forward(x)?;
        let loss = crate::loss::cross_entropy_only(logits.data(), labels, k);
        Ok((f64::from(loss), kink_signature(m)))
    };
    let (plus, sig_plus) = loss_at(original + h, model)?;
    let (minus, sig_minus) = loss_at(original - h, model)?;
    model.params_mut()[t].value.data_mut()[e] = original;
    // The actual step in f32 may differ from h by rounding; divide by what was applied.
    let step = f64::from(original + h) - f64::from(original - h);
    Ok(((plus - minus) / step, sig_plus == base && sig_minus == base))
}
