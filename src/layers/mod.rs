//! Layers: one module per kind, each holding every facet of that kind.
//!
//! A layer kind's module holds, in one file:
//! - its config struct (the keys of its config line, with their defaults) and the parser
//!   of that line ([`LayerKind::parse`]);
//! - shape inference, parameter and FLOP counts, and its `cnn summary --explain` text;
//! - its runtime operation: forward and backward over a mini-batch ([`LayerOp`]), with the
//!   math in the module doc (dimension letters N, C, H, W, K, S, P);
//! - the names of its tensors in model files ([`LayerOp::params`]).
//!
//! The list below (the `layer_kinds!` invocation) is the only place that names every kind:
//! the config parser, the summary and the model dispatch through the [`LayerSpec`] and
//! [`Op`] enums it generates. Adding a layer is one new module and one line in that list
//! (`docs/ARCHITECTURE.md` walks through it).
//!
//! Activations are layers of their own ([`activation`]). `activation=relu` on a Conv2D or
//! Dense line fuses that activation into the layer before it: the layer applies it while
//! its output is still in cache (Conv2D inside the product's stores) and undoes it first in
//! backward. Every activation derivative is written in terms of the output, so no
//! pre-activation copy is kept.

#[macro_use]
mod dispatch;

pub mod activation;
pub mod batchnorm;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod global_pool;
pub mod keys;
pub mod param;
pub mod pool;
pub mod route;
pub mod shortcut;
pub mod spec;
#[cfg(test)]
mod walkthrough;

pub use activation::{Activation, ActivationLayer};
pub use batchnorm::{BatchNorm, BatchNormSpec};
pub use conv2d::{Conv2D, Conv2dSpec};
pub use dense::{Dense, DenseSpec};
pub use dropout::{Dropout, DropoutSpec};
pub use flatten::Flatten;
pub use global_pool::{GlobalAvgPool2D, GlobalPoolSpec};
pub use param::{Buffer, BufferMut, Param};
pub use pool::{AvgPool2D, MaxPool2D, PoolSpec};
pub use route::{Route, RouteSpec};
pub use shortcut::{Shortcut, ShortcutSpec};
pub use spec::*;

use crate::error::Result;
use crate::onnx::export::{Graph, LayerAt};
use crate::onnx::import::{Importer, Reader};
use crate::onnx::proto::NodeProto;
use crate::tensor::Tensor;
use keys::LineKeys;

layer_kinds! {
    /// A 2-D convolution ([`conv2d`]).
    Conv2D => conv2d::Kind,
    /// Max pooling ([`pool`]).
    MaxPool2D => pool::MaxKind,
    /// Average pooling ([`pool`]).
    AvgPool2D => pool::AvgKind,
    /// (C, H, W) -> (C*H*W) ([`flatten`]). Implied before a Dense that follows a spatial
    /// layer, and then not written into the spec.
    Flatten => flatten::Kind,
    /// A fully connected layer ([`dense`]).
    Dense => dense::Kind,
    /// A stand-alone activation ([`activation`]): `ReLU`, `LeakyReLU`, `Sigmoid`, `Tanh`,
    /// `Softmax`.
    Activation => activation::Kind,
    /// Inverted dropout in training, the identity otherwise ([`dropout`]).
    Dropout => dropout::Kind,
    /// Batch normalisation, `BatchNorm2D` and `BatchNorm1D` ([`batchnorm`]).
    BatchNorm => batchnorm::Kind,
    /// The mean of each channel, (C, H, W) -> (C) ([`global_pool`]).
    GlobalAvgPool2D => global_pool::AvgKind,
    /// The line above plus an earlier layer, then an activation ([`shortcut`]).
    Shortcut => shortcut::Kind,
    /// Earlier layers concatenated along channels; one layer: a branch point ([`route`]).
    Route => route::Kind,
}

/// What a forward pass is for, given to every layer before it runs ([`LayerOp::prepare`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// A training step, where Dropout drops values; otherwise (inference, evaluation, the
    /// test set after each epoch) every layer is deterministic.
    pub training: bool,
    /// This layer's random stream for this pass: derived from the run's seed, the epoch, the
    /// step and the layer's index ([`crate::model::Model::set_step`]), so that random choices
    /// depend neither on the thread count nor on where a run was stopped and resumed.
    pub stream: u64,
    /// Which samples of the step's global batch this process computes, and the processes it
    /// merges its sums with ([`crate::distributed`]); the default, the whole batch here, for
    /// every pass of one process and every inference pass.
    pub shard: crate::distributed::Shard,
    /// The generation of the weights this pass runs with: the model counts up from 1 each
    /// time it hands out its weights to be changed, so a layer may keep a copy of its
    /// weights in another layout (Dense's packed matrix on one image) while this stays
    /// the same. 0 (the default, a layer run on its own): unknown, keep no copy.
    pub weights: u64,
}

/// What a layer reads of its input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputForm {
    /// A (C, H, W) input; the output is (C', H', W') too (Conv2D, pooling).
    Spatial,
    /// Any input, read flattened in (C, H, W) order; the output is flat (Dense). A Flatten
    /// is implied before such a layer when its input is spatial.
    Flattened,
    /// Any input, made flat (Flatten itself).
    Flattens,
    /// Any input, output of the same shape (activations).
    Any,
    /// A (C, H, W) input made flat by the layer itself (global pooling: the output is
    /// (C)).
    SpatialToFlat,
}

impl InputForm {
    /// Whether the layer needs a (C, H, W) input: the config parser refuses it after a layer
    /// whose output is flat.
    pub fn needs_spatial(self) -> bool {
        matches!(self, InputForm::Spatial | InputForm::SpatialToFlat)
    }

    /// Whether a Flatten is implied before the layer when its input is spatial.
    pub fn implies_flatten(self) -> bool {
        matches!(self, InputForm::Flattened)
    }

    /// Whether the layer's output is spatial, given whether its input is: decided from the
    /// layer kinds alone, before any shape is known ([`crate::config::implied_flattens`]).
    pub fn output_spatial(self, input_spatial: bool) -> bool {
        match self {
            InputForm::Spatial => true,
            InputForm::Flattened | InputForm::Flattens | InputForm::SpatialToFlat => false,
            InputForm::Any => input_spatial,
        }
    }
}

/// A layer's size: trainable parameters and forward FLOPs for one sample (a multiply-add
/// counts 2; comparisons, bias adds and activations are O(output) and not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub params: u128,
    pub flops: u128,
}

/// Everything a layer kind provides at the config level. Each kind's module implements it
/// on a marker type `Kind` (pooling has two: `MaxKind`, `AvgKind`).
pub trait LayerKind {
    /// The config struct: what one config line says (plain data).
    type Spec: Clone + std::fmt::Debug + PartialEq;
    /// The runtime operation, with parameters and buffers.
    type Op: LayerOp + Clone + std::fmt::Debug;
    /// The names a config line may start with, each with the keys it takes.
    const LINES: &'static [(&'static str, &'static [&'static str])];
    /// What the layer reads of its input.
    const INPUT: InputForm;
    /// The key whose value a shape error points at (`kernel`, `pool`).
    const SHAPE_KEY: Option<&'static str> = None;

    /// The key a shape error on an input of shape `input` points at:
    /// [`LayerKind::SHAPE_KEY`] by default (Conv2D: `groups` when they do not divide the
    /// input's channels).
    fn shape_error_key(_spec: &Self::Spec, _input: &[usize]) -> Option<&'static str> {
        Self::SHAPE_KEY
    }
    /// Reads a config line whose layer name is `name` (one of [`LayerKind::LINES`]).
    fn parse(name: &str, keys: &LineKeys) -> Result<Self::Spec>;
    /// The name as written in configs.
    fn name(spec: &Self::Spec) -> &'static str;
    /// The per-sample output shape for a per-sample input shape.
    fn output_shape(spec: &Self::Spec, input: &[usize]) -> Result<SampleShape>;
    /// Parameters and forward FLOPs per sample; none by default.
    fn counts(_spec: &Self::Spec, _input: &[usize], _output: &[usize]) -> Counts {
        Counts::default()
    }
    /// The summary's label.
    fn describe(spec: &Self::Spec) -> String;
    /// The arithmetic behind the summary's shape, parameter and FLOP numbers.
    fn explain(spec: &Self::Spec, input: &[usize], output: &[usize]) -> Result<Vec<String>>;
    /// The activation at the end of the layer; none by default.
    fn activation(_spec: &Self::Spec) -> Activation {
        Activation::None
    }
    /// The layer with another activation; unchanged by default (it has none).
    fn with_activation(spec: &Self::Spec, _act: Activation) -> Self::Spec {
        spec.clone()
    }
    /// The key that sets the output size, with its value (Dense: `units`).
    fn output_key(_spec: &Self::Spec) -> Option<(&'static str, usize)> {
        None
    }
    /// The layer with the key of [`LayerKind::output_key`] set to `n`; unchanged by default
    /// (it has none).
    fn with_output_size(spec: &Self::Spec, _n: usize) -> Self::Spec {
        spec.clone()
    }
    /// The runtime operation for a per-sample input shape, with zero parameters.
    fn build(spec: &Self::Spec, input: &[usize]) -> Result<Self::Op>;
    /// Writes the layer's ONNX nodes for `cnn export`, reading the value `input`, and returns
    /// the value they write (`input` itself for a layer that is the identity at inference).
    /// The exporter has already added the layer's parameters and buffers as initialisers
    /// ([`LayerAt::tensor`](crate::onnx::export::LayerAt::tensor)) and writes its activation
    /// after it. By default the layer has no ONNX form, and the export fails saying so.
    fn onnx(spec: &Self::Spec, _g: &mut Graph, _input: &str, _at: &LayerAt) -> Result<String> {
        Err(crate::error::Error::Invalid(format!(
            "{}: `cnn export` has no ONNX form for this layer",
            Self::name(spec)
        )))
    }
    /// The ONNX op types `cnn import` reads into this kind, with
    /// [`LayerKind::onnx_import`]; none by default.
    const ONNX_OPS: &'static [&'static str] = &[];
    /// Reads a node of one of [`LayerKind::ONNX_OPS`] for `cnn import`: pushes its config
    /// lines with their tensors ([`Importer::push`]) and sets the shape of the value it
    /// writes ([`Importer::shape`]). The importer has checked that the node reads the
    /// chain's value; its other inputs are the graph's constants. An error says what is
    /// wrong with the node (the importer names the node).
    fn onnx_import(_node: &NodeProto, _cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        Err(crate::onnx::import::unsupported())
    }
    /// The fewest images in `cnn gradcheck`'s random batch for this layer's gradients to be
    /// checked meaningfully (the command takes the most any layer asks); 2 by default, so
    /// that a sum over the batch is checked.
    fn gradcheck_batch(_spec: &Self::Spec) -> usize {
        2
    }

    // Kinds that read other values than the line above, or several (Shortcut, Route). Each
    // method has a default that makes a one-input kind, so other kinds write none of them.

    /// Whether the line reads the output of the line above (the network's input for the
    /// first line) as its first input, before the layers of [`LayerKind::refs`]. True by
    /// default; Route reads only the layers it lists.
    const READS_ABOVE: bool = true;
    /// The key that names the earlier layers the line reads (`from`, `layers`): an error in
    /// a reference points at its value.
    const REFS_KEY: Option<&'static str> = None;
    /// The earlier layers the line reads besides the line above, as written: a negative
    /// number counts back from this line (-1 is the line above), any other is a layer index
    /// counted from 0. None by default. The config walk checks that each names an earlier
    /// layer ([`LayerSpec::reads`]).
    fn refs(_spec: &Self::Spec) -> Vec<i64> {
        Vec::new()
    }
    /// The per-sample output shape for the values the layer reads, in the order of
    /// [`LayerSpec::reads`]; by default [`LayerKind::output_shape`] of the one value. An
    /// error should name the values (`layer 3`) and their shapes.
    fn output_shape_of(spec: &Self::Spec, inputs: &[InputShape]) -> Result<SampleShape> {
        Self::output_shape(spec, inputs[0].shape)
    }
    /// [`LayerKind::explain`] given every value read; by default that of the one value.
    fn explain_of(
        spec: &Self::Spec,
        inputs: &[InputShape],
        output: &[usize],
    ) -> Result<Vec<String>> {
        Self::explain(spec, inputs[0].shape, output)
    }
    /// [`LayerKind::build`] given every value read; by default that of the one value.
    fn build_of(spec: &Self::Spec, inputs: &[InputShape]) -> Result<Self::Op> {
        Self::build(spec, inputs[0].shape)
    }
    /// [`LayerKind::onnx`] reading the ONNX values `inputs`, one per value the layer reads;
    /// by default that of the one value.
    fn onnx_many(
        spec: &Self::Spec,
        g: &mut Graph,
        inputs: &[&str],
        at: &LayerAt,
    ) -> Result<String> {
        Self::onnx(spec, g, inputs[0], at)
    }
}

/// A layer's forward and backward pass over a mini-batch of `n` samples stored flat
/// (`n` times the per-sample length, NCHW order).
pub trait LayerOp {
    /// Told before each forward pass what the pass is for; layers that behave the same in
    /// training and evaluation ignore it.
    fn prepare(&mut self, _pass: Pass) {}
    /// y = f(x).
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize);
    /// Given x and y of the last forward pass and dy = dL/dy, sets the parameter gradients
    /// and, when `dx` is given, writes dL/dx. `dy` may be overwritten (a fused activation
    /// turns it into the gradient before the activation in place).
    fn backward(&mut self, x: &[f32], y: &[f32], dy: &mut [f32], dx: Option<&mut [f32]>, n: usize);
    /// y = f(x_0, x_1, ...) for a layer that reads several values (`xs`, in the order of
    /// [`LayerSpec::reads`]); by default [`LayerOp::forward`] of the one value.
    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], n: usize) {
        self.forward(xs[0], y, n)
    }
    /// [`LayerOp::backward`] of a layer that reads several values: writes dL/dx_k into each
    /// `dxs[k]` given (each is written whole, never added to: the model adds the
    /// contributions of a value's several readers); by default [`LayerOp::backward`] of the
    /// one value.
    fn backward_many(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        n: usize,
    ) {
        let dx = dxs[0].as_deref_mut();
        self.backward(xs[0], y, dy, dx, n)
    }
    /// Whether the output is always the one value the layer reads, unchanged, in every
    /// pass (a one-layer Route): the model then runs no step for it and lets its readers
    /// read that value, with no copy. False by default.
    fn passes_input_on(&self) -> bool {
        false
    }
    /// The parameters as `(name, param)`; a model file names them `layers.{i}.{name}`.
    fn params(&self) -> Vec<(&'static str, &Param)> {
        Vec::new()
    }
    /// Mutable access, in the order of [`LayerOp::params`].
    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        Vec::new()
    }
    /// Fan-in and fan-out of the weight, for initialisation; `None` without weights (and
    /// then the parameters keep the values [`LayerKind::build`] gave them).
    fn fans(&self) -> Option<(usize, usize)> {
        None
    }
    /// Saved state that is not a parameter, as `(name, buffer)`; a model file names them
    /// `layers.{i}.{name}` (BatchNorm's running statistics).
    fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
        Vec::new()
    }
    /// Mutable access, in the order of [`LayerOp::buffers`].
    fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
        Vec::new()
    }
    /// Whether the layer can run a batch of `n` samples in `pass`, or why not (BatchNorm1D
    /// cannot normalise a training batch of one sample).
    fn check_batch(&self, _n: usize, _pass: Pass) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The learned filters as images, for `cnn visualize` (the first layer that has them is
    /// drawn); none by default.
    fn filters(&self) -> Option<Filters<'_>> {
        None
    }
    /// The window of inputs that one output cell reads, for the page of `cnn serve` to
    /// recompute and explain a cell the user picks (and to draw its receptive field); none
    /// by default (the page then offers no per-cell explanation of the layer).
    fn window(&self) -> Option<Window> {
        None
    }

    // The f64 reference of `cnn gradcheck` ([`crate::gradcheck`]): the layer by its
    // definition, with the choices of its last forward pass frozen. The checker calls these
    // on a copy of the operation taken right after a training forward pass of `n` samples;
    // it applies the layer's activation itself, with ReLU masks frozen.

    /// z = f(x) by the layer's definition in f64 for `n` samples, before the activation:
    /// `params` are f64 copies of the values of [`LayerOp::params`], in that order, and the
    /// choices of the last forward pass stay as it made them (max pooling's winners,
    /// Dropout's factors). `None` (the default): the layer has no reference, and the check
    /// refuses the network, naming the layer.
    fn reference(&self, _x: &[f64], _params: &[Vec<f64>], _n: usize) -> Option<Vec<f64>> {
        None
    }
    /// [`LayerOp::reference`] of a layer that reads several values `xs`; by default that of
    /// the one value.
    fn reference_many(&self, xs: &[&[f64]], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        self.reference(xs[0], params, n)
    }
    /// The choices of the last forward pass that [`LayerOp::reference`] freezes, for the
    /// checker to confirm against the f64 values: per output, the input it took and the
    /// inputs it chose among (flat indices into the batch's input; max pooling: each window's
    /// winner and the window). None by default.
    fn reference_choices(&self, _n: usize) -> Vec<(usize, Vec<usize>)> {
        Vec::new()
    }
    /// The output channel that entry `e` of parameter `slot` alone feeds, and that channel's
    /// values per sample (Conv2D: a filter and its output plane; Dense: a unit and 1;
    /// BatchNorm: a channel and its plane), so that after changing the entry the checker
    /// recomputes only what can change. `None` (the default): any output may change.
    fn reference_channel(&self, _slot: usize, _e: usize) -> Option<(usize, usize)> {
        None
    }
    /// [`LayerOp::reference`] with only output channel `c` computed, the others taken from
    /// `base_z` (the unchanged result); the whole reference by default.
    fn reference_one_channel(
        &self,
        x: &[f64],
        _base_z: &[f64],
        params: &[Vec<f64>],
        _c: usize,
        n: usize,
    ) -> Option<Vec<f64>> {
        self.reference(x, params, n)
    }
    /// For a layer linear in its input (Conv2D, Dense): `base_z + W (x - base_x)`, where
    /// `x` differs from `base_x` (which gave `base_z`) only in the input channels `channels`,
    /// of `block` values per sample each: exact by linearity up to f64 rounding, and far
    /// cheaper than the whole product. `None` (the default) for other layers.
    #[allow(clippy::too_many_arguments)]
    fn reference_changed_inputs(
        &self,
        _x: &[f64],
        _base_x: &[f64],
        _base_z: &[f64],
        _params: &[Vec<f64>],
        _channels: &[usize],
        _block: usize,
        _n: usize,
    ) -> Option<Vec<f64>> {
        None
    }
    /// Whether each output channel depends on the same input channel alone, and then how
    /// many values per sample it has, given `block` per input channel (element-wise layers:
    /// `block`; pooling: H' W'). `None` (the default): channels mix, or it is not known.
    fn reference_channel_block(&self, _block: usize) -> Option<usize> {
        None
    }
}

/// The window of inputs one output cell (oy, ox) of a spatial layer reads
/// ([`LayerOp::window`]), in the terms the page of `cnn serve` recomputes it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// A weighted sum over every input channel's kh x kw window with top-left corner
    /// (oy S - pad_top, ox S - pad_left), zeros outside the input, plus the output channel's
    /// bias, then the layer's activation (Conv2D).
    Weighted {
        kh: usize,
        kw: usize,
        stride: usize,
        pad_top: usize,
        pad_left: usize,
    },
    /// The maximum (`max`) or the mean of the output channel's ph x pw window with top-left
    /// corner (oy S, ox S) (pooling).
    Pooled {
        max: bool,
        ph: usize,
        pw: usize,
        stride: usize,
    },
}

/// A layer's filters as images ([`LayerOp::filters`]): `values` holds the filters one after
/// the other, each `channels` planes of `height` x `width` values in row-major order.
#[derive(Debug, Clone, Copy)]
pub struct Filters<'a> {
    pub values: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// One runtime layer: its config, its operation, and its per-sample shapes.
#[derive(Debug, Clone)]
pub struct Layer {
    pub spec: LayerSpec,
    pub op: Op,
    /// The values it reads, in order ([`LayerSpec::reads`]), their per-sample shapes (one
    /// but for Shortcut and Route; a layer built by [`Layer::new`] reads one value, marked
    /// the input) and the per-sample output shape.
    pub shapes: LayerShapes,
}

impl Layer {
    /// Builds the layer for a per-sample `input` shape, with zero parameters.
    pub fn new(spec: &LayerSpec, input: &[usize]) -> Result<Layer> {
        Layer::reading(
            spec,
            &[InputShape {
                value: Value::Input,
                shape: input,
            }],
        )
    }

    /// Builds the layer for the values it reads with their per-sample shapes, with zero
    /// parameters.
    pub fn reading(spec: &LayerSpec, inputs: &[InputShape]) -> Result<Layer> {
        let shapes = LayerShapes {
            input: inputs[0].shape.to_vec(),
            reads: inputs.iter().map(|i| i.value).collect(),
            inputs: inputs.iter().map(|i| i.shape.to_vec()).collect(),
            output: spec.output_shape_of(inputs)?,
        };
        Layer::of(spec, shapes)
    }

    /// Builds the layer for its row of the network's shape walk ([`NetworkSpec::shapes`]),
    /// with zero parameters.
    pub fn of(spec: &LayerSpec, shapes: LayerShapes) -> Result<Layer> {
        Ok(Layer {
            spec: spec.clone(),
            op: spec.build_of(&shapes.input_shapes())?,
            shapes,
        })
    }

    /// The summary's arithmetic for this layer ([`LayerSpec::explain_of`]).
    pub fn explain(&self) -> Result<Vec<String>> {
        self.spec
            .explain_of(&self.shapes.input_shapes(), &self.shapes.output)
    }

    /// Elements per sample of the output.
    pub fn output_len(&self) -> usize {
        self.shapes.output.iter().product()
    }

    /// The activation at the end of this layer.
    pub fn activation(&self) -> Activation {
        self.spec.activation()
    }

    /// Runs the layer on a batch `x` of shape `[N, ..input]`, writing `y` (resized to
    /// `[N, ..output]`).
    pub fn forward(&mut self, x: &Tensor, y: &mut Tensor) {
        let n = x.batch();
        self.resize_output(n, y);
        self.op.forward(x.data(), y.data_mut(), n);
    }

    /// Resizes `y` to this layer's output for a batch of `n` samples, `[n, ..output]`.
    pub fn resize_output(&self, n: usize, y: &mut Tensor) {
        let mut shape = vec![n];
        shape.extend_from_slice(&self.shapes.output);
        y.resize(&shape);
    }

    /// Backward given the input `x` and output `y` of the last forward pass and `dy` =
    /// dL/dy (overwritten): sets the parameter gradients and, when `dx` is given, writes
    /// dL/dx (resized to `x`'s shape).
    pub fn backward(&mut self, x: &Tensor, y: &Tensor, dy: &mut Tensor, dx: Option<&mut Tensor>) {
        let n = x.batch();
        let dx = dx.map(|t| {
            t.resize(x.shape());
            t.data_mut()
        });
        self.op.backward(x.data(), y.data(), dy.data_mut(), dx, n);
    }

    /// Runs the layer on the values it reads, `xs` (batches of the same size), writing `y`
    /// (resized to `[N, ..output]`).
    pub fn forward_many(&mut self, xs: &[&Tensor], y: &mut Tensor) {
        let n = xs[0].batch();
        self.resize_output(n, y);
        let xs: Vec<&[f32]> = xs.iter().map(|x| x.data()).collect();
        self.op.forward_many(&xs, y.data_mut(), n);
    }

    /// [`Layer::backward`] of a layer that reads several values `xs`: writes dL/dx_k into
    /// each `dxs[k]` given (resized to `xs[k]`'s shape).
    pub fn backward_many(
        &mut self,
        xs: &[&Tensor],
        y: &Tensor,
        dy: &mut Tensor,
        dxs: &mut [Option<&mut Tensor>],
    ) {
        let n = xs[0].batch();
        let mut dx_data: Vec<Option<&mut [f32]>> = dxs
            .iter_mut()
            .zip(xs)
            .map(|(d, x)| {
                d.as_deref_mut().map(|t| {
                    t.resize(x.shape());
                    t.data_mut()
                })
            })
            .collect();
        let xs: Vec<&[f32]> = xs.iter().map(|x| x.data()).collect();
        self.op
            .backward_many(&xs, y.data(), dy.data_mut(), &mut dx_data, n);
    }

    /// The layer's parameters as `(name, param)`: `weight` then `bias`, or none.
    pub fn params(&self) -> Vec<(&'static str, &Param)> {
        self.op.params()
    }

    /// Mutable access to the parameters, in the order of [`Layer::params`].
    pub fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        self.op.params_mut()
    }

    /// Fan-in and fan-out of the weight, for initialisation: Conv2D (C kh kw, K kh kw),
    /// Dense (I, O).
    pub fn fans(&self) -> Option<(usize, usize)> {
        self.op.fans()
    }

    /// The layer's saved state that is not trained (BatchNorm's running statistics).
    pub fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
        self.op.buffers()
    }

    /// Mutable access to the buffers, in the order of [`Layer::buffers`].
    pub fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
        self.op.buffers_mut()
    }
}

/// For [`LayerOp::reference_changed_inputs`]: `x - base_x` per sample and changed input
/// channel (`block` values each), sample by sample: entry `s * channels.len() + j` is
/// channel `channels[j]` of sample `s`.
pub(crate) fn changed_inputs(
    x: &[f64],
    base_x: &[f64],
    channels: &[usize],
    block: usize,
    n: usize,
) -> Vec<Vec<f64>> {
    let in_len = x.len() / n.max(1);
    (0..n)
        .flat_map(|s| channels.iter().map(move |&c| (s, c)))
        .map(|(s, c)| {
            let at = s * in_len + c * block;
            (at..at + block).map(|i| x[i] - base_x[i]).collect()
        })
        .collect()
}

/// `[C, H, W]` of a per-sample shape, or a shape error naming `op`.
pub fn chw(op: &'static str, shape: &[usize]) -> Result<[usize; 3]> {
    match shape {
        [c, h, w] => Ok([*c, *h, *w]),
        _ => Err(crate::error::Error::Shape {
            op,
            expected: "a (C, H, W) input".into(),
            got: format!("{shape:?}"),
        }),
    }
}
