//! A model: its layers in config order, each reading the line above it or, for a Shortcut
//! or a Route, the earlier layers its line names (a directed acyclic graph).
//!
//! The model keeps every layer's output of the last training pass (what backward needs) and
//! one gradient buffer per layer, all reused from batch to batch: a training step allocates
//! no tensor once the buffers have grown to the batch size (only each step's short list of
//! the values it reads).
//!
//! A softmax at the end of the network is not applied in training: [`Model::forward`]
//! returns the logits z and the loss fuses softmax with cross-entropy
//! ([`crate::loss::softmax_cross_entropy`]). [`Model::predict_proba`] applies it.
//!
//! The passes run a plan of steps made once by [`Model::new`] (`plan.rs`): each step runs
//! one layer, or a few layers together for speed (`fused/`), and names the values it reads.
//! A value read by several layers gets the sum of their gradients, in the fixed order
//! `plan.rs` describes.

mod fused;
mod plan;

use crate::distributed::{Reduce, Shard};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{activation, Activation, Buffer, BufferMut, Layer, NetworkSpec, Param, Pass};
use crate::loss::{mean_of_terms, softmax_cross_entropy_smoothed, softmax_cross_entropy_terms};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::tensor::Tensor;
use fused::{batch_one, conv_pool};
use plan::{Plan, Step, Value};
use rayon::prelude::*;

/// A network with its buffers.
#[derive(Debug, Clone)]
pub struct Model {
    spec: NetworkSpec,
    layers: Vec<Layer>,
    /// The steps of each kind of pass, made from `layers` by [`Model::new`].
    plan: Plan,
    /// `acts[i]`: output of layer i for the last batch (in a pass that shares buffers, of
    /// the layers whose outputs [`Plan::shared`] puts there).
    acts: Vec<Tensor>,
    /// `grads[i]`: dL/d(output of layer i).
    grads: Vec<Tensor>,
    /// In a backward pass: whether `grads[i]` has been written yet (the first reader of a
    /// value writes its gradient, the others add to it).
    written: Vec<bool>,
    /// A reader's contribution to the gradient of a value that another reader wrote
    /// already, before it is added; one per position in a step's list of values.
    scratch: Vec<Tensor>,
    /// Whether the last forward pass shared buffers ([`Plan::shared`]).
    shared_pass: bool,
    /// Whether a pass keeps every layer's output ([`Model::set_keep_outputs`]).
    keep_outputs: bool,
    /// Per layer: whether the last pass left its output unwritten (a convolution pooled as
    /// it goes on one image, see `fused::batch_one`, or whose pooling takes it block by
    /// block in a pass that keeps outputs, see `fused::conv_pool::forward`).
    unwritten: Vec<bool>,
    /// The generation of the weights ([`Pass::weights`]): one more each time a method
    /// hands out the weights to be changed (or changes them).
    weights: u64,
    /// dL/dx of the network's input in the last backward pass, when asked for
    /// ([`Model::set_input_gradient`]).
    input_grad: Option<Tensor>,
    /// The global gradient norm of the last training step.
    grad_norm: f64,
    /// The random stream of the next training step ([`Model::set_step`]).
    step_stream: u64,
    /// Label smoothing of the training loss ([`Model::set_label_smoothing`]).
    label_smoothing: f32,
    /// Which samples of the global batch the next training step computes
    /// ([`Model::set_shard`]).
    shard: Shard,
    /// [`Model::infer`]'s buffers: one chunk of the input, and the logits of the batch.
    chunk_x: Tensor,
    logits: Tensor,
}

/// Samples per pass of [`Model::infer`]: small enough that each layer's output for the
/// chunk stays in cache (report 1's network: 64 x 16 x 28 x 28 floats = 3.2 MB at the
/// widest layer, split over the two cores' halves of the batch, against 50 MB for a batch
/// of 1000), large enough that the Dense layers still run as matrix products. Measured with
/// `cnn bench examples/report1-10.cfg --inference-batch 1000` when it was added: chunks of
/// 32, 64, 128, 256 gave 14.0, 14.1, 13.0, 13.1 us per image, the whole batch at once 21.5,
/// on a machine with 2 MB of L2 per core. On an AMD EPYC with 1 MB of L2 per core,
/// two binaries alternately, 6 runs each: 128 gave 9.1 us per image (median), 64 gave 7.75;
/// LeNet 48.9 against 43.7, fashion-93's network 65 against 60.
pub const INFER_CHUNK: usize = 64;

impl Model {
    /// Builds the network of `spec` and initialises its weights with `init` from `seed`.
    pub fn new(spec: &NetworkSpec, init: Init, seed: u64) -> Result<Model> {
        let shapes = spec.shapes().map_err(|(i, e)| match e {
            Error::Invalid(msg) => Error::Invalid(format!("layer {i}: {msg}")),
            other => other,
        })?;
        if spec.layers.is_empty() {
            return Err(Error::Invalid("a network needs at least one layer".into()));
        }
        let n = spec.layers.len();
        let mut layers = Vec::with_capacity(n);
        for (i, (l, s)) in spec.layers.iter().zip(&shapes).enumerate() {
            let mut layer = Layer::of(l, s.clone())?;
            if i == n - 1 && l.activation() == Activation::Softmax {
                // The loss fuses softmax with cross-entropy, so the last layer outputs the
                // logits z; predict_proba applies the softmax.
                layer.op = l
                    .with_activation(Activation::None)
                    .build_of(&s.input_shapes())?;
            }
            layers.push(layer);
        }
        let mut model = Model {
            spec: spec.clone(),
            plan: Plan::new(&layers),
            layers,
            acts: vec![Tensor::default(); n],
            grads: vec![Tensor::default(); n],
            written: vec![false; n],
            scratch: Vec::new(),
            shared_pass: false,
            keep_outputs: false,
            unwritten: vec![false; n],
            weights: 1,
            input_grad: None,
            grad_norm: 0.0,
            step_stream: 0,
            label_smoothing: 0.0,
            shard: Shard::default(),
            chunk_x: Tensor::default(),
            logits: Tensor::default(),
        };
        model.init_weights(init, seed);
        Ok(model)
    }

    /// Re-draws every weight with `init` from `seed` and zeroes the biases.
    pub fn init_weights(&mut self, init: Init, seed: u64) {
        self.weights += 1;
        let mut rng = Rng::for_purpose(seed, "init");
        for layer in &mut self.layers {
            let Some((fan_in, fan_out)) = layer.fans() else {
                continue;
            };
            for (name, p) in layer.params_mut() {
                if name == "weight" {
                    init.fill(p.value.data_mut(), fan_in, fan_out, &mut rng);
                } else {
                    p.value.fill(0.0);
                }
            }
        }
    }

    /// The network this model was built from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The layers, one per layer line of the spec, in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Layer `i`, if there is one.
    pub fn layer(&self, i: usize) -> Option<&Layer> {
        self.layers.get(i)
    }

    /// The layers, to change their parameters and buffers (loading weights, timing layers
    /// one by one). The plan of steps was made for these layers' kinds and shapes: change
    /// what they hold, never what they are.
    pub(crate) fn layers_mut(&mut self) -> &mut [Layer] {
        self.weights += 1;
        &mut self.layers
    }

    /// The steps of each kind of pass.
    #[cfg(test)]
    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Number of classes: the length of the network's output.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.output_len())
    }

    /// Per-sample input shape (C, H, W).
    pub fn input_shape(&self) -> [usize; 3] {
        self.spec.input
    }

    /// `x` is `[N, C, H, W]` of the network's input; N = 0 only for a training step of a
    /// process that has none of a split batch's samples (it still takes part in the sums).
    fn check_input(&self, x: &Tensor, training: bool) -> Result<()> {
        let s = x.shape();
        let empty_ok = training && self.shard.is_split();
        if s.len() != 4 || s[1..] != self.spec.input || (s[0] == 0 && !empty_ok) {
            let mut want = vec![x.batch().max(1)];
            want.extend_from_slice(&self.spec.input);
            return Err(Error::shape("Model::forward", &want, s));
        }
        Ok(())
    }

    /// Names the training step that the next [`Model::forward`] belongs to: epoch `epoch`
    /// (0-based) and step `step` of a run seeded with `seed`. Layers that draw random numbers
    /// (Dropout) draw them from a stream derived from these three and the layer's index, so a
    /// step draws the same numbers whatever the thread count and wherever a run was resumed.
    pub fn set_step(&mut self, seed: u64, epoch: usize, step: usize) {
        let mut r = Rng::for_purpose(seed, "training step");
        let base = r.next_u64();
        let mut r = Rng::new(base ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let base = r.next_u64();
        self.step_stream =
            Rng::new(base ^ (step as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25)).next_u64();
    }

    /// Names the samples of the next training steps' global batch that this process computes
    /// ([`crate::distributed`]): every layer then forms its batch sums over the global batch,
    /// with the other processes. The default, [`Shard::default`], is the whole batch here.
    /// Inference ignores it.
    pub fn set_shard(&mut self, shard: Shard) {
        self.shard = shard;
    }

    /// Sets the label smoothing eps in [0, 1) of the training loss (0, plain cross-entropy,
    /// by default; see [`crate::loss::softmax_cross_entropy_smoothed`]).
    pub fn set_label_smoothing(&mut self, eps: f32) {
        self.label_smoothing = eps;
    }

    /// Whether the backward pass also computes dL/dx of the network's input batch (off by
    /// default: the first layer then skips that product). See [`Model::input_gradient`].
    pub fn set_input_gradient(&mut self, on: bool) {
        self.input_grad = on.then(Tensor::default);
    }

    /// dL/dx of the input batch of the last [`Model::compute_gradients`], `[N, C, H, W]`,
    /// if [`Model::set_input_gradient`] asked for it.
    pub fn input_gradient(&self) -> Option<&Tensor> {
        self.input_grad.as_ref()
    }

    /// Whether a pass keeps every layer's output for [`Model::activation`]. Off by
    /// default: inference on several images keeps an output only while a later layer still
    /// reads it, and lends its buffer to the next output of the same size; a convolution
    /// whose max pooling takes its output block by block (every pass on several images, a
    /// training pass where the convolution's activation is none, ReLU or ReLU6, see
    /// `fused::conv_pool`) or in the same kernel (inference on one image) does not write
    /// it. Every other output of a training pass or of inference on one image is kept.
    pub fn set_keep_outputs(&mut self, keep: bool) {
        self.keep_outputs = keep;
    }

    /// `f` on this model with every pass keeping every layer's output
    /// ([`Model::set_keep_outputs`]), the setting as it was afterwards: for a caller that
    /// reads [`Model::activation`] of each layer after its own passes.
    pub fn keeping_outputs<R>(&mut self, f: impl FnOnce(&mut Model) -> R) -> R {
        let keep = std::mem::replace(&mut self.keep_outputs, true);
        let result = f(self);
        self.keep_outputs = keep;
        result
    }

    /// Runs the network on `x` (`[N, C, H, W]`) as in a training step (Dropout drops values;
    /// see [`Model::set_step`]) and returns the logits `[N, classes]` (a final softmax is left
    /// to the loss). Inference and evaluation use [`Model::infer`].
    pub fn forward(&mut self, x: &Tensor) -> Result<&Tensor> {
        self.check_input(x, true)?;
        self.check_training_batch(self.shard.total(x.batch()))?;
        self.run_layers(x, true);
        Ok(self.output())
    }

    /// The last layer's output of the last forward pass.
    fn output(&self) -> &Tensor {
        self.activation(self.layers.len() - 1)
            .expect("the last layer's output is always kept")
    }

    /// Whether every layer can run a training batch of `n` samples (BatchNorm1D needs two).
    pub fn check_training_batch(&self, n: usize) -> Result<()> {
        let pass = Pass {
            training: true,
            stream: 0,
            ..Default::default()
        };
        for (i, layer) in self.layers.iter().enumerate() {
            layer
                .op
                .check_batch(n, pass)
                .map_err(|msg| Error::Invalid(format!("layer {i}: {msg}")))?;
        }
        Ok(())
    }

    /// Every layer's forward pass on a checked input, for training or not: the steps of
    /// the plan for that pass, in order. Inference on one image runs a convolution, its
    /// pooling and the Dense layer after them as one chain where they allow it
    /// (`fused::batch_one`); training runs a convolution and the max pooling after it
    /// together (`fused::conv_pool`).
    fn run_layers(&mut self, x: &Tensor, training: bool) {
        self.run_steps(x, training, None);
    }

    /// [`Model::run_layers`], adding each step's seconds to `times[step]` when given (one
    /// entry per step of the pass's plan).
    fn run_steps(&mut self, x: &Tensor, training: bool, mut times: Option<&mut [f64]>) {
        let n = x.batch();
        let shared = !training && n > 1 && !self.keep_outputs;
        self.shared_pass = shared;
        let Model {
            layers,
            acts,
            plan,
            step_stream,
            shard,
            weights,
            keep_outputs,
            unwritten,
            ..
        } = self;
        unwritten.fill(false);
        let shard = if training { *shard } else { Shard::default() };
        // Where each layer's output goes in this pass.
        let at = if shared {
            &plan.shared
        } else {
            &plan.output_of
        };
        for (s, step) in plan.steps(training, n).iter().enumerate() {
            let start = times.is_some().then(std::time::Instant::now);
            let out = step.layers();
            for j in out.clone() {
                let stream = Rng::new(*step_stream ^ (j as u64 + 1)).next_u64();
                layers[j].op.prepare(Pass {
                    training,
                    stream,
                    shard,
                    weights: *weights,
                });
            }
            // The step's outputs, taken out of `acts` while it reads the values it reads.
            let mut ys: Vec<Tensor> = out
                .clone()
                .map(|j| std::mem::take(&mut acts[at[j]]))
                .collect();
            let input = |v: Value| value(x, acts, at, v);
            match step {
                Step::Layer { layer, input: v } => layers[*layer].forward(input(*v), &mut ys[0]),
                Step::Join { layer, inputs } => {
                    let xs: Vec<&Tensor> = inputs.iter().map(|&v| input(v)).collect();
                    layers[*layer].forward_many(&xs, &mut ys[0])
                }
                Step::ConvThenPool { input: v, .. } => {
                    let ([conv, pool], [y, pooled]) = (&mut layers[out.clone()], &mut ys[..])
                    else {
                        unreachable!("two layers")
                    };
                    if shared {
                        conv_pool::infer(conv, pool, input(*v), pooled)
                    } else {
                        let keep = *keep_outputs;
                        let written = conv_pool::forward(conv, pool, input(*v), y, pooled, keep);
                        unwritten[at[out.start]] = !written;
                    }
                }
                Step::BatchOneChain { first, input: v } => {
                    let chain = &mut layers[out.clone()];
                    let written = batch_one::forward(chain, input(*v), &mut ys, *keep_outputs);
                    unwritten[at[*first]] = !written;
                }
            }
            for (j, y) in out.zip(ys) {
                acts[at[j]] = y;
            }
            if let (Some(t), Some(start)) = (times.as_deref_mut(), start) {
                t[s] += start.elapsed().as_secs_f64();
            }
        }
    }

    /// The logits `[N, classes]` of `x` for inference and evaluation (Dropout is the
    /// identity):
    /// a batch larger than [`INFER_CHUNK`] goes through the network one chunk at a time, so
    /// each layer reads its input from cache instead of from memory (batch 1000 through
    /// report 1's network: 21.5 -> 13 us per image when it was added). Leaves no activations
    /// for backward.
    pub fn infer(&mut self, x: &Tensor) -> Result<&Tensor> {
        self.infer_timed(x, None)
    }

    /// The steps of [`Model::infer`] on a batch of `n` images, each as the layers it runs
    /// (indices into [`Model::layers`]): one layer, or a few run together.
    pub fn inference_steps(&self, n: usize) -> Vec<std::ops::Range<usize>> {
        self.plan
            .steps(false, n.min(INFER_CHUNK))
            .iter()
            .map(|s| s.layers())
            .collect()
    }

    /// [`Model::infer`], adding each step's seconds (summed over the chunks of a large
    /// batch) to `times[step]` when given, one entry per step of
    /// [`Model::inference_steps`]; what is left of the pass's time is copying chunks in and
    /// logits out, and a last chunk of one image (which takes the one-image plan).
    ///
    /// # Panics
    /// If `times` does not hold one entry per step.
    pub fn infer_timed(&mut self, x: &Tensor, mut times: Option<&mut [f64]>) -> Result<&Tensor> {
        self.check_input(x, false)?;
        let n = x.batch();
        if let Some(t) = &times {
            assert_eq!(t.len(), self.inference_steps(n).len(), "one time per step");
        }
        if n <= INFER_CHUNK {
            self.run_steps(x, false, times);
            return Ok(self.output());
        }
        let per_sample = x.len() / n;
        let k = self.classes();
        self.logits.resize(&[n, k]);
        let mut shape = x.shape().to_vec();
        for start in (0..n).step_by(INFER_CHUNK) {
            let rows = INFER_CHUNK.min(n - start);
            shape[0] = rows;
            self.chunk_x.resize(&shape);
            let src = &x.data()[start * per_sample..(start + rows) * per_sample];
            self.chunk_x.data_mut().copy_from_slice(src);
            let chunk_x = std::mem::take(&mut self.chunk_x);
            // A last chunk of one image takes the one-image plan: its time is not a step's.
            let same_plan = self.plan.steps(false, rows) == self.plan.steps(false, INFER_CHUNK);
            let t = times.as_deref_mut().filter(|_| same_plan);
            self.run_steps(&chunk_x, false, t);
            self.chunk_x = chunk_x;
            let last = self.plan.output_of[self.layers.len() - 1];
            let buffer = if self.shared_pass {
                self.plan.shared[last]
            } else {
                last
            };
            let out = self.acts[buffer].data();
            self.logits.data_mut()[start * k..(start + rows) * k].copy_from_slice(out);
        }
        Ok(&self.logits)
    }

    /// Class probabilities `[N, classes]`: softmax of the logits.
    pub fn predict_proba(&mut self, x: &Tensor) -> Result<Tensor> {
        let k = self.classes();
        let mut p = self.infer(x)?.clone();
        activation::forward(Activation::Softmax, p.data_mut(), k);
        Ok(p)
    }

    /// Backpropagates dL/dlogits (already in the last gradient buffer) through every layer,
    /// setting every parameter's gradient: the steps of the training plan in reverse, each
    /// from the gradient of its last layer's output to those of the values it read. `x` is
    /// the batch of the last forward pass.
    ///
    /// The first reader of a value to run here (the one of the highest layer index) writes
    /// its gradient; each next one writes its contribution into a scratch buffer, which is
    /// then added, in this fixed order (see `plan.rs`).
    ///
    /// A convolution followed by max pooling runs its backward pass together with the
    /// pooling's (`fused::conv_pool`): the same gradients, without the convolution's dL/dy
    /// going through memory. Its gradient buffer is then left as it was.
    fn backward(&mut self, x: &Tensor) {
        let Model {
            layers,
            acts,
            grads,
            written,
            scratch,
            plan,
            input_grad,
            ..
        } = self;
        written.fill(false);
        let at = &plan.output_of;
        for step in plan.training.iter().rev() {
            let out = step.layers();
            let last = out.end - 1;
            let mut dy = std::mem::take(&mut grads[last]);
            let inputs = step.inputs();
            if scratch.len() < inputs.len() {
                scratch.resize(inputs.len(), Tensor::default());
            }
            // Where each value's gradient goes: its own buffer if this is its first reader,
            // else the scratch buffer of its position; None for the network's input.
            let mut dxs: Vec<Option<Tensor>> = Vec::with_capacity(inputs.len());
            let mut direct = vec![false; inputs.len()];
            for (k, v) in inputs.iter().enumerate() {
                dxs.push(match *v {
                    // The input is read by layer 0 alone.
                    Value::Input => input_grad.as_mut().map(std::mem::take),
                    Value::Output(j) if !written[j] && !inputs[..k].contains(v) => {
                        direct[k] = true;
                        Some(std::mem::take(&mut grads[j]))
                    }
                    Value::Output(_) => Some(std::mem::take(&mut scratch[k])),
                });
            }
            let xs: Vec<&Tensor> = inputs.iter().map(|&v| value(x, acts, at, v)).collect();
            match step {
                Step::Layer { layer, .. } => {
                    layers[*layer].backward(xs[0], &acts[*layer], &mut dy, dxs[0].as_mut())
                }
                Step::Join { layer, .. } => {
                    let mut targets: Vec<Option<&mut Tensor>> =
                        dxs.iter_mut().map(Option::as_mut).collect();
                    layers[*layer].backward_many(&xs, &acts[*layer], &mut dy, &mut targets)
                }
                Step::ConvThenPool { conv, .. } => {
                    let [conv_l, pool_l] = &mut layers[out] else {
                        unreachable!("two layers")
                    };
                    let outputs = (&acts[*conv], &acts[*conv + 1]);
                    conv_pool::backward(conv_l, pool_l, xs[0], outputs, &dy, dxs[0].as_mut())
                }
                Step::BatchOneChain { .. } => unreachable!("an inference step in training"),
            }
            grads[last] = dy;
            // Give the buffers back, adding the contributions of readers that came second,
            // in the order of the step's values.
            for (k, (v, dx)) in inputs.iter().zip(dxs).enumerate() {
                let (j, Some(dx)) = (*v, dx) else {
                    continue;
                };
                let Value::Output(j) = j else {
                    *input_grad = Some(dx);
                    continue;
                };
                if direct[k] {
                    grads[j] = dx;
                    written[j] = true;
                } else {
                    add_into(&mut grads[j], &dx);
                    scratch[k] = dx;
                }
            }
        }
    }

    /// Forward and backward on one batch: sets every gradient to the batch-mean gradient
    /// of the softmax cross-entropy and returns `(mean loss, correct predictions)`.
    pub fn compute_gradients(&mut self, x: &Tensor, labels: &[usize]) -> Result<(f32, usize)> {
        if labels.len() != x.batch() {
            return Err(Error::Shape {
                op: "Model::compute_gradients",
                expected: format!("{} labels", x.batch()),
                got: format!("{} labels", labels.len()),
            });
        }
        let k = self.classes();
        if let Some(&bad) = labels.iter().find(|&&y| y >= k) {
            return Err(Error::Invalid(format!(
                "label {bad} is out of range for a network with {k} outputs"
            )));
        }
        self.forward(x)?;
        let last = self.layers.len() - 1;
        let logits = &self.acts[self.plan.output_of[last]];
        let grad = &mut self.grads[last];
        grad.resize(logits.shape());
        let (loss, correct) = if self.shard.is_split() {
            // Each sample's loss term and whether it was right, from every process, added
            // in sample order: one process's sum.
            let batch = self.shard.total(labels.len());
            let mut terms = Vec::with_capacity(labels.len());
            let (eps, z) = (self.label_smoothing, logits.data());
            softmax_cross_entropy_terms(z, labels, k, eps, batch, grad.data_mut(), &mut terms);
            let mine: Vec<f64> = terms
                .iter()
                .zip(z.chunks(k).zip(labels))
                .flat_map(|(&t, (row, &y))| [t, f64::from(u8::from(argmax(row) == y))])
                .collect();
            let all = self.shard.gather_samples(&mine, 2);
            let terms: Vec<f64> = all.iter().step_by(2).copied().collect();
            let correct = all.iter().skip(1).step_by(2).filter(|&&c| c > 0.0).count();
            (mean_of_terms(&terms, batch), correct)
        } else {
            let correct = count_correct(logits.data(), labels, k);
            let loss = softmax_cross_entropy_smoothed(
                logits.data(),
                labels,
                k,
                self.label_smoothing,
                grad.data_mut(),
            );
            (loss, correct)
        };
        self.backward(x);
        if self.shard.is_split() && self.shard.reduce == Reduce::Sum {
            self.sum_gradients_over_processes();
        }
        Ok((loss, correct))
    }

    /// [`Reduce::Sum`]: every parameter's gradient becomes the sum of every process's, in one
    /// all-reduce of all of them together.
    fn sum_gradients_over_processes(&mut self) {
        let shard = self.shard;
        let mut flat: Vec<f32> = Vec::new();
        for p in self.params_mut() {
            flat.extend_from_slice(p.grad.data());
        }
        shard.sum_over_ranks(&mut flat);
        let mut at = 0;
        for p in self.params_mut() {
            let g = p.grad.data_mut();
            g.copy_from_slice(&flat[at..at + g.len()]);
            at += g.len();
        }
    }

    /// One training step: gradients on the batch, then the optimiser's update.
    /// Returns `(mean loss, correct predictions)`.
    pub fn train_step(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        opt: &mut Optimizer,
    ) -> Result<(f32, usize)> {
        let out = self.compute_gradients(x, labels)?;
        self.grad_norm = opt.step(&mut self.params_mut());
        Ok(out)
    }

    /// Every parameter with its model-file name `layers.{i}.weight` / `layers.{i}.bias`,
    /// where i is the layer's index among the config's layer lines.
    pub fn named_params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, p) in layer.params() {
                out.push((format!("layers.{i}.{name}"), p));
            }
        }
        out
    }

    /// Every buffer (saved state that is not trained: BatchNorm's `running_mean`,
    /// `running_var`, `num_batches_tracked`) with its model-file name `layers.{i}.{name}`.
    pub fn named_buffers(&self) -> Vec<(String, Buffer<'_>)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, b) in layer.buffers() {
                out.push((format!("layers.{i}.{name}"), b));
            }
        }
        out
    }

    /// Every buffer, mutable, in the order of [`Model::named_buffers`].
    pub fn buffers_mut(&mut self) -> Vec<BufferMut<'_>> {
        self.weights += 1;
        self.layers
            .iter_mut()
            .flat_map(|l| l.buffers_mut().into_iter().map(|(_, b)| b))
            .collect()
    }

    /// Every parameter, mutable, in the order of [`Model::named_params`].
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.weights += 1;
        self.layers
            .iter_mut()
            .flat_map(|l| l.params_mut().into_iter().map(|(_, p)| p))
            .collect()
    }

    /// The global gradient norm `sqrt(sum over every parameter of g^2)` of the last
    /// [`Model::train_step`], as its optimiser step computed it; 0 before the first. The
    /// training loop checks it after every step: NaN or infinity means the run diverged.
    pub fn grad_norm(&self) -> f64 {
        self.grad_norm
    }

    /// The first layer, in order, whose output of the last pass, parameters or gradients hold
    /// a NaN or an infinity, as `(index, what)`: where a diverging run first went bad.
    pub fn first_non_finite(&self) -> Option<(usize, &'static str)> {
        let bad = |t: &Tensor| t.data().iter().any(|v| !v.is_finite());
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.params().iter().any(|(_, p)| bad(&p.value)) {
                return Some((i, "weights"));
            }
            if self.activation(i).is_some_and(bad) {
                return Some((i, "output"));
            }
            if layer.params().iter().any(|(_, p)| bad(&p.grad)) {
                return Some((i, "gradients"));
            }
        }
        None
    }

    /// The output of layer `i` for the last forward pass (for visualisation), if the pass
    /// kept it: a training pass and inference on one image keep all but a convolution's
    /// that its max pooling took block by block or in its kernel; inference on more images
    /// only those no later output took the buffer of; unless [`Model::set_keep_outputs`]
    /// says to keep them all. The last layer's is always kept.
    pub fn activation(&self, i: usize) -> Option<&Tensor> {
        let j = *self.plan.output_of.get(i)?;
        if self.unwritten[j] {
            return None;
        }
        if self.shared_pass {
            return self
                .plan
                .kept
                .get(j)
                .filter(|&&kept| kept)
                .and_then(|_| self.acts.get(self.plan.shared[j]));
        }
        self.acts.get(j)
    }
}

/// The value `v` of a pass on the input `x`, whose layers' outputs are in `outputs` at the
/// places `at` gives.
fn value<'a>(x: &'a Tensor, outputs: &'a [Tensor], at: &[usize], v: Value) -> &'a Tensor {
    match v {
        Value::Input => x,
        Value::Output(i) => &outputs[at[i]],
    }
}

/// `sum += part`, element by element (the order of a value's readers is the caller's).
fn add_into(sum: &mut Tensor, part: &Tensor) {
    debug_assert_eq!(sum.shape(), part.shape());
    sum.data_mut()
        .par_chunks_mut(1 << 14)
        .zip(part.data().par_chunks(1 << 14))
        .for_each(|(s, p)| s.iter_mut().zip(p).for_each(|(s, p)| *s += p));
}

/// Predictions equal to labels, taking the arg-max of each row (first on ties).
pub fn count_correct(logits: &[f32], labels: &[usize], k: usize) -> usize {
    logits
        .chunks(k)
        .zip(labels)
        .filter(|(row, &y)| argmax(row) == y)
        .count()
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::synthetic_batch;
    use crate::layers::Op;

    /// Dropout drops in a training pass only, with masks fixed by (seed, epoch, step).
    #[test]
    fn dropout_acts_in_training_steps_only_with_masks_named_by_the_step() {
        let spec = crate::config::parse(
            "3\nInput shape=1x6x6\nDense units=40 activation=relu\nDropout rate=0.5\n\
             Dense units=3\n",
            "t",
        )
        .unwrap()
        .spec;
        let mut model = Model::new(&spec, Init::He, 3).unwrap();
        let (x, _) = synthetic_batch(&spec, 4, 5).unwrap();
        let eval = model.infer(&x).unwrap().clone();
        assert_eq!(
            model.infer(&x).unwrap(),
            &eval,
            "evaluation is deterministic"
        );
        let dropped = |m: &mut Model| {
            m.activation(1)
                .unwrap()
                .data()
                .iter()
                .filter(|&&v| v == 0.0)
                .count()
        };
        // Evaluation: Dropout is the identity, so its output equals its input.
        assert_eq!(model.activation(1), model.activation(0));
        model.set_step(9, 2, 7);
        let train_a = model.forward(&x).unwrap().clone();
        let zeros_a = dropped(&mut model);
        assert_ne!(train_a, eval, "a training pass drops values");
        assert!(zeros_a > dropped_relu_zeros(&model), "dropout adds zeros");
        model.set_step(9, 2, 7);
        assert_eq!(
            model.forward(&x).unwrap(),
            &train_a,
            "the same step, the same masks"
        );
        model.set_step(9, 2, 8);
        assert_ne!(
            model.forward(&x).unwrap(),
            &train_a,
            "another step, other masks"
        );
    }

    /// Zeros in the ReLU output before dropout (layer 0).
    fn dropped_relu_zeros(m: &Model) -> usize {
        m.activation(0)
            .unwrap()
            .data()
            .iter()
            .filter(|&&v| v == 0.0)
            .count()
    }

    /// A batch of two chunks and 22 more runs in three passes; every logit must match the
    /// one-pass training forward (the convolutions' arithmetic is the same; the Dense
    /// layers' inference sums each sample in the one-sample order, which training's
    /// product does not, hence the tolerance).
    #[test]
    fn infer_in_chunks_gives_the_logits_of_one_forward_pass() {
        let spec = crate::config::parse(
            "3\nInput shape=2x8x8\n\
             Conv2D filters=3 kernel=3x3 stride=1 padding=same activation=relu\n\
             MaxPool2D pool=2x2 stride=2\n\
             Dense units=5 activation=softmax\n",
            "infer test",
        )
        .unwrap()
        .spec;
        let mut model = Model::new(&spec, Init::He, 3).unwrap();
        let n = 2 * INFER_CHUNK + 22;
        let (x, _) = synthetic_batch(&spec, n, 9).unwrap();
        let whole = model.forward(&x).unwrap().clone();
        let chunked = model.infer(&x).unwrap();
        assert_eq!(chunked.shape(), &[n, 5]);
        for (i, (a, b)) in whole.data().iter().zip(chunked.data()).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "logit {i}: {a} vs {b}"
            );
        }
        // And the chunked logits are not all the same value: the comparison means something.
        assert!(chunked.data().iter().any(|&v| v != chunked.data()[0]));
    }

    /// Inference gives each image the bits it gets alone, whatever the batch: a batch of
    /// one takes the one-image paths (the chain of `fused::batch_one`, the Dense layers'
    /// dot products in two halves), a larger batch the batched ones (a convolution per
    /// sample or per block of samples, the Dense layers' products for every sample at
    /// once in the same order), and `cnn serve` batches requests relying on this. Batch
    /// sizes around [`INFER_CHUNK`] check the chunks too (65: a last chunk of one). The
    /// networks take every inference path: the direct one-channel convolution and the
    /// one-image chain (report 1), Winograd and BatchNorm (fashion-93), im2col (a 5x5
    /// kernel, a stride of 2), average pooling, a Dense layer too small to split.
    #[test]
    fn inference_gives_each_image_the_bits_it_gets_alone_whatever_the_batch() {
        let other = "6\nInput shape=3x12x12\n\
                     Conv2D filters=5 kernel=5x5 padding=same activation=leaky_relu\n\
                     AvgPool2D pool=2x2\n\
                     Conv2D filters=8 kernel=3x3 stride=2 padding=valid activation=tanh\n\
                     Dense units=40 activation=relu\nDropout rate=0.5\n\
                     Dense units=7 activation=softmax\n";
        for text in [
            crate::examples::REPORT1_10,
            crate::examples::FASHION_93,
            other,
        ] {
            let spec = crate::config::parse(text, "t").unwrap().spec;
            let mut model = Model::new(&spec, Init::He, 11).unwrap();
            let total = INFER_CHUNK + 1;
            let (x, _) = synthetic_batch(&spec, total, 12).unwrap();
            let per = x.len() / total;
            let k = model.classes();
            let alone: Vec<u32> = (0..total)
                .flat_map(|i| {
                    let mut shape = x.shape().to_vec();
                    shape[0] = 1;
                    let xi = Tensor::from_vec(&shape, x.data()[i * per..(i + 1) * per].to_vec());
                    let y = model.infer(&xi.unwrap()).unwrap();
                    y.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                })
                .collect();
            for n in [2, 3, 7, INFER_CHUNK, INFER_CHUNK + 1] {
                let mut got = Vec::with_capacity(total * k);
                for start in (0..total).step_by(n) {
                    let rows = n.min(total - start);
                    let mut shape = x.shape().to_vec();
                    shape[0] = rows;
                    let part = x.data()[start * per..(start + rows) * per].to_vec();
                    let xb = Tensor::from_vec(&shape, part).unwrap();
                    got.extend(model.infer(&xb).unwrap().data().iter().map(|v| v.to_bits()));
                }
                assert!(got == alone, "{}: a batch of {n}", spec.layers.len());
            }
            // The logits are not all one value: the comparison means something.
            assert!(alone.iter().any(|&v| v != alone[0]));
        }
    }

    /// The one-image path keeps the large Dense layer's weights packed across calls
    /// (`Dense::pack_for_one`): weights changed through the model afterwards (an
    /// optimiser's parameters, a new initialisation) are the ones the next call uses.
    #[test]
    fn one_image_inference_uses_weights_changed_after_the_last_call() {
        let spec = crate::examples::report1(10);
        let mut model = Model::new(&spec, Init::He, 2).unwrap();
        let (x, _) = synthetic_batch(&spec, 1, 3).unwrap();
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let before = bits(model.infer(&x).unwrap());
        let changed = |m: &mut Model| {
            for p in m.params_mut() {
                p.value.data_mut().iter_mut().for_each(|v| *v *= -0.5);
            }
        };
        // Each change in turn: the model's next call against a model never run before,
        // given the same weights.
        let changes: [&dyn Fn(&mut Model); 2] = [&changed, &|m| m.init_weights(Init::He, 9)];
        for done in 1..=changes.len() {
            let mut fresh = Model::new(&spec, Init::He, 2).unwrap();
            for change in &changes[..done] {
                change(&mut fresh);
            }
            changes[done - 1](&mut model);
            let after = bits(model.infer(&x).unwrap());
            assert_ne!(after, before, "the weights changed");
            assert_eq!(after, bits(fresh.infer(&x).unwrap()), "change {done}");
        }
    }

    /// Every layer's own training forward pass on `x`, one after the other, into `m.acts`.
    fn layer_by_layer(m: &mut Model, x: &Tensor) {
        for i in 0..m.layers.len() {
            m.layers[i].op.prepare(Pass {
                training: true,
                stream: 0,
                ..Default::default()
            });
            let (before, rest) = m.acts.split_at_mut(i);
            let input = if i == 0 { x } else { &before[i - 1] };
            m.layers[i].forward(input, &mut rest[0]);
        }
    }

    /// A convolution and the max pooling after it, run together in training (block by
    /// block, see `Model::run_layers` and `Model::backward`), give the same outputs and set
    /// the same gradients, bit for bit, as the layers' forward and backward passes one by
    /// one, for a batch of one whole block of samples and a partial one: as the first layer
    /// (no dx), and further in, by Winograd and by im2col, with dx. With ReLU or ReLU6 the
    /// convolution's output is not kept (the pooling's backward applies the activation's
    /// gate) unless every output is asked for; with tanh it is.
    #[test]
    fn a_convolution_run_with_its_pooling_gives_the_layers_outputs_and_gradients() {
        for (first_act, second, winograd, keep) in [
            ("relu", "", false, false),
            ("relu", "", false, true),
            (
                "relu",
                "Conv2D filters=5 kernel=3x3 padding=same activation=relu\n",
                true,
                false,
            ),
            (
                "relu",
                "Conv2D filters=5 kernel=3x3 padding=same activation=relu\n",
                true,
                true,
            ),
            (
                "tanh",
                "Conv2D filters=5 kernel=2x2 padding=same activation=relu6\n",
                false,
                false,
            ),
        ] {
            let first = format!(
                "Conv2D filters=8 kernel=3x3 stride=1 padding=same activation={first_act}\n\
                 MaxPool2D pool=2x2 stride=2\n"
            );
            let more = if second.is_empty() {
                ""
            } else {
                "MaxPool2D pool=2x2\n"
            };
            let lines = 4 + 2 * usize::from(!second.is_empty());
            let text = format!(
                "{lines}\nInput shape=1x10x12\n{first}{second}{more}\
                 Dense units=7 activation=relu\nDense units=3 activation=softmax\n"
            );
            let spec = crate::config::parse(&text, "t").unwrap().spec;
            let mut fused = Model::new(&spec, Init::He, 4).unwrap();
            let mut apart = fused.clone();
            let fused_at = |m: &Model, conv: usize| {
                let input = plan::reads(conv);
                m.plan
                    .training
                    .contains(&Step::ConvThenPool { conv, input })
            };
            assert!(fused_at(&fused, 0));
            if !second.is_empty() {
                assert!(fused_at(&fused, 2));
                let Op::Conv2D(conv) = &fused.layers[2].op else {
                    panic!("layer 2 is the second convolution")
                };
                assert_eq!(conv.uses_winograd(), winograd, "{second}");
            }
            let (x, labels) = synthetic_batch(&spec, 6, 8).unwrap();
            fused.set_keep_outputs(keep);
            fused.compute_gradients(&x, &labels).unwrap();
            // The same step with each layer's own forward and backward pass.
            layer_by_layer(&mut apart, &x);
            let bits = |t: &Tensor| -> Vec<u32> { t.data().iter().map(|v| v.to_bits()).collect() };
            for (i, want) in apart.acts.iter().enumerate() {
                let conv_gated = (i == 0 && first_act == "relu") || (i == 2 && !second.is_empty());
                let at = format!("{first_act} {second} keep {keep}: layer {i}");
                let got = fused.activation(i);
                assert_eq!(got.is_none(), conv_gated && !keep, "{at}: kept or not");
                if let Some(got) = got {
                    assert_eq!(bits(got), bits(want), "{at}");
                }
            }
            let last = apart.layers.len() - 1;
            let logits = apart.acts[last].clone();
            apart.grads[last].resize(logits.shape());
            softmax_cross_entropy_smoothed(
                logits.data(),
                &labels,
                3,
                0.0,
                apart.grads[last].data_mut(),
            );
            for i in (0..apart.layers.len()).rev() {
                let (g_before, g_rest) = apart.grads.split_at_mut(i);
                let dx = if i == 0 {
                    None
                } else {
                    Some(&mut g_before[i - 1])
                };
                let input = if i == 0 { &x } else { &apart.acts[i - 1] };
                apart.layers[i].backward(input, &apart.acts[i], &mut g_rest[0], dx);
            }
            let grads = |m: &Model| -> Vec<Vec<u32>> {
                m.named_params()
                    .iter()
                    .map(|(_, p)| p.grad.data().iter().map(|v| v.to_bits()).collect())
                    .collect()
            };
            assert_eq!(
                grads(&fused),
                grads(&apart),
                "{first_act} {second} keep {keep}"
            );
            // The first layer's gradients are not all zero: the comparison means something.
            assert!(fused.layers[0].params()[0]
                .1
                .grad
                .data()
                .iter()
                .any(|&v| v != 0.0));
        }
    }

    fn small_model() -> Model {
        let spec = crate::config::parse(
            "2\nInput shape=1x4x4\n\
             Conv2D filters=2 kernel=3x3 stride=1 padding=same activation=relu\n\
             Dense units=3 activation=softmax\n",
            "grad norm test",
        )
        .unwrap()
        .spec;
        Model::new(&spec, Init::He, 1).unwrap()
    }

    #[test]
    fn the_optimiser_step_returns_the_gradient_norm_by_hand() {
        use crate::optim::{Optimizer, OptimizerKind};
        for kind in [OptimizerKind::Sgd, OptimizerKind::adam()] {
            let mut model = small_model();
            for p in model.params_mut() {
                p.grad.fill(0.0);
            }
            let mut opt = Optimizer::new(kind, 0.01, 0.1);
            assert_eq!(opt.step(&mut model.params_mut()), 0.0);
            // One 3 in the conv weights and one -4 in the dense bias: sqrt(9 + 16) = 5,
            // whatever the weight decay adds to the update.
            let mut params = model.params_mut();
            params[0].grad.data_mut()[5] = 3.0;
            params[3].grad.data_mut()[2] = -4.0;
            assert_eq!(opt.step(&mut params), 5.0);
        }
    }

    #[test]
    fn a_nan_gradient_is_divergence_even_when_the_loss_is_finite() {
        use crate::optim::{Optimizer, OptimizerKind};
        let mut model = small_model();
        let (x, labels) = synthetic_batch(&model.spec.clone(), 2, 4).unwrap();
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.01, 0.0);
        model.train_step(&x, &labels, &mut opt).unwrap();
        assert!(model.grad_norm() > 0.0 && model.grad_norm().is_finite());
        assert_eq!(crate::train::divergence(&model, 0.5), None);
        // A NaN gradient, applied by the next update: the loss of that step was finite.
        model.params_mut()[2].grad.data_mut()[0] = f32::NAN;
        model.grad_norm = opt.step(&mut model.params_mut());
        let why = crate::train::divergence(&model, 0.5).expect("diverged");
        assert!(why.starts_with("the gradient norm is NaN"), "{why}");
        // The update has spread the NaN to the weights it touched, which are named first.
        assert!(why.contains("weights of layer 1 (Dense"), "{why}");
    }

    /// Inference on several images that shares buffers gives the bits of a pass that keeps
    /// every output, forgets the outputs whose buffers went to later ones, and a one-layer
    /// Route's output is the output it names.
    #[test]
    fn a_graphs_inference_shares_buffers_and_keeps_its_logits() {
        let spec = crate::config::parse(crate::examples::RESNET_SMALL, "t")
            .unwrap()
            .spec;
        let mut model = Model::new(&spec, Init::He, 2).unwrap();
        let (x, _) = synthetic_batch(&spec, 5, 1).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> { t.data().iter().map(|v| v.to_bits()).collect() };
        let shared = bits(model.infer(&x).unwrap());
        let forgotten = (0..model.layers.len())
            .filter(|&i| model.activation(i).is_none())
            .count();
        assert!(forgotten > 0);
        model.set_keep_outputs(true);
        assert_eq!(bits(model.infer(&x).unwrap()), shared);
        assert!((0..model.layers.len()).all(|i| model.activation(i).is_some()));
        assert_eq!(model.activation(12), model.activation(7));
        assert_eq!(model.activation(12).unwrap().shape(), [5, 16, 14, 14]);
        // One image at a time: every output kept, the same logits.
        model.set_keep_outputs(false);
        let k = model.classes();
        for s in 0..5 {
            let one = Tensor::from_vec(&[1, 1, 28, 28], x.data()[s * 784..(s + 1) * 784].to_vec())
                .unwrap();
            let logits = bits(model.infer(&one).unwrap());
            assert!((0..model.layers.len()).all(|i| model.activation(i).is_some()));
            for (a, b) in logits.iter().zip(&shared[s * k..(s + 1) * k]) {
                let (a, b) = (f32::from_bits(*a), f32::from_bits(*b));
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }
}
