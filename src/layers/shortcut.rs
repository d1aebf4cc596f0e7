//! Shortcut: the output of the line above plus the output of an earlier layer, then an
//! activation (darknet's `[shortcut]`; a residual network's skip connection).
//!
//! Legend: N batch; a the output of the line above, b that of layer `from`, both of the
//! same per-sample shape (C, H, W) or (F); f the activation (none by default).
//!
//! ```text
//! z       = a + b                           element-wise
//! y       = f(z)
//! dL/dz   = dL/dy * f'(z)                   (written in terms of y, as for every activation)
//! dL/da   = dL/dz
//! dL/db   = dL/dz
//! ```
//!
//! `Shortcut from=-3 activation=relu` adds the output of the layer three lines above (a
//! negative `from` counts back from this line; a non-negative one is a layer index, counted
//! from 0 as in the tensor names). An identity block of a ResNet:
//!
//! ```text
//! Conv2D filters=16 kernel=3x3 padding=same     # reads the block's input, layer i
//! BatchNorm2D activation=relu
//! Conv2D filters=16 kernel=3x3 padding=same
//! BatchNorm2D
//! Shortcut from=-5 activation=relu              # + layer i, then ReLU
//! ```
//!
//! The shapes must be equal; a block that changes them takes its skip path through a
//! `Route` to the block's input and a 1x1 convolution with the block's stride (see
//! [`super::route`]).
//!
//! The two values a Shortcut reads are the model's, kept for the layers' own backward
//! passes; it keeps nothing of its own. Its gradient is one copy of dL/dz for each value it
//! reads; where a value is read by other layers too, the model adds the contributions (see
//! `src/model/plan.rs`). The sum is computed in f32 element by element, so it does not
//! depend on the thread count; additions are not counted as FLOPs.
//!
//! PyTorch: `a + b` then the activation (`torch.relu(a + b)`); ONNX: `Add`, then the
//! activation's node. `cnn import` reads an `Add` of two computed values of one shape back
//! as a Shortcut ([`onnx_import_add`]), with the activation after it as its own.

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::keys::LineKeys;
use super::{InputForm, InputShape, LayerKind, LayerOp, SampleShape};
use crate::error::{Error, Result};
use crate::onnx::export::{Graph, LayerAt};
use crate::onnx::import::{dims_text, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::text::fmt_shape;

/// Samples per task in the element-wise passes: enough values per task that rayon's
/// overhead is small next to them.
const MIN_VALUES_PER_TASK: usize = 1 << 14;

/// A Shortcut config line: `Shortcut from=-3 activation=relu`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShortcutSpec {
    /// The earlier layer whose output is added to the line above's, as written: a negative
    /// number counts back from this line (-3: three lines above), any other is a layer
    /// index counted from 0. Required.
    pub from: i64,
    /// Applied to the sum. Default [`Activation::None`].
    pub activation: Activation,
}

/// The Shortcut kind.
pub struct Kind;

impl LayerKind for Kind {
    type Spec = ShortcutSpec;
    type Op = Shortcut;
    const LINES: &'static [(&'static str, &'static [&'static str])] =
        &[("Shortcut", &["from", "activation", "alpha"])];
    const INPUT: InputForm = InputForm::Any;
    const REFS_KEY: Option<&'static str> = Some("from");

    fn parse(_name: &str, keys: &LineKeys) -> Result<ShortcutSpec> {
        let a = keys.required("from")?;
        let from = keys.layer_ref("from", a.value, a.value_pos)?;
        Ok(ShortcutSpec {
            from,
            activation: keys.activation()?,
        })
    }

    fn name(_spec: &ShortcutSpec) -> &'static str {
        "Shortcut"
    }

    fn refs(spec: &ShortcutSpec) -> Vec<i64> {
        vec![spec.from]
    }

    /// As if both values had the shape `input`.
    fn output_shape(_spec: &ShortcutSpec, input: &[usize]) -> Result<SampleShape> {
        Ok(input.to_vec())
    }

    /// The shape of both values, which must be equal.
    fn output_shape_of(_spec: &ShortcutSpec, inputs: &[InputShape]) -> Result<SampleShape> {
        let [a, b] = inputs else {
            return Err(Error::Invalid(format!(
                "Shortcut reads two values, not {}",
                inputs.len()
            )));
        };
        if a.shape != b.shape {
            return Err(Error::Invalid(format!(
                "Shortcut adds the output of {} {} to that of {} {}: the shapes must be equal \
                 (to change the channels or the size on the skip path, read the block's input \
                 with `Route layers=...` and give it a 1x1 Conv2D with the block's stride)",
                b.value,
                fmt_shape(b.shape),
                a.value,
                fmt_shape(a.shape)
            )));
        }
        Ok(a.shape.to_vec())
    }

    fn describe(spec: &ShortcutSpec) -> String {
        format!("Shortcut from {}{}", spec.from, spec.activation.suffix())
    }

    fn explain(spec: &ShortcutSpec, input: &[usize], output: &[usize]) -> Result<Vec<String>> {
        let a = InputShape {
            value: crate::layers::Value::Input,
            shape: input,
        };
        Self::explain_of(spec, &[a, a], output)
    }

    /// `f(a + b), element-wise: (C, H, W) + (C, H, W) -> (C, H, W)`.
    fn explain_of(
        spec: &ShortcutSpec,
        inputs: &[InputShape],
        output: &[usize],
    ) -> Result<Vec<String>> {
        let terms: Vec<String> = inputs.iter().map(|i| i.value.to_string()).collect();
        let shapes: Vec<String> = inputs.iter().map(|i| fmt_shape(i.shape)).collect();
        let sum = terms.join(" + ");
        let y = match spec.activation {
            Activation::None => sum,
            act => format!("{}({sum})", act.name()),
        };
        Ok(vec![
            format!(
                "y = {y}, element-wise: {} -> {}",
                shapes.join(" + "),
                fmt_shape(output)
            ),
            "no parameters; additions are not counted as FLOPs".into(),
        ])
    }

    fn activation(spec: &ShortcutSpec) -> Activation {
        spec.activation
    }

    fn with_activation(spec: &ShortcutSpec, act: Activation) -> ShortcutSpec {
        ShortcutSpec {
            activation: act,
            ..spec.clone()
        }
    }

    fn build(spec: &ShortcutSpec, input: &[usize]) -> Result<Shortcut> {
        Ok(Shortcut {
            act: spec.activation,
            len: input.iter().product(),
        })
    }

    fn build_of(spec: &ShortcutSpec, inputs: &[InputShape]) -> Result<Shortcut> {
        Self::output_shape_of(spec, inputs)?;
        Self::build(spec, inputs[0].shape)
    }

    /// `Add` of the two values (the exporter writes the activation after it).
    fn onnx(spec: &ShortcutSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        Self::onnx_many(spec, g, &[input, input], at)
    }

    fn onnx_many(
        _spec: &ShortcutSpec,
        g: &mut Graph,
        inputs: &[&str],
        at: &LayerAt,
    ) -> Result<String> {
        Ok(g.node("Add", at.name, inputs, vec![]))
    }
}

/// `Add` of two computed values of one shape (a residual connection), for `cnn import`:
/// `Shortcut from=...` adding the one that is not the config's last output to it. When
/// neither is (the importer reads nodes in the file's order), a one-layer Route to the
/// first makes it the last output. An `Add` of a constant is Dense's bias
/// ([`super::dense`]).
pub fn onnx_import_add(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
    let [a, b] = cx.computed_inputs(node)[..] else {
        return Err("adds more than two values".into());
    };
    let (step_a, shape_a) = cx.written_by(a)?;
    let (step_b, shape_b) = cx.written_by(b)?;
    if shape_a != shape_b {
        return Err(format!(
            "adds [N, {}] and [N, {}]; a Shortcut adds values of one shape",
            dims_text(&shape_a),
            dims_text(&shape_b)
        ));
    }
    let from = if cx.value() == a {
        step_b
    } else if cx.value() == b {
        step_a
    } else {
        cx.branch_to(a)?;
        step_b
    };
    let mut step = Step::new(
        "Shortcut".into(),
        StepKind::Fusable {
            fused: false,
            flat_input: false,
        },
        vec![],
    );
    step.refs = Some(("from", vec![from]));
    cx.push(step);
    Ok(())
}

/// A Shortcut at run time: the values per sample and the activation.
///
/// # Shapes
/// two inputs `[N, ...]` of one shape, output the same.
#[derive(Debug, Clone)]
pub struct Shortcut {
    /// f, applied to the sum.
    pub act: Activation,
    /// Values per sample.
    pub len: usize,
}

impl Shortcut {
    /// Samples per task of the element-wise passes.
    fn samples_per_task(&self) -> usize {
        MIN_VALUES_PER_TASK.div_ceil(self.len.max(1))
    }
}

impl LayerOp for Shortcut {
    /// y = f(x + x): both values are `x` (the model gives a Shortcut its two values
    /// through [`LayerOp::forward_many`]).
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        self.forward_many(&[x, x], y, n)
    }

    /// dL/dx = 2 dL/dz: both values are `x`.
    fn backward(&mut self, x: &[f32], y: &[f32], dy: &mut [f32], dx: Option<&mut [f32]>, n: usize) {
        let Some(dx) = dx else { return };
        let len = n * self.len;
        let mut twice = vec![0.0; len];
        self.backward_many(
            &[x, x],
            y,
            dy,
            &mut [Some(&mut *dx), Some(&mut twice[..])],
            n,
        );
        dx[..len].iter_mut().zip(&twice).for_each(|(d, t)| *d += t);
    }

    /// y = f(a + b), sample by sample in parallel.
    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], n: usize) {
        let (len, act) = (self.len, self.act);
        let [a, b] = xs else {
            panic!("Shortcut::forward_many: two values, not {}", xs.len())
        };
        let per = self.samples_per_task() * len;
        y[..n * len]
            .par_chunks_mut(per)
            .zip(a[..n * len].par_chunks(per))
            .zip(b[..n * len].par_chunks(per))
            .for_each(|((y, a), b)| {
                for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
                    *y = a + b;
                }
                activation::forward(act, y, len);
            });
    }

    /// dL/dz = dL/dy f'(z) in place in `dy`, then a copy of it into each `dxs[k]` given.
    fn backward_many(
        &mut self,
        _xs: &[&[f32]],
        y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        n: usize,
    ) {
        let (len, act) = (self.len, self.act);
        let per = self.samples_per_task() * len;
        let total = n * len;
        if act != Activation::None {
            dy[..total]
                .par_chunks_mut(per)
                .zip(y[..total].par_chunks(per))
                .for_each(|(d, y)| activation::backward(act, y, d, len));
        }
        for dx in dxs.iter_mut().flatten() {
            dx[..total]
                .par_chunks_mut(per)
                .zip(dy[..total].par_chunks(per))
                .for_each(|(dx, d)| dx.copy_from_slice(d));
        }
    }

    /// z = x + x in f64.
    fn reference(&self, x: &[f64], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        self.reference_many(&[x, x], params, n)
    }

    /// z = a + b in f64, before the activation (the check applies it).
    fn reference_many(&self, xs: &[&[f64]], _params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let total = n * self.len;
        let mut z = vec![0.0; total];
        for x in xs {
            z.iter_mut().zip(&x[..total]).for_each(|(z, x)| *z += x);
        }
        Some(z)
    }

    /// Element-wise: each value stays in place.
    fn reference_channel_block(&self, block: usize) -> Option<usize> {
        Some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::layers::LayerSpec;

    /// An identity block and a projection block, as docs/GUIDE.md writes them.
    const NET: &str = "9\nInput shape=2x6x6\n\
        Conv2D filters=4 kernel=3 padding=same activation=relu\n\
        Conv2D filters=4 kernel=3 padding=same\n\
        Shortcut from=-2 activation=relu\n\
        Conv2D filters=8 kernel=3 stride=2 padding=same\n\
        Route layers=-2\n\
        Conv2D filters=8 kernel=1 stride=2\n\
        Shortcut from=-3\n\
        GlobalAvgPool2D\n\
        Dense units=3\n";

    fn error(text: &str) -> (usize, usize, String) {
        match config::parse(text, "t.cfg") {
            Err(Error::Config { line, col, msg, .. }) => (line, col, msg),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_line_parses_and_reads_the_line_above_and_from() {
        let p = config::parse(NET, "t").unwrap();
        assert_eq!(
            p.spec.layers[2],
            LayerSpec::Shortcut(ShortcutSpec {
                from: -2,
                activation: Activation::Relu
            })
        );
        use crate::layers::Value::Output;
        let reads = p.spec.reads().unwrap();
        assert_eq!(reads[2], [Output(1), Output(0)]);
        assert_eq!(reads[6], [Output(5), Output(3)]);
        let shapes = p.spec.shapes().unwrap();
        assert_eq!(shapes[2].output, [4, 6, 6]);
        assert_eq!(shapes[6].output, [8, 3, 3]);
        // An absolute index reads the same layer.
        let abs = NET.replace("Shortcut from=-2", "Shortcut from=0");
        assert_eq!(
            config::parse(&abs, "t").unwrap().spec.reads().unwrap(),
            reads
        );
    }

    #[test]
    fn references_and_shapes_are_checked_where_they_are_written() {
        // Line 5 is `Shortcut from=-2 activation=relu`; its value starts at column 15.
        let at = |from: &str| NET.replace("from=-2 ", &format!("from={from} "));
        let (line, col, msg) = error(&at("-3"));
        assert_eq!((line, col), (5, 15), "{msg}");
        assert!(msg.contains("layer -1, before the first"), "{msg}");
        let (line, col, msg) = error(&at("2"));
        assert_eq!((line, col), (5, 15));
        assert!(msg.contains("names this layer itself"), "{msg}");
        let (_, _, msg) = error(&at("5"));
        assert!(msg.contains("layer 5, which comes after it"), "{msg}");
        let (line, col, msg) = error(&at("two"));
        assert_eq!((line, col), (5, 15));
        assert!(msg.contains("`from` must be a whole number"), "{msg}");
        // A projection of 6 channels for a main path of 8.
        let text = NET.replace("filters=8 kernel=1", "filters=6 kernel=1");
        let (line, col, msg) = error(&text);
        assert_eq!((line, col), (9, 15), "{msg}");
        assert!(
            msg.contains(
                "Shortcut adds the output of layer 3 (8, 3, 3) to that of layer 5 (6, 3, 3)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn the_summary_explains_the_sum() {
        let spec = config::parse(NET, "t").unwrap().spec;
        let text = crate::summary::render(&spec, true).unwrap();
        assert!(text.contains(" 2 Shortcut from -2 relu"), "{text}");
        assert!(
            text.contains(
                "y = relu(layer 1 + layer 0), element-wise: (4, 6, 6) + (4, 6, 6) -> (4, 6, 6)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "y = layer 5 + layer 3, element-wise: (8, 3, 3) + (8, 3, 3) -> (8, 3, 3)"
            ),
            "{text}"
        );
    }
}
