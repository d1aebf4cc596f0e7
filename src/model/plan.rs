//! The steps of a pass through the network, decided once when the model is built.
//!
//! A step runs one layer, or a few layers together ([`super::fused`]), reading one value:
//! the network's input or an earlier layer's output. Each step names the value it reads,
//! and the walks of [`super::Model`] look nothing up beyond it: forward runs the steps in
//! order, each writing the outputs of its layers; backward runs the training steps in
//! reverse, each taking the gradient of its last layer's output and writing that of the
//! value it read. Today every layer reads the output of the layer before it
//! ([`reads`]); a network that is a graph would give a layer another value to read (a
//! shortcut adding an earlier output, a route concatenating several: a step with several
//! inputs), and a value read by two steps would get the sum of their gradients.
//!
//! There are three plans, one per kind of pass:
//! - training: a Conv2D followed by a MaxPool2D is one step ([`conv_pool`]);
//! - inference on one image: a one-channel Conv2D, its pooling and the Dense layer after
//!   them are one step where their halves line up ([`batch_one`]);
//! - inference on more images: every layer is a step of its own (the conv-then-pool pair
//!   measured faster apart there, see [`conv_pool`]).
//!
//! What the plans depend on is fixed when a layer is built (the kinds, the shapes, the
//! activations, whether a convolution runs as Winograd), not on the weights, so loading
//! weights into a model leaves its plans as they are.

use std::ops::Range;

use super::fused::{batch_one, conv_pool};
use crate::layers::Layer;

/// A value a step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// The network's input batch.
    Input,
    /// The output of layer `i` in this pass.
    Output(usize),
}

/// One step of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Layer `layer`'s own forward (and backward) pass, reading `input`.
    Layer { layer: usize, input: Value },
    /// The Conv2D `conv` and the MaxPool2D `conv + 1` on its output, forward and backward
    /// together, reading `input` ([`conv_pool`]). Training only.
    ConvThenPool { conv: usize, input: Value },
    /// The Conv2D `first`, the pooling `first + 1` and the Dense `first + 2` as one chain on
    /// one image, reading `input` ([`batch_one`]). Inference at batch 1 only.
    BatchOneChain { first: usize, input: Value },
}

impl Step {
    /// The layers whose outputs the step writes, in order.
    pub fn layers(&self) -> Range<usize> {
        match *self {
            Step::Layer { layer, .. } => layer..layer + 1,
            Step::ConvThenPool { conv, .. } => conv..conv + 2,
            Step::BatchOneChain { first, .. } => first..first + batch_one::LEN,
        }
    }

    /// The value the step reads.
    pub fn input(&self) -> Value {
        match *self {
            Step::Layer { input, .. }
            | Step::ConvThenPool { input, .. }
            | Step::BatchOneChain { input, .. } => input,
        }
    }
}

/// The value layer `i` reads: in a sequential network, the output of the layer before it.
pub fn reads(i: usize) -> Value {
    match i {
        0 => Value::Input,
        _ => Value::Output(i - 1),
    }
}

/// The steps of each kind of pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// A training step's forward pass; its backward pass runs these in reverse.
    pub training: Vec<Step>,
    /// Inference (and evaluation) on more than one image.
    pub inference: Vec<Step>,
    /// Inference on one image.
    pub one_image: Vec<Step>,
}

impl Plan {
    /// The plans for `layers`.
    pub fn new(layers: &[Layer]) -> Plan {
        Plan {
            training: steps(layers, |i, input| {
                let pair = layers.get(i..i + 2)?;
                (reads(i + 1) == Value::Output(i) && conv_pool::applies(&pair[0], &pair[1]))
                    .then_some(Step::ConvThenPool { conv: i, input })
            }),
            inference: steps(layers, |_, _| None),
            one_image: steps(layers, |i, input| {
                let chained = (i + 1..i + batch_one::LEN).all(|j| reads(j) == Value::Output(j - 1));
                (chained && batch_one::starts_at(layers, i))
                    .then_some(Step::BatchOneChain { first: i, input })
            }),
        }
    }

    /// The steps of a pass: training, or inference on `n` images.
    pub fn steps(&self, training: bool, n: usize) -> &[Step] {
        match (training, n) {
            (true, _) => &self.training,
            (false, 1) => &self.one_image,
            (false, _) => &self.inference,
        }
    }
}

/// The layers in order, each a step of its own unless `fused(i, input)` gives a step that
/// starts with layer `i` (reading `input`) and runs it with the layers after it.
fn steps(layers: &[Layer], fused: impl Fn(usize, Value) -> Option<Step>) -> Vec<Step> {
    let mut steps = Vec::with_capacity(layers.len());
    let mut i = 0;
    while i < layers.len() {
        let input = reads(i);
        let step = fused(i, input).unwrap_or(Step::Layer { layer: i, input });
        i = step.layers().end;
        steps.push(step);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Init;
    use crate::model::Model;

    fn plan(text: &str) -> Plan {
        let spec = crate::config::parse(text, "plan test").unwrap().spec;
        Model::new(&spec, Init::He, 1).unwrap().plan().clone()
    }

    /// Report 1's network: the convolution and its pooling fused in training, chained with
    /// the first Dense layer on one image (where the direct kernel's one-image path exists),
    /// every layer apart otherwise; each step reads the output of the step before.
    #[test]
    fn report_1s_network_has_one_fused_step_per_kind_of_pass() {
        let p = plan(crate::examples::REPORT1_10);
        use Step::*;
        use Value::*;
        assert_eq!(
            p.training,
            [
                ConvThenPool {
                    conv: 0,
                    input: Input
                },
                Layer {
                    layer: 2,
                    input: Output(1)
                },
                Layer {
                    layer: 3,
                    input: Output(2)
                },
            ]
        );
        let apart: Vec<Step> = (0..4)
            .map(|i| Layer {
                layer: i,
                input: reads(i),
            })
            .collect();
        assert_eq!(p.inference, apart);
        let geom = crate::layers::Conv2dSpec {
            filters: 16,
            kernel: (3, 3),
            stride: 1,
            padding: crate::kernels::geom::Padding::Same,
            activation: crate::layers::Activation::Relu,
            groups: 1,
            bias: true,
        }
        .geom([1, 28, 28])
        .unwrap();
        if crate::kernels::direct::applies(&geom) {
            assert_eq!(
                p.one_image,
                [
                    BatchOneChain {
                        first: 0,
                        input: Input
                    },
                    Layer {
                        layer: 3,
                        input: Output(2)
                    },
                ]
            );
        } else {
            assert_eq!(p.one_image, apart);
        }
        assert_eq!(p.steps(true, 1), p.training);
        assert_eq!(p.steps(false, 1), p.one_image);
        assert_eq!(p.steps(false, 2), p.inference);
    }

    /// LeNet: both convolution-pooling pairs fused in training; no chain on one image (its
    /// first pooling is followed by a convolution, not a Dense layer). A pooling first, or
    /// an average pooling, is not fused.
    #[test]
    fn every_conv_then_max_pool_pair_is_one_training_step() {
        let p = plan(crate::examples::LENET);
        let kinds = |steps: &[Step]| -> Vec<(usize, bool)> {
            steps
                .iter()
                .map(|s| (s.layers().start, matches!(s, Step::ConvThenPool { .. })))
                .collect()
        };
        assert_eq!(
            kinds(&p.training),
            [(0, true), (2, true), (4, false), (5, false)]
        );
        assert_eq!(p.one_image.len(), 6);
        let p = plan(
            "4\nInput shape=1x8x8\nMaxPool2D pool=2\n\
             Conv2D filters=2 kernel=3x3 padding=same\nAvgPool2D pool=2\nDense units=3\n",
        );
        assert!(p.training.iter().all(|s| matches!(s, Step::Layer { .. })));
        // Every layer is written by exactly one step, in order.
        for steps in [&p.training, &p.inference, &p.one_image] {
            let written: Vec<usize> = steps.iter().flat_map(|s| s.layers()).collect();
            assert_eq!(written, [0, 1, 2, 3]);
        }
    }
}
