//! Dropout: inverted dropout, as PyTorch's `nn.Dropout(p)`.
//!
//! Legend: N batch, F values per sample, P the rate (the probability that a value is dropped).
//!
//! In a training step, each value is kept with probability 1 - P and scaled by 1 / (1 - P),
//! or set to 0, so that its expected value is unchanged; in evaluation (inference, the test
//! set after each epoch) the layer is the identity:
//!
//! ```text
//! training:   y[n][i] = x[n][i] * s[n][i],   s[n][i] = 1/(1 - P) with probability 1 - P, else 0
//!             dL/dx[n][i] = dL/dy[n][i] * s[n][i]
//! evaluation: y = x,  dL/dx = dL/dy
//! ```
//!
//! Sample n's mask comes from its own random stream, derived from the pass's stream (the
//! run's seed, the epoch, the step and this layer's index: see [`Pass`]) and n. So the masks
//! are the same for any number of threads, and a resumed run draws the masks the stopped run
//! would have drawn.

use rayon::prelude::*;

use super::keys::LineKeys;
use super::{InputForm, LayerKind, LayerOp, Pass, SampleShape};
use crate::error::Result;
use crate::onnx::export::{Graph, LayerAt};
use crate::onnx::import::{Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::rng::Rng;

/// A Dropout config line: `Dropout rate=0.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropoutSpec {
    /// P, the probability that a value is dropped, in [0, 1). Default 0.5 (PyTorch's).
    pub rate: f32,
}

/// The Dropout kind.
pub struct Kind;

impl LayerKind for Kind {
    type Spec = DropoutSpec;
    type Op = Dropout;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[("Dropout", &["rate"])];
    const INPUT: InputForm = InputForm::Any;

    fn parse(_name: &str, keys: &LineKeys) -> Result<DropoutSpec> {
        let Some(a) = keys.get("rate") else {
            return Ok(DropoutSpec { rate: 0.5 });
        };
        match a.value.parse::<f32>() {
            Ok(rate) if (0.0..1.0).contains(&rate) => Ok(DropoutSpec { rate }),
            _ => Err(keys.err(
                a.value_pos,
                format!(
                    "`rate` must be a number from 0 up to but not including 1 (the share of \
                     values dropped, e.g. `rate=0.5`), found `{}`",
                    a.value
                ),
            )),
        }
    }

    fn name(_spec: &DropoutSpec) -> &'static str {
        "Dropout"
    }

    fn output_shape(_spec: &DropoutSpec, input: &[usize]) -> Result<SampleShape> {
        Ok(input.to_vec())
    }

    fn describe(spec: &DropoutSpec) -> String {
        format!("Dropout {}", spec.rate)
    }

    fn explain(spec: &DropoutSpec, _input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        // The rate as written (0.3, not the f32's 0.30000001192092896), and the figures from
        // it to six significant digits.
        let p = spec.rate.to_string();
        let rate: f64 = p.parse().unwrap_or(f64::from(spec.rate));
        let short = |v: f64| {
            let digits = 5usize.saturating_sub(v.abs().log10().floor().max(0.0) as usize);
            let t = format!("{v:.digits$}");
            let t = if t.contains('.') {
                t.trim_end_matches('0').trim_end_matches('.')
            } else {
                &t
            };
            t.to_string()
        };
        Ok(vec![format!(
            "training: keeps each value with probability 1 - {p} = {} and scales it by \
             1/(1 - {p}) = {}; evaluation: the identity; no parameters",
            short(1.0 - rate),
            short(1.0 / (1.0 - rate))
        )])
    }

    /// Nothing: the identity at inference.
    fn onnx(_spec: &DropoutSpec, _g: &mut Graph, input: &str, _at: &LayerAt) -> Result<String> {
        Ok(input.to_string())
    }

    const ONNX_OPS: &'static [&'static str] = &["Dropout"];

    /// `Dropout` with its ratio (an input from opset 12 on, an attribute before); nothing
    /// for a ratio of 0.
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        let ratio = match node.input.get(1).filter(|s| !s.is_empty()) {
            Some(name) => cx.scalar(name)?,
            None => Attrs::of(node).float("ratio", 0.5),
        };
        if !(0.0..1.0).contains(&ratio) {
            return Err(format!("ratio {ratio} is not from 0 up to 1"));
        }
        if ratio > 0.0 {
            cx.push(Step::new(
                format!("Dropout rate={ratio}"),
                StepKind::Other,
                vec![],
            ));
        }
        Ok(())
    }

    fn build(spec: &DropoutSpec, input: &[usize]) -> Result<Dropout> {
        Ok(Dropout {
            rate: spec.rate,
            len: input.iter().product(),
            pass: Pass::default(),
            scale: Vec::new(),
        })
    }
}

/// Dropout at run time.
///
/// # Shapes
/// input `[N, ...]`, output the same.
#[derive(Debug, Clone)]
pub struct Dropout {
    /// P.
    pub rate: f32,
    /// F, values per sample.
    pub len: usize,
    /// The pass the next forward belongs to.
    pass: Pass,
    /// s of the last training forward pass (`N F` values, each 0 or 1/(1 - P)); empty after
    /// an evaluation pass.
    scale: Vec<f32>,
}

impl Dropout {
    /// The factors s of the last training forward pass; empty after an evaluation pass.
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }
}

/// The random stream of sample `n` of a pass whose stream is `stream`.
fn sample_stream(stream: u64, n: usize) -> Rng {
    let mut r = Rng::new(stream ^ (n as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64();
    r
}

impl LayerOp for Dropout {
    fn prepare(&mut self, pass: Pass) {
        self.pass = pass;
    }

    /// y = x s with the factors s the forward pass drew (the identity after an evaluation
    /// pass).
    fn reference(&self, x: &[f64], _params: &[Vec<f64>], _n: usize) -> Option<Vec<f64>> {
        Some(if self.scale.is_empty() {
            x.to_vec()
        } else {
            x.iter()
                .zip(&self.scale)
                .map(|(v, &f)| v * f64::from(f))
                .collect()
        })
    }

    /// Element-wise.
    fn reference_channel_block(&self, block: usize) -> Option<usize> {
        Some(block)
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let total = n * self.len;
        if !self.pass.training || self.rate == 0.0 {
            self.scale.clear();
            y[..total].copy_from_slice(&x[..total]);
            return;
        }
        let (rate, keep) = (f64::from(self.rate), 1.0 / (1.0 - self.rate));
        // The sample's index in the step's global batch: the same masks on any number of
        // processes (crate::distributed).
        let (stream, first) = (self.pass.stream, self.pass.shard.first);
        self.scale.resize(total, 0.0);
        self.scale
            .par_chunks_mut(self.len)
            .zip(y[..total].par_chunks_mut(self.len))
            .zip(x[..total].par_chunks(self.len))
            .enumerate()
            .for_each(|(s, ((scale, y), x))| {
                let mut rng = sample_stream(stream, first + s);
                for ((f, y), &x) in scale.iter_mut().zip(y).zip(x) {
                    *f = if rng.uniform() < rate { 0.0 } else { keep };
                    *y = x * *f;
                }
            });
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        let Some(dx) = dx else { return };
        let total = n * self.len;
        if self.scale.len() < total {
            dx[..total].copy_from_slice(&dy[..total]);
            return;
        }
        for ((d, &g), &f) in dx[..total].iter_mut().zip(&dy[..total]).zip(&self.scale) {
            *d = g * f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rate: f32, len: usize) -> Dropout {
        Kind::build(&DropoutSpec { rate }, &[len]).unwrap()
    }

    fn training(stream: u64) -> Pass {
        Pass {
            training: true,
            stream,
            ..Default::default()
        }
    }

    #[test]
    fn the_explanation_shows_the_rate_as_written() {
        let explain =
            |rate: f32| Kind::explain(&DropoutSpec { rate }, &[4], &[4]).unwrap()[0].clone();
        assert_eq!(
            explain(0.3),
            "training: keeps each value with probability 1 - 0.3 = 0.7 and scales it by \
             1/(1 - 0.3) = 1.42857; evaluation: the identity; no parameters"
        );
        assert!(explain(0.5).contains("1 - 0.5 = 0.5 and scales it by 1/(1 - 0.5) = 2;"));
        assert!(explain(0.9).contains("1 - 0.9 = 0.1 and scales it by 1/(1 - 0.9) = 10;"));
        assert!(explain(0.0).contains("1 - 0 = 1 and scales it by 1/(1 - 0) = 1;"));
    }

    #[test]
    fn evaluation_is_the_identity_forward_and_backward() {
        let mut d = layer(0.5, 4);
        d.prepare(Pass::default());
        let x = [1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut y = [0.0; 8];
        d.forward(&x, &mut y, 2);
        assert_eq!(y, x);
        let (mut dy, mut dx) = ([1.0; 8], [0.0; 8]);
        d.backward(&x, &y, &mut dy, Some(&mut dx), 2);
        assert_eq!(dx, [1.0; 8]);
    }

    #[test]
    fn training_drops_a_share_p_and_scales_the_rest_by_1_over_1_minus_p() {
        // 20,000 values at P = 0.25: the share dropped is 0.25 within 4 standard deviations
        // (sqrt(0.25 * 0.75 / 20000) = 0.003), and every kept value is x times 1/0.75 exactly
        // (a multiply by the scale, as PyTorch does).
        let (n, len) = (4, 5000);
        let mut d = layer(0.25, len);
        d.prepare(training(7));
        let x: Vec<f32> = (0..n * len).map(|i| 1.0 + (i % 7) as f32).collect();
        let mut y = vec![0.0; n * len];
        d.forward(&x, &mut y, n);
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / (n * len) as f64;
        assert!((dropped - 0.25).abs() < 0.012, "dropped {dropped}");
        for (&yv, &xv) in y.iter().zip(&x) {
            assert!(yv == 0.0 || yv == xv * (1.0 / 0.75), "{xv} -> {yv}");
        }
        // Backward routes dy through the same factors.
        let mut dy = vec![2.0; n * len];
        let mut dx = vec![0.0; n * len];
        d.backward(&x, &y, &mut dy, Some(&mut dx), n);
        for (&g, &yv) in dx.iter().zip(&y) {
            assert_eq!(g == 0.0, yv == 0.0);
            assert!(g == 0.0 || g == 2.0 * (1.0 / 0.75));
        }
    }

    #[test]
    fn a_sample_s_mask_depends_on_the_stream_and_its_index_only() {
        let len = 64;
        let x = vec![1.0f32; 3 * len];
        let mask = |stream: u64, n: usize| {
            let mut d = layer(0.5, len);
            d.prepare(training(stream));
            let mut y = vec![0.0; n * len];
            d.forward(&x[..n * len], &mut y, n);
            y
        };
        let three = mask(11, 3);
        // Sample 0's mask is the same whether the batch holds 1 or 3 samples ...
        assert_eq!(mask(11, 1), three[..len]);
        // ... the same stream gives the same masks, and the samples' masks differ ...
        assert_eq!(mask(11, 3), three);
        assert_ne!(three[..len], three[len..2 * len]);
        // ... and another step (stream) gives other masks.
        assert_ne!(mask(12, 3), three);
    }

    #[test]
    fn rate_0_keeps_everything() {
        let mut d = layer(0.0, 3);
        d.prepare(training(1));
        let mut y = [0.0; 3];
        d.forward(&[1.0, 2.0, 3.0], &mut y, 1);
        assert_eq!(y, [1.0, 2.0, 3.0]);
    }
}
