//! Flatten: (C, H, W) -> (C*H*W), each sample's values in (C, H, W) order.
//!
//! NCHW already stores a sample's values in that order, so forward and backward copy their
//! input unchanged: `y[n][c*H*W + h*W + w] = x[n][c][h][w]`, and dL/dx is dL/dy reshaped.
//! A Dense layer reads any input flattened, so report 1 leaves Flatten out and the config
//! parser implies it (see [`crate::config`]).

use super::keys::LineKeys;
use super::{InputForm, LayerKind, LayerOp, SampleShape};
use crate::error::Result;
use crate::onnx::export::{int, Graph, LayerAt};
use crate::onnx::import::{dims_text, Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::text::{product_expr, thousands};

/// The Flatten layer's config: it has no keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flatten;

/// The Flatten layer's kind.
pub struct Kind;

impl LayerKind for Kind {
    type Spec = Flatten;
    type Op = FlattenOp;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[("Flatten", &[])];
    const INPUT: InputForm = InputForm::Flattens;

    fn parse(_name: &str, _keys: &LineKeys) -> Result<Flatten> {
        Ok(Flatten)
    }

    fn name(_spec: &Flatten) -> &'static str {
        "Flatten"
    }

    fn output_shape(_spec: &Flatten, input: &[usize]) -> Result<SampleShape> {
        Ok(vec![input.iter().product()])
    }

    fn describe(_spec: &Flatten) -> String {
        "Flatten".into()
    }

    fn explain(_spec: &Flatten, input: &[usize], output: &[usize]) -> Result<Vec<String>> {
        Ok(vec![format!(
            "{} = {}",
            product_expr(input),
            thousands(output.iter().product::<usize>() as u128)
        )])
    }

    /// `Flatten` (axis 1).
    fn onnx(_spec: &Flatten, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        Ok(g.node("Flatten", at.name, &[input], vec![int("axis", 1)]))
    }

    const ONNX_OPS: &'static [&'static str] = &["Flatten", "Reshape"];

    /// `Flatten` (axis 1), or the rank-2 `Reshape` to `[N, C*H*W]` that torch.export writes
    /// for one; a `Reshape` back to (C, H, W) after a Flatten and activations (`cnn
    /// export`'s softmax over a spatial value) leaves the activations alone.
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        if node.op_type.as_deref() == Some("Reshape") {
            return reshape(node, cx);
        }
        if Attrs::of(node).int("axis", 1) != 1 {
            return Err("only axis 1 is supported".into());
        }
        flatten(cx);
        Ok(())
    }

    fn build(_spec: &Flatten, input: &[usize]) -> Result<FlattenOp> {
        Ok(FlattenOp {
            len: input.iter().product(),
        })
    }
}

/// A Flatten line (left implied if a Dense follows); nothing for a value already flat.
fn flatten(cx: &mut Importer<'_>) {
    if let &[c, h, w] = cx.shape.as_slice() {
        cx.shape = vec![c * h * w];
        cx.push(Step::new(
            "Flatten".into(),
            StepKind::Flatten([c, h, w]),
            vec![],
        ));
    }
}

/// A Reshape to `[N, C*H*W]`, as torch.export writes for a flatten.
fn reshape(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
    let target = node.input.get(1).ok_or("has no shape input")?;
    let to = cx.ints(target)?;
    let f = cx.shape.iter().product::<usize>() as i64;
    let batch_ok = |b: i64| b == -1 || b == 0 || Some(b) == cx.batch;
    let flat = match to.as_slice() {
        [b, n] => batch_ok(*b) && (*n == f || (*n == -1 && *b != -1)),
        _ => false,
    };
    if let Some(back) = unflatten(cx, &to) {
        // Flatten, activations, and back: the activations alone (a Softmax is over a
        // sample's C*H*W values either way; `cnn export` writes one this way).
        cx.remove_step(back);
        cx.shape = to[1..].iter().map(|&d| d as usize).collect();
        return Ok(());
    }
    if !flat {
        return Err(format!(
            "a reshape of [N, {}] to {to:?}; only the flatten to [N, {f}] is supported",
            dims_text(&cx.shape)
        ));
    }
    flatten(cx);
    Ok(())
}

/// The index of the Flatten step that a reshape to `to` undoes: the last Flatten, of the
/// (C, H, W) that `to` gives back, with only activation lines after it.
fn unflatten(cx: &Importer<'_>, to: &[i64]) -> Option<usize> {
    let steps = cx.steps();
    let (i, chw) = steps
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, s)| match s.kind {
            StepKind::Flatten(chw) => Some((i, chw)),
            _ => None,
        })?;
    let after = &steps[i + 1..];
    let batch_ok = to
        .first()
        .is_some_and(|&b| b == -1 || b == 0 || Some(b) == cx.batch);
    let same = to.len() == 4 && to[1..].iter().zip(chw).all(|(&t, d)| t == d as i64);
    let only_activations = after.iter().all(|s| s.kind == StepKind::Activation);
    (batch_ok && same && only_activations).then_some(i)
}

/// Flatten at run time: a copy.
///
/// # Shapes
/// input `[N, C, H, W]` (or any), output `[N, C*H*W]`.
#[derive(Debug, Clone)]
pub struct FlattenOp {
    /// Values per sample.
    pub len: usize,
}

impl LayerOp for FlattenOp {
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        y[..n * self.len].copy_from_slice(&x[..n * self.len]);
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        if let Some(dx) = dx {
            dx[..n * self.len].copy_from_slice(&dy[..n * self.len]);
        }
    }

    /// A copy.
    fn reference(&self, x: &[f64], _params: &[Vec<f64>], _n: usize) -> Option<Vec<f64>> {
        Some(x.to_vec())
    }

    /// Values stay in place.
    fn reference_channel_block(&self, block: usize) -> Option<usize> {
        Some(block)
    }
}
