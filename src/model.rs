//! A sequential model: layers chained in order, each one's output the next one's input.
//!
//! The model keeps every layer's output of the last forward pass (what backward needs) and
//! one gradient buffer per layer, all reused from batch to batch: a training step allocates
//! nothing once the buffers have grown to the batch size.
//!
//! A softmax at the end of the network is not applied in training: [`Model::forward`]
//! returns the logits z and the loss fuses softmax with cross-entropy
//! ([`crate::loss::softmax_cross_entropy`]). [`Model::predict_proba`] applies it.

use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{activation, Activation, Layer, NetworkSpec, Param};
use crate::loss::softmax_cross_entropy;
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A sequential network with its buffers.
#[derive(Debug, Clone)]
pub struct Model {
    pub spec: NetworkSpec,
    pub layers: Vec<Layer>,
    /// `acts[i]`: output of layer i for the last batch.
    acts: Vec<Tensor>,
    /// `grads[i]`: dL/d(output of layer i).
    grads: Vec<Tensor>,
    /// True when the last layer ends in softmax, which the loss then applies.
    skip_last_softmax: bool,
}

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
        let mut layers = Vec::with_capacity(spec.layers.len());
        for (l, s) in spec.layers.iter().zip(&shapes) {
            layers.push(Layer::new(l, &s.input)?);
        }
        let n = layers.len();
        let skip_last_softmax = layers[n - 1].activation == Activation::Softmax;
        let mut model = Model {
            spec: spec.clone(),
            layers,
            acts: vec![Tensor::default(); n],
            grads: vec![Tensor::default(); n],
            skip_last_softmax,
        };
        model.init_weights(init, seed);
        Ok(model)
    }

    /// Re-draws every weight with `init` from `seed` and zeroes the biases.
    pub fn init_weights(&mut self, init: Init, seed: u64) {
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

    /// Number of classes: the length of the network's output.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.output_len())
    }

    /// Per-sample input shape (C, H, W).
    pub fn input_shape(&self) -> [usize; 3] {
        self.spec.input
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let s = x.shape();
        if s.len() != 4 || s[1..] != self.spec.input || s[0] == 0 {
            let mut want = vec![x.batch().max(1)];
            want.extend_from_slice(&self.spec.input);
            return Err(Error::shape("Model::forward", &want, s));
        }
        Ok(())
    }

    /// Runs the network on `x` (`[N, C, H, W]`) and returns the logits `[N, classes]`
    /// (a final softmax is left to the loss).
    pub fn forward(&mut self, x: &Tensor) -> Result<&Tensor> {
        self.check_input(x)?;
        let last = self.layers.len() - 1;
        for i in 0..self.layers.len() {
            let (before, rest) = self.acts.split_at_mut(i);
            let input = if i == 0 { x } else { &before[i - 1] };
            let skip = i == last && self.skip_last_softmax;
            self.layers[i].forward(input, &mut rest[0], skip);
        }
        Ok(&self.acts[last])
    }

    /// Class probabilities `[N, classes]`: softmax of the logits.
    pub fn predict_proba(&mut self, x: &Tensor) -> Result<Tensor> {
        let k = self.classes();
        let mut p = self.forward(x)?.clone();
        activation::forward(Activation::Softmax, p.data_mut(), k);
        Ok(p)
    }

    /// Backpropagates dL/dlogits (already in the last gradient buffer) through every layer,
    /// setting every parameter's gradient. `x` is the batch of the last forward pass.
    fn backward(&mut self, x: &Tensor) {
        let last = self.layers.len() - 1;
        for i in (0..self.layers.len()).rev() {
            let (g_before, g_rest) = self.grads.split_at_mut(i);
            let dy = &mut g_rest[0];
            let dx = if i == 0 {
                None
            } else {
                Some(&mut g_before[i - 1])
            };
            let input = if i == 0 { x } else { &self.acts[i - 1] };
            let skipped = i == last && self.skip_last_softmax;
            self.layers[i].backward(input, &self.acts[i], dy, dx, skipped);
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
        let logits = &self.acts[last];
        let correct = count_correct(logits.data(), labels, k);
        let grad = &mut self.grads[last];
        grad.resize(logits.shape());
        let loss = softmax_cross_entropy(logits.data(), labels, k, grad.data_mut());
        self.backward(x);
        Ok((loss, correct))
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
        opt.step(&mut self.params_mut());
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

    /// Every parameter, mutable, in the order of [`Model::named_params`].
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.params_mut().into_iter().map(|(_, p)| p))
            .collect()
    }

    /// The first layer, in order, whose output of the last pass, parameters or gradients hold
    /// a NaN or an infinity, as `(index, what)`: where a diverging run first went bad.
    pub fn first_non_finite(&self) -> Option<(usize, &'static str)> {
        let bad = |t: &Tensor| t.data().iter().any(|v| !v.is_finite());
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.params().iter().any(|(_, p)| bad(&p.value)) {
                return Some((i, "weights"));
            }
            if self.acts.get(i).is_some_and(bad) {
                return Some((i, "output"));
            }
            if layer.params().iter().any(|(_, p)| bad(&p.grad)) {
                return Some((i, "gradients"));
            }
        }
        None
    }

    /// The output of layer `i` for the last forward pass (for visualisation).
    pub fn activation(&self, i: usize) -> Option<&Tensor> {
        self.acts.get(i)
    }
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
