//! MaxPool2D and AvgPool2D over a batch, forward and backward.
//!
//! Legend: N batch, C channels, H, W input size, ph, pw window, S stride, H', W' output size
//! with H' = floor((H - ph) / S) + 1 (no padding; windows that would run past the edge are
//! dropped, as PyTorch does).
//!
//! Max pooling (report 1, eq. 7):
//!
//! ```text
//! y[n][c][oy][ox] = max_{i < ph, j < pw} x[n][c][oy*S + i][ox*S + j]
//! dL/dx[...]      = dy[n][c][oy][ox] at the position of that maximum, 0 elsewhere
//!                   (summed where overlapping windows share a maximum)
//! ```
//!
//! Average pooling:
//!
//! ```text
//! y[n][c][oy][ox] = (1 / (ph pw)) sum_{i, j} x[n][c][oy*S + i][ox*S + j]
//! dL/dx[...]      = sum over the windows covering the pixel of dy / (ph pw)
//! ```
//!
//! Every (n, c) plane is independent, so planes run in parallel (at least one sample's C
//! planes per task: a plane alone is too little work to pay for a task) and results do not
//! depend on the thread count. On a tie, max pooling takes the first maximum in row-major order.

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::keys::{LineKeys, MAX_DIM};
use super::{chw, Counts, InputForm, LayerKind, LayerOp, Pass, SampleShape, Window};
use crate::error::Result;
use crate::kernels::geom::PoolGeom;
use crate::kernels::pool::{max_pool_2x2_fast, max_pool_plane};
use crate::onnx::export::{ints, Graph, LayerAt};
use crate::onnx::import::{equal_strides, window, Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;

/// A pooling config line: `MaxPool2D pool=2x2 stride=2` (or `AvgPool2D`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// (ph, pw), the window. Required; `2x2` or `2`.
    pub pool: (usize, usize),
    /// S. Default: the window's height (non-overlapping windows, as in Keras).
    pub stride: usize,
}

impl PoolSpec {
    /// The pooling geometry on an input of shape (C, H, W); `op` names the layer in errors.
    pub fn geom(&self, op: &'static str, input: [usize; 3]) -> Result<PoolGeom> {
        PoolGeom::new(op, input, self.pool, self.stride)
    }

    fn parse(keys: &LineKeys) -> Result<PoolSpec> {
        let pool = keys.size2(keys.required("pool")?)?;
        Ok(PoolSpec {
            pool,
            stride: keys.whole_or("stride", 1, MAX_DIM, pool.0)?,
        })
    }

    fn output_shape(&self, op: &'static str, input: &[usize]) -> Result<SampleShape> {
        let g = self.geom(op, chw(op, input)?)?;
        Ok(vec![g.c, g.out_h, g.out_w])
    }

    fn describe(&self, op: &str) -> String {
        format!(
            "{op} {}x{} stride {}",
            self.pool.0, self.pool.1, self.stride
        )
    }

    fn explain(&self, input: &[usize]) -> Result<Vec<String>> {
        let g = self.geom("pool", chw("pool", input)?)?;
        let h = format!("floor(({} - {})/{}) + 1 = {}", g.h, g.ph, g.stride, g.out_h);
        let hw = if (g.w, g.pw) == (g.h, g.ph) {
            format!("H' = {h}; W' likewise")
        } else {
            format!(
                "H' = {h}; W' = floor(({} - {})/{}) + 1 = {}",
                g.w, g.pw, g.stride, g.out_w
            )
        };
        Ok(vec![
            hw,
            "no parameters; comparisons and averages are not counted as FLOPs".into(),
        ])
    }
}

impl PoolSpec {
    /// Reads a `MaxPool` or `AveragePool` node as a `name` line (`MaxPool2D`, `AvgPool2D`):
    /// unpadded, undilated, rounding down, with equal strides.
    fn onnx_import(
        name: &str,
        node: &NodeProto,
        cx: &mut Importer<'_>,
    ) -> std::result::Result<(), String> {
        let op = node.op_type.as_deref().unwrap_or("");
        let [c, h, w] = cx.spatial(op)?;
        let attrs = Attrs::of(node);
        let unknown = attrs.unknown(&[
            "kernel_shape",
            "strides",
            "pads",
            "dilations",
            "ceil_mode",
            "auto_pad",
            "count_include_pad",
            "storage_order",
        ]);
        if !unknown.is_empty() {
            return Err(format!("unsupported attributes {unknown:?}"));
        }
        let Some(&[ph, pw]) = attrs.ints("kernel_shape") else {
            return Err("kernel_shape must give two sizes".into());
        };
        let stride = equal_strides(&attrs)?;
        if attrs
            .ints("pads")
            .is_some_and(|p| p.iter().any(|&x| x != 0))
        {
            return Err("padded pooling is not supported".into());
        }
        if attrs
            .ints("dilations")
            .is_some_and(|d| d.iter().any(|&x| x != 1))
        {
            return Err("dilated pooling is not supported".into());
        }
        if attrs.int("ceil_mode", 0) != 0 {
            return Err("ceil_mode is not supported (the output size rounds down)".into());
        }
        if !matches!(
            attrs.string("auto_pad").as_deref(),
            None | Some("NOTSET") | Some("VALID")
        ) {
            return Err("auto_pad other than VALID is not supported".into());
        }
        let (ph, pw) = (window(ph)?, window(pw)?);
        let spec = PoolSpec {
            pool: (ph, pw),
            stride,
        };
        let g = spec.geom("pool", [c, h, w]).map_err(|e| e.to_string())?;
        cx.shape = vec![c, g.out_h, g.out_w];
        cx.push(Step::new(
            format!("{name} pool={ph}x{pw} stride={stride}"),
            StepKind::Other,
            vec![],
        ));
        Ok(())
    }

    /// The ONNX node `op` (`MaxPool`, `AveragePool`) of this pooling, unpadded.
    fn onnx(&self, op: &str, g: &mut Graph, input: &str, at: &LayerAt) -> String {
        g.node(
            op,
            at.name,
            &[input],
            vec![
                ints("kernel_shape", &[self.pool.0, self.pool.1]),
                ints("strides", &[self.stride, self.stride]),
                ints("pads", &[0, 0, 0, 0]),
            ],
        )
    }
}

/// The keys of both pooling lines.
const POOL_KEYS: &[&str] = &["pool", "stride"];

/// The MaxPool2D kind.
pub struct MaxKind;

impl LayerKind for MaxKind {
    type Spec = PoolSpec;
    type Op = MaxPool2D;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[("MaxPool2D", POOL_KEYS)];
    const INPUT: InputForm = InputForm::Spatial;
    const SHAPE_KEY: Option<&'static str> = Some("pool");

    fn parse(_name: &str, keys: &LineKeys) -> Result<PoolSpec> {
        PoolSpec::parse(keys)
    }

    fn name(_spec: &PoolSpec) -> &'static str {
        "MaxPool2D"
    }

    fn output_shape(spec: &PoolSpec, input: &[usize]) -> Result<SampleShape> {
        spec.output_shape("MaxPool2D", input)
    }

    fn counts(_spec: &PoolSpec, _input: &[usize], _output: &[usize]) -> Counts {
        Counts::default()
    }

    fn describe(spec: &PoolSpec) -> String {
        spec.describe("MaxPool2D")
    }

    fn explain(spec: &PoolSpec, input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        spec.explain(input)
    }

    /// `MaxPool`.
    fn onnx(spec: &PoolSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        Ok(spec.onnx("MaxPool", g, input, at))
    }

    const ONNX_OPS: &'static [&'static str] = &["MaxPool"];

    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        PoolSpec::onnx_import("MaxPool2D", node, cx)
    }

    fn build(spec: &PoolSpec, input: &[usize]) -> Result<MaxPool2D> {
        Ok(MaxPool2D::new(
            spec.geom("MaxPool2D", chw("MaxPool2D", input)?)?,
        ))
    }
}

/// The AvgPool2D kind.
pub struct AvgKind;

impl LayerKind for AvgKind {
    type Spec = PoolSpec;
    type Op = AvgPool2D;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[("AvgPool2D", POOL_KEYS)];
    const INPUT: InputForm = InputForm::Spatial;
    const SHAPE_KEY: Option<&'static str> = Some("pool");

    fn parse(_name: &str, keys: &LineKeys) -> Result<PoolSpec> {
        PoolSpec::parse(keys)
    }

    fn name(_spec: &PoolSpec) -> &'static str {
        "AvgPool2D"
    }

    fn output_shape(spec: &PoolSpec, input: &[usize]) -> Result<SampleShape> {
        spec.output_shape("AvgPool2D", input)
    }

    fn describe(spec: &PoolSpec) -> String {
        spec.describe("AvgPool2D")
    }

    fn explain(spec: &PoolSpec, input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        spec.explain(input)
    }

    /// `AveragePool`.
    fn onnx(spec: &PoolSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        Ok(spec.onnx("AveragePool", g, input, at))
    }

    const ONNX_OPS: &'static [&'static str] = &["AveragePool"];

    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        PoolSpec::onnx_import("AvgPool2D", node, cx)
    }

    fn build(spec: &PoolSpec, input: &[usize]) -> Result<AvgPool2D> {
        Ok(AvgPool2D::new(
            spec.geom("AvgPool2D", chw("AvgPool2D", input)?)?,
        ))
    }
}

impl LayerOp for MaxPool2D {
    fn prepare(&mut self, pass: Pass) {
        self.training = pass.training;
    }

    fn window(&self) -> Option<Window> {
        Some(pooled(true, &self.geom))
    }

    /// y = x at the winner the forward pass recorded for each window: linear while each
    /// window keeps its winner.
    fn reference(&self, x: &[f64], _params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let winners = &self.argmax[..n * g.c * ohw];
        Some(
            winners
                .iter()
                .enumerate()
                .map(|(o, &win)| x[(o / ohw) * hw + win as usize])
                .collect(),
        )
    }

    /// Each window's winner, among the window.
    fn reference_choices(&self, n: usize) -> Vec<(usize, Vec<usize>)> {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        self.argmax[..n * g.c * ohw]
            .iter()
            .enumerate()
            .map(|(o, &win)| {
                let (plane, oy, ox) = (o / ohw, (o % ohw) / g.out_w, o % g.out_w);
                let window = pool_window(&g, oy, ox).map(|at| plane * hw + at).collect();
                (plane * hw + win as usize, window)
            })
            .collect()
    }

    /// Each plane is pooled on its own: H' W' values per channel.
    fn reference_channel_block(&self, _block: usize) -> Option<usize> {
        Some(self.geom.out_h * self.geom.out_w)
    }

    /// y = max over each window, for `n` samples.
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let planes = n * g.c;
        let (y, x) = (&mut y[..planes * ohw], &x[..planes * hw]);
        let min = min_planes(g.c, n);
        match self.record(planes * ohw) {
            None => y
                .par_chunks_mut(ohw)
                .with_min_len(min)
                .zip(x.par_chunks(hw))
                .for_each(|(y_p, x_p)| max_pool(&g, x_p, y_p, None)),
            Some(arg) => y
                .par_chunks_mut(ohw)
                .with_min_len(min)
                .zip(arg.par_chunks_mut(ohw))
                .zip(x.par_chunks(hw))
                .for_each(|((y_p, arg_p), x_p)| max_pool(&g, x_p, y_p, Some(arg_p))),
        }
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        if let Some(dx) = dx {
            self.backward_input(dy, dx, n);
        }
    }
}

impl LayerOp for AvgPool2D {
    fn window(&self) -> Option<Window> {
        Some(pooled(false, &self.geom))
    }

    /// y = the mean of each window, in f64.
    fn reference(&self, x: &[f64], _params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let scale = 1.0 / (g.ph * g.pw) as f64;
        Some(
            (0..n * g.c * ohw)
                .map(|o| {
                    let (plane, oy, ox) = (o / ohw, (o % ohw) / g.out_w, o % g.out_w);
                    let s: f64 = pool_window(&g, oy, ox).map(|at| x[plane * hw + at]).sum();
                    s * scale
                })
                .collect(),
        )
    }

    /// Each plane is pooled on its own: H' W' values per channel.
    fn reference_channel_block(&self, _block: usize) -> Option<usize> {
        Some(self.geom.out_h * self.geom.out_w)
    }

    /// y = mean over each window, for `n` samples.
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        y[..n * g.c * ohw]
            .par_chunks_mut(ohw)
            .with_min_len(min_planes(g.c, n))
            .zip(x[..n * g.c * hw].par_chunks(hw))
            .for_each(|(y_p, x_p)| avg_pool(&g, x_p, y_p));
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        if let Some(dx) = dx {
            self.backward_input(dy, dx, n);
        }
    }
}

/// The flat in-plane indices of the window of output (oy, ox).
fn pool_window(g: &PoolGeom, oy: usize, ox: usize) -> impl Iterator<Item = usize> + Clone {
    let g = *g;
    (0..g.ph)
        .flat_map(move |i| (0..g.pw).map(move |j| (oy * g.stride + i) * g.w + ox * g.stride + j))
}

/// The page's window of a pooling with geometry `g`.
fn pooled(max: bool, g: &PoolGeom) -> Window {
    Window::Pooled {
        max,
        ph: g.ph,
        pw: g.pw,
        stride: g.stride,
    }
}

/// The fewest planes a parallel task of a pooling forward pass takes: a whole sample's
/// `c` planes, but half of them for a batch of one image. A one-image convolution splits
/// its filters in two halves on two threads (`Conv2D`'s latency path), and rayon hands
/// the two halves of this loop to the same two threads, so each pools planes that are
/// already in its core's cache; a Dense layer after it splits its inputs the same way at
/// batch 1, so its outputs stay there too. Pooling all the planes on one thread was slow
/// because its outputs, read by the other core in the next layer, had to be taken back from
/// that core's cache before each write (report 1's network at batch 1, with the
/// convolution: 22.6 -> 21.0 us, `cnn bench --inference-batch 1`).
fn min_planes(c: usize, n: usize) -> usize {
    if n == 1 {
        c.div_ceil(2)
    } else {
        c
    }
}

/// Max pooling. A training forward pass records the flat index (within its plane) of each
/// maximum, which backward routes the gradient to; an inference pass (see
/// [`LayerOp::prepare`]) writes only the maxima (report 1's network at batch 1000: 7.2 ->
/// 7.0 us per image, `cnn bench --inference-batch 1000`).
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, C, H', W']`.
#[derive(Debug, Clone)]
pub struct MaxPool2D {
    pub geom: PoolGeom,
    argmax: Vec<u32>,
    /// Whether the next forward pass records the winners (the default, so that a forward
    /// pass then a backward pass work without a [`LayerOp::prepare`] in between).
    training: bool,
}

impl MaxPool2D {
    pub fn new(geom: PoolGeom) -> MaxPool2D {
        MaxPool2D {
            geom,
            argmax: Vec::new(),
            training: true,
        }
    }

    /// The record of winners for a forward pass with `len` outputs: sized, in a training
    /// pass; in an inference pass none, and the old one emptied, as no backward pass will
    /// follow (an empty record makes one fail loudly). A convolution's forward pass with
    /// this pooling (`crate::model::fused`) fills it block by block.
    pub(crate) fn record(&mut self, len: usize) -> Option<&mut [u32]> {
        if !self.training {
            self.argmax.clear();
            return None;
        }
        self.argmax.resize(len, 0);
        Some(&mut self.argmax)
    }

    /// The maxima of whole planes `x` (`[P, H, W]`) into `y` (`[P, H', W']`) on the calling
    /// thread, recording no winners: part of an inference pass.
    pub(crate) fn forward_planes(&self, x: &[f32], y: &mut [f32]) {
        max_pool_planes(&self.geom, x, y, None);
    }

    /// For each output of the last training forward pass, the index within its (n, c) plane
    /// of the input that won its window.
    pub fn argmax(&self) -> &[u32] {
        &self.argmax
    }

    /// dL/dx: each dy goes to the input position that won its window ([`LayerOp::backward`]
    /// without the arguments it does not need).
    ///
    /// # Panics
    /// If the last forward pass was not a training pass of `n` samples.
    pub fn backward_input(&self, dy: &[f32], dx: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let planes = n * g.c;
        assert!(
            self.argmax.len() >= planes * ohw,
            "MaxPool2D backward needs a training forward pass of {n} samples first"
        );
        dx[..planes * hw]
            .par_chunks_mut(hw)
            .with_min_len(g.c)
            .zip(self.argmax.par_chunks(ohw))
            .zip(dy[..planes * ohw].par_chunks(ohw))
            .for_each(|((dx_p, arg_p), dy_p)| unpool(arg_p, dy_p, dx_p));
    }

    /// [`MaxPool2D::backward_input`] for some samples of the last training pass, on the
    /// calling thread: `dy` holds the output gradients of samples `first..first + m`, and
    /// `dx` gets their input gradients. A convolution before this layer calls it block by
    /// block in its own backward pass, so that the gradient it reads is in cache
    /// (`crate::model::fused`).
    ///
    /// # Panics
    /// If the samples were not in the last training forward pass.
    pub(crate) fn backward_samples(&self, dy: &[f32], first: usize, dx: &mut [f32]) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let planes = dy.len() / ohw;
        for ((dx_p, arg_p), dy_p) in dx[..planes * hw]
            .chunks_mut(hw)
            .zip(self.argmax_of(first, planes).chunks(ohw))
            .zip(dy.chunks(ohw))
        {
            unpool(arg_p, dy_p, dx_p);
        }
    }

    /// [`MaxPool2D::backward_samples`] followed by the backward pass of the activation
    /// `act` before this layer, which must have a gate ([`activation::has_gate`]): a
    /// gradient reaches its window's winner only if the gate passes the winner's value,
    /// which is the window's output `y`. So `dx` is dL/d(the activation's input), the same
    /// bits as unpooling and then undoing the activation with its output (every gradient a
    /// position gets passes the same gate, and a position no gradient reaches holds 0
    /// either way), without reading that output.
    ///
    /// # Panics
    /// If `act` has no gate or the samples were not in the last training forward pass.
    pub(crate) fn backward_samples_gated(
        &self,
        dy: &[f32],
        y: &[f32],
        first: usize,
        act: Activation,
        dx: &mut [f32],
    ) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let planes = dy.len() / ohw;
        let args = self.argmax_of(first, planes);
        // One loop per gate, each inlined into it.
        let planes = dx[..planes * hw]
            .chunks_mut(hw)
            .zip(args.chunks(ohw))
            .zip(dy.chunks(ohw))
            .zip(y.chunks(ohw));
        match act {
            Activation::None => planes.for_each(|(((dx, a), dy), _)| unpool(a, dy, dx)),
            Activation::Relu => planes
                .for_each(|(((dx, a), dy), y)| unpool_gated(a, dy, y, activation::relu_passes, dx)),
            Activation::Relu6 => planes.for_each(|(((dx, a), dy), y)| {
                unpool_gated(a, dy, y, activation::relu6_passes, dx)
            }),
            _ => panic!("MaxPool2D: {act:?} has no gate"),
        }
    }

    /// The winners of `planes` planes from sample `first` of the last training pass.
    fn argmax_of(&self, first: usize, planes: usize) -> &[u32] {
        let ohw = self.geom.out_h * self.geom.out_w;
        let at = first * self.geom.c * ohw..(first * self.geom.c + planes) * ohw;
        assert!(
            at.end <= self.argmax.len(),
            "MaxPool2D backward needs a training forward pass of these samples first"
        );
        &self.argmax[at]
    }
}

/// Max pooling of consecutive planes `x` (`[P, H, W]`) into `y` (`[P, H', W']`) on the
/// calling thread, the winners into `arg` if given: [`LayerOp::forward`] for some samples.
pub(crate) fn max_pool_planes(g: &PoolGeom, x: &[f32], y: &mut [f32], arg: Option<&mut [u32]>) {
    let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
    let planes = y.chunks_mut(ohw).zip(x.chunks(hw));
    match arg {
        Some(arg) => {
            for ((y_p, x_p), arg_p) in planes.zip(arg.chunks_mut(ohw)) {
                max_pool(g, x_p, y_p, Some(arg_p));
            }
        }
        None => planes.for_each(|(y_p, x_p)| max_pool(g, x_p, y_p, None)),
    }
}

/// Max pooling's backward for one plane: each output's gradient goes to the input that won
/// its window (`dx` = 0 elsewhere; overlapping windows add up).
///
/// Zeroing the plane and adding at the winners is one vector pass and one store per
/// output. Writing each 2x2 window's four values instead (no zeroing) made the pass 4-5x
/// slower: the choice of the winner's place compiled to a mispredicted branch per value,
/// or, through an array, to as slow a store.
fn unpool(arg_p: &[u32], dy_p: &[f32], dx_p: &mut [f32]) {
    dx_p.fill(0.0);
    for (&a, &d) in arg_p.iter().zip(dy_p) {
        dx_p[a as usize] += d;
    }
}

/// [`unpool`] with the gate of the activation before the pooling: the gradient of an
/// output whose value `y` the gate does not pass is dropped.
///
/// Adding 0 in its place is a select, not a branch (the gate's answer is as unpredictable
/// as ReLU's, see [`activation::backward`]), and gives the same bits: every gradient a
/// position gets passes the same gate, so a position gets only zeros or only the gradients
/// it would get, and a sum from +0 is never -0, so adding +0 leaves it as it is.
fn unpool_gated(
    arg_p: &[u32],
    dy_p: &[f32],
    y_p: &[f32],
    gate: impl Fn(f32) -> bool,
    dx_p: &mut [f32],
) {
    dx_p.fill(0.0);
    for ((&a, &d), &v) in arg_p.iter().zip(dy_p).zip(y_p) {
        dx_p[a as usize] += if gate(v) { d } else { 0.0 };
    }
}

/// Max pooling of one plane, through the 2x2 stride-2 kernels where they apply.
fn max_pool(g: &PoolGeom, x_p: &[f32], y_p: &mut [f32], arg_p: Option<&mut [u32]>) {
    if g.ph == 2 && g.pw == 2 && g.stride == 2 {
        return max_pool_2x2_fast(g, x_p, y_p, arg_p);
    }
    max_pool_plane(g, x_p, y_p, arg_p);
}

/// Average pooling of one plane.
fn avg_pool(g: &PoolGeom, x_p: &[f32], y_p: &mut [f32]) {
    let scale = 1.0 / (g.ph * g.pw) as f32;
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let mut s = 0.0;
            for i in 0..g.ph {
                let row = (oy * g.stride + i) * g.w + ox * g.stride;
                s += x_p[row..row + g.pw].iter().sum::<f32>();
            }
            y_p[oy * g.out_w + ox] = s * scale;
        }
    }
}

/// Average pooling.
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, C, H', W']`.
#[derive(Debug, Clone)]
pub struct AvgPool2D {
    pub geom: PoolGeom,
}

impl AvgPool2D {
    pub fn new(geom: PoolGeom) -> AvgPool2D {
        AvgPool2D { geom }
    }

    /// The means of whole planes `x` (`[P, H, W]`) into `y` (`[P, H', W']`) on the calling
    /// thread.
    pub(crate) fn forward_planes(&self, x: &[f32], y: &mut [f32]) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        for (y_p, x_p) in y.chunks_mut(ohw).zip(x.chunks(hw)) {
            avg_pool(&g, x_p, y_p);
        }
    }

    /// dL/dx: each dy spread evenly over its window ([`LayerOp::backward`] without the
    /// arguments it does not need).
    pub fn backward_input(&self, dy: &[f32], dx: &mut [f32], n: usize) {
        let g = self.geom;
        let (hw, ohw) = (g.h * g.w, g.out_h * g.out_w);
        let scale = 1.0 / (g.ph * g.pw) as f32;
        dx[..n * g.c * hw]
            .par_chunks_mut(hw)
            .with_min_len(g.c)
            .zip(dy[..n * g.c * ohw].par_chunks(ohw))
            .for_each(|(dx_p, dy_p)| {
                dx_p.fill(0.0);
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let d = dy_p[oy * g.out_w + ox] * scale;
                        for i in 0..g.ph {
                            let row = (oy * g.stride + i) * g.w + ox * g.stride;
                            dx_p[row..row + g.pw].iter_mut().for_each(|v| *v += d);
                        }
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn geom(pool: usize, stride: usize) -> PoolGeom {
        PoolSpec {
            pool: (pool, pool),
            stride,
        }
        .geom("MaxPool2D", [3, 9, 10])
        .unwrap()
    }

    fn pass(training: bool) -> Pass {
        Pass {
            training,
            stream: 0,
            ..Default::default()
        }
    }

    /// An inference pass skips the winners' indices but writes the same maxima, bit for
    /// bit, on the 2x2 stride-2 path and the general one, at batch 1 (split planes) and 4.
    #[test]
    fn an_inference_pass_writes_the_training_maxima_and_no_winners() {
        for (pool, stride) in [(2, 2), (3, 2)] {
            let g = geom(pool, stride);
            for n in [1, 4] {
                let mut r = Rng::new(7);
                let x: Vec<f32> = (0..n * 3 * 9 * 10).map(|_| r.normal() as f32).collect();
                let len = n * 3 * g.out_h * g.out_w;
                let mut layer = MaxPool2D::new(g);
                let (mut trained, mut inferred) = (vec![0.0; len], vec![0.0; len]);
                LayerOp::prepare(&mut layer, pass(true));
                LayerOp::forward(&mut layer, &x, &mut trained, n);
                assert_eq!(layer.argmax().len(), len);
                LayerOp::prepare(&mut layer, pass(false));
                LayerOp::forward(&mut layer, &x, &mut inferred, n);
                assert!(layer.argmax().is_empty(), "pool {pool}, n {n}");
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&trained), bits(&inferred), "pool {pool}, n {n}");
            }
        }
    }

    /// The backward pass gives the bits of unpooling by its definition (each gradient added
    /// to 0 at its winner), and the gated backward (which applies the gate of the activation
    /// before the pooling, from the pooled values) the bits of that and then the
    /// activation's own backward from its outputs, for none, ReLU and ReLU6, on
    /// non-overlapping windows (2x2 at stride 2, with a last row no window covers) and
    /// overlapping ones (3x3 at stride 2: one input wins up to four windows), with outputs
    /// of 0, -0, 6, NaN and infinities and gradients of -0 and NaN.
    #[test]
    fn the_gated_backward_gives_the_bits_of_unpooling_then_the_activation() {
        let specials = [0.0, -0.0, 6.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            for (pool, stride) in [(2, 2), (3, 2)] {
                let g = geom(pool, stride);
                let n = 2;
                let mut r = Rng::new(11);
                // The activation's outputs: activated values, with specials among them.
                let mut x: Vec<f32> = (0..n * 3 * 9 * 10).map(|_| r.normal() as f32).collect();
                // The first plane all off for ReLU and ReLU6: its windows' winners are 0.
                x[..9 * 10].iter_mut().for_each(|v| *v = -v.abs());
                activation::forward(act, &mut x, 1);
                for (i, v) in x.iter_mut().enumerate().filter(|(i, _)| i % 7 == 0) {
                    *v = specials[i / 7 % specials.len()];
                }
                let len = n * 3 * g.out_h * g.out_w;
                let (mut y, mut layer) = (vec![0.0; len], MaxPool2D::new(g));
                LayerOp::prepare(&mut layer, pass(true));
                LayerOp::forward(&mut layer, &x, &mut y, n);
                let mut dy: Vec<f32> = (0..len).map(|_| r.normal() as f32).collect();
                dy[1] = -0.0;
                dy[4] = f32::NAN;
                // Unpooling by its definition: each gradient added at its winner.
                let (hw, ohw) = (9 * 10, g.out_h * g.out_w);
                let mut unpooled = vec![0.0; x.len()];
                for (o, (&a, &d)) in layer.argmax().iter().zip(&dy).enumerate() {
                    unpooled[o / ohw * hw + a as usize] += d;
                }
                let mut plain = vec![1.0; x.len()];
                layer.backward_samples(&dy, 0, &mut plain);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&plain), bits(&unpooled), "pool {pool}");
                let mut want = unpooled.clone();
                activation::backward(act, &x, &mut want, 1);
                let mut got = vec![1.0; x.len()];
                layer.backward_samples_gated(&dy, &y, 0, act, &mut got);
                assert_eq!(bits(&got), bits(&want), "{act:?} pool {pool}");
                // Gradients passed the gate, and for ReLU and ReLU6 some did not.
                assert!(want.iter().any(|v| *v != 0.0), "{act:?} pool {pool}");
                let dropped = bits(&want) != bits(&unpooled);
                assert_eq!(dropped, act != Activation::None, "{act:?} pool {pool}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "needs a training forward pass")]
    fn backward_after_an_inference_pass_fails_loudly() {
        let g = geom(2, 2);
        let mut layer = MaxPool2D::new(g);
        let x = vec![1.0; 3 * 9 * 10];
        let mut y = vec![0.0; 3 * g.out_h * g.out_w];
        LayerOp::prepare(&mut layer, pass(false));
        LayerOp::forward(&mut layer, &x, &mut y, 1);
        let mut dx = vec![0.0; x.len()];
        layer.backward_input(&y, &mut dx, 1);
    }
}
