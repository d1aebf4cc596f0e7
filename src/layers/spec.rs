//! A whole network as its config describes it: the input shape and one [`LayerSpec`] per
//! layer line, with shape inference, parameter counts and FLOPs.
//!
//! A layer reads the output of the line above it, unless its line names other layers (a
//! `Shortcut` adds an earlier layer's output, a `Route` reads the layers it lists): the
//! network is a directed acyclic graph in config order, each layer reading earlier ones
//! ([`NetworkSpec::reads`]). Shapes are inferred from the `Input` line alone (as in
//! darknet), each layer's from the shapes of the values it reads.
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

/// A value a layer reads: the network's input, or the output of layer `i` (its line index,
/// counted from 0 as in the tensor names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Value {
    /// The network's input batch.
    Input,
    /// The output of layer `i`.
    Output(usize),
}

impl std::fmt::Display for Value {
    /// `the input` or `layer 3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Input => write!(f, "the input"),
            Value::Output(i) => write!(f, "layer {i}"),
        }
    }
}

/// One value a layer reads, with its per-sample shape ([`crate::layers::LayerKind::output_shape_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputShape<'a> {
    pub value: Value,
    pub shape: &'a [usize],
}

/// A whole network: the input shape of one sample (C, H, W) and its layers in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    /// (C, H, W) of one input sample.
    pub input: [usize; 3],
    pub layers: Vec<LayerSpec>,
}

impl LayerSpec {
    /// The values the layer on line `i` (counted from 0) reads, in order: the output of the
    /// line above (the network's input for line 0) unless the kind says otherwise
    /// ([`crate::layers::LayerKind::READS_ABOVE`]), then each layer its line names
    /// ([`crate::layers::LayerKind::refs`]), a negative reference counting back from line
    /// `i`. A reference must name an earlier layer: otherwise `Err((k, why))`, `k` the
    /// position of the bad reference among the line's references.
    pub fn reads(&self, i: usize) -> std::result::Result<Vec<Value>, (usize, String)> {
        let mut out = Vec::new();
        if self.reads_above() {
            out.push(match i {
                0 => Value::Input,
                _ => Value::Output(i - 1),
            });
        }
        let key = self.refs_key().unwrap_or("from");
        for (k, &r) in self.refs().iter().enumerate() {
            // i128: no written number can overflow it.
            let at = if r < 0 {
                i as i128 + i128::from(r)
            } else {
                i128::from(r)
            };
            if at < 0 {
                let why = if i == 0 {
                    format!(
                        "`{key}` names layer {at}, but this is layer 0: there is no earlier \
                         layer to read (the network's input is read by the first layer only)"
                    )
                } else {
                    format!(
                        "`{key}` names layer {at}, before the first: a negative number counts \
                         back from this line (-1 is the line above), and this is layer {i}, so \
                         -{i} names layer 0"
                    )
                };
                return Err((k, why));
            }
            if at >= i as i128 {
                let what = if at == i as i128 {
                    "this layer itself".to_string()
                } else {
                    format!("layer {at}, which comes after it")
                };
                return Err((
                    k,
                    format!(
                        "`{key}` names {what}; this is layer {i}, and a layer reads earlier \
                         layers only (a negative number counts back: -1 is the line above)"
                    ),
                ));
            }
            out.push(Value::Output(at as usize));
        }
        Ok(out)
    }

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

/// One row of a network's shape walk: a layer with the values it reads and their shapes,
/// and its output shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerShapes {
    /// The shape of the first value it reads (the only one, but for Shortcut and Route).
    pub input: SampleShape,
    /// The values it reads ([`LayerSpec::reads`]) and their shapes, in order.
    pub reads: Vec<Value>,
    pub inputs: Vec<SampleShape>,
    pub output: SampleShape,
}

impl LayerShapes {
    /// The values read with their shapes, for [`LayerSpec::output_shape_of`] and the like.
    pub fn input_shapes(&self) -> Vec<InputShape<'_>> {
        self.reads
            .iter()
            .zip(&self.inputs)
            .map(|(&value, shape)| InputShape { value, shape })
            .collect()
    }
}

impl NetworkSpec {
    /// The values each layer reads, in order ([`LayerSpec::reads`]), or the first layer
    /// that names no earlier layer, as `(index, error)`. Every layer's output but the last
    /// must be read by a later layer: an output nothing reads could not change the
    /// network's output, and its layer would never learn (`(index of that layer, error)`).
    pub fn reads(&self) -> std::result::Result<Vec<Vec<Value>>, (usize, Error)> {
        let mut reads = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            reads.push(
                layer
                    .reads(i)
                    .map_err(|(_, why)| (i, Error::Invalid(format!("{}: {why}", layer.name()))))?,
            );
        }
        let mut read = vec![false; self.layers.len()];
        for v in reads.iter().flatten() {
            if let Value::Output(j) = v {
                read[*j] = true;
            }
        }
        let last = self.layers.len().saturating_sub(1);
        if let Some(j) = (0..last).find(|&j| !read[j]) {
            return Err((j, Error::Invalid(unread(j, &self.layers))));
        }
        Ok(reads)
    }

    /// Whether every layer reads the line above alone: a chain, as every network was before
    /// Shortcut and Route.
    pub fn is_chain(&self) -> bool {
        self.layers
            .iter()
            .all(|l| l.reads_above() && l.refs().is_empty())
    }

    /// Walks the layers from the input shape and returns each layer's inputs and output
    /// shape, or the first layer whose references or shape do not work, as `(index, error)`.
    pub fn shapes(&self) -> std::result::Result<Vec<LayerShapes>, (usize, Error)> {
        let reads = self.reads()?;
        let mut out: Vec<LayerShapes> = Vec::with_capacity(self.layers.len());
        for (i, (layer, reads)) in self.layers.iter().zip(reads).enumerate() {
            let inputs: Vec<SampleShape> = reads
                .iter()
                .map(|v| match *v {
                    Value::Input => self.input.to_vec(),
                    Value::Output(j) => out[j].output.clone(),
                })
                .collect();
            let shapes: Vec<InputShape> = reads
                .iter()
                .zip(&inputs)
                .map(|(&value, shape)| InputShape { value, shape })
                .collect();
            let next = layer.output_shape_of(&shapes).map_err(|e| (i, e))?;
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
                input: inputs[0].clone(),
                reads,
                inputs,
                output: next,
            });
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

/// Why layer `j`'s output, which no later layer reads, is refused.
pub(crate) fn unread(j: usize, layers: &[LayerSpec]) -> String {
    let skipped = match layers.get(j + 1) {
        Some(next) if !next.reads_above() => format!(
            " (the {} on the next line reads only the layers it names)",
            next.name()
        ),
        _ => String::new(),
    };
    format!(
        "{}: the output of layer {j} is read by no later layer{skipped}, so it cannot change \
         the network's output and the layer would never learn; remove the layer, or read it \
         (`Route layers=...`, `Shortcut from=...`)",
        layers[j].name()
    )
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
