//! Scale: y = a x, dL/dx = a dL/dy.
use super::keys::LineKeys;
use super::{InputForm, LayerKind, LayerOp, SampleShape};
use crate::error::Result;
use crate::onnx::export::{Graph, LayerAt};

/// `Scale factor=2`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSpec {
    /// a, any finite number. Required.
    pub factor: f32,
}

pub struct Kind;

impl LayerKind for Kind {
    type Spec = ScaleSpec;
    type Op = Scale;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[("Scale", &["factor"])];
    const INPUT: InputForm = InputForm::Any;

    fn parse(_name: &str, keys: &LineKeys) -> Result<ScaleSpec> {
        let a = keys.required("factor")?;
        match a.value.parse::<f32>() {
            Ok(factor) if factor.is_finite() => Ok(ScaleSpec { factor }),
            _ => Err(keys.err(
                a.value_pos,
                format!("`factor` must be a number, found `{}`", a.value),
            )),
        }
    }
    fn name(_: &ScaleSpec) -> &'static str {
        "Scale"
    }
    fn output_shape(_: &ScaleSpec, input: &[usize]) -> Result<SampleShape> {
        Ok(input.to_vec())
    }
    fn describe(s: &ScaleSpec) -> String {
        format!("Scale {}", s.factor)
    }
    fn explain(s: &ScaleSpec, _: &[usize], _: &[usize]) -> Result<Vec<String>> {
        Ok(vec![format!(
            "y = {} x, element-wise; no parameters",
            s.factor
        )])
    }
    fn build(s: &ScaleSpec, input: &[usize]) -> Result<Scale> {
        Ok(Scale {
            factor: s.factor,
            len: input.iter().product(),
        })
    }
    /// ONNX: `Mul` by the scalar initialiser `layers.{i}.factor`.
    fn onnx(s: &ScaleSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        let a = at.tensor("factor");
        g.init_f32(&a, &[], &[s.factor]);
        Ok(g.node("Mul", at.name, &[input, &a], vec![]))
    }
}

#[derive(Debug, Clone)]
pub struct Scale {
    factor: f32,
    len: usize,
}

impl LayerOp for Scale {
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        for (y, x) in y[..n * self.len].iter_mut().zip(x) {
            *y = self.factor * x;
        }
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
            for (dx, dy) in dx[..n * self.len].iter_mut().zip(dy.iter()) {
                *dx = self.factor * dy;
            }
        }
    }
    /// The definition in f64, for `cnn gradcheck`.
    fn reference(&self, x: &[f64], _params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        Some(
            x[..n * self.len]
                .iter()
                .map(|v| f64::from(self.factor) * v)
                .collect(),
        )
    }
    /// Element-wise: each channel stays in place.
    fn reference_channel_block(&self, block: usize) -> Option<usize> {
        Some(block)
    }
}

// Not part of the walkthrough: the tests that keep it true. This file is the walkthrough's
// `src/layers/scale.rs` (compiled only for tests, as `layers::walkthrough`, since Scale is not
// in the list), followed by these tests.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::keys::{Arg, Pos};

    /// The walkthrough's code block in docs/ARCHITECTURE.md, without its indentation.
    fn documented() -> String {
        let doc = include_str!("../../docs/ARCHITECTURE.md");
        let step = doc
            .find("1. Write `src/layers/scale.rs`:")
            .expect("the walkthrough's first step");
        let open = step + doc[step..].find("   ```rust\n").expect("its code block") + 11;
        let close = open + doc[open..].find("   ```\n").expect("the block's end");
        doc[open..close]
            .lines()
            .map(|l| l.strip_prefix("   ").unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn the_walkthrough_in_the_docs_is_this_code() {
        let this = include_str!("walkthrough.rs");
        let doc = documented();
        assert!(doc.len() > 1000, "{doc}");
        assert!(
            this.starts_with(&doc),
            "docs/ARCHITECTURE.md's Scale differs from src/layers/walkthrough.rs"
        );
    }

    fn keys<'a>(args: &'a [Arg<'a>]) -> LineKeys<'a> {
        LineKeys {
            file: "t.cfg",
            name: "Scale",
            name_pos: Pos { line: 3, col: 1 },
            args,
        }
    }

    fn arg(value: &str) -> Arg<'_> {
        Arg {
            key: "factor",
            key_pos: Pos { line: 3, col: 7 },
            value,
            value_pos: Pos { line: 3, col: 14 },
        }
    }

    #[test]
    fn scale_parses_runs_and_has_a_reference() {
        let spec = Kind::parse("Scale", &keys(&[arg("2")])).unwrap();
        assert_eq!(spec, ScaleSpec { factor: 2.0 });
        let e = Kind::parse("Scale", &keys(&[arg("x")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.cfg:3:14: `factor` must be a number, found `x`");
        let e = Kind::parse("Scale", &keys(&[])).unwrap_err().to_string();
        assert!(e.contains("missing the required key `factor`"), "{e}");

        assert_eq!(
            Kind::output_shape(&spec, &[2, 3, 3]).unwrap(),
            vec![2, 3, 3]
        );
        assert_eq!(Kind::describe(&spec), "Scale 2");
        let mut op = Kind::build(&spec, &[3]).unwrap();
        let x = [1.0, -2.0, 0.5, 4.0, 0.0, -1.0];
        let mut y = [0.0; 6];
        op.forward(&x, &mut y, 2);
        assert_eq!(y, [2.0, -4.0, 1.0, 8.0, 0.0, -2.0]);
        let (mut dy, mut dx) = ([1.0, 2.0, 3.0, -1.0, 0.0, 0.5], [0.0; 6]);
        op.backward(&x, &y, &mut dy, Some(&mut dx), 2);
        assert_eq!(dx, [2.0, 4.0, 6.0, -2.0, 0.0, 1.0]);
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let z = op.reference(&x64, &[], 2).unwrap();
        assert_eq!(z, y.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());

        let mut g = Graph::default();
        let at = LayerAt {
            name: "layers.3",
            input: &[3],
            output: &[3],
        };
        assert_eq!(Kind::onnx(&spec, &mut g, "x", &at).unwrap(), "layers.3.out");
        // What Scale leaves out takes the defaults.
        assert!(Kind::ONNX_OPS.is_empty());
        assert_eq!(Kind::gradcheck_batch(&spec), 2);
        assert!(op.window().is_none() && op.filters().is_none());
        assert_eq!(op.reference_channel(0, 0), None);
    }
}
