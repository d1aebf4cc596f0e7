//! The steps of a pass through the network, decided once when the model is built.
//!
//! A step runs one layer, or a few layers together ([`super::fused`]), reading values: the
//! network's input or earlier layers' outputs. Each step names the values it reads, and the
//! walks of [`super::Model`] look nothing up beyond them: forward runs the steps in order,
//! each writing the outputs of its layers; backward runs the training steps in reverse, each
//! taking the gradient of its last layer's output and giving one to each value it read.
//!
//! # The network is a graph
//!
//! A layer reads the line above it ([`reads`]) unless its line names other layers: a
//! Shortcut reads the line above and one earlier layer, a Route the layers it lists
//! ([`crate::layers::LayerSpec::reads`]). Layers come in config order, every one reading
//! earlier ones only, so the order of the lines is an order in which to run them.
//!
//! - **A layer that passes its input on** (a one-layer Route, the branch point of a
//!   projection shortcut) has no step: the layers that read it read the value it names
//!   ([`Plan::output_of`]), in every pass, and its output is that value with no copy. The
//!   last layer always has a step of its own.
//! - **A layer that reads several values** is a [`Step::Join`] (Shortcut, a Route of
//!   several layers).
//! - **Gradients through shared values.** A value read by several layers gets the sum of
//!   their contributions, in a fixed order: the backward pass visits the steps in reverse,
//!   so the reader of the highest layer index comes first and writes the value's gradient;
//!   each next reader, in decreasing layer index, adds its own (computed into a buffer of
//!   its own, then added element by element). A layer that reads one value twice gives the
//!   contribution of its first reference first. The order depends on nothing but the
//!   network, so the sums have the same bits on any thread count and across resume.
//!
//! # The three plans
//!
//! There are three plans, one per kind of pass:
//! - training: a Conv2D followed by a MaxPool2D is one step ([`conv_pool`]) when the
//!   pooling reads the convolution's output and nothing else does (its fused backward
//!   gives the convolution only the pooling's gradient);
//! - inference on more images: the same steps; the convolution's output is pooled block by
//!   block from the cache of the thread that made it and, unless every output is kept,
//!   never stored ([`Step::written`]);
//! - inference on one image: a one-channel Conv2D, its pooling and the Dense layer after
//!   them are one step where their halves line up ([`batch_one`]), on a stretch where each
//!   reads the one before it alone; every other layer a step of its own.
//!
//! # Buffers
//!
//! The model keeps one output buffer per layer (and a layer that passes its input on uses
//! the one of the value it names). A training pass keeps every output, as backward reads
//! them, and so does inference on one image (`cnn serve` and `cnn visualize` show them).
//! Inference on more images keeps an output only while a later step still reads it: once
//! its last reader has run, its buffer goes to the next output of the same size
//! ([`Plan::shared`]); the buffers are those of the training pass, so a training run
//! allocates nothing for it, and a network whose blocks repeat one shape needs a few
//! buffers per shape instead of one per layer.
//!
//! What the plans depend on is fixed when a layer is built (the kinds, the shapes, the
//! activations, the values each reads, whether a convolution runs as Winograd), not on the
//! weights, so loading weights into a model leaves its plans as they are.

use std::collections::HashMap;
use std::ops::Range;

use super::fused::{batch_one, conv_pool};
use crate::layers::Layer;
pub use crate::layers::Value;

/// One step of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Layer `layer`'s own forward (and backward) pass, reading `input`.
    Layer { layer: usize, input: Value },
    /// Layer `layer`'s own passes, reading the values `inputs` (Shortcut, Route).
    Join { layer: usize, inputs: Vec<Value> },
    /// The Conv2D `conv` and the MaxPool2D `conv + 1` on its output, forward and backward
    /// together, reading `input` ([`conv_pool`]). Training, and inference on more than one
    /// image, where a pass that shares buffers does not keep the convolution's output
    /// ([`Step::written`]).
    ConvThenPool { conv: usize, input: Value },
    /// The Conv2D `first`, the pooling `first + 1` and the Dense `first + 2` as one chain on
    /// one image, reading `input` ([`batch_one`]). Inference at batch 1 only.
    BatchOneChain { first: usize, input: Value },
}

impl Step {
    /// The layers whose outputs the step writes, in order.
    pub fn layers(&self) -> Range<usize> {
        match *self {
            Step::Layer { layer, .. } | Step::Join { layer, .. } => layer..layer + 1,
            Step::ConvThenPool { conv, .. } => conv..conv + 2,
            Step::BatchOneChain { first, .. } => first..first + batch_one::LEN,
        }
    }

    /// The layers whose outputs the step writes in a pass that shares buffers (inference on
    /// more than one image, [`Plan::shared`]): [`Step::layers`], but for the pooling alone
    /// of a [`Step::ConvThenPool`], whose convolution output stays in the cache of the
    /// thread that pools it.
    pub fn written(&self) -> Range<usize> {
        match *self {
            Step::ConvThenPool { conv, .. } => conv + 1..conv + 2,
            _ => self.layers(),
        }
    }

    /// The values the step reads, in order.
    pub fn inputs(&self) -> &[Value] {
        match self {
            Step::Join { inputs, .. } => inputs,
            Step::Layer { input, .. }
            | Step::ConvThenPool { input, .. }
            | Step::BatchOneChain { input, .. } => std::slice::from_ref(input),
        }
    }
}

/// The line above layer `i`, the value a layer reads unless its line names others: the
/// output of layer `i - 1`, or the network's input for layer 0.
#[cfg(test)]
pub fn reads(i: usize) -> Value {
    match i {
        0 => Value::Input,
        _ => Value::Output(i - 1),
    }
}

/// The steps of each kind of pass, and where each layer's output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// A training step's forward pass; its backward pass runs these in reverse.
    pub training: Vec<Step>,
    /// Inference (and evaluation) on more than one image.
    pub inference: Vec<Step>,
    /// Inference on one image.
    pub one_image: Vec<Step>,
    /// Per layer: the layer whose output buffer holds its output: itself, or for a layer
    /// that passes its input on (a one-layer Route), the layer whose output it passes on.
    pub output_of: Vec<usize>,
    /// Per layer: the buffer (a layer's index) its output is written to in the pass of
    /// [`Plan::inference`], shared with other outputs of the same size whose readers have
    /// all run before it is written.
    pub shared: Vec<usize>,
    /// Per layer: whether its output is still in its buffer of [`Plan::shared`] after that
    /// pass (no later output took the buffer).
    pub kept: Vec<bool>,
}

impl Plan {
    /// The plans for `layers`, each of which knows the values it reads
    /// ([`Layer::reads`]).
    pub fn new(layers: &[Layer]) -> Plan {
        let last = layers.len().saturating_sub(1);
        // Where each layer's output is: a layer that passes its input on (never the last)
        // is the value it reads.
        let mut output_of: Vec<usize> = (0..layers.len()).collect();
        for (i, layer) in layers.iter().enumerate() {
            if i != last && layer.op.passes_input_on() {
                if let [Value::Output(j)] = layer.shapes.reads[..] {
                    output_of[i] = output_of[j];
                }
            }
        }
        let stepped = |i: usize| output_of[i] == i;
        let resolve = |v: Value| match v {
            Value::Input => Value::Input,
            Value::Output(j) => Value::Output(output_of[j]),
        };
        let reads: Vec<Vec<Value>> = layers
            .iter()
            .map(|l| l.shapes.reads.iter().map(|&v| resolve(v)).collect())
            .collect();
        // Who reads each output, counting a layer once per reference.
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); layers.len()];
        for (i, r) in reads.iter().enumerate().filter(|(i, _)| stepped(*i)) {
            for v in r {
                if let Value::Output(j) = v {
                    readers[*j].push(i);
                }
            }
        }
        // Layer `j` reads layer `j - 1`'s output alone.
        let chained = |j: usize| stepped(j) && reads[j] == [Value::Output(j - 1)];
        let conv_then_pool = |i: usize, input: Value| {
            let pair = layers.get(i..i + 2)?;
            (chained(i + 1) && readers[i] == [i + 1] && conv_pool::applies(&pair[0], &pair[1]))
                .then_some(Step::ConvThenPool { conv: i, input })
        };
        let training = steps(layers, &reads, &stepped, conv_then_pool);
        // The same steps: a pass that shares buffers leaves out what they do not write.
        let inference = training.clone();
        let one_image = steps(layers, &reads, &stepped, |i, input| {
            let fits =
                i + batch_one::LEN <= layers.len() && (i + 1..i + batch_one::LEN).all(chained);
            (fits && batch_one::starts_at(layers, i))
                .then_some(Step::BatchOneChain { first: i, input })
        });
        let (shared, kept) = share_buffers(layers, &inference, &output_of);
        Plan {
            training,
            inference,
            one_image,
            output_of,
            shared,
            kept,
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

/// The layers in order, each with a step unless it passes its input on (`!stepped(i)`): a
/// step of its own, reading its values `reads[i]`, unless `fused(i, input)` gives a step
/// that starts with layer `i` (reading its one value `input`) and runs it with the layers
/// after it.
fn steps(
    layers: &[Layer],
    reads: &[Vec<Value>],
    stepped: &dyn Fn(usize) -> bool,
    fused: impl Fn(usize, Value) -> Option<Step>,
) -> Vec<Step> {
    let mut steps = Vec::with_capacity(layers.len());
    let mut i = 0;
    while i < layers.len() {
        if !stepped(i) {
            i += 1;
            continue;
        }
        let step = match reads[i][..] {
            [input] => fused(i, input).unwrap_or(Step::Layer { layer: i, input }),
            _ => Step::Join {
                layer: i,
                inputs: reads[i].clone(),
            },
        };
        i = step.layers().end;
        steps.push(step);
    }
    steps
}

/// The buffers of a pass that runs `steps` (writing [`Step::written`]) keeping an output
/// only while a later step reads it: per layer, the buffer its output goes to (a layer's
/// own, or that of an earlier output of the same size whose last reader has run), and
/// whether it is still there at the end of the pass. The last layer's output is never
/// given away.
fn share_buffers(layers: &[Layer], steps: &[Step], output_of: &[usize]) -> (Vec<usize>, Vec<bool>) {
    let n = layers.len();
    let mut last_read = vec![None; n];
    for (s, step) in steps.iter().enumerate() {
        for v in step.inputs() {
            if let Value::Output(j) = v {
                last_read[*j] = Some(s);
            }
        }
    }
    let mut shared: Vec<usize> = (0..n).collect();
    // Free buffers by the output length they were made for, the last freed first.
    let mut free: HashMap<usize, Vec<usize>> = HashMap::new();
    for (s, step) in steps.iter().enumerate() {
        for j in step.written() {
            let len = layers[j].output_len();
            shared[j] = free.get_mut(&len).and_then(Vec::pop).unwrap_or(j);
        }
        for v in step.inputs() {
            if let Value::Output(j) = *v {
                if last_read[j] == Some(s) && j + 1 != n {
                    free.entry(layers[j].output_len())
                        .or_default()
                        .push(shared[j]);
                    // Read twice by this step: freed once.
                    last_read[j] = None;
                }
            }
        }
    }
    for (i, &o) in output_of.iter().enumerate() {
        shared[i] = shared[o];
    }
    // The last output written to each buffer is the one kept.
    let mut occupant: HashMap<usize, usize> = HashMap::new();
    for step in steps {
        for j in step.written() {
            occupant.insert(shared[j], j);
        }
    }
    let kept = output_of
        .iter()
        .map(|&o| occupant.get(&shared[o]) == Some(&o))
        .collect();
    (shared, kept)
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

    /// Report 1's network: the convolution and its pooling fused in training and in
    /// inference on more images (where only the pooling's output is written), chained with
    /// the first Dense layer on one image (where the direct kernel's one-image path
    /// exists); each step reads the output of the step before.
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
        assert_eq!(p.inference, p.training);
        let written: Vec<usize> = p.inference.iter().flat_map(|s| s.written()).collect();
        assert_eq!(written, [1, 2, 3], "the convolution's output is not stored");
        assert!(!p.kept[0] && p.kept[3]);
        let apart: Vec<Step> = (0..4)
            .map(|i| Layer {
                layer: i,
                input: reads(i),
            })
            .collect();
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

    /// LeNet: both convolution-pooling pairs fused in training and inference on more
    /// images; no chain on one image (its first pooling is followed by a convolution, not a
    /// Dense layer). A pooling first, or an average pooling, is not fused.
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
        assert_eq!(p.inference, p.training);
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

    /// A small residual network: no step for the one-layer Route (the convolution after it
    /// reads the block's input itself), a join for each Shortcut, and a convolution whose
    /// output a Route reads too is not fused with its pooling.
    #[test]
    fn a_graphs_plan_follows_what_each_layer_reads() {
        let p = plan(crate::examples::RESNET_SMALL);
        use Step::*;
        use Value::*;
        assert!(p.training.contains(&Join {
            layer: 7,
            inputs: vec![Output(6), Output(2)]
        }));
        assert!(p.training.contains(&Join {
            layer: 15,
            inputs: vec![Output(14), Output(11)]
        }));
        assert!(p.training.contains(&Layer {
            layer: 13,
            input: Output(7)
        }));
        for steps in [&p.training, &p.inference, &p.one_image] {
            assert!(steps.iter().all(|s| !s.layers().contains(&12)), "{steps:?}");
        }
        assert_eq!(p.output_of[12], 7);
        assert_eq!(p.shared[12], p.shared[7]);

        // Conv2D then MaxPool2D: fused while the pooling alone reads the convolution; apart
        // when a Route reads the convolution's output too (its gradient then has two parts).
        let fused = plan(
            "5\nInput shape=1x8x8\nConv2D filters=2 kernel=3 padding=same\n\
             MaxPool2D pool=2\nRoute layers=1\nConv2D filters=2 kernel=1\nDense units=3\n",
        );
        assert!(matches!(fused.training[0], ConvThenPool { conv: 0, .. }));
        let apart = plan(
            "6\nInput shape=1x8x8\nConv2D filters=2 kernel=3 padding=same\n\
             MaxPool2D pool=2\nRoute layers=0\nConv2D filters=2 kernel=1 stride=2\n\
             Shortcut from=1\nDense units=3\n",
        );
        assert_eq!(
            apart.training[..2],
            [
                Layer {
                    layer: 0,
                    input: Input
                },
                Layer {
                    layer: 1,
                    input: Output(0)
                }
            ]
        );
        assert!(apart.training.contains(&Layer {
            layer: 3,
            input: Output(0)
        }));
    }

    /// Inference on several images lends an output's buffer to the next output of its size
    /// once its last reader has run; the outputs still read are never overwritten.
    #[test]
    fn buffers_are_shared_only_between_outputs_that_do_not_overlap() {
        let spec = crate::config::parse(crate::examples::RESNET_SMALL, "t")
            .unwrap()
            .spec;
        let model = Model::new(&spec, Init::He, 1).unwrap();
        let p = model.plan();
        let layers = model.layers();
        let buffers: std::collections::HashSet<usize> = p.shared.iter().copied().collect();
        assert!(buffers.len() < layers.len() - 4, "{:?}", p.shared);
        // For each step, no output written before it and read by it or later shares the
        // buffer it writes.
        let mut last_read = vec![0; layers.len()];
        for (s, step) in p.inference.iter().enumerate() {
            for v in step.inputs() {
                if let Value::Output(j) = v {
                    last_read[*j] = s;
                }
            }
        }
        let written: Vec<usize> = p.inference.iter().map(|s| s.layers().start).collect();
        for (s, &j) in written.iter().enumerate() {
            for &k in &written[..s] {
                if last_read[k] >= s {
                    assert_ne!(p.shared[k], p.shared[j], "layer {j} would overwrite {k}");
                }
            }
        }
        // One output kept per buffer: the last written to it; always the network's output.
        assert!(p.kept[layers.len() - 1]);
        let kept = written.iter().filter(|&&j| p.kept[j]).count();
        assert_eq!(kept, buffers.len());
    }
}
