//! Finite-difference gradient checks: the proof that backpropagation is right.
//!
//! # What is compared
//!
//! For a parameter entry w, backprop's dL/dw is compared with the central difference
//!
//! ```text
//! (L~(w + h) - L~(w - h)) / 2h        h = 1e-5 max(1, |w|)
//! ```
//!
//! of L~, the loss of the network with its piecewise-linear choices frozen ([`FrozenNet`]):
//! every ReLU / LeakyReLU keeps the side of 0 the forward pass put it on, every max-pool
//! window keeps its winner, and everything is evaluated by the layers' definitions in f64.
//! Backprop multiplies by exactly those masks and routes to exactly those winners, so its
//! result must be the gradient of L~. Where no unit sits on a kink, L~ and the network's
//! loss L are the same function near w, and so are their gradients.
//!
//! # Why not differentiate the network's own f32 loss
//!
//! That was the first version of this check, and it failed on `examples/lenet.cfg` although
//! backprop was right. Two effects, measured on the first Conv2D's bias (one entry shifts
//! all 784 pre-activations of its channel at once):
//! - **Kinks are dense.** At h = 1e-2 a step flips 10 to 80 ReLU units; even at h = 1e-3 most
//!   entries flip one or more. A difference across a kink averages two slopes: errors up to
//!   5e-2 of the gradient's scale.
//! - **f32 rounding of the loss.** L (about 2.3) is rounded to about 2.4e-7 in f32; divided
//!   by 2h this is an error of 1e-3 of the gradient at h = 1e-3, 1e-2 at 1e-4 and 1e-1 at
//!   1e-5. No step is both small enough to cross no kink and large enough to beat rounding.
//!
//! The frozen f64 loss removes both: it has no kinks, and f64 rounding (1e-16) divided by
//! 2h = 2e-5 is 1e-11. The truncation error of the central difference is
//! h^2 / 6 |L~'''| = 2e-11 |L~'''|, negligible for any network whose logits move by less than
//! 100 per unit of w. With the frozen choices backprop agrees to about 1e-6 (see
//! [`TOLERANCE`]).
//!
//! # Tying the f64 network to the real one
//!
//! The frozen network is only a fair judge if it computes what the model computes. So the
//! unperturbed f64 pass is compared with the model's f32 forward pass, layer by layer
//! ([`ForwardCheck`], [`FORWARD_TOLERANCE`]), and every frozen choice is checked against the
//! f64 values: a mask or a winner that is wrong by more than rounding fails the check. The
//! command line draws the biases at random too, so that a forward pass that ignored a
//! parameter could not agree by accident at zero.
//!
//! # Kinks, and entries that cannot be checked
//!
//! A ReLU unit whose pre-activation is within rounding of 0, or a max-pool window whose top
//! two inputs are within rounding of each other, sits on a kink: the loss has only
//! one-sided derivatives there, and backprop returns the side the forward pass chose. That
//! side is exactly the frozen network's derivative, so such an entry is still compared; it
//! is counted in `on_kink` so that a reader knows its derivative is one-sided. An entry
//! whose difference is not finite (an infinite weight cannot be stepped) really cannot be
//! checked: it is counted in `unchecked`. A tensor with no checked entry is reported as
//! unverified; the whole check fails for that only when no entry at all was checked.
//!
//! # Errors
//!
//! Per entry, [`rel_error`] `|a - b| / max(|a|, |b|, floor)` (used by the layer tests). For a
//! tensor, the norm-wise error `max_i |a_i - b_i| / max_i max(|a_i|, |b_i|)` over the checked
//! entries, so that f32 rounding is judged against the tensor's gradient scale, not against
//! an entry that happens to be near 0; and not against less than [`SCALE_FLOOR`] of the
//! network's largest gradient, so that a gradient that is 0 by structure (a bias before
//! BatchNorm) is not judged against its own rounding.

mod frozen;

pub use frozen::{ForwardCheck, FrozenNet};

use std::collections::HashSet;

use crate::error::Result;
use crate::layers::NetworkSpec;
use crate::model::Model;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Largest norm-wise relative error between backprop and the frozen f64 difference that
/// passes. Backprop runs in f32: each gradient entry is a sum of up to a few hundred
/// thousand products, each rounded to 6e-8 relative. Measured with `cnn gradcheck` on every
/// shipped example and a 3x16x16 RGB network, at the default seed and seeds 1 to 20 (84
/// runs, 10,122 entries): at most 8.2e-6, typically 1e-7 to 1e-6. Derivatives broken on
/// purpose gave 1e-2 (a Dense bias gradient 1% short) to 1 (ReLU backward passing y = 0, a
/// max-pool gradient routed to the neighbouring input, a Conv2D bias gradient missing the
/// second sample of the batch). 1e-3 is 100 times the worst rounding seen and 10 times
/// below the subtlest break.
pub const TOLERANCE: f64 = 1e-3;

/// Largest relative error `max |f32 - f64| / max |f64|` of any layer's output in the
/// forward pass that passes: f32 rounding gave at most 6.6e-6 in the same 84 runs, a wrong
/// forward pass O(1).
pub const FORWARD_TOLERANCE: f64 = 1e-4;

/// A tensor's error is measured against its own gradient scale, but never against less
/// than this share of the network's largest gradient. A gradient that is 0 by structure
/// (the bias of a layer before BatchNorm: the batch mean removes it) comes out of f32
/// backprop as rounding, about 1e-6 of the gradients around it, and would otherwise be
/// judged against itself (error 1). A real derivative bug is of the size of the gradient it
/// breaks, so one in a tensor whose gradient is above 1e-5 of the largest is still caught.
pub const SCALE_FLOOR: f64 = 1e-2;

/// The command line's relative step: h = 1e-5 max(1, |w|) (see the module doc).
pub const STEP: f64 = 1e-5;

/// The default batch of `cnn gradcheck` for `spec`: the most images any of its layers needs
/// for a meaningful check ([`crate::layers::LayerKind::gradcheck_batch`]; 2 for most, 8 with
/// BatchNorm).
pub fn default_batch(spec: &NetworkSpec) -> usize {
    spec.layers
        .iter()
        .map(|l| l.gradcheck_batch())
        .max()
        .unwrap_or(2)
}

/// The result of checking one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorCheck {
    /// `layers.{i}.weight` or `layers.{i}.bias`.
    pub name: String,
    /// Entries compared.
    pub checked: usize,
    /// Of the checked entries, those whose step moves a unit that sits on a kink: their
    /// derivative is one-sided, compared on the side the forward pass chose.
    pub on_kink: usize,
    /// Entries that could not be checked: their finite difference is not finite. A tensor
    /// with no checked entry is unverified.
    pub unchecked: usize,
    /// `max |gradient|` over the checked entries (backprop or numeric): the scale the error
    /// is measured against. 0 means every checked entry has a zero gradient.
    pub scale: f64,
    /// Norm-wise relative error over the checked entries:
    /// `max |backprop - numeric| / max(max |backprop|, max |numeric|, SCALE_FLOOR G)`, G the
    /// largest `scale` of the network's tensors ([`SCALE_FLOOR`]).
    pub max_rel_error: f64,
}

/// A tensor's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Backprop agrees within [`TOLERANCE`].
    Ok,
    /// Backprop disagrees with the finite difference.
    Mismatch,
    /// No entry could be checked.
    Unverified,
}

impl TensorCheck {
    /// Ok, Mismatch, or Unverified when nothing was checked.
    pub fn verdict(&self) -> Verdict {
        if self.checked == 0 {
            Verdict::Unverified
        } else if self.max_rel_error <= TOLERANCE {
            Verdict::Ok
        } else {
            Verdict::Mismatch
        }
    }
}

/// The whole check: the forward pass against its definition, then every tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct GradReport {
    pub forward: ForwardCheck,
    pub tensors: Vec<TensorCheck>,
}

impl GradReport {
    /// Why the check failed, in one line, or `None` when it passed: the forward pass
    /// disagrees with its definition, a tensor mismatches, or no entry at all could be
    /// checked. Unverified tensors alone do not fail it.
    pub fn failure(&self) -> Option<String> {
        let f = &self.forward;
        // NaN fails too.
        if f.max_rel_error.is_nan() || f.max_rel_error > FORWARD_TOLERANCE {
            return Some(format!(
                "the forward pass differs from its definition at layer {} (relative error \
                 {:.1e}, tolerance {FORWARD_TOLERANCE:.0e})",
                f.worst_layer, f.max_rel_error
            ));
        }
        if f.wrong_choices > 0 {
            return Some(format!(
                "the forward pass made {} ReLU or max-pool choices that its own values \
                 contradict",
                f.wrong_choices
            ));
        }
        let failed: Vec<&str> = self
            .tensors
            .iter()
            .filter(|t| t.verdict() == Verdict::Mismatch)
            .map(|t| t.name.as_str())
            .collect();
        if !failed.is_empty() {
            return Some(format!(
                "{} of {} parameter tensors exceed the tolerance: {}",
                failed.len(),
                self.tensors.len(),
                failed.join(", ")
            ));
        }
        if !self.tensors.is_empty() && self.tensors.iter().all(|t| t.checked == 0) {
            return Some(
                "no parameter entry could be checked: every finite difference tried was \
                 infinite or NaN"
                    .into(),
            );
        }
        None
    }
}

/// Relative error with a floor on the denominator, so that two tiny numbers do not
/// count as far apart: `|a - b| / max(|a|, |b|, floor)`.
pub fn rel_error(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(floor)
}

/// Checks the forward pass of `model` on the batch `(x, labels)` against its definition,
/// then up to `per_tensor` entries of every parameter tensor (every entry of a smaller
/// tensor; random ones, chosen from `seed`, of a larger), with central differences of
/// the frozen f64 loss at the relative step `h` (see the module doc; [`STEP`]).
pub fn check_network(
    model: &mut Model,
    x: &Tensor,
    labels: &[usize],
    per_tensor: usize,
    h: f64,
    seed: u64,
) -> Result<GradReport> {
    model.compute_gradients(x, labels)?;
    let backprop: Vec<Vec<f32>> = model
        .named_params()
        .into_iter()
        .map(|(_, p)| p.grad.data().to_vec())
        .collect();
    check_gradients(model, x, labels, &backprop, per_tensor, h, seed)
}

/// [`check_network`] for given gradients `backprop` (one per parameter tensor, in
/// [`Model::named_params`]'s order) instead of the model's own: how the tests show that a
/// wrong derivative fails the check.
pub fn check_gradients(
    model: &mut Model,
    x: &Tensor,
    labels: &[usize],
    backprop: &[Vec<f32>],
    per_tensor: usize,
    h: f64,
    seed: u64,
) -> Result<GradReport> {
    let (names, lens): (Vec<String>, Vec<usize>) = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value.len()))
        .unzip();
    let given: Vec<usize> = backprop.iter().map(Vec::len).collect();
    if given != lens {
        return Err(crate::error::Error::Invalid(format!(
            "gradients of sizes {given:?} for parameter tensors of sizes {lens:?}"
        )));
    }
    let mut net = FrozenNet::new(model, x, labels)?;
    let mut rng = Rng::for_purpose(seed, "gradcheck");
    let mut tensors = Vec::with_capacity(names.len());
    let mut max_diffs = Vec::with_capacity(names.len());
    for (t, (name, grad)) in names.iter().zip(backprop).enumerate() {
        let mut check = TensorCheck {
            name: name.clone(),
            checked: 0,
            on_kink: 0,
            unchecked: 0,
            scale: 0.0,
            max_rel_error: 0.0,
        };
        let mut max_diff = 0.0f64;
        for e in entries(grad.len(), per_tensor, &mut rng) {
            if check.checked == per_tensor {
                break;
            }
            let w = net.param(t, e);
            let step = h * w.abs().max(1.0);
            let (plus, kink_plus) = net.loss_with(t, e, w + step);
            let (minus, kink_minus) = net.loss_with(t, e, w - step);
            let numeric = (plus - minus) / ((w + step) - (w - step));
            if !numeric.is_finite() {
                check.unchecked += 1;
                continue;
            }
            let backprop = f64::from(grad[e]);
            check.checked += 1;
            check.on_kink += usize::from(kink_plus || kink_minus);
            // NaN must not vanish in a max.
            let diff = (numeric - backprop).abs();
            max_diff = if diff.is_nan() {
                f64::NAN
            } else {
                max_diff.max(diff)
            };
            check.scale = check.scale.max(numeric.abs()).max(backprop.abs());
        }
        tensors.push(check);
        max_diffs.push(max_diff);
    }
    let network_scale = tensors.iter().map(|c| c.scale).fold(0.0, f64::max);
    for (check, max_diff) in tensors.iter_mut().zip(max_diffs) {
        let scale = check.scale.max(SCALE_FLOOR * network_scale);
        check.max_rel_error = if scale > 0.0 {
            max_diff / scale
        } else {
            max_diff
        };
    }
    Ok(GradReport {
        forward: net.forward_check().clone(),
        tensors,
    })
}

/// [`check_network`]'s per-tensor results with step `h`, for callers that check the forward
/// pass elsewhere (the layer tests).
pub fn check_model(
    model: &mut Model,
    x: &Tensor,
    labels: &[usize],
    per_tensor: usize,
    h: f32,
    seed: u64,
) -> Result<Vec<TensorCheck>> {
    Ok(check_network(model, x, labels, per_tensor, f64::from(h), seed)?.tensors)
}

/// The entries to try, in order: all of a tensor of at most `per_tensor`, else up to
/// `4 per_tensor` distinct random ones (the extra ones replace entries that cannot be
/// checked).
fn entries(len: usize, per_tensor: usize, rng: &mut Rng) -> Vec<usize> {
    if len <= per_tensor {
        return (0..len).collect();
    }
    let want = (4 * per_tensor).min(len);
    let mut seen = HashSet::with_capacity(want);
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        let e = rng.below(len);
        if seen.insert(e) {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_batch_is_the_most_any_layer_needs() {
        let spec = |text: &str| crate::config::parse(text, "t").unwrap().spec;
        assert_eq!(default_batch(&crate::examples::lenet()), 2);
        let bn = "3\nInput shape=1x6x6\nConv2D filters=2 kernel=3\nBatchNorm2D\nDense units=2\n";
        assert_eq!(default_batch(&spec(bn)), 8);
    }
}
