//! Plain-data descriptions of layers, with shape inference, parameter counts and FLOPs.
//!
//! A [`LayerSpec`] is what one line of a config file says; [`NetworkSpec`] is the whole file.
//! Each layer's output shape is the next one's input shape, so shapes are inferred from the
//! `Input` line alone (as in darknet).
//!
//! Dimension letters used throughout: N batch, C input channels, H, W input height and width,
//! K filters (output channels), kh, kw kernel size, S stride, P padding, H', W' output size.

use crate::error::{Error, Result};
pub use crate::kernels::geom::{ConvGeom, Padding, PoolGeom};

/// An element-wise (or, for softmax, per-sample) activation applied after a layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// f(x) = x.
    None,
    /// f(x) = max(0, x); f'(x) = 1 if x > 0 else 0 (report 1, eq. 4-5).
    Relu,
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
    /// The name used in config files (`relu`, `leaky_relu`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
        }
    }
}

/// A 2-D convolution: K filters of shape C x kh x kw.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dSpec {
    /// K, the number of filters (output channels). Required.
    pub filters: usize,
    /// (kh, kw). Required.
    pub kernel: (usize, usize),
    /// S, the same along both axes. Default 1.
    pub stride: usize,
    /// Default [`Padding::Valid`].
    pub padding: Padding,
    /// Default [`Activation::None`].
    pub activation: Activation,
}

/// A pooling window (max or average).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// (ph, pw), the window. Required.
    pub pool: (usize, usize),
    /// S. Default: the window's height (non-overlapping windows, as in Keras).
    pub stride: usize,
}

/// A fully connected layer z = W x + b (report 1, eq. 11-12).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseSpec {
    /// Number of output units. Required.
    pub units: usize,
    /// Default [`Activation::None`].
    pub activation: Activation,
}

impl Conv2dSpec {
    /// The convolution's geometry on an input of shape (C, H, W).
    pub fn geom(&self, input: [usize; 3]) -> Result<ConvGeom> {
        ConvGeom::new(input, self.filters, self.kernel, self.stride, self.padding)
    }
}

impl PoolSpec {
    /// The pooling geometry on an input of shape (C, H, W); `op` names the layer in errors.
    pub fn geom(&self, op: &'static str, input: [usize; 3]) -> Result<PoolGeom> {
        PoolGeom::new(op, input, self.pool, self.stride)
    }
}

/// One layer of a network, as a config line describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Conv2D(Conv2dSpec),
    MaxPool2D(PoolSpec),
    AvgPool2D(PoolSpec),
    /// (C, H, W) -> (C*H*W). Implied before a Dense layer that follows a spatial one.
    Flatten,
    Dense(DenseSpec),
    /// A stand-alone activation layer.
    Activation(Activation),
}

/// A whole network: the input shape of one sample (C, H, W) and its layers in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    /// (C, H, W) of one input sample.
    pub input: [usize; 3],
    pub layers: Vec<LayerSpec>,
}

/// The per-sample shape a layer produces: `[C, H, W]` for spatial layers, `[F]` for flat ones.
pub type SampleShape = Vec<usize>;

fn as_chw(op: &'static str, shape: &[usize]) -> Result<[usize; 3]> {
    match shape {
        [c, h, w] => Ok([*c, *h, *w]),
        _ => Err(Error::Shape {
            op,
            expected: "a (C, H, W) input".into(),
            got: format!("{shape:?}"),
        }),
    }
}

impl LayerSpec {
    /// The layer's name as written in config files.
    pub fn name(&self) -> &'static str {
        match self {
            LayerSpec::Conv2D(_) => "Conv2D",
            LayerSpec::MaxPool2D(_) => "MaxPool2D",
            LayerSpec::AvgPool2D(_) => "AvgPool2D",
            LayerSpec::Flatten => "Flatten",
            LayerSpec::Dense(_) => "Dense",
            LayerSpec::Activation(_) => "Activation",
        }
    }

    /// The activation applied after this layer, if it carries one.
    pub fn activation(&self) -> Activation {
        match self {
            LayerSpec::Conv2D(s) => s.activation,
            LayerSpec::Dense(s) => s.activation,
            LayerSpec::Activation(a) => *a,
            _ => Activation::None,
        }
    }

    /// The per-sample output shape for a per-sample input shape.
    ///
    /// A Dense layer takes any input and reads it flattened in (C, H, W) order, so the
    /// implied Flatten of report 1's config costs nothing.
    pub fn output_shape(&self, input: &[usize]) -> Result<SampleShape> {
        match self {
            LayerSpec::Conv2D(s) => {
                let g = s.geom(as_chw("Conv2D", input)?)?;
                Ok(vec![g.k, g.out_h, g.out_w])
            }
            LayerSpec::MaxPool2D(s) => {
                let g = s.geom("MaxPool2D", as_chw("MaxPool2D", input)?)?;
                Ok(vec![g.c, g.out_h, g.out_w])
            }
            LayerSpec::AvgPool2D(s) => {
                let g = s.geom("AvgPool2D", as_chw("AvgPool2D", input)?)?;
                Ok(vec![g.c, g.out_h, g.out_w])
            }
            LayerSpec::Flatten => Ok(vec![input.iter().product()]),
            LayerSpec::Dense(s) => {
                if s.units == 0 {
                    return Err(Error::Invalid("Dense: units must be at least 1".into()));
                }
                Ok(vec![s.units])
            }
            LayerSpec::Activation(_) => Ok(input.to_vec()),
        }
    }

    /// Number of trainable parameters for a per-sample input shape:
    /// Conv2D K*C*kh*kw + K, Dense units*inputs + units, others 0.
    pub fn param_count(&self, input: &[usize]) -> usize {
        match self {
            LayerSpec::Conv2D(s) => {
                let c = input.first().copied().unwrap_or(0);
                s.filters * c * s.kernel.0 * s.kernel.1 + s.filters
            }
            LayerSpec::Dense(s) => {
                let n_in: usize = input.iter().product();
                s.units * n_in + s.units
            }
            _ => 0,
        }
    }

    /// Floating-point operations of the forward pass for one sample (a multiply-add counts 2;
    /// comparisons, bias adds and activations are not counted: they are O(output) and small).
    ///
    /// Conv2D: 2 * K * H' * W' * C * kh * kw. Dense: 2 * units * inputs.
    pub fn forward_flops(&self, input: &[usize]) -> Result<u64> {
        let out = self.output_shape(input)?;
        Ok(match self {
            LayerSpec::Conv2D(s) => {
                let c = input[0] as u64;
                2 * (out.iter().product::<usize>() as u64) * c * (s.kernel.0 * s.kernel.1) as u64
            }
            LayerSpec::Dense(s) => 2 * s.units as u64 * input.iter().product::<usize>() as u64,
            _ => 0,
        })
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
            .map(|(l, s)| l.param_count(&s.input))
            .sum())
    }

    /// FLOPs of one training step for one sample: each layer's forward, its weight gradient
    /// (the same count again for Conv2D and Dense) and its input gradient (again the same,
    /// except for the first layer, whose input needs no gradient).
    pub fn train_flops_per_sample(&self) -> Result<u64> {
        let shapes = self.shapes().map_err(|(_, e)| e)?;
        let mut total = 0;
        for (i, (l, s)) in self.layers.iter().zip(&shapes).enumerate() {
            let f = l.forward_flops(&s.input)?;
            total += if i == 0 { 2 * f } else { 3 * f };
        }
        Ok(total)
    }

    /// FLOPs of one forward pass for one sample.
    pub fn forward_flops_per_sample(&self) -> Result<u64> {
        let shapes = self.shapes().map_err(|(_, e)| e)?;
        let mut total = 0;
        for (l, s) in self.layers.iter().zip(&shapes) {
            total += l.forward_flops(&s.input)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Report 1's network (section IV.B) with `classes` outputs, built by hand in code.
    use crate::bench::report1_spec as report1;

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
        // 160 + 0 + (3136*128 + 128) + (128*2 + 2) = 401,954 (issue 3).
        assert_eq!(spec.param_count().unwrap(), 401_954);
    }

    #[test]
    fn report1_training_flops_are_2_87_mflop_per_image() {
        // Issue 2: 2.87 MFLOP per image per training step with 10 outputs.
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
        };
        assert!(spec.geom([1, 4, 4]).is_err());
    }
}
