//! Route: the outputs of the layers it lists, concatenated along channels (darknet's
//! `[route]`; DenseNet's and Inception's joins). With one layer it is a branch point: its
//! output is that layer's output, and the next line reads it.
//!
//! Legend: N batch; x_1 ... x_k the listed layers' outputs, each (C_j, H, W) of one H and W
//! (or each flat, (F_j)); C = C_1 + ... + C_k.
//!
//! ```text
//! y[n]        = [x_1[n], x_2[n], ..., x_k[n]]       (C, H, W): channels of x_1 first
//! dL/dx_j[n]  = dL/dy[n][C_1 + ... + C_{j-1} .. C_1 + ... + C_j]   (its channels' slice)
//! ```
//!
//! In NCHW a sample's channels are one block of values, so the concatenation copies each
//! listed output's block of each sample into place, and the backward pass copies the blocks
//! of dL/dy back out.
//!
//! `Route layers=-1,-4` lists layers as `Shortcut from=` names one: a negative number
//! counts back from this line, a non-negative one is a layer index counted from 0. A Route
//! reads only the layers it lists, not the line above unless listed (-1).
//!
//! A projection shortcut (the skip path of a ResNet block that changes the channels or the
//! size) is a one-layer Route to the block's input, then a 1x1 convolution with the
//! block's stride, then a Shortcut adding it to the block's main path:
//!
//! ```text
//! Conv2D filters=32 kernel=3x3 stride=2 padding=same   # layer i + 1 reads layer i
//! BatchNorm2D activation=relu
//! Conv2D filters=32 kernel=3x3 padding=same
//! BatchNorm2D                                          # layer i + 4, the main path
//! Route layers=-5                                      # layer i again
//! Conv2D filters=32 kernel=1x1 stride=2
//! BatchNorm2D                                          # the skip path
//! Shortcut from=-4 activation=relu                     # layer i + 7 + layer i + 4
//! ```
//!
//! The model runs a one-layer Route without a copy: the layers that read it read the
//! listed layer's output itself (`src/model/plan.rs`), and their gradients go to it
//! directly. Its forward and backward passes below are a copy, for anything that runs
//! layer by layer.
//!
//! No parameters and no FLOPs. PyTorch: `torch.cat([x_1, ..., x_k], dim=1)`; ONNX: `Concat`
//! (axis 1); a one-layer Route writes no node. `cnn import` reads a `Concat` along channels
//! back as a Route of the layers that wrote its inputs, and a node that reads an earlier
//! value than the one before it as a one-layer Route to that value, then the node.

use rayon::prelude::*;

use super::keys::LineKeys;
use super::{InputForm, InputShape, LayerKind, LayerOp, SampleShape, Value};
use crate::error::{Error, Result};
use crate::onnx::export::{int, Graph, LayerAt};
use crate::onnx::import::{dims_text, Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::text::fmt_shape;

/// A Route config line: `Route layers=-1,-4`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// The layers concatenated, in order, as written: a negative number counts back from
    /// this line (-1 is the line above), any other is a layer index counted from 0. At
    /// least one. Required.
    pub layers: Vec<i64>,
}

/// The Route kind.
pub struct Kind;

impl LayerKind for Kind {
    type Spec = RouteSpec;
    type Op = Route;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[("Route", &["layers"])];
    const INPUT: InputForm = InputForm::Any;
    const READS_ABOVE: bool = false;
    const REFS_KEY: Option<&'static str> = Some("layers");

    /// `layers=-1,-4`: references separated by commas, each checked where it is written.
    fn parse(_name: &str, keys: &LineKeys) -> Result<RouteSpec> {
        let a = keys.required("layers")?;
        let mut layers = Vec::new();
        let mut col = a.value_pos.col;
        for item in a.value.split(',') {
            let pos = crate::layers::keys::Pos {
                line: a.value_pos.line,
                col,
            };
            layers.push(keys.layer_ref("layers", item, pos)?);
            col += item.chars().count() + 1;
        }
        Ok(RouteSpec { layers })
    }

    fn name(_spec: &RouteSpec) -> &'static str {
        "Route"
    }

    fn refs(spec: &RouteSpec) -> Vec<i64> {
        spec.layers.clone()
    }

    /// As if every listed layer had the shape `input`.
    fn output_shape(spec: &RouteSpec, input: &[usize]) -> Result<SampleShape> {
        let inputs = vec![
            InputShape {
                value: Value::Input,
                shape: input,
            };
            spec.layers.len()
        ];
        Self::output_shape_of(spec, &inputs)
    }

    /// (C_1 + ... + C_k, H, W) of values of one H and W, or (F_1 + ... + F_k) of flat ones.
    fn output_shape_of(_spec: &RouteSpec, inputs: &[InputShape]) -> Result<SampleShape> {
        let first = inputs
            .first()
            .ok_or_else(|| Error::Invalid("Route lists no layer".into()))?;
        let mut out = first.shape.to_vec();
        for other in &inputs[1..] {
            let fits = match (first.shape, other.shape) {
                ([_, h, w], [_, h2, w2]) => h == h2 && w == w2,
                ([_], [_]) => true,
                _ => false,
            };
            if !fits {
                let why = if first.shape.len() == 3 && other.shape.len() == 3 {
                    "of one height and width"
                } else {
                    "all (C, H, W) of one height and width, or all flat"
                };
                return Err(Error::Invalid(format!(
                    "Route concatenates along channels values {why}, but {} outputs {} and {} \
                     outputs {}",
                    first.value,
                    fmt_shape(first.shape),
                    other.value,
                    fmt_shape(other.shape)
                )));
            }
            out[0] += other.shape[0];
        }
        Ok(out)
    }

    fn describe(spec: &RouteSpec) -> String {
        let list: Vec<String> = spec.layers.iter().map(|l| l.to_string()).collect();
        format!("Route {}", list.join(","))
    }

    fn explain(spec: &RouteSpec, input: &[usize], output: &[usize]) -> Result<Vec<String>> {
        let inputs = vec![
            InputShape {
                value: Value::Input,
                shape: input,
            };
            spec.layers.len()
        ];
        Self::explain_of(spec, &inputs, output)
    }

    /// `(16, 14, 14) + (32, 14, 14) -> (48, 14, 14)`, the channels added.
    fn explain_of(
        _spec: &RouteSpec,
        inputs: &[InputShape],
        output: &[usize],
    ) -> Result<Vec<String>> {
        if let [one] = inputs {
            return Ok(vec![
                format!(
                    "the output of {} as it is, {}: a branch point, read by the next line",
                    one.value,
                    fmt_shape(one.shape)
                ),
                "no parameters, and no copy: the layers that read it read that output".into(),
            ]);
        }
        let values: Vec<String> = inputs.iter().map(|i| i.value.to_string()).collect();
        let shapes: Vec<String> = inputs.iter().map(|i| fmt_shape(i.shape)).collect();
        let channels: Vec<String> = inputs.iter().map(|i| i.shape[0].to_string()).collect();
        let what = if output.len() == 3 {
            "channels"
        } else {
            "values"
        };
        Ok(vec![
            format!(
                "{} concatenated along channels: {} -> {}",
                values.join(", "),
                shapes.join(" + "),
                fmt_shape(output)
            ),
            format!("{what} {} = {}", channels.join(" + "), output[0]),
            "no parameters; copies are not counted as FLOPs".into(),
        ])
    }

    fn build(spec: &RouteSpec, input: &[usize]) -> Result<Route> {
        let len = input.iter().product();
        Ok(Route {
            parts: vec![len; spec.layers.len()],
        })
    }

    fn build_of(spec: &RouteSpec, inputs: &[InputShape]) -> Result<Route> {
        Self::output_shape_of(spec, inputs)?;
        Ok(Route {
            parts: inputs.iter().map(|i| i.shape.iter().product()).collect(),
        })
    }

    /// `Concat` (axis 1) of the listed values; one value is read as it is, with no node.
    fn onnx(spec: &RouteSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        let inputs = vec![input; spec.layers.len()];
        Self::onnx_many(spec, g, &inputs, at)
    }

    fn onnx_many(
        _spec: &RouteSpec,
        g: &mut Graph,
        inputs: &[&str],
        at: &LayerAt,
    ) -> Result<String> {
        Ok(match inputs {
            [one] => one.to_string(),
            _ => g.node("Concat", at.name, inputs, vec![int("axis", 1)]),
        })
    }

    const ONNX_OPS: &'static [&'static str] = &["Concat"];

    /// `Concat` along channels (axis 1, or the same axis counted from the end) of values
    /// that earlier lines output: `Route layers=...` naming them.
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        let inputs = cx.computed_inputs(node);
        if inputs.len() != node.input.len() {
            return Err("concatenates a constant; only computed values are read".into());
        }
        let mut steps = Vec::with_capacity(inputs.len());
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(inputs.len());
        for v in &inputs {
            let (step, shape) = cx.written_by(v)?;
            steps.push(step);
            shapes.push(shape);
        }
        let rank = shapes[0].len() as i64 + 1;
        let axis = Attrs::of(node).int("axis", 1);
        if axis != 1 && axis != 1 - rank {
            return Err(format!(
                "axis {axis}: only a concatenation along channels (axis 1) is supported"
            ));
        }
        let mut out = shapes[0].clone();
        for s in &shapes[1..] {
            if s.len() != out.len() || s[1..] != out[1..] {
                return Err(format!(
                    "concatenates [N, {}] and [N, {}]: along channels the other dimensions \
                     must be equal",
                    dims_text(&shapes[0]),
                    dims_text(s)
                ));
            }
            out[0] += s[0];
        }
        let mut step = Step::new("Route".into(), StepKind::Other, vec![]);
        step.refs = Some(("layers", steps));
        cx.push(step);
        cx.shape = out;
        Ok(())
    }
}

/// A Route at run time: the values per sample of each listed output.
///
/// # Shapes
/// inputs `[N, C_j, H, W]` (or `[N, F_j]`), output `[N, C_1 + ... + C_k, H, W]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Values per sample of each listed output, in order.
    pub parts: Vec<usize>,
}

impl Route {
    /// Values per sample of the output.
    fn len(&self) -> usize {
        self.parts.iter().sum()
    }
}

impl LayerOp for Route {
    /// Every listed value is `x`.
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let xs = vec![x; self.parts.len()];
        self.forward_many(&xs, y, n)
    }

    /// Every listed value is `x`: dL/dx is the sum of the slices.
    fn backward(&mut self, x: &[f32], y: &[f32], dy: &mut [f32], dx: Option<&mut [f32]>, n: usize) {
        let Some(dx) = dx else { return };
        let len = n * self.parts[0];
        let mut parts: Vec<Vec<f32>> = vec![vec![0.0; len]; self.parts.len()];
        let xs = vec![x; self.parts.len()];
        let mut dxs: Vec<Option<&mut [f32]>> = parts.iter_mut().map(|p| Some(&mut p[..])).collect();
        self.backward_many(&xs, y, dy, &mut dxs, n);
        dx[..len].copy_from_slice(&parts[0]);
        for p in &parts[1..] {
            dx[..len].iter_mut().zip(p).for_each(|(d, v)| *d += v);
        }
    }

    /// Each sample's blocks copied into place, samples in parallel.
    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], n: usize) {
        let total = self.len();
        let parts = &self.parts;
        y[..n * total]
            .par_chunks_mut(total)
            .enumerate()
            .for_each(|(s, y)| {
                let mut at = 0;
                for (x, &len) in xs.iter().zip(parts) {
                    y[at..at + len].copy_from_slice(&x[s * len..(s + 1) * len]);
                    at += len;
                }
            });
    }

    /// Each `dxs[j]` given gets its slice of every sample of dL/dy.
    fn backward_many(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        n: usize,
    ) {
        let total = self.len();
        let mut at = 0;
        for (dx, &len) in dxs.iter_mut().zip(&self.parts) {
            if let Some(dx) = dx {
                dx[..n * len]
                    .par_chunks_mut(len)
                    .zip(dy[..n * total].par_chunks(total))
                    .for_each(|(dx, dy)| dx.copy_from_slice(&dy[at..at + len]));
            }
            at += len;
        }
    }

    /// One listed value is passed on as it is.
    fn passes_input_on(&self) -> bool {
        self.parts.len() == 1
    }

    /// Every listed value is `x`.
    fn reference(&self, x: &[f64], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let xs = vec![x; self.parts.len()];
        self.reference_many(&xs, params, n)
    }

    /// The concatenation in f64.
    fn reference_many(&self, xs: &[&[f64]], _params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let mut y = Vec::with_capacity(n * self.len());
        for s in 0..n {
            for (x, &len) in xs.iter().zip(&self.parts) {
                y.extend_from_slice(&x[s * len..(s + 1) * len]);
            }
        }
        Some(y)
    }

    /// One listed value is passed on as it is; several shift each other's channels.
    fn reference_channel_block(&self, block: usize) -> Option<usize> {
        (self.parts.len() == 1).then_some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::layers::{Layer, LayerSpec};
    use crate::tensor::Tensor;

    /// Two branches on the same input, concatenated, then a projection reading the input
    /// again through a one-layer Route.
    const NET: &str = "6\nInput shape=2x5x5\n\
        Conv2D filters=3 kernel=3 padding=same activation=relu\n\
        Conv2D filters=4 kernel=1\n\
        Route layers=-2,-1\n\
        Route layers=0\n\
        Conv2D filters=7 kernel=1\n\
        Shortcut from=-3\n";

    fn error(text: &str) -> (usize, usize, String) {
        match config::parse(text, "t.cfg") {
            Err(Error::Config { line, col, msg, .. }) => (line, col, msg),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_line_parses_and_the_channels_add_up() {
        let p = config::parse(NET, "t").unwrap();
        assert_eq!(
            p.spec.layers[2],
            LayerSpec::Route(RouteSpec {
                layers: vec![-2, -1]
            })
        );
        use crate::layers::Value::Output;
        let reads = p.spec.reads().unwrap();
        assert_eq!(reads[2], [Output(0), Output(1)]);
        assert_eq!(reads[3], [Output(0)]);
        let outs: Vec<_> = p
            .spec
            .shapes()
            .unwrap()
            .into_iter()
            .map(|s| s.output)
            .collect();
        assert_eq!(outs[2], [7, 5, 5]);
        assert_eq!(outs[3], [3, 5, 5]);
        assert_eq!(outs[5], [7, 5, 5]);
    }

    #[test]
    fn references_and_shapes_are_checked_where_they_are_written() {
        // Line 5 is `Route layers=-2,-1`: its items start at columns 14 and 17.
        let (line, col, msg) = error(&NET.replace("layers=-2,-1", "layers=-2,3"));
        assert_eq!((line, col), (5, 17), "{msg}");
        assert!(
            msg.contains("`layers` names layer 3, which comes after it"),
            "{msg}"
        );
        let (line, col, msg) = error(&NET.replace("layers=-2,-1", "layers=-2,,-1"));
        assert_eq!((line, col), (5, 17), "{msg}");
        assert!(msg.contains("`layers` must be a whole number"), "{msg}");
        let (line, col, _) = error(&NET.replace("layers=-2,-1", "layers=-5,-1"));
        assert_eq!((line, col), (5, 14));
        // A flat value and a (C, H, W) one.
        let text = "4\nInput shape=1x4x4\nConv2D filters=2 kernel=1\nGlobalAvgPool2D\n\
                    Route layers=-1,-2\nDense units=2\n";
        let (line, col, msg) = error(text);
        assert_eq!((line, col), (5, 14), "{msg}");
        assert!(
            msg.contains(
                "all (C, H, W) of one height and width, or all flat, but layer 1 \
                          outputs (2) and layer 0 outputs (2, 4, 4)"
            ),
            "{msg}"
        );
        // Different sizes.
        let text = "4\nInput shape=1x4x4\nConv2D filters=2 kernel=1\nMaxPool2D pool=2\n\
                    Route layers=0,1\nDense units=2\n";
        let (_, _, msg) = error(text);
        assert!(
            msg.contains(
                "values of one height and width, but layer 0 outputs (2, 4, 4) and \
                          layer 1 outputs (2, 2, 2)"
            ),
            "{msg}"
        );
        // Layer 1's output is read by nothing: the Route after it skips it.
        let text = "3\nInput shape=1x4x4\nConv2D filters=2 kernel=1\nConv2D filters=2 kernel=1\n\
                    Route layers=0\n";
        let (line, col, msg) = error(text);
        assert_eq!((line, col), (4, 1), "{msg}");
        assert!(
            msg.contains(
                "the output of layer 1 is read by no later layer (the Route on the next \
                          line reads only the layers it names)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn the_summary_explains_the_channels() {
        let spec = config::parse(NET, "t").unwrap().spec;
        let text = crate::summary::render(&spec, true).unwrap();
        for needle in [
            " 2 Route -2,-1",
            "layer 0, layer 1 concatenated along channels: (3, 5, 5) + (4, 5, 5) -> (7, 5, 5)",
            "channels 3 + 4 = 7",
            " 3 Route 0",
            "the output of layer 0 as it is, (3, 5, 5): a branch point, read by the next line",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    /// Forward copies each sample's blocks into place; backward hands each value its slice.
    #[test]
    fn forward_concatenates_and_backward_splits() {
        let spec = LayerSpec::Route(RouteSpec {
            layers: vec![-2, -1],
        });
        let (a, b) = ([1, 2, 2], [2, 2, 2]);
        let inputs = [
            InputShape {
                value: Value::Output(0),
                shape: &a,
            },
            InputShape {
                value: Value::Output(1),
                shape: &b,
            },
        ];
        let mut layer = Layer::reading(&spec, &inputs).unwrap();
        assert_eq!(layer.shapes.output, [3, 2, 2]);
        let xa = Tensor::from_vec(&[2, 1, 2, 2], (0..8).map(|v| v as f32).collect()).unwrap();
        let xb = Tensor::from_vec(&[2, 2, 2, 2], (100..116).map(|v| v as f32).collect()).unwrap();
        let mut y = Tensor::default();
        layer.forward_many(&[&xa, &xb], &mut y);
        assert_eq!(y.shape(), [2, 3, 2, 2]);
        let want: Vec<f32> = [0, 1, 2, 3, 100, 101, 102, 103, 104, 105, 106, 107]
            .into_iter()
            .chain([4, 5, 6, 7, 108, 109, 110, 111, 112, 113, 114, 115])
            .map(|v| v as f32)
            .collect();
        assert_eq!(y.data(), want);
        let mut dy = y.clone();
        let (mut da, mut db) = (Tensor::default(), Tensor::default());
        layer.backward_many(
            &[&xa, &xb],
            &y,
            &mut dy,
            &mut [Some(&mut da), Some(&mut db)],
        );
        assert_eq!((&da, &db), (&xa, &xb));
    }
}
