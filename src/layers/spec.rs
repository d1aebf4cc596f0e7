//! A whole network as its config describes it: the input shape and one [`LayerSpec`] per
//! layer line, with shape inference, parameter counts and FLOPs.
//!
//! Each layer's output shape is the next one's input shape, so shapes are inferred from the
//! `Input` line alone (as in darknet).
//!
//! Dimension letters used throughout: N batch, C input channels, H, W input height and width,
//! K filters (output channels), kh, kw kernel size, S stride, P padding, H', W' output size.

use crate::error::{Error, Result};
pub use crate::kernels::geom::{ConvGeom, Padding, PoolGeom};

pub use super::activation::Activation;
pub use super::conv2d::Conv2dSpec;
pub use super::dense::DenseSpec;
pub use super::pool::PoolSpec;
pub use super::LayerSpec;

/// The per-sample shape a layer produces: `[C, H, W]` for spatial layers, `[F]` for flat ones.
pub type SampleShape = Vec<usize>;

/// A whole network: the input shape of one sample (C, H, W) and its layers in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    /// (C, H, W) of one input sample.
    pub input: [usize; 3],
    pub layers: Vec<LayerSpec>,
}

impl LayerSpec {
    /// Number of trainable parameters for a per-sample input shape: Conv2D K*C*kh*kw + K,
    /// Dense units*inputs + units, others 0.
    pub fn param_count(&self, input: &[usize]) -> usize {
        match self.output_shape(input) {
            Ok(out) => self.counts(input, &out).params as usize,
            Err(_) => 0,
        }
    }

    /// Floating-point operations of the forward pass for one sample (a multiply-add counts
    /// 2; comparisons, bias adds and activations are not counted: they are O(output) and
    /// small). Conv2D: 2 * K * H' * W' * C * kh * kw. Dense: 2 * units * inputs.
    pub fn forward_flops(&self, input: &[usize]) -> Result<u64> {
        let out = self.output_shape(input)?;
        Ok(self.counts(input, &out).flops as u64)
    }
}

/// One row of a network's shape walk: a layer with its input and output shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerShapes {
    pub input: SampleShape,
    pub output: SampleShape,
}

impl NetworkSpec {
    /// Walks the layers from the input shape and returns each layer's input and output shape,
    /// or the first layer whose shape does not work, as `(index, error)`.
    pub fn shapes(&self) -> std::result::Result<Vec<LayerShapes>, (usize, Error)> {
        let mut shape: SampleShape = self.input.to_vec();
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let next = layer.output_shape(&shape).map_err(|e| (i, e))?;
            if next.contains(&0) {
                return Err((
                    i,
                    Error::Invalid(format!(
                        "{}: output shape {next:?} has a zero dimension",
                        layer.name()
                    )),
                ));
            }
            out.push(LayerShapes {
                input: shape,
                output: next.clone(),
            });
            shape = next;
        }
        Ok(out)
    }

    /// The per-sample output shape of the whole network.
    pub fn output_shape(&self) -> Result<SampleShape> {
        let shapes = self.shapes().map_err(|(_, e)| e)?;
        Ok(shapes
            .last()
            .map(|s| s.output.clone())
            .unwrap_or_else(|| self.input.to_vec()))
    }

    /// Total trainable parameters.
    pub fn param_count(&self) -> Result<usize> {
        let shapes = self.shapes().map_err(|(_, e)| e)?;
        Ok(self
            .layers
            .iter()
            .zip(&shapes)
            .map(|(l, s)| l.counts(&s.input, &s.output).params as usize)
            .sum())
    }

    /// FLOPs of one training step for one sample: each layer's forward, its weight gradient
    /// (the same count again for Conv2D and Dense) and its input gradient (again the same,
    /// except for the first layer, whose input needs no gradient).
    pub fn train_flops_per_sample(&self) -> Result<u64> {
        let shapes = self.shapes().map_err(|(_, e)| e)?;
        let mut total = 0;
        for (i, (l, s)) in self.layers.iter().zip(&shapes).enumerate() {
            let f = l.counts(&s.input, &s.output).flops as u64;
            total += if i == 0 { 2 * f } else { 3 * f };
        }
        Ok(total)
    }

    /// FLOPs of one forward pass for one sample.
    pub fn forward_flops_per_sample(&self) -> Result<u64> {
        let shapes = self.shapes().map_err(|(_, e)| e)?;
        let mut total = 0;
        for (l, s) in self.layers.iter().zip(&shapes) {
            total += l.counts(&s.input, &s.output).flops as u64;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Report 1's network (section IV.B) with `classes` outputs, from examples/.
    use crate::examples::report1;

    #[test]
    fn report1_shapes_and_params_match_the_report() {
        // Report 1, section IV.B: (16,28,28), (16,14,14), flatten 3136, 128, 2.
        let spec = report1(2);
        let shapes = spec.shapes().unwrap();
        let outs: Vec<_> = shapes.iter().map(|s| s.output.clone()).collect();
        assert_eq!(
            outs,
            vec![vec![16, 28, 28], vec![16, 14, 14], vec![128], vec![2]]
        );
        // 160 + 0 + (3136*128 + 128) + (128*2 + 2) = 401,954, the total
        // `cnn summary examples/report1.cfg` prints.
        assert_eq!(spec.param_count().unwrap(), 401_954);
    }

    #[test]
    fn report1_training_flops_are_2_87_mflop_per_image() {
        // 2.87 MFLOP per image per training step with 10 outputs, the figure
        // docs/PERFORMANCE.md quotes for report 1's network.
        // conv 2*16*784*9 = 225,792 (x2, first layer), dense 2*3136*128 = 802,816 (x3),
        // dense 2*128*10 = 2,560 (x3): 451,584 + 2,408,448 + 7,680 = 2,867,712.
        assert_eq!(report1(10).train_flops_per_sample().unwrap(), 2_867_712);
    }

    #[test]
    fn same_padding_with_stride_two_gives_ceil_of_half() {
        let spec = Conv2dSpec {
            filters: 1,
            kernel: (3, 3),
            stride: 2,
            padding: Padding::Same,
            activation: Activation::None,
            groups: 1,
            bias: true,
        };
        // H = 7: H' = ceil(7/2) = 4, total pad = 3*2 + 3 - 7 = 2, top = 1.
        let g = spec.geom([1, 7, 6]).unwrap();
        assert_eq!((g.out_h, g.pad_top, g.out_w, g.pad_left), (4, 1, 3, 0));
    }

    #[test]
    fn explicit_padding_follows_report1_equation_2() {
        let spec = Conv2dSpec {
            filters: 4,
            kernel: (3, 3),
            stride: 2,
            padding: Padding::Explicit(1),
            activation: Activation::None,
            groups: 1,
            bias: true,
        };
        // floor((7 - 3 + 2)/2) + 1 = 4, floor((6 - 3 + 2)/2) + 1 = 3 (PyTorch fixture shape).
        let g = spec.geom([3, 7, 6]).unwrap();
        assert_eq!((g.out_h, g.out_w), (4, 3));
    }

    #[test]
    fn a_kernel_larger_than_its_input_is_an_error() {
        let spec = Conv2dSpec {
            filters: 1,
            kernel: (5, 5),
            stride: 1,
            padding: Padding::Valid,
            activation: Activation::None,
            groups: 1,
            bias: true,
        };
        assert!(spec.geom([1, 4, 4]).is_err());
    }
}
