//! The network in f64 with its piecewise-linear choices frozen: the smooth function whose
//! gradient backprop computes.
//!
//! ReLU and LeakyReLU are linear on each side of 0, and max pooling is linear while each
//! window keeps its winner. Backprop differentiates the piece the forward pass chose: it
//! multiplies by the mask `[y > 0]` and routes each window's gradient to its winner. This
//! module evaluates, by each layer's definition and in f64, the network in which
//!
//! ```text
//! ReLU       y = z if the forward pass had y > 0, else 0          (mask frozen)
//! LeakyReLU  y = z if the forward pass had y > 0, else a z
//! MaxPool    y = x[the forward pass's winner of the window]       (winner frozen)
//! ```
//!
//! and every other layer as defined (Conv2D, Dense, AvgPool2D, sigmoid, tanh, softmax, the
//! log-sum-exp loss). That function equals the network's loss wherever the choices stay
//! the same, it has no kinks anywhere (so a central difference converges as O(h^2) at any
//! step), and its arithmetic rounds 2^29 times finer than f32.
//!
//! Each layer's f64 definition, and the choices it freezes, are the layer's own
//! ([`crate::layers::LayerOp::reference`] and the methods beside it, on a copy of the
//! operation as the forward pass left it); the activations' are
//! [`crate::layers::activation::reference`]. This module is the driver: it runs them, compares
//! them with the f32 pass, and re-runs only what a changed parameter can change.
//!
//! The same evaluation at the unperturbed point checks the network's forward pass: every
//! layer's f32 output must agree with the f64 definition to rounding, and every choice the
//! forward pass made must be right (a mask that says z > 0 where z < 0, or a winner that is
//! not its window's maximum, by more than rounding, is a wrong forward pass).

use crate::error::{Error, Result};
use crate::layers::{activation, Activation, Op};
use crate::model::Model;
use crate::tensor::Tensor;

/// One layer of the f64 network.
#[derive(Debug, Clone)]
struct RefLayer {
    /// A copy of the layer's operation right after the forward pass: its geometry and the
    /// choices it made (max-pool winners, dropout factors), which its reference freezes.
    op: Op,
    /// The layer's name, for the message when it has no reference.
    name: &'static str,
    /// The activation as the model applies it in training (a final softmax is left to the
    /// loss, so it is `None` there).
    act: Activation,
    /// The parameters, as f64 copies of the model's values, in [`Op::params`]' order.
    params: Vec<Vec<f64>>,
    /// For ReLU / LeakyReLU: the forward pass's piece for every output, `true` = z > 0.
    mask: Option<Vec<bool>>,
    /// Output values per sample.
    out_len: usize,
}

/// A ReLU unit, or a max-pool window, that sits within rounding of its kink: the f32
/// forward pass could as well have chosen the other piece.
#[derive(Debug, Clone)]
enum Ambiguous {
    /// Layer and flat index of a ReLU / LeakyReLU unit with |z| within rounding of 0.
    Unit { layer: usize, at: usize },
    /// Layer of a max-pool whose window has several inputs within rounding of its maximum:
    /// their flat indices in that layer's input.
    Window { layer: usize, inputs: Vec<usize> },
}

/// How the f32 forward pass compares with the f64 definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardCheck {
    /// Worst layer's `max |f32 output - f64 output| / max |f64 output|`.
    pub max_rel_error: f64,
    /// The layer where that worst error is.
    pub worst_layer: usize,
    /// ReLU masks and max-pool winners that are wrong by more than rounding.
    pub wrong_choices: usize,
    /// ReLU units and max-pool windows within rounding of their kink.
    pub near_kinks: usize,
}

/// The frozen f64 network at one batch, with the outputs of its unperturbed pass.
#[derive(Debug, Clone)]
pub struct FrozenNet {
    layers: Vec<RefLayer>,
    /// `(layer, slot)` of every parameter tensor, in [`Model::params_mut`]'s order.
    tensors: Vec<(usize, usize)>,
    x: Vec<f64>,
    n: usize,
    labels: Vec<usize>,
    /// Per layer: the unperturbed output, and its pre-activation (the operation's result).
    base_out: Vec<Vec<f64>>,
    base_pre: Vec<Vec<f64>>,
    ambiguous: Vec<Ambiguous>,
    forward: ForwardCheck,
}

/// Multiple of the measured f32-against-f64 error of a layer's output within which a
/// value counts as "at" a kink (the measured error is a maximum over the layer already).
const KINK_MARGIN: f64 = 4.0;

impl FrozenNet {
    /// Runs `model` forward on `x` and freezes the choices it makes, then evaluates the
    /// frozen network in f64 and compares the two passes layer by layer.
    pub fn new(model: &mut Model, x: &Tensor, labels: &[usize]) -> Result<FrozenNet> {
        model.forward(x)?;
        let n = x.batch();
        let last = model.layers().len() - 1;
        let mut layers = Vec::with_capacity(model.layers().len());
        let mut tensors = Vec::new();
        for (i, layer) in model.layers().iter().enumerate() {
            let act = if i == last && layer.activation() == Activation::Softmax {
                Activation::None
            } else {
                layer.activation()
            };
            let y = model.activation(i).map_or(&[][..], |t| t.data());
            let mask = activation::frozen_mask(act, y);
            let params: Vec<Vec<f64>> = layer
                .params()
                .iter()
                .map(|(_, p)| p.value.data().iter().map(|&v| f64::from(v)).collect())
                .collect();
            tensors.extend((0..params.len()).map(|slot| (i, slot)));
            layers.push(RefLayer {
                op: layer.op.clone(),
                name: layer.spec.name(),
                act,
                params,
                mask,
                out_len: layer.output_len(),
            });
        }
        let xs: Vec<f64> = x.data().iter().map(|&v| f64::from(v)).collect();
        let mut net = FrozenNet {
            layers,
            tensors,
            x: xs,
            n,
            labels: labels.to_vec(),
            base_out: Vec::new(),
            base_pre: Vec::new(),
            ambiguous: Vec::new(),
            forward: ForwardCheck {
                max_rel_error: 0.0,
                worst_layer: 0,
                wrong_choices: 0,
                near_kinks: 0,
            },
        };
        let (out, pre) = net.run(0, &net.x, None).map_err(|name| {
            Error::Invalid(format!(
                "{name}: the gradient check has no f64 definition of this layer"
            ))
        })?;
        net.base_out = out;
        net.base_pre = pre;
        net.compare_with(model);
        Ok(net)
    }

    /// The comparison of the model's forward pass with the f64 definition.
    pub fn forward_check(&self) -> &ForwardCheck {
        &self.forward
    }

    /// The frozen network's loss at its unperturbed parameters.
    pub fn base_loss(&self) -> f64 {
        self.loss(self.base_out.last().map_or(&[][..], |v| v))
    }

    /// Layer by layer: the measured f32 rounding, wrong choices, and the units and windows
    /// within rounding of a kink.
    fn compare_with(&mut self, model: &Model) {
        // Absolute f32-against-f64 error of each layer's output; the input is exact.
        let mut errors = Vec::with_capacity(self.layers.len());
        let mut check = ForwardCheck {
            max_rel_error: 0.0,
            worst_layer: 0,
            wrong_choices: 0,
            near_kinks: 0,
        };
        for (i, reference) in self.base_out.iter().enumerate() {
            let got = model.activation(i).map_or(&[][..], |t| t.data());
            let err = got
                .iter()
                .zip(reference)
                .map(|(&a, &b)| (f64::from(a) - b).abs())
                .fold(0.0, f64::max);
            // A NaN anywhere makes the pass wrong, not "agreeing to 0".
            let err = if got.len() != reference.len() || got.iter().any(|v| !v.is_finite()) {
                f64::INFINITY
            } else {
                err
            };
            let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let rel = if scale > 0.0 { err / scale } else { err };
            if rel > check.max_rel_error || rel.is_nan() {
                check.max_rel_error = rel;
                check.worst_layer = i;
            }
            errors.push(err);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            if let (Some(mask), Some(pre)) = (&layer.mask, self.base_pre.get(i)) {
                let tol = KINK_MARGIN * errors[i];
                for (at, (&positive, &z)) in mask.iter().zip(pre).enumerate() {
                    if z.abs() <= tol {
                        self.ambiguous.push(Ambiguous::Unit { layer: i, at });
                    } else if positive != (z > 0.0) {
                        check.wrong_choices += 1;
                    }
                }
            }
            let choices = layer.op.reference_choices(self.n);
            if !choices.is_empty() {
                let input = if i == 0 {
                    &self.x
                } else {
                    &self.base_out[i - 1]
                };
                let tol = if i == 0 {
                    0.0
                } else {
                    KINK_MARGIN * errors[i - 1]
                };
                for (win, window) in choices {
                    let winner = input[win];
                    let best = window.iter().map(|&at| input[at]).fold(winner, f64::max);
                    if best - winner > tol {
                        check.wrong_choices += 1;
                        continue;
                    }
                    let close: Vec<usize> = window
                        .into_iter()
                        .filter(|&at| input[at] + tol >= winner)
                        .collect();
                    // Outputs of ReLUs that are off are 0 whatever the parameters: a tie
                    // among them alone is no kink.
                    let constant = |at: &usize| {
                        i > 0
                            && self.layers[i - 1].act == Activation::Relu
                            && self.layers[i - 1].mask.as_ref().is_some_and(|m| !m[*at])
                    };
                    if close.len() > 1 && !close.iter().all(constant) {
                        self.ambiguous.push(Ambiguous::Window {
                            layer: i,
                            inputs: close,
                        });
                    }
                }
            }
        }
        check.near_kinks = self.ambiguous.len();
        self.forward = check;
    }

    /// The frozen loss with entry `e` of parameter tensor `t` set to `value`, and whether
    /// that change moves a unit or window that sits on a kink (then the network's derivative
    /// is one-sided there, and the frozen one is the side the forward pass chose).
    pub fn loss_with(&mut self, t: usize, e: usize, value: f64) -> (f64, bool) {
        let (li, slot) = self.tensors[t];
        let original = self.layers[li].params[slot][e];
        self.layers[li].params[slot][e] = value;
        let input = if li == 0 {
            &self.x
        } else {
            &self.base_out[li - 1]
        };
        let changed = self.layers[li].op.reference_channel(slot, e);
        let (out, pre) = self
            .run(li, input, changed)
            .expect("every layer has a reference: FrozenNet::new ran them all");
        self.layers[li].params[slot][e] = original;
        let loss = self.loss(out.last().map_or(&[][..], |v| v));
        let at_kink = self.ambiguous.iter().any(|a| match a {
            Ambiguous::Unit { layer, at } => {
                *layer >= li && pre[layer - li][*at] != self.base_pre[*layer][*at]
            }
            Ambiguous::Window { layer, inputs } => {
                // Moved apart (not all by the same amount): the winner could change.
                *layer > li && {
                    let moved: Vec<f64> = inputs
                        .iter()
                        .map(|&at| out[layer - 1 - li][at] - self.base_out[layer - 1][at])
                        .collect();
                    let hi = moved.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lo = moved.iter().copied().fold(f64::INFINITY, f64::min);
                    let size = hi.abs().max(lo.abs());
                    hi - lo > 1e-6 * size
                }
            }
        });
        (loss, at_kink)
    }

    /// The value of entry `e` of parameter tensor `t`.
    pub fn param(&self, t: usize, e: usize) -> f64 {
        let (li, slot) = self.tensors[t];
        self.layers[li].params[slot][e]
    }

    /// Mean softmax cross-entropy of `logits` in f64: log sum_j e^{z_j} - z_y per sample.
    fn loss(&self, logits: &[f64]) -> f64 {
        let k = self.layers.last().map_or(1, |l| l.out_len);
        let total: f64 = logits
            .chunks(k)
            .zip(&self.labels)
            .map(|(z, &y)| {
                let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                m + z.iter().map(|&v| (v - m).exp()).sum::<f64>().ln() - z[y]
            })
            .sum();
        total / self.labels.len().max(1) as f64
    }

    /// Layers `start..` on `input` (the output of layer `start - 1`): every output and
    /// pre-activation, indexed from `start`; or the name of a layer without a reference.
    /// With `changed = Some((c, block))`, a parameter of layer `start` feeding only its
    /// output channel (or unit) c, of `block` values per sample, was changed, and every layer
    /// computes only what can differ from the unperturbed pass: the perturbed layer its
    /// channel c, and a later layer linear in its input (Conv2D, Dense) `z_base + W (x -
    /// x_base)` over the input channels that changed (exact by linearity, up to f64
    /// rounding).
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        start: usize,
        input: &[f64],
        changed: Option<(usize, usize)>,
    ) -> std::result::Result<(Vec<Vec<f64>>, Vec<Vec<f64>>), &'static str> {
        let mut outs: Vec<Vec<f64>> = Vec::with_capacity(self.layers.len() - start);
        let mut pres = Vec::with_capacity(self.layers.len() - start);
        // The channels of the last output that differ from the unperturbed pass, and the
        // values per channel and sample; None: any may differ.
        let mut dirty: Option<(Vec<usize>, usize)> = None;
        for (i, layer) in self.layers.iter().enumerate().skip(start) {
            let x = outs.last().map_or(input, |v| v);
            let (op, params, n) = (&layer.op, &layer.params, self.n);
            let z = match (changed, dirty.take()) {
                (Some((c, block)), _) if i == start => {
                    dirty = Some((vec![c], block));
                    op.reference_one_channel(x, &self.base_pre[i], params, c, n)
                }
                (_, Some((channels, block))) => {
                    let base_x = &self.base_out[i - 1];
                    let base_z = &self.base_pre[i];
                    match op
                        .reference_changed_inputs(x, base_x, base_z, params, &channels, block, n)
                    {
                        // Linear: everything after may differ.
                        Some(z) => Some(z),
                        None => {
                            dirty = op.reference_channel_block(block).map(|b| (channels, b));
                            op.reference(x, params, n)
                        }
                    }
                }
                _ => op.reference(x, params, n),
            };
            let z = z.ok_or(layer.name)?;
            if layer.act == Activation::Softmax {
                dirty = None;
            }
            let mask = layer.mask.as_deref().unwrap_or(&[]);
            let y = activation::reference(layer.act, &z, mask, layer.out_len);
            pres.push(z);
            outs.push(y);
        }
        Ok((outs, pres))
    }
}
