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

    fn build(_spec: &Flatten, input: &[usize]) -> Result<FlattenOp> {
        Ok(FlattenOp {
            len: input.iter().product(),
        })
    }
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
}
