//! GlobalAvgPool2D: the mean of each channel's whole plane, (C, H, W) -> (C).
//!
//! Legend: N batch, C channels, H, W input size.
//!
//! ```text
//! y[n][c]           = (1 / (H W)) sum_{i, j} x[n][c][i][j]
//! dL/dx[n][c][i][j] = dy[n][c] / (H W)
//! ```
//!
//! It replaces the Flatten and the large Dense layer at the end of a convolutional network
//! by one value per channel: a network ending `Conv2D filters=10 ...`, `GlobalAvgPool2D`
//! has no Dense layer at all. Its output is flat, so a Dense after it reads it as it is (no
//! Flatten is implied).
//!
//! PyTorch: `nn.AdaptiveAvgPool2d(1)` then `flatten(1)`. ONNX: `cnn export` writes
//! `GlobalAveragePool` then `Flatten` (axis 1), and `cnn import` reads a
//! `GlobalAveragePool` (the `Flatten` or rank-2 `Reshape` after it then has nothing left to
//! do).
//!
//! Each (n, c) plane is summed in row-major order in f32, planes in parallel (at least a
//! sample's C planes per task), so results do not depend on the thread count. No
//! parameters; like AvgPool2D's, its averages are not counted as FLOPs.

use rayon::prelude::*;

use super::keys::LineKeys;
use super::{chw, InputForm, LayerKind, LayerOp, SampleShape};
use crate::error::Result;
use crate::onnx::export::{int, Graph, LayerAt};
use crate::onnx::import::{Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::text::thousands;

/// The GlobalAvgPool2D line's config: it has no keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlobalPoolSpec;

/// The GlobalAvgPool2D kind.
pub struct AvgKind;

impl LayerKind for AvgKind {
    type Spec = GlobalPoolSpec;
    type Op = GlobalAvgPool2D;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[("GlobalAvgPool2D", &[])];
    const INPUT: InputForm = InputForm::SpatialToFlat;

    fn parse(_name: &str, _keys: &LineKeys) -> Result<GlobalPoolSpec> {
        Ok(GlobalPoolSpec)
    }

    fn name(_spec: &GlobalPoolSpec) -> &'static str {
        "GlobalAvgPool2D"
    }

    fn output_shape(_spec: &GlobalPoolSpec, input: &[usize]) -> Result<SampleShape> {
        let [c, _, _] = chw("GlobalAvgPool2D", input)?;
        Ok(vec![c])
    }

    fn describe(_spec: &GlobalPoolSpec) -> String {
        "GlobalAvgPool2D".into()
    }

    fn explain(_spec: &GlobalPoolSpec, input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        let [c, h, w] = chw("GlobalAvgPool2D", input)?;
        Ok(vec![
            format!(
                "each of the {c} channels becomes the mean of its {h}*{w} = {} values: \
                 ({c}, {h}, {w}) -> ({c})",
                thousands((h * w) as u128)
            ),
            "no parameters; averages are not counted as FLOPs".into(),
        ])
    }

    /// `GlobalAveragePool` (`[N, C, 1, 1]`), then `Flatten` (axis 1) to our `[N, C]`.
    fn onnx(_spec: &GlobalPoolSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        let pooled = g.node("GlobalAveragePool", at.name, &[input], vec![]);
        Ok(g.node(
            "Flatten",
            &at.tensor("flatten"),
            &[&pooled],
            vec![int("axis", 1)],
        ))
    }

    const ONNX_OPS: &'static [&'static str] = &["GlobalAveragePool", "ReduceMean"];

    /// `GlobalAveragePool` of a (C, H, W) value, or the `ReduceMean` over axes 2 and 3 that
    /// torch.export writes for `AdaptiveAvgPool2d(1)` (the axes an attribute before opset
    /// 18, an input from it on). ONNX's result is `[N, C, 1, 1]` (or `[N, C]` without
    /// `keepdims`), ours `[N, C]`: the value is flat from here on, so the `Flatten` (or
    /// `Reshape` to `[N, C]`) that follows it in a classifier adds no line.
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        let op = node.op_type.as_deref().unwrap_or("");
        let [c, _, _] = cx.spatial(op)?;
        let attrs = Attrs::of(node);
        let known: &[&str] = match op {
            "ReduceMean" => &["axes", "keepdims", "noop_with_empty_axes"],
            _ => &[],
        };
        let unknown = attrs.unknown(known);
        if !unknown.is_empty() {
            return Err(format!("unsupported attributes {unknown:?}"));
        }
        if op == "ReduceMean" {
            let mut axes = match node.input.get(1).filter(|s| !s.is_empty()) {
                Some(name) => cx.ints(name)?,
                None => attrs.ints("axes").unwrap_or(&[]).to_vec(),
            };
            axes.iter_mut().for_each(|a| *a = a.rem_euclid(4));
            axes.sort_unstable();
            if axes != [2, 3] {
                return Err(format!(
                    "a mean over axes {axes:?}; only the mean over height and width (axes 2 \
                     and 3), global average pooling, is supported"
                ));
            }
        }
        cx.shape = vec![c];
        cx.push(Step::new("GlobalAvgPool2D".into(), StepKind::Other, vec![]));
        Ok(())
    }

    fn build(_spec: &GlobalPoolSpec, input: &[usize]) -> Result<GlobalAvgPool2D> {
        let [c, h, w] = chw("GlobalAvgPool2D", input)?;
        Ok(GlobalAvgPool2D {
            channels: c,
            plane: h * w,
        })
    }
}

/// Global average pooling at run time.
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, C]`.
#[derive(Debug, Clone)]
pub struct GlobalAvgPool2D {
    /// C.
    pub channels: usize,
    /// H W, the values averaged into each output.
    pub plane: usize,
}

impl LayerOp for GlobalAvgPool2D {
    /// `y[n][c] = (1 / (H W))` times the sum of plane (n, c).
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let (planes, hw) = (n * self.channels, self.plane);
        let scale = 1.0 / hw as f32;
        y[..planes]
            .par_iter_mut()
            .with_min_len(self.channels)
            .zip(x[..planes * hw].par_chunks(hw))
            .for_each(|(y, x_p)| *y = x_p.iter().sum::<f32>() * scale);
    }

    /// dL/dx = dy / (H W) over each plane.
    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        let Some(dx) = dx else { return };
        let (planes, hw) = (n * self.channels, self.plane);
        let scale = 1.0 / hw as f32;
        dx[..planes * hw]
            .par_chunks_mut(hw)
            .with_min_len(self.channels)
            .zip(dy[..planes].par_iter())
            .for_each(|(dx_p, &d)| dx_p.fill(d * scale));
    }

    /// The means in f64, by the definition.
    fn reference(&self, x: &[f64], _params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let hw = self.plane;
        Some(
            x[..n * self.channels * hw]
                .chunks(hw)
                .map(|p| p.iter().sum::<f64>() / hw as f64)
                .collect(),
        )
    }

    /// Channel c's plane becomes output c alone: one value per channel.
    fn reference_channel_block(&self, _block: usize) -> Option<usize> {
        Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::gradcheck::check_network;
    use crate::init::Init;
    use crate::layers::{Layer, LayerSpec};
    use crate::model::Model;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    /// A small classifier that ends in global average pooling: no Flatten, a Dense on the
    /// channel means.
    const NET: &str = "4\nInput shape=2x7x6\nConv2D filters=3 kernel=3 padding=same \
                       activation=relu\nBatchNorm2D\nGlobalAvgPool2D\nDense units=4 \
                       activation=softmax\n";

    #[test]
    fn the_line_parses_and_its_output_is_flat() {
        let parsed = config::parse(NET, "t").unwrap();
        let spec = &parsed.spec;
        assert_eq!(spec.layers[2], LayerSpec::GlobalAvgPool2D(GlobalPoolSpec));
        assert_eq!(spec.output_shape().unwrap(), vec![4]);
        assert_eq!(spec.shapes().unwrap()[2].output, vec![3]);
        // Its output is flat: no Flatten is implied before the Dense, so the count is the
        // count of lines.
        assert!(config::implied_flattens(&spec.layers).is_empty());
        // Parameters: the convolution's 2*3*3*3 + 3 = 57, BatchNorm's 6, the Dense's 3*4 + 4.
        assert_eq!(spec.param_count().unwrap(), 57 + 6 + 16);
        let err = config::parse("2\nInput shape=1x4x4\nFlatten\nGlobalAvgPool2D\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GlobalAvgPool2D needs a (C, H, W) input"),
            "{err}"
        );
        let err = config::parse("1\nInput shape=1x4x4\nGlobalAvgPool2D size=2\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("GlobalAvgPool2D takes no keys"), "{err}");
    }

    #[test]
    fn the_summary_explains_it() {
        let spec = config::parse(NET, "t").unwrap().spec;
        let text = crate::summary::render(&spec, true).unwrap();
        assert!(text.contains(" 2 GlobalAvgPool2D"), "{text}");
        assert!(
            text.contains("each of the 3 channels becomes the mean of its 7*6 = 42 values"),
            "{text}"
        );
        assert!(!text.contains("Flatten (implicit)"), "{text}");
    }

    /// Forward against the definition in f64, on planes of different sizes and batches
    /// (one image splits the channels between tasks), and backward spreads dy evenly.
    #[test]
    fn forward_is_the_mean_and_backward_spreads_evenly() {
        let mut rng = Rng::new(3);
        for (n, c, h, w) in [(1, 3, 5, 4), (4, 2, 1, 1), (3, 5, 7, 9)] {
            let spec = LayerSpec::GlobalAvgPool2D(GlobalPoolSpec);
            let mut layer = Layer::new(&spec, &[c, h, w]).unwrap();
            let data: Vec<f32> = (0..n * c * h * w).map(|_| rng.normal() as f32).collect();
            let x = Tensor::from_vec(&[n, c, h, w], data.clone()).unwrap();
            let mut y = Tensor::default();
            layer.forward(&x, &mut y);
            assert_eq!(y.shape(), &[n, c]);
            for (p, &got) in y.data().iter().enumerate() {
                let plane = &data[p * h * w..(p + 1) * h * w];
                let want = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / (h * w) as f64;
                assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
            }
            let dyv: Vec<f32> = (0..n * c).map(|_| rng.normal() as f32).collect();
            let mut dy = Tensor::from_vec(&[n, c], dyv.clone()).unwrap();
            let mut dx = Tensor::default();
            layer.backward(&x, &y, &mut dy, Some(&mut dx));
            assert_eq!(dx.shape(), x.shape());
            for (i, &g) in dx.data().iter().enumerate() {
                assert_eq!(g, dyv[i / (h * w)] * (1.0 / (h * w) as f32));
            }
        }
    }

    /// `cnn gradcheck`'s check of a network with it: the f64 reference agrees with the f32
    /// forward pass, and backprop with the frozen finite differences, for every tensor.
    #[test]
    fn a_network_with_it_passes_the_gradient_check() {
        let spec = config::parse(NET, "t").unwrap().spec;
        let mut model = Model::new(&spec, Init::He, 1).unwrap();
        let mut rng = Rng::new(2);
        let n = crate::gradcheck::default_batch(&spec);
        let x: Vec<f32> = (0..n * 2 * 7 * 6).map(|_| rng.uniform() as f32).collect();
        let x = Tensor::from_vec(&[n, 2, 7, 6], x).unwrap();
        let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
        let report = check_network(&mut model, &x, &labels, 20, 1e-5, 0).unwrap();
        assert_eq!(report.failure(), None, "{report:?}");
        assert_eq!(report.tensors.len(), 6);
        assert!(report.tensors.iter().all(|t| t.checked > 0), "{report:?}");
    }
}
