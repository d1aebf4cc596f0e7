//! Activations: the layers `ReLU`, `ReLU6`, `LeakyReLU`, `Sigmoid`, `Tanh` and `Softmax`, and the
//! in-place passes that Conv2D and Dense also use for a fused `activation=` key.
//!
//! Every derivative here is written in terms of the activation's *output* y, so the input
//! need not be kept:
//!
//! ```text
//! ReLU       y = max(0, x)          dx = dy * [y > 0]            (report 1, eq. 5)
//! ReLU6      y = min(max(0, x), 6)  dx = dy * [0 < y < 6]        (MobileNetV2's activation)
//! LeakyReLU  y = x or a x           dx = dy * (1 if y > 0 else a)   (a > 0 keeps the sign)
//! Sigmoid    y = 1 / (1 + e^-x)     dx = dy * y (1 - y)
//! Tanh       y = tanh x             dx = dy * (1 - y^2)
//! Softmax    y_i = e^{x_i} / sum_j e^{x_j}   (per sample, shifted by max x for stability)
//!            dx_i = y_i (dy_i - sum_j dy_j y_j)
//! ```

use super::keys::LineKeys;
use super::{Counts, InputForm, LayerKind, LayerOp, SampleShape};
use crate::error::Result;
use crate::onnx::export::{float, int, Graph, LayerAt};
use crate::onnx::import::{dims_text, Attrs, Importer};
use crate::onnx::proto::NodeProto;

/// An element-wise (or, for softmax, per-sample) activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// f(x) = x.
    None,
    /// f(x) = max(0, x); f'(x) = 1 if x > 0 else 0 (report 1, eq. 4-5).
    Relu,
    /// f(x) = min(max(0, x), 6); f'(x) = 1 if 0 < x < 6 else 0 (MobileNets).
    Relu6,
    /// f(x) = x if x > 0 else alpha * x.
    LeakyRelu(f32),
    /// f(x) = 1 / (1 + e^-x); f'(x) = f(x) (1 - f(x)).
    Sigmoid,
    /// f(x) = tanh x; f'(x) = 1 - f(x)^2.
    Tanh,
    /// softmax(z)_i = e^{z_i} / sum_j e^{z_j} over one sample's features (report 1, eq. 6).
    Softmax,
}

impl Activation {
    /// The name used for the `activation=` key (`relu`, `leaky_relu`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
        }
    }

    /// The name of the stand-alone layer (`ReLU`, `LeakyReLU`, ...).
    pub fn layer_name(&self) -> &'static str {
        match self {
            Activation::None => "Linear",
            Activation::Relu => "ReLU",
            Activation::Relu6 => "ReLU6",
            Activation::LeakyRelu(_) => "LeakyReLU",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Softmax => "Softmax",
        }
    }

    /// ` relu`, ` leaky_relu 0.1`, or nothing: the suffix of a summary label for a layer
    /// that fuses this activation.
    pub fn suffix(&self) -> String {
        match self {
            Activation::None => String::new(),
            Activation::LeakyRelu(alpha) => format!(" leaky_relu {alpha}"),
            a => format!(" {}", a.name()),
        }
    }
}

/// The activation layers' kind.
pub struct Kind;

impl LayerKind for Kind {
    type Spec = Activation;
    type Op = ActivationLayer;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[
        ("ReLU", &[]),
        ("ReLU6", &[]),
        ("Sigmoid", &[]),
        ("Tanh", &[]),
        ("Softmax", &[]),
        ("LeakyReLU", &["alpha"]),
    ];
    const INPUT: InputForm = InputForm::Any;

    fn parse(name: &str, keys: &LineKeys) -> Result<Activation> {
        Ok(match name {
            "ReLU" => Activation::Relu,
            "ReLU6" => Activation::Relu6,
            "Sigmoid" => Activation::Sigmoid,
            "Tanh" => Activation::Tanh,
            "Softmax" => Activation::Softmax,
            _ => Activation::LeakyRelu(match keys.get("alpha") {
                Some(a) => keys.alpha(a)?,
                None => 0.01,
            }),
        })
    }

    fn name(spec: &Activation) -> &'static str {
        spec.layer_name()
    }

    fn output_shape(_spec: &Activation, input: &[usize]) -> Result<SampleShape> {
        Ok(input.to_vec())
    }

    fn counts(_spec: &Activation, _input: &[usize], _output: &[usize]) -> Counts {
        Counts::default()
    }

    fn describe(spec: &Activation) -> String {
        match spec {
            Activation::LeakyRelu(alpha) => format!("LeakyReLU {alpha}"),
            a => a.layer_name().to_string(),
        }
    }

    fn explain(spec: &Activation, _input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        Ok(vec![match spec {
            Activation::Softmax => {
                "softmax over each sample's features; no parameters, not counted as FLOPs"
            }
            _ => "element-wise; no parameters, not counted as FLOPs",
        }
        .into()])
    }

    fn activation(spec: &Activation) -> Activation {
        *spec
    }

    fn with_activation(_spec: &Activation, act: Activation) -> Activation {
        act
    }

    /// Nothing of its own: `cnn export` writes every layer's activation after it
    /// ([`onnx`]), this one's included.
    fn onnx(_spec: &Activation, _g: &mut Graph, input: &str, _at: &LayerAt) -> Result<String> {
        Ok(input.to_string())
    }

    const ONNX_OPS: &'static [&'static str] = &[
        "Relu",
        "Clip",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "LogSoftmax",
    ];

    /// An activation node: fused as `activation=` into the layer before it when that can
    /// take one ([`Importer::activation`]), else a line of its own. A `Clip` is a ReLU6
    /// (min 0, max 6) or a ReLU (min 0, no max); its bounds are inputs from opset 11 on,
    /// attributes before. A softmax must be over
    /// the features of a flat value; a `LogSoftmax` (as a softmax: `cnn predict` gives
    /// probabilities) must end the network.
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        let attrs = Attrs::of(node);
        let op = node.op_type.as_deref().unwrap_or("");
        match op {
            "Relu" => cx.activation("relu", "ReLU"),
            "Clip" => {
                let (min, max) = clip_bounds(node, &attrs, cx)?;
                match (min, max) {
                    (Some(0.0), Some(6.0)) => cx.activation("relu6", "ReLU6"),
                    (Some(0.0), None) => cx.activation("relu", "ReLU"),
                    _ => Err(format!(
                        "a Clip from {} to {}; only from 0 to 6 (ReLU6) or from 0 up (ReLU)",
                        min.map_or("-inf".into(), |v| v.to_string()),
                        max.map_or("inf".into(), |v| v.to_string())
                    )),
                }
            }
            "LeakyRelu" => {
                let a = attrs.float("alpha", 0.01);
                if !(0.0..=1.0).contains(&a) {
                    return Err(format!("alpha {a} is not from 0 to 1"));
                }
                cx.activation(
                    &format!("leaky_relu alpha={a}"),
                    &format!("LeakyReLU alpha={a}"),
                )
            }
            "Sigmoid" => cx.activation("sigmoid", "Sigmoid"),
            "Tanh" => cx.activation("tanh", "Tanh"),
            _ => {
                let axis = attrs.int("axis", -1);
                if cx.shape.len() != 1 || !(axis == 1 || axis == -1) {
                    return Err(format!(
                        "a {op} over axis {axis} of a [N, {}] value; only over the features of \
                         a flat [N, F] value",
                        dims_text(&cx.shape)
                    ));
                }
                if op == "LogSoftmax" {
                    cx.end_here(op);
                }
                cx.activation("softmax", "Softmax")
            }
        }
    }

    fn build(spec: &Activation, input: &[usize]) -> Result<ActivationLayer> {
        Ok(ActivationLayer {
            act: *spec,
            features: input.iter().product(),
        })
    }
}

/// A `Clip`'s lower and upper bounds (`None`: unbounded on that side): its second and third
/// inputs when present (opset 11 on; an empty name leaves the bound out), else its `min` and
/// `max` attributes (opset 6). The largest float as a bound counts as none.
fn clip_bounds(
    node: &NodeProto,
    attrs: &Attrs,
    cx: &Importer<'_>,
) -> std::result::Result<(Option<f32>, Option<f32>), String> {
    let bound = |at: usize, attr: &str| -> std::result::Result<Option<f32>, String> {
        let v = match node.input.get(at).map(String::as_str) {
            Some("") => None,
            Some(name) => Some(cx.scalar(name)?),
            None => attrs.find(attr).map(|_| attrs.float(attr, 0.0)),
        };
        Ok(v.filter(|v| v.abs() < f32::MAX))
    };
    Ok((bound(1, "min")?, bound(2, "max")?))
}

/// A stand-alone activation layer: y = f(x), element-wise (softmax: per sample).
///
/// # Shapes
/// input `[N, ...]`, output the same.
#[derive(Debug, Clone)]
pub struct ActivationLayer {
    pub act: Activation,
    /// Values per sample (softmax normalises over them).
    pub features: usize,
}

impl LayerOp for ActivationLayer {
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let len = n * self.features;
        y[..len].copy_from_slice(&x[..len]);
        forward(self.act, &mut y[..len], self.features);
    }

    fn backward(
        &mut self,
        _x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        let Some(dx) = dx else { return };
        let len = n * self.features;
        backward(self.act, &y[..len], &mut dy[..len], self.features);
        dx[..len].copy_from_slice(&dy[..len]);
    }

    /// A copy: the gradient check applies the activation to every layer's result
    /// ([`reference()`]), this one's included.
    fn reference(&self, x: &[f64], _params: &[Vec<f64>], _n: usize) -> Option<Vec<f64>> {
        Some(x.to_vec())
    }

    /// Values stay in place (a softmax mixes a sample's values; the check knows).
    fn reference_channel_block(&self, block: usize) -> Option<usize> {
        Some(block)
    }
}

/// The piece of ReLU and LeakyReLU that the forward pass chose for each output `y` (`true`:
/// z > 0), which the gradient check freezes; `None` for the smooth activations.
pub fn frozen_mask(act: Activation, y: &[f32]) -> Option<Vec<bool>> {
    match act {
        Activation::Relu | Activation::LeakyRelu(_) => Some(y.iter().map(|&v| v > 0.0).collect()),
        Activation::Relu6 => Some(y.iter().map(|&v| v > 0.0 && v < 6.0).collect()),
        _ => None,
    }
}

/// Whether the pre-activation value `z` lies on the piece that [`frozen_mask`] marks `true`
/// (ReLU6: 0 < z < 6; ReLU, LeakyReLU: z > 0), and how far it is from the nearest kink.
pub fn piece_of(act: Activation, z: f64) -> (bool, f64) {
    match act {
        Activation::Relu6 => (z > 0.0 && z < 6.0, z.abs().min((z - 6.0).abs())),
        _ => (z > 0.0, z.abs()),
    }
}

/// `act` applied to `z` in f64 by its definition for the gradient check, with ReLU and
/// LeakyReLU on the pieces `mask` froze ([`frozen_mask`]; a ReLU6 that is off is 0 below
/// its middle, 3, and 6 above); softmax over each sample's
/// `features` values.
pub fn reference(act: Activation, z: &[f64], mask: &[bool], features: usize) -> Vec<f64> {
    match act {
        Activation::None => z.to_vec(),
        Activation::Relu => z
            .iter()
            .zip(mask)
            .map(|(&v, &on)| if on { v } else { 0.0 })
            .collect(),
        Activation::Relu6 => z
            .iter()
            .zip(mask)
            .map(|(&v, &on)| match (on, v < 3.0) {
                (true, _) => v,
                (false, true) => 0.0,
                (false, false) => 6.0,
            })
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
            for row in y.chunks_mut(features) {
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                row.iter_mut().for_each(|v| *v = (*v - m).exp());
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            y
        }
    }
}

/// The ONNX nodes of `act` (named `name`) on the value `input`, whose per-sample shape is
/// `shape`; returns the value they write (`input` itself for [`Activation::None`]). `cnn
/// export` writes them after every layer, for its fused activation or, for an activation
/// line, the layer itself:
///
/// | activation | ONNX |
/// | --- | --- |
/// | `relu`, `leaky_relu`, `sigmoid`, `tanh` | `Relu`, `LeakyRelu` (alpha), `Sigmoid`, `Tanh` |
/// | `relu6` | `Clip` with the scalar initialisers `{name}.min` = 0 and `{name}.max` = 6 (inputs since opset 11) |
/// | `softmax` of a flat value | `Softmax` (axis 1) |
/// | `softmax` of a (C, H, W) value | `Flatten`, `Softmax`, and a `Reshape` back (ours is over a sample's C H W values, ONNX's over one axis) |
pub fn onnx(act: Activation, g: &mut Graph, input: &str, name: &str, shape: &[usize]) -> String {
    match act {
        Activation::None => input.to_string(),
        Activation::Relu => g.node("Relu", name, &[input], vec![]),
        Activation::Relu6 => {
            let (min, max) = (format!("{name}.min"), format!("{name}.max"));
            g.init_f32(&min, &[], &[0.0]);
            g.init_f32(&max, &[], &[6.0]);
            g.node("Clip", name, &[input, &min, &max], vec![])
        }
        Activation::LeakyRelu(a) => g.node("LeakyRelu", name, &[input], vec![float("alpha", a)]),
        Activation::Sigmoid => g.node("Sigmoid", name, &[input], vec![]),
        Activation::Tanh => g.node("Tanh", name, &[input], vec![]),
        Activation::Softmax if shape.len() == 1 => {
            g.node("Softmax", name, &[input], vec![int("axis", 1)])
        }
        Activation::Softmax => {
            let back = format!("{name}.shape");
            // Sizes are at most MAX_DIM (the config caps them), so they fit an i64.
            let dims: Vec<i64> = std::iter::once(-1)
                .chain(shape.iter().map(|&d| d as i64))
                .collect();
            g.init_i64(&back, dims);
            let flat = g.node(
                "Flatten",
                &format!("{name}.flatten"),
                &[input],
                vec![int("axis", 1)],
            );
            let soft = g.node("Softmax", name, &[&flat], vec![int("axis", 1)]);
            g.node(
                "Reshape",
                &format!("{name}.reshape"),
                &[&soft, &back],
                vec![],
            )
        }
    }
}

/// Applies `act` in place to `n` samples of `features` values each.
pub fn forward(act: Activation, y: &mut [f32], features: usize) {
    match act {
        Activation::None => {}
        Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Relu6 => y.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        Activation::LeakyRelu(a) => y
            .iter_mut()
            .for_each(|v| *v = if *v <= 0.0 { *v * a } else { *v }),
        Activation::Sigmoid => y.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => y.chunks_mut(features).for_each(softmax_in_place),
    }
}

/// Whether ReLU's backward passes the gradient of an output `y` on (f'(x) = 1) rather
/// than zeroing it: `y` > 0, or NaN (a NaN output keeps its gradient).
pub fn relu_passes(y: f32) -> bool {
    y > 0.0 || y.is_nan()
}

/// Whether ReLU6's backward passes the gradient of an output `y` on: 0 < `y` < 6, or NaN.
pub fn relu6_passes(y: f32) -> bool {
    (y > 0.0 && y < 6.0) || y.is_nan()
}

/// Whether `act`'s backward multiplies each gradient by 0 or 1 chosen by its output alone
/// (none, ReLU, ReLU6: [`relu_passes`], [`relu6_passes`]), a gate: [`backward`] on one
/// value `d` of output `y` gives `d` where the gate passes `y` and 0 elsewhere. Not for the
/// others, whose derivative takes other values (and 0 times it may be -0 or NaN).
///
/// A max pooling after such an activation routes each gradient to its window's winner,
/// whose output the pooling keeps, so its backward can apply the gate itself and the
/// activation's output need not be kept (`crate::model::fused::conv_pool`).
pub fn has_gate(act: Activation) -> bool {
    matches!(act, Activation::None | Activation::Relu | Activation::Relu6)
}

/// Replaces `dy` (dL/dy) by dL/dx, given the activation's output `y`.
pub fn backward(act: Activation, y: &[f32], dy: &mut [f32], features: usize) {
    match act {
        Activation::None => {}
        // Both written as an unconditional store of a select, which vectorises: with a
        // branch, the unpredictable sign of y made ReLU's backward a third of a training
        // step of report 1's network.
        Activation::Relu => dy
            .iter_mut()
            .zip(y)
            .for_each(|(d, &v)| *d = if relu_passes(v) { *d } else { 0.0 }),
        Activation::Relu6 => dy
            .iter_mut()
            .zip(y)
            .for_each(|(d, &v)| *d = if relu6_passes(v) { *d } else { 0.0 }),
        Activation::LeakyRelu(a) => dy
            .iter_mut()
            .zip(y)
            .for_each(|(d, &v)| *d = if v <= 0.0 { *d * a } else { *d }),
        Activation::Sigmoid => dy.iter_mut().zip(y).for_each(|(d, &v)| *d *= v * (1.0 - v)),
        Activation::Tanh => dy.iter_mut().zip(y).for_each(|(d, &v)| *d *= 1.0 - v * v),
        Activation::Softmax => {
            for (d, yv) in dy.chunks_mut(features).zip(y.chunks(features)) {
                let dot: f32 = d.iter().zip(yv).map(|(a, b)| a * b).sum();
                d.iter_mut()
                    .zip(yv)
                    .for_each(|(di, &yi)| *di = yi * (*di - dot));
            }
        }
    }
}

/// softmax(z)_i = e^{z_i - m} / sum_j e^{z_j - m} with m = max_j z_j (the shift changes
/// nothing mathematically and keeps every exponent <= 0, so nothing overflows).
pub fn softmax_in_place(z: &mut [f32]) {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    z.iter_mut().for_each(|v| *v /= sum);
}
