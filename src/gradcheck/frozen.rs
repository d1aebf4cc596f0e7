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
//! ReLU6      y = z if the forward pass had 0 < y < 6, else 0 or 6 (the side it was on)
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
//! The network is walked as the model walks it: each layer reads the values its line names
//! ([`crate::layers::Layer::reads`]; a Shortcut two, a Route those it lists), and after a
//! parameter changes only the layers that read something that changed are evaluated again;
//! the others keep the unperturbed pass's outputs.
//!
//! The same evaluation at the unperturbed point checks the network's forward pass: every
//! layer's f32 output must agree with the f64 definition to rounding, and every choice the
//! forward pass made must be right (a mask that says z > 0 where z < 0, or a winner that is
//! not its window's maximum, by more than rounding, is a wrong forward pass).

use crate::error::{Error, Result};
use crate::layers::{activation, Activation, Op, Value};
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
    /// The values it reads, in order.
    reads: Vec<Value>,
    /// The activation as the model applies it in training (a final softmax is left to the
    /// loss, so it is `None` there).
    act: Activation,
    /// The parameters, as f64 copies of the model's values, in [`Op::params`]' order.
    params: Vec<Vec<f64>>,
    /// For ReLU / ReLU6 / LeakyReLU: the forward pass's piece for every output, `true` = the
    /// linear piece through 0 ([`activation::frozen_mask`]).
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
        // Every layer's output, the convolutions' before a max pooling among them.
        model.keeping_outputs(|m| m.forward(x).map(|_| ()))?;
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
                reads: layer.shapes.reads.clone(),
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
        let run = net.run(0, None).map_err(|name| {
            Error::Invalid(format!(
                "{name}: the gradient check has no f64 definition of this layer"
            ))
        })?;
        net.base_out = run
            .outs
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        net.base_pre = run
            .pres
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
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
                for (at, (&on, &z)) in mask.iter().zip(pre).enumerate() {
                    let (piece, distance) = activation::piece_of(layer.act, z);
                    if distance <= tol {
                        self.ambiguous.push(Ambiguous::Unit { layer: i, at });
                    } else if on != piece {
                        check.wrong_choices += 1;
                    }
                }
            }
            let choices = layer.op.reference_choices(self.n);
            if !choices.is_empty() {
                // The layer that made the value it chose among, if not the input.
                let from = match layer.reads[0] {
                    Value::Input => None,
                    Value::Output(j) => Some(j),
                };
                let input = from.map_or(&self.x, |j| &self.base_out[j]);
                let tol = from.map_or(0.0, |j| KINK_MARGIN * errors[j]);
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
                    // Outputs of ReLUs that are off are 0 (ReLU6: 0 or 6) whatever the
                    // parameters: a tie
                    // among them alone is no kink.
                    let constant = |at: &usize| {
                        from.is_some_and(|j| {
                            matches!(self.layers[j].act, Activation::Relu | Activation::Relu6)
                                && self.layers[j].mask.as_ref().is_some_and(|m| !m[*at])
                        })
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
        let changed = self.layers[li].op.reference_channel(slot, e);
        let run = self
            .run(li, changed)
            .expect("every layer has a reference: FrozenNet::new ran them all");
        self.layers[li].params[slot][e] = original;
        let last = self.layers.len() - 1;
        let loss = self.loss(run.out(self, last));
        let at_kink = self.ambiguous.iter().any(|a| match a {
            Ambiguous::Unit { layer, at } => {
                *layer >= li && run.pre(self, *layer)[*at] != self.base_pre[*layer][*at]
            }
            Ambiguous::Window { layer, inputs } => {
                // The layer whose output the pooling chose among.
                let Value::Output(from) = self.layers[*layer].reads[0] else {
                    return false;
                };
                // Moved apart (not all by the same amount): the winner could change.
                *layer > li && {
                    let now = run.out(self, from);
                    let moved: Vec<f64> = inputs
                        .iter()
                        .map(|&at| now[at] - self.base_out[from][at])
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

    /// Layers `start..` with every layer before `start` as in the unperturbed pass (on the
    /// first run, with none yet, every layer is evaluated): every output and
    /// pre-activation that may differ from the unperturbed pass, or the name of a layer
    /// without a reference. A layer none of whose values changed is not evaluated again.
    /// With `changed = Some((c, block))`, a parameter of layer `start` feeding only its
    /// output channel (or unit) c, of `block` values per sample, was changed, and every
    /// layer computes only what can differ from the unperturbed pass: the perturbed layer
    /// its channel c, and a later layer linear in its input (Conv2D, Dense)
    /// `z_base + W (x - x_base)` over the input channels that changed (exact by linearity,
    /// up to f64 rounding).
    fn run(
        &self,
        start: usize,
        changed: Option<(usize, usize)>,
    ) -> std::result::Result<Run, &'static str> {
        let first = self.base_out.is_empty();
        let mut run = Run {
            start,
            outs: Vec::with_capacity(self.layers.len() - start),
            pres: Vec::with_capacity(self.layers.len() - start),
            changes: Vec::with_capacity(self.layers.len() - start),
        };
        for (i, layer) in self.layers.iter().enumerate().skip(start) {
            let (op, params, n) = (&layer.op, &layer.params, self.n);
            // How each value the layer reads differs from the unperturbed pass.
            let ins: Vec<Change> = layer
                .reads
                .iter()
                .map(|v| match *v {
                    Value::Output(j) if j >= start => run.changes[j - start].clone(),
                    _ => Change::Same,
                })
                .collect();
            if !first && i > start && ins.iter().all(|c| *c == Change::Same) {
                run.outs.push(None);
                run.pres.push(None);
                run.changes.push(Change::Same);
                continue;
            }
            let xs: Vec<&[f64]> = layer.reads.iter().map(|&v| run.value(self, v)).collect();
            let (z, mut change) = match (changed, &ins[..]) {
                (Some((c, block)), _) if i == start => (
                    op.reference_one_channel(xs[0], &self.base_pre[i], params, c, n),
                    Change::Channels(vec![c], block),
                ),
                (_, [Change::Channels(channels, block)]) if !first => {
                    let base_x = self.base_value(layer.reads[0]);
                    let base_z = &self.base_pre[i];
                    match op.reference_changed_inputs(
                        xs[0], base_x, base_z, params, channels, *block, n,
                    ) {
                        // Linear: everything after may differ.
                        Some(z) => (Some(z), Change::All),
                        None => (
                            op.reference(xs[0], params, n),
                            op.reference_channel_block(*block)
                                .map_or(Change::All, |b| Change::Channels(channels.clone(), b)),
                        ),
                    }
                }
                _ if first => (op.reference_many(&xs, params, n), Change::All),
                _ => (op.reference_many(&xs, params, n), joined(op, &ins)),
            };
            let z = z.ok_or(layer.name)?;
            if layer.act == Activation::Softmax {
                change = Change::All;
            }
            let mask = layer.mask.as_deref().unwrap_or(&[]);
            let y = activation::reference(layer.act, &z, mask, layer.out_len);
            run.pres.push(Some(z));
            run.outs.push(Some(y));
            run.changes.push(change);
        }
        Ok(run)
    }

    /// The value `v` of the unperturbed pass.
    fn base_value(&self, v: Value) -> &[f64] {
        match v {
            Value::Input => &self.x,
            Value::Output(j) => &self.base_out[j],
        }
    }
}

/// How a layer's output differs from the unperturbed pass's.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// Not at all: the layer was not evaluated again.
    Same,
    /// Only in these channels, of this many values per sample each.
    Channels(Vec<usize>, usize),
    /// Anywhere.
    All,
}

/// The change of the output of `op`, a layer reading several values that changed as `ins`:
/// for a layer that keeps each value in place (a Shortcut's sum), the union of the changed
/// channels when every changed value changed only in some channels of one size; else any.
fn joined(op: &Op, ins: &[Change]) -> Change {
    let mut channels: Vec<usize> = Vec::new();
    let mut size = None;
    for c in ins {
        match c {
            Change::Same => {}
            Change::Channels(ch, block) if size.is_none_or(|b| b == *block) => {
                size = Some(*block);
                channels.extend(ch);
            }
            _ => return Change::All,
        }
    }
    match size.and_then(|b| op.reference_channel_block(b).filter(|&o| o == b)) {
        Some(b) => {
            channels.sort_unstable();
            channels.dedup();
            Change::Channels(channels, b)
        }
        None => Change::All,
    }
}

/// The outputs of an evaluation from layer `start` on that may differ from the
/// unperturbed pass (`None`: the unperturbed one).
struct Run {
    start: usize,
    outs: Vec<Option<Vec<f64>>>,
    pres: Vec<Option<Vec<f64>>>,
    changes: Vec<Change>,
}

impl Run {
    /// Layer `j`'s output in this evaluation.
    fn out<'a>(&'a self, net: &'a FrozenNet, j: usize) -> &'a [f64] {
        match j
            .checked_sub(self.start)
            .and_then(|k| self.outs[k].as_ref())
        {
            Some(v) => v,
            None => &net.base_out[j],
        }
    }

    /// Layer `j`'s pre-activation in this evaluation.
    fn pre<'a>(&'a self, net: &'a FrozenNet, j: usize) -> &'a [f64] {
        match j
            .checked_sub(self.start)
            .and_then(|k| self.pres[k].as_ref())
        {
            Some(v) => v,
            None => &net.base_pre[j],
        }
    }

    /// The value `v` in this evaluation.
    fn value<'a>(&'a self, net: &'a FrozenNet, v: Value) -> &'a [f64] {
        match v {
            Value::Input => &net.x,
            Value::Output(j) => self.out(net, j),
        }
    }
}
