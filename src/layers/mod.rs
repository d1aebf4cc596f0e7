//! Layers: plain-data specs ([`spec`]) and the runtime [`Layer`] that holds parameters and
//! runs forward and backward passes over a whole mini-batch.
//!
//! Each layer's module documents its math with the dimension letters N, C, H, W, K, S, P.
//! A layer's activation (`activation=relu` on a config line) is applied in place on its
//! output and undone first in backward; every activation derivative is written in terms of
//! the output, so no pre-activation copy is kept.

pub mod activation;
pub mod conv2d;
pub mod dense;
pub mod param;
pub mod pool;
pub mod spec;

pub use conv2d::Conv2D;
pub use dense::Dense;
pub use param::Param;
pub use pool::{AvgPool2D, MaxPool2D};
pub use spec::*;

use crate::error::Result;
use crate::tensor::Tensor;

/// The operation a layer performs before its activation.
#[derive(Debug, Clone)]
pub enum Op {
    Conv2D(Conv2D),
    MaxPool2D(MaxPool2D),
    AvgPool2D(AvgPool2D),
    Dense(Dense),
    /// Flatten and stand-alone activations: the data passes through unchanged (NCHW is
    /// already laid out in (C, H, W) order per sample).
    Identity,
}

/// One runtime layer: an operation, the activation after it, and its per-sample shapes.
#[derive(Debug, Clone)]
pub struct Layer {
    pub spec: LayerSpec,
    pub op: Op,
    pub activation: Activation,
    /// Per-sample input shape.
    pub input: SampleShape,
    /// Per-sample output shape.
    pub output: SampleShape,
}

fn chw(shape: &[usize]) -> [usize; 3] {
    match shape {
        [c, h, w] => [*c, *h, *w],
        _ => unreachable!("spatial layer on a non-spatial shape; rejected by output_shape"),
    }
}

impl Layer {
    /// Builds the layer for a per-sample `input` shape, with zero parameters.
    pub fn new(spec: &LayerSpec, input: &[usize]) -> Result<Layer> {
        let output = spec.output_shape(input)?;
        let op = match spec {
            LayerSpec::Conv2D(s) => Op::Conv2D(Conv2D::new(s.geom(chw(input))?)),
            LayerSpec::MaxPool2D(s) => {
                Op::MaxPool2D(MaxPool2D::new(s.geom("MaxPool2D", chw(input))?))
            }
            LayerSpec::AvgPool2D(s) => {
                Op::AvgPool2D(AvgPool2D::new(s.geom("AvgPool2D", chw(input))?))
            }
            LayerSpec::Dense(s) => Op::Dense(Dense::new(input.iter().product(), s.units)),
            LayerSpec::Flatten | LayerSpec::Activation(_) => Op::Identity,
        };
        Ok(Layer {
            spec: spec.clone(),
            op,
            activation: spec.activation(),
            input: input.to_vec(),
            output,
        })
    }

    /// Elements per sample of the output.
    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Runs the layer on a batch `x` of shape `[N, ..input]`, writing `y` (resized to
    /// `[N, ..output]`). The activation is applied unless `skip_activation` (used for a
    /// final softmax, which the loss fuses).
    pub fn forward(&mut self, x: &Tensor, y: &mut Tensor, skip_activation: bool) {
        let n = x.batch();
        let mut shape = vec![n];
        shape.extend_from_slice(&self.output);
        y.resize(&shape);
        let (xd, yd) = (x.data(), y.data_mut());
        let act = if skip_activation {
            Activation::None
        } else {
            self.activation
        };
        match &mut self.op {
            // Conv2D applies its activation per sample, while the output is in cache.
            Op::Conv2D(l) => return l.forward(xd, yd, n, act),
            Op::MaxPool2D(l) => l.forward(xd, yd, n),
            Op::AvgPool2D(l) => l.forward(xd, yd, n),
            Op::Dense(l) => l.forward(xd, yd, n),
            Op::Identity => yd.copy_from_slice(xd),
        }
        activation::forward(act, yd, self.output_len());
    }

    /// Backward through the activation (turning `dy` into dL/dz in place, unless it was
    /// skipped in forward) and then the operation: sets the parameter gradients and, when
    /// `dx` is given, writes dL/dx (resized to `x`'s shape).
    pub fn backward(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        dy: &mut Tensor,
        dx: Option<&mut Tensor>,
        skipped_activation: bool,
    ) {
        let n = x.batch();
        let act = if skipped_activation {
            Activation::None
        } else {
            self.activation
        };
        let dx = dx.map(|t| {
            t.resize(x.shape());
            t.data_mut()
        });
        if let Op::Conv2D(l) = &mut self.op {
            // Conv2D undoes its activation per sample inside its own loop.
            return l.backward(x.data(), y.data(), dy.data_mut(), dx, n, act);
        }
        activation::backward(act, y.data(), dy.data_mut(), self.output_len());
        let dyd = dy.data();
        match (&mut self.op, dx) {
            (Op::Conv2D(_), _) => unreachable!("handled above"),
            (Op::Dense(l), dx) => l.backward(x.data(), dyd, dx, n),
            (Op::MaxPool2D(l), Some(dx)) => l.backward(dyd, dx, n),
            (Op::AvgPool2D(l), Some(dx)) => l.backward(dyd, dx, n),
            (Op::Identity, Some(dx)) => dx.copy_from_slice(dyd),
            (_, None) => {}
        }
    }

    /// The layer's parameters as `(name, param)`: `weight` then `bias`, or none.
    pub fn params(&self) -> Vec<(&'static str, &Param)> {
        match &self.op {
            Op::Conv2D(l) => vec![("weight", &l.weight), ("bias", &l.bias)],
            Op::Dense(l) => vec![("weight", &l.weight), ("bias", &l.bias)],
            _ => Vec::new(),
        }
    }

    /// Mutable access to the parameters, in the order of [`Layer::params`].
    pub fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        match &mut self.op {
            Op::Conv2D(l) => vec![("weight", &mut l.weight), ("bias", &mut l.bias)],
            Op::Dense(l) => vec![("weight", &mut l.weight), ("bias", &mut l.bias)],
            _ => Vec::new(),
        }
    }

    /// Fan-in and fan-out of the weight, for initialisation: Conv2D (C kh kw, K kh kw),
    /// Dense (I, O).
    pub fn fans(&self) -> Option<(usize, usize)> {
        match &self.op {
            Op::Conv2D(l) => {
                let g = l.geom;
                Some((g.patch_len(), g.k * g.kh * g.kw))
            }
            Op::Dense(l) => Some((l.inputs, l.units)),
            _ => None,
        }
    }
}
