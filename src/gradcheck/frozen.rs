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
//! The same evaluation at the unperturbed point checks the network's forward pass: every
//! layer's f32 output must agree with the f64 definition to rounding, and every choice the
//! forward pass made must be right (a mask that says z > 0 where z < 0, or a winner that is
//! not its window's maximum, by more than rounding, is a wrong forward pass).

use rayon::prelude::*;

use crate::error::Result;
use crate::layers::{Activation, ConvGeom, Op, PoolGeom};
use crate::model::Model;
use crate::tensor::Tensor;

/// A layer's operation before its activation, with the geometry it needs.
#[derive(Debug, Clone, Copy)]
enum RefOp {
    Conv(ConvGeom),
    Dense {
        inputs: usize,
        units: usize,
    },
    MaxPool(PoolGeom),
    AvgPool(PoolGeom),
    /// BatchNorm in its training form: C channels of S values per sample, each normalised
    /// with its batch mean and biased variance.
    BatchNorm {
        channels: usize,
        spatial: usize,
        eps: f64,
    },
    Identity,
}

/// One layer of the f64 network.
#[derive(Debug, Clone)]
struct RefLayer {
    op: RefOp,
    /// The activation as the model applies it in training (a final softmax is left to the
    /// loss, so it is `None` there).
    act: Activation,
    /// Weight then bias, as f64 copies of the model's values; empty for layers without.
    params: Vec<Vec<f64>>,
    /// For ReLU / LeakyReLU: the forward pass's piece for every output, `true` = z > 0.
    mask: Option<Vec<bool>>,
    /// For MaxPool2D: the forward pass's winner of every window, as an index in its plane.
    winners: Option<Vec<u32>>,
    /// For Dropout in training: the factor (0 or 1/(1 - P)) of every value, as the forward
    /// pass drew it.
    scale: Option<Vec<f64>>,
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
        let last = model.layers.len() - 1;
        let mut layers = Vec::with_capacity(model.layers.len());
        let mut tensors = Vec::new();
        for (i, layer) in model.layers.iter().enumerate() {
            let act = if i == last && layer.activation() == Activation::Softmax {
                Activation::None
            } else {
                layer.activation()
            };
            let y = model.activation(i).map_or(&[][..], |t| t.data());
            let mask = matches!(act, Activation::Relu | Activation::LeakyRelu(_))
                .then(|| y.iter().map(|&v| v > 0.0).collect());
            let (op, winners) = match &layer.op {
                Op::Conv2D(l) => (RefOp::Conv(l.geom), None),
                Op::Dense(l) => (
                    RefOp::Dense {
                        inputs: l.inputs,
                        units: l.units,
                    },
                    None,
                ),
                Op::MaxPool2D(p) => {
                    let g = p.geom;
                    let count = n * g.c * g.out_h * g.out_w;
                    (RefOp::MaxPool(g), Some(p.argmax()[..count].to_vec()))
                }
                Op::AvgPool2D(p) => (RefOp::AvgPool(p.geom), None),
                Op::BatchNorm(b) => (
                    RefOp::BatchNorm {
                        channels: b.channels,
                        spatial: b.spatial,
                        eps: f64::from(b.eps),
                    },
                    None,
                ),
                // Flatten copies; a stand-alone activation is `act` on a copy.
                Op::Flatten(_) | Op::Activation(_) | Op::Dropout(_) => (RefOp::Identity, None),
            };
            let params: Vec<Vec<f64>> = layer
                .params()
                .iter()
                .map(|(_, p)| p.value.data().iter().map(|&v| f64::from(v)).collect())
                .collect();
            tensors.extend((0..params.len()).map(|slot| (i, slot)));
            let scale = match &layer.op {
                Op::Dropout(d) if !d.scale().is_empty() => {
                    Some(d.scale().iter().map(|&f| f64::from(f)).collect())
                }
                _ => None,
            };
            layers.push(RefLayer {
                op,
                act,
                params,
                mask,
                winners,
                scale,
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
        let (out, pre) = net.run(0, &net.x, None);
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
            if let (RefOp::MaxPool(g), Some(winners)) = (layer.op, &layer.winners) {
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
                let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
                for (o, &win) in winners.iter().enumerate() {
                    let (plane, oy, ox) = (o / ohw, (o % ohw) / g.out_w, o % g.out_w);
                    let window = pool_window(&g, oy, ox).map(|at| plane * hw + at);
                    let winner = input[plane * hw + win as usize];
                    let best = window.clone().map(|at| input[at]).fold(winner, f64::max);
                    if best - winner > tol {
                        check.wrong_choices += 1;
                        continue;
                    }
                    let close: Vec<usize> =
                        window.filter(|&at| input[at] + tol >= winner).collect();
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
        let (out, pre) = self.run(li, input, Some(self.layers[li].channel_of(slot, e)));
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
    /// pre-activation, indexed from `start`. With `changed = Some(c)`, a parameter of layer
    /// `start` feeding only its output channel (or unit) c was changed, and every layer
    /// computes only what can differ from the unperturbed pass: the perturbed layer its
    /// channel c, and a later Conv2D or Dense `z_base + W (x - x_base)` over the input
    /// channels that changed (exact by linearity, up to f64 rounding).
    fn run(
        &self,
        start: usize,
        input: &[f64],
        changed: Option<usize>,
    ) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let mut outs: Vec<Vec<f64>> = Vec::with_capacity(self.layers.len() - start);
        let mut pres = Vec::with_capacity(self.layers.len() - start);
        // The channels of the last output that differ from the unperturbed pass, and the
        // values per channel and sample; None: any may differ.
        let mut dirty: Option<(Vec<usize>, usize)> = None;
        for (i, layer) in self.layers.iter().enumerate().skip(start) {
            let x = outs.last().map_or(input, |v| v);
            let z = match (changed, &dirty) {
                (Some(c), _) if i == start => {
                    dirty = Some((vec![c], layer.channel_len()));
                    layer.one_channel(x, &self.base_pre[i], c, self.n)
                }
                (_, Some((channels, block))) if layer.is_linear() => {
                    let base_x = &self.base_out[i - 1];
                    let z = layer.with_changed_inputs(
                        x,
                        base_x,
                        &self.base_pre[i],
                        channels,
                        *block,
                        self.n,
                    );
                    dirty = None;
                    z
                }
                _ => {
                    if layer.is_linear() {
                        dirty = None;
                    } else if let (Some(d), RefOp::MaxPool(g) | RefOp::AvgPool(g)) =
                        (dirty.as_mut(), layer.op)
                    {
                        d.1 = g.out_h * g.out_w;
                    }
                    layer.op_forward(x, self.n)
                }
            };
            if layer.act == Activation::Softmax {
                dirty = None;
            }
            let y = layer.activate(&z);
            pres.push(z);
            outs.push(y);
        }
        (outs, pres)
    }
}

/// The flat in-plane indices of the window of output (oy, ox).
fn pool_window(g: &PoolGeom, oy: usize, ox: usize) -> impl Iterator<Item = usize> + Clone {
    let g = *g;
    (0..g.ph)
        .flat_map(move |i| (0..g.pw).map(move |j| (oy * g.stride + i) * g.w + ox * g.stride + j))
}

impl RefLayer {
    /// Conv2D and Dense: linear in their input.
    fn is_linear(&self) -> bool {
        matches!(self.op, RefOp::Conv(_) | RefOp::Dense { .. })
    }

    /// Values per output channel and sample (a plane, or 1 for a Dense unit).
    fn channel_len(&self) -> usize {
        match self.op {
            RefOp::Conv(g) => g.out_h * g.out_w,
            RefOp::BatchNorm { spatial, .. } => spatial,
            _ => 1,
        }
    }

    /// The output channel (Conv2D filter, Dense unit) that entry `e` of parameter `slot`
    /// (0 weight, 1 bias) feeds.
    fn channel_of(&self, slot: usize, e: usize) -> usize {
        match (self.op, slot) {
            (RefOp::Conv(g), 0) => e / g.patch_len(),
            (RefOp::Dense { inputs, .. }, 0) => e / inputs,
            _ => e,
        }
    }

    /// The operation with only output channel `c` recomputed, the rest from `base_z`.
    fn one_channel(&self, x: &[f64], base_z: &[f64], c: usize, n: usize) -> Vec<f64> {
        if let RefOp::BatchNorm { .. } = self.op {
            // Cheap already (O(N C S)); the other channels come out as in the base pass.
            return self.op_forward(x, n);
        }
        let (w, b) = (&self.params[0], &self.params[1]);
        let mut z = base_z.to_vec();
        match self.op {
            RefOp::Conv(g) => {
                let (ohw, hw, len) = (g.out_h * g.out_w, g.h * g.w, g.patch_len());
                for s in 0..n {
                    let out = &mut z[(s * g.k + c) * ohw..(s * g.k + c + 1) * ohw];
                    out.fill(b[c]);
                    for ch in 0..g.c {
                        let xc = &x[(s * g.c + ch) * hw..(s * g.c + ch + 1) * hw];
                        let kernel = &w[c * len + ch * g.kh * g.kw..][..g.kh * g.kw];
                        conv_channel(&g, xc, kernel, out);
                    }
                }
            }
            RefOp::Dense { inputs, units } => {
                let row = &w[c * inputs..(c + 1) * inputs];
                for s in 0..n {
                    let xs = &x[s * inputs..(s + 1) * inputs];
                    z[s * units + c] = b[c] + row.iter().zip(xs).map(|(a, v)| a * v).sum::<f64>();
                }
            }
            _ => unreachable!("only Conv2D and Dense have parameters"),
        }
        z
    }

    /// `base_z + W (x - base_x)` where `x` differs from `base_x` only in `channels` (of
    /// `block` values per sample each).
    fn with_changed_inputs(
        &self,
        x: &[f64],
        base_x: &[f64],
        base_z: &[f64],
        channels: &[usize],
        block: usize,
        n: usize,
    ) -> Vec<f64> {
        let w = &self.params[0];
        let mut z = base_z.to_vec();
        let in_len = x.len() / n.max(1);
        // (x - base_x) per sample and changed channel.
        let delta: Vec<Vec<f64>> = (0..n)
            .flat_map(|s| channels.iter().map(move |&c| (s, c)))
            .map(|(s, c)| {
                let at = s * in_len + c * block;
                (at..at + block).map(|i| x[i] - base_x[i]).collect()
            })
            .collect();
        match self.op {
            RefOp::Conv(g) => {
                let (ohw, len) = (g.out_h * g.out_w, g.patch_len());
                z.par_chunks_mut(ohw).enumerate().for_each(|(plane, out)| {
                    let (s, k) = (plane / g.k, plane % g.k);
                    for (j, &c) in channels.iter().enumerate() {
                        let kernel = &w[k * len + c * g.kh * g.kw..][..g.kh * g.kw];
                        conv_channel(&g, &delta[s * channels.len() + j], kernel, out);
                    }
                });
            }
            RefOp::Dense { inputs, units } => {
                z.par_iter_mut().enumerate().for_each(|(at, v)| {
                    let (s, u) = (at / units, at % units);
                    for (j, &c) in channels.iter().enumerate() {
                        let row = &w[u * inputs + c * block..][..block];
                        let d = &delta[s * channels.len() + j];
                        *v += row.iter().zip(d).map(|(a, b)| a * b).sum::<f64>();
                    }
                });
            }
            _ => unreachable!("only Conv2D and Dense are linear"),
        }
        z
    }

    /// The operation by its definition, in f64, for `n` samples.
    fn op_forward(&self, x: &[f64], n: usize) -> Vec<f64> {
        match self.op {
            RefOp::Conv(g) => conv(&g, x, &self.params[0], &self.params[1], n),
            RefOp::Dense { inputs, units } => {
                let (w, b) = (&self.params[0], &self.params[1]);
                let mut y = vec![0.0; n * units];
                y.par_iter_mut().enumerate().for_each(|(at, v)| {
                    let (s, u) = (at / units, at % units);
                    let row = &w[u * inputs..(u + 1) * inputs];
                    let xs = &x[s * inputs..(s + 1) * inputs];
                    *v = b[u] + row.iter().zip(xs).map(|(a, c)| a * c).sum::<f64>();
                });
                y
            }
            RefOp::MaxPool(g) => {
                let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
                let winners = self.winners.as_deref().unwrap_or(&[]);
                winners
                    .iter()
                    .enumerate()
                    .map(|(o, &win)| x[(o / ohw) * hw + win as usize])
                    .collect()
            }
            RefOp::AvgPool(g) => {
                let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
                let scale = 1.0 / (g.ph * g.pw) as f64;
                (0..n * g.c * ohw)
                    .map(|o| {
                        let (plane, oy, ox) = (o / ohw, (o % ohw) / g.out_w, o % g.out_w);
                        let s: f64 = pool_window(&g, oy, ox).map(|at| x[plane * hw + at]).sum();
                        s * scale
                    })
                    .collect()
            }
            RefOp::BatchNorm {
                channels,
                spatial,
                eps,
            } => {
                // y = gamma (x - mu) / sqrt(var + eps) + beta, mu and the biased var over
                // each channel's N S values.
                let (gamma, beta) = (&self.params[0], &self.params[1]);
                let m = (n * spatial) as f64;
                let at = |s: usize, c: usize| (s * channels + c) * spatial;
                let mut y = vec![0.0; n * channels * spatial];
                for c in 0..channels {
                    let values = || (0..n).flat_map(|s| &x[at(s, c)..at(s, c) + spatial]);
                    let mu = values().sum::<f64>() / m;
                    let var = values().map(|v| (v - mu).powi(2)).sum::<f64>() / m;
                    let inv = 1.0 / (var + eps).sqrt();
                    for s in 0..n {
                        for j in at(s, c)..at(s, c) + spatial {
                            y[j] = gamma[c] * (x[j] - mu) * inv + beta[c];
                        }
                    }
                }
                y
            }
            RefOp::Identity => match &self.scale {
                Some(scale) => x.iter().zip(scale).map(|(v, f)| v * f).collect(),
                None => x.to_vec(),
            },
        }
    }

    /// The activation, with ReLU / LeakyReLU on their frozen pieces.
    fn activate(&self, z: &[f64]) -> Vec<f64> {
        let mask = self.mask.as_deref().unwrap_or(&[]);
        match self.act {
            Activation::None => z.to_vec(),
            Activation::Relu => z
                .iter()
                .zip(mask)
                .map(|(&v, &on)| if on { v } else { 0.0 })
                .collect(),
            Activation::LeakyRelu(a) => z
                .iter()
                .zip(mask)
                .map(|(&v, &on)| if on { v } else { f64::from(a) * v })
                .collect(),
            Activation::Sigmoid => z.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
            Activation::Tanh => z.iter().map(|&v| v.tanh()).collect(),
            Activation::Softmax => {
                let mut y = z.to_vec();
                for row in y.chunks_mut(self.out_len) {
                    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    row.iter_mut().for_each(|v| *v = (*v - m).exp());
                    let s: f64 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= s);
                }
                y
            }
        }
    }
}

/// y[n][k][oy][ox] = b[k] + sum_{c,i,j} w[k][c][i][j] x[n][c][oy S + i - P][ox S + j - P],
/// in f64, one output plane per task.
fn conv(g: &ConvGeom, x: &[f64], w: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let (ohw, hw, len) = (g.out_h * g.out_w, g.h * g.w, g.patch_len());
    let mut y = vec![0.0; n * g.k * ohw];
    y.par_chunks_mut(ohw).enumerate().for_each(|(plane, out)| {
        let (s, k) = (plane / g.k, plane % g.k);
        out.fill(b[k]);
        for c in 0..g.c {
            let xc = &x[(s * g.c + c) * hw..(s * g.c + c + 1) * hw];
            conv_channel(g, xc, &w[k * len + c * g.kh * g.kw..][..g.kh * g.kw], out);
        }
    });
    y
}

/// `out[oy][ox] += sum_{i,j} kernel[i][j] xc[oy S + i - P][ox S + j - P]`: one input
/// channel's contribution to one output plane.
fn conv_channel(g: &ConvGeom, xc: &[f64], kernel: &[f64], out: &mut [f64]) {
    for i in 0..g.kh {
        for j in 0..g.kw {
            let wv = kernel[i * g.kw + j];
            // Output columns whose input column ox S + j - P lies inside the image.
            let lo = g.pad_left.saturating_sub(j).div_ceil(g.stride);
            let hi = (g.w + g.pad_left)
                .saturating_sub(j)
                .div_ceil(g.stride)
                .min(g.out_w);
            for oy in 0..g.out_h {
                let Some(iy) = (oy * g.stride + i).checked_sub(g.pad_top) else {
                    continue;
                };
                if iy >= g.h {
                    continue;
                }
                let row = &mut out[oy * g.out_w..(oy + 1) * g.out_w];
                for (ox, v) in row.iter_mut().enumerate().take(hi).skip(lo) {
                    *v += wv * xc[iy * g.w + ox * g.stride + j - g.pad_left];
                }
            }
        }
    }
}
