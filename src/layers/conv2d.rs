//! Conv2D: a 2-D convolution over a batch, forward and backward.
//!
//! Legend: N batch, C input channels, H, W input size, K filters, kh, kw kernel,
//! S stride, P padding, H', W' output size (see [`ConvGeom`]).
//!
//! Forward (report 1, eq. 1, with stride and padding):
//!
//! ```text
//! y[n][k][oy][ox] = b[k] + sum_{c, i, j} w[k][c][i][j] * x[n][c][oy*S + i - P][ox*S + j - P]
//! ```
//!
//! Backward, given dy = dL/dy:
//!
//! ```text
//! dL/db[k]          = sum_{n, oy, ox} dy[n][k][oy][ox]
//! dL/dw[k][c][i][j] = sum_{n, oy, ox} dy[n][k][oy][ox] * x[n][c][oy*S + i - P][ox*S + j - P]
//! dL/dx[n][c][y][x] = sum of dy[n][k][oy][ox] * w[k][c][i][j] over every (k, oy, ox, i, j)
//!                     with oy*S + i - P = y and ox*S + j - P = x
//! ```
//!
//! The fast path lowers each sample with im2col to a matrix multiply
//! (`y_n = W * cols_n`, `dW = sum_n dy_n * cols_n^T`, `dcols_n = W^T * dy_n`), in parallel
//! over blocks of [`GRAD_BLOCK`] samples. Each thread has one cols buffer, reused for the
//! samples of every block it computes while it is in cache, and backward lowers x again
//! rather than keeping every sample's cols from forward: for the second layer of LeNet at
//! batch 128 those would be 29 MB, written once and read back from memory, for a copy that
//! costs a few percent of the multiply. The weight and bias gradients sum over the batch in fixed blocks of
//! [`GRAD_BLOCK`] samples merged in order, so the result does not depend on the number of
//! threads. The layer's activation is applied (and undone in backward) one sample at a
//! time inside the same loop, while that sample's output is still in cache, instead of in
//! a separate pass over the whole batch. A batch of one image has nothing to split, so a
//! one-channel convolution splits its filters between two threads instead
//! (`forward_one_direct`). With nine weights per filter (one input channel, 3x3) and no
//! dx to compute, the activation's backward, the bias gradient and the weight gradient
//! are one pass over dy and y ([`direct::weight_grad9`]) instead of three.

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::keys::{LineKeys, MAX_DIM, MAX_UNITS};
use super::param::Param;
use super::{chw, Counts, Filters, InputForm, LayerKind, LayerOp, SampleShape, Window};
use crate::distributed::Shard;
use crate::error::Result;
use crate::kernels::direct;
use crate::kernels::gemm::{gemm, gemm_bias_relu, sum, MatMut, MatRef};
use crate::kernels::geom::{ConvGeom, Padding};
use crate::kernels::im2col::{col2im, im2col};
use crate::kernels::winograd::{self, Plan};
use crate::onnx::export::{int, ints, Graph, LayerAt};
use crate::onnx::import::{equal_strides, short, Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::text::thousands;

/// Samples per block of the weight-gradient reduction (fixed: see the module doc).
pub const GRAD_BLOCK: usize = 4;

/// A Conv2D config line: `Conv2D filters=16 kernel=3x3 stride=1 padding=same
/// activation=relu`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dSpec {
    /// K, the number of filters (output channels). Required.
    pub filters: usize,
    /// (kh, kw). Required; `3x3` or `3`.
    pub kernel: (usize, usize),
    /// S, the same along both axes. Default 1.
    pub stride: usize,
    /// `valid`, `same` or a number. Default [`Padding::Valid`].
    pub padding: Padding,
    /// Fused into the layer. Default [`Activation::None`].
    pub activation: Activation,
}

impl Conv2dSpec {
    /// The convolution's geometry on an input of shape (C, H, W).
    pub fn geom(&self, input: [usize; 3]) -> Result<ConvGeom> {
        ConvGeom::new(input, self.filters, self.kernel, self.stride, self.padding)
    }
}

/// The Conv2D kind.
pub struct Kind;

impl LayerKind for Kind {
    type Spec = Conv2dSpec;
    type Op = Conv2D;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[(
        "Conv2D",
        &[
            "filters",
            "kernel",
            "stride",
            "padding",
            "activation",
            "alpha",
        ],
    )];
    const INPUT: InputForm = InputForm::Spatial;
    const SHAPE_KEY: Option<&'static str> = Some("kernel");

    fn parse(_name: &str, keys: &LineKeys) -> Result<Conv2dSpec> {
        let padding = match keys.get("padding") {
            None => Padding::Valid,
            Some(a) => match a.value.to_ascii_lowercase().as_str() {
                "same" => Padding::Same,
                "valid" => Padding::Valid,
                v => match super::keys::parse_whole(v) {
                    Some(p) if p <= MAX_DIM => Padding::Explicit(p),
                    _ => {
                        return Err(keys.err(
                            a.value_pos,
                            format!(
                                "`padding` must be `same`, `valid` or a whole number from 0 \
                                 to {}, found `{}`",
                                thousands(MAX_DIM as u128),
                                a.value
                            ),
                        ))
                    }
                },
            },
        };
        Ok(Conv2dSpec {
            filters: keys.whole(keys.required("filters")?, 1, MAX_UNITS)?,
            kernel: keys.size2(keys.required("kernel")?)?,
            stride: keys.whole_or("stride", 1, MAX_DIM, 1)?,
            padding,
            activation: keys.activation()?,
        })
    }

    fn name(_spec: &Conv2dSpec) -> &'static str {
        "Conv2D"
    }

    fn output_shape(spec: &Conv2dSpec, input: &[usize]) -> Result<SampleShape> {
        let g = spec.geom(chw("Conv2D", input)?)?;
        Ok(vec![g.k, g.out_h, g.out_w])
    }

    /// params = K C kh kw + K; FLOPs = 2 K H' W' C kh kw.
    fn counts(spec: &Conv2dSpec, input: &[usize], output: &[usize]) -> Counts {
        let c = input.first().copied().unwrap_or(0) as u128;
        let patch = c * spec.kernel.0 as u128 * spec.kernel.1 as u128;
        let k = spec.filters as u128;
        let out: u128 = output.iter().map(|&d| d as u128).product();
        Counts {
            params: k * patch + k,
            flops: 2 * out * patch,
        }
    }

    fn describe(s: &Conv2dSpec) -> String {
        let mut d = format!("Conv2D {} {}x{}", s.filters, s.kernel.0, s.kernel.1);
        if s.stride != 1 {
            d += &format!(" stride {}", s.stride);
        }
        d += &match s.padding {
            Padding::Same => " same".to_string(),
            Padding::Valid => " valid".to_string(),
            Padding::Explicit(p) => format!(" pad {p}"),
        };
        d + &s.activation.suffix()
    }

    fn explain(s: &Conv2dSpec, input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        let g = s.geom(chw("Conv2D", input)?)?;
        let h = axis_expr(g.h, g.kh, g.stride, s.padding, g.out_h);
        let wv = axis_expr(g.w, g.kw, g.stride, s.padding, g.out_w);
        let hw = if (g.w, g.kw) == (g.h, g.kh) {
            format!("H' = {h}; W' likewise")
        } else {
            format!("H' = {h}; W' = {wv}")
        };
        let params = g.kh * g.kw * g.c * g.k + g.k;
        let flops = 2 * (g.k * g.out_h * g.out_w * g.c * g.kh * g.kw) as u128;
        Ok(vec![
            hw,
            format!(
                "params = {}*{}*{}*{} + {} = {}  (kh*kw*C*K weights + K biases)",
                g.kh,
                g.kw,
                g.c,
                g.k,
                g.k,
                thousands(params as u128)
            ),
            format!(
                "FLOPs = 2*{}*{}*{}*{}*{}*{} = {}  (2*K*H'*W'*C*kh*kw)",
                g.k,
                g.out_h,
                g.out_w,
                g.c,
                g.kh,
                g.kw,
                thousands(flops)
            ),
        ])
    }

    fn activation(spec: &Conv2dSpec) -> Activation {
        spec.activation
    }

    fn with_activation(spec: &Conv2dSpec, act: Activation) -> Conv2dSpec {
        Conv2dSpec {
            activation: act,
            ..spec.clone()
        }
    }

    /// `Conv` with the weight `[K, C, kh, kw]` and the bias `[K]`, its pads (top, left,
    /// bottom, right) those the output size implies: report 1's P on both sides when
    /// explicit, the larger half of `same`'s total after.
    fn onnx(s: &Conv2dSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        let geom = s.geom(chw("Conv2D", at.input)?)?;
        let after = |size: usize, k: usize, out: usize, before: usize| match s.padding {
            Padding::Valid => 0,
            Padding::Explicit(p) => p,
            Padding::Same => ((out - 1) * s.stride + k).saturating_sub(size + before),
        };
        let pads = [
            geom.pad_top,
            geom.pad_left,
            after(geom.h, geom.kh, geom.out_h, geom.pad_top),
            after(geom.w, geom.kw, geom.out_w, geom.pad_left),
        ];
        Ok(g.node(
            "Conv",
            at.name,
            &[input, &at.tensor("weight"), &at.tensor("bias")],
            vec![
                ints("kernel_shape", &[geom.kh, geom.kw]),
                ints("strides", &[s.stride, s.stride]),
                ints("pads", &pads),
                ints("dilations", &[1, 1]),
                int("group", 1),
            ],
        ))
    }

    const ONNX_OPS: &'static [&'static str] = &["Conv"];

    /// `Conv` with a constant weight `[K, C, kh, kw]` (and bias), ungrouped and undilated,
    /// equal strides, and pads equal on every side or those of `same` padding.
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        let [c, h, w] = cx.spatial("Conv")?;
        let attrs = Attrs::of(node);
        let unknown = attrs.unknown(&[
            "kernel_shape",
            "strides",
            "pads",
            "dilations",
            "group",
            "auto_pad",
        ]);
        if !unknown.is_empty() {
            return Err(format!("unsupported attributes {unknown:?}"));
        }
        let wname = node.input.get(1).ok_or("has no weight input")?;
        let (wshape, weight) = cx.floats(wname)?;
        let &[k, wc, kh, kw] = wshape.as_slice() else {
            return Err(format!("weight shape {wshape:?}, expected [K, C, kh, kw]"));
        };
        if wc != c {
            return Err(format!(
                "its weight {wshape:?} takes {wc} channels, the value it reads has {c} (shapes \
                 do not chain)"
            ));
        }
        if attrs.int("group", 1) != 1 {
            return Err("grouped convolutions are not supported".into());
        }
        if attrs
            .ints("dilations")
            .is_some_and(|d| d.iter().any(|&x| x != 1))
        {
            return Err("dilated convolutions are not supported".into());
        }
        if let Some(ks) = attrs.ints("kernel_shape") {
            if ks != [kh as i64, kw as i64] {
                return Err(format!(
                    "kernel_shape {ks:?} differs from the weight's {kh}x{kw}"
                ));
            }
        }
        let stride = equal_strides(&attrs)?;
        let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(b) => cx.vector(b, k)?,
            None => vec![0.0; k],
        };
        let pads: Vec<i64> = attrs
            .ints("pads")
            .map(<[i64]>::to_vec)
            .unwrap_or(vec![0; 4]);
        let auto_pad = attrs.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let same = same_pads(h, w, kh, kw, stride);
        let padding = match auto_pad.as_str() {
            "VALID" => Padding::Valid,
            "SAME_UPPER" => Padding::Same,
            "NOTSET" | "" => match pads.as_slice() {
                [0, 0, 0, 0] => Padding::Valid,
                // `same` first: the same sums either way, and the name a config would use.
                p if p == same => Padding::Same,
                &[t, l, b, r]
                    if t == l && l == b && b == r && (1..=MAX_DIM as i64).contains(&t) =>
                {
                    Padding::Explicit(t as usize)
                }
                p => {
                    return Err(format!(
                        "pads {p:?} are neither equal on every side nor `same` padding ({same:?})"
                    ))
                }
            },
            other => return Err(format!("auto_pad {} is not supported", short(other))),
        };
        let padding_text = match padding {
            Padding::Valid => "valid".to_string(),
            Padding::Same => "same".to_string(),
            Padding::Explicit(p) => p.to_string(),
        };
        let spec = Conv2dSpec {
            filters: k,
            kernel: (kh, kw),
            stride,
            padding,
            activation: Activation::None,
        };
        let g = spec.geom([c, h, w]).map_err(|e| e.to_string())?;
        cx.shape = vec![k, g.out_h, g.out_w];
        cx.push(Step::new(
            format!("Conv2D filters={k} kernel={kh}x{kw} stride={stride} padding={padding_text}"),
            StepKind::Fusable {
                fused: false,
                flat_input: false,
            },
            vec![("weight", wshape, weight), ("bias", vec![k], bias)],
        ));
        Ok(())
    }

    fn build(spec: &Conv2dSpec, input: &[usize]) -> Result<Conv2D> {
        let mut layer = Conv2D::new(spec.geom(chw("Conv2D", input)?)?);
        layer.act = spec.activation;
        Ok(layer)
    }
}

/// The pads `[top, left, bottom, right]` of `same` padding (as [`crate::kernels::geom`]).
fn same_pads(h: usize, w: usize, kh: usize, kw: usize, s: usize) -> Vec<i64> {
    let axis = |size: usize, k: usize| {
        let out = size.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(size);
        (total / 2, total - total / 2)
    };
    let (t, b) = axis(h, kh);
    let (l, r) = axis(w, kw);
    [t, l, b, r].iter().map(|&p| p as i64).collect()
}

/// `floor((28 - 3 + 2*1)/1) + 1 = 28 (...)` for one axis of a convolution.
fn axis_expr(size: usize, k: usize, s: usize, padding: Padding, out: usize) -> String {
    match padding {
        Padding::Valid => format!("floor(({size} - {k})/{s}) + 1 = {out}"),
        Padding::Explicit(p) => format!("floor(({size} - {k} + 2*{p})/{s}) + 1 = {out}"),
        Padding::Same => {
            let total = ((out.saturating_sub(1)) * s + k).saturating_sub(size);
            let (before, after) = (total / 2, total - total / 2);
            if before == after {
                format!(
                    "floor(({size} - {k} + 2*{before})/{s}) + 1 = {out} (same padding \
                     resolved to P = {before})"
                )
            } else {
                format!(
                    "floor(({size} - {k} + {before} + {after})/{s}) + 1 = {out} (same \
                     padding is asymmetric here: {before} before, {after} after)"
                )
            }
        }
    }
}

/// A convolution layer with weight `[K, C, kh, kw]` and bias `[K]` (PyTorch's layout).
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, K, H', W']`.
#[derive(Debug, Clone)]
pub struct Conv2D {
    pub geom: ConvGeom,
    pub weight: Param,
    pub bias: Param,
    /// The activation fused into the layer (applied by [`LayerOp::forward`]).
    pub act: Activation,
    /// Partial weight and bias gradients, `K C kh kw + K` per block of samples (with
    /// Winograd, `16 K C + K`: the weights' gradient in the Winograd domain).
    partial: Vec<f32>,
    /// Winograd F(2x2, 3x3) instead of im2col (see [`winograd`]): chosen by
    /// [`winograd::Plan::new`] for 3x3 convolutions with stride 1 and enough input
    /// channels, unless the environment sets `CNN_NO_WINOGRAD` ([`Conv2D::set_winograd`]
    /// changes it).
    winograd: Option<Plan>,
    /// The weights in the Winograd domain, `U[16][K][C]`, made at each pass.
    wino_u: Vec<f32>,
    /// This process's part of the batch ([`super::Pass::shard`]): with a batch split over
    /// processes, the blocks' partial gradients are gathered from all before they are added.
    shard: Shard,
}

/// The buffers a thread works in while it computes one block of samples.
#[derive(Debug, Default)]
struct BlockScratch {
    /// im2col's `[C kh kw, H' W']`.
    cols: Vec<f32>,
    /// Winograd's transforms and products.
    wino: winograd::Scratch,
    /// The direct kernels' input plane and masks.
    direct: direct::Scratch,
}

thread_local! {
    /// Each thread's [`BlockScratch`], reused for every block it computes, so the buffers
    /// stay in its cache: one buffer per block instead (32 of them for a batch of 128)
    /// meant that every block wrote to memory that was not in cache. Borrowed for one
    /// block at a time; nothing inside a block runs in parallel, so a thread never
    /// borrows it twice.
    static SCRATCH: std::cell::RefCell<BlockScratch> = std::cell::RefCell::new(BlockScratch::default());
}

/// Whether the environment leaves Winograd on (`CNN_NO_WINOGRAD` unset), read once per
/// process: setting it lets one binary measure both paths.
fn winograd_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os("CNN_NO_WINOGRAD").is_none())
}

impl Conv2D {
    /// A layer with zero weights (the model initialises them).
    pub fn new(geom: ConvGeom) -> Conv2D {
        Conv2D {
            geom,
            weight: Param::zeros(&[geom.k, geom.c, geom.kh, geom.kw]),
            bias: Param::zeros(&[geom.k]),
            act: Activation::None,
            partial: Vec::new(),
            shard: Shard::default(),
            winograd: Plan::new(&geom).filter(|_| winograd_wanted()),
            wino_u: Vec::new(),
        }
    }

    /// Whether the layer runs as Winograd F(2x2, 3x3) rather than im2col or the direct
    /// kernel.
    pub fn uses_winograd(&self) -> bool {
        self.winograd.is_some()
    }

    /// Turns Winograd on, where the layer's shape allows it (3x3, stride 1, enough input
    /// channels) whatever `CNN_NO_WINOGRAD` says, or off; returns whether it is on. For
    /// tests and measurements of one path against the other. A model decides its fused
    /// steps from its layers when it is built, so change a layer's path before that.
    pub fn set_winograd(&mut self, on: bool) -> bool {
        self.winograd = Plan::new(&self.geom).filter(|_| on);
        self.uses_winograd()
    }

    /// y = act(conv(x) + b) for a batch of `n` samples, with `act` in place of the
    /// layer's own activation (what [`LayerOp::forward`] applies).
    pub fn forward_act(&mut self, x: &[f32], y: &mut [f32], n: usize, act: Activation) {
        let mut nothing: Vec<Nothing> = (0..n.div_ceil(GRAD_BLOCK)).map(|_| Nothing).collect();
        self.forward_blocks(x, y, n, act, &mut nothing);
    }

    /// [`LayerOp::forward`], with `after[b].run` called on the output of each block `b` of
    /// [`GRAD_BLOCK`] samples right after it is computed, by the thread that computed it,
    /// while it is in that thread's cache (`crate::model::fused` pools it there).
    ///
    /// # Panics
    /// If `after` does not hold one entry per block, `n.div_ceil(GRAD_BLOCK)`.
    pub(crate) fn forward_blocks_then(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        n: usize,
        after: &mut [impl AfterBlock],
    ) {
        assert_eq!(after.len(), n.div_ceil(GRAD_BLOCK), "one entry per block");
        let act = self.act;
        self.forward_blocks(x, y, n, act, after);
    }

    /// [`Conv2D::forward_act`], each block of [`GRAD_BLOCK`] samples then given to
    /// `after[block]`.
    fn forward_blocks<A: AfterBlock>(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        n: usize,
        act: Activation,
        after: &mut [A],
    ) {
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        let (rows, ohw) = (g.patch_len(), g.out_h * g.out_w);
        if let Some(plan) = self.winograd {
            return self.forward_winograd(&plan, x, y, n, act, after);
        }
        // One-channel 3x3 convolutions (every example's first layer) skip im2col: the
        // direct kernel gives the same bits (see `kernels::direct`).
        let direct = direct::applies(&g);
        // (One sample of a larger batch split over processes takes the batch's path.)
        if n == 1 && self.shard.total(n) == 1 && self.one_image_split_for(act).is_some() {
            self.forward_one_direct(&x[..in_len], &mut y[..out_len], act);
            if let Some(a) = after.first_mut() {
                a.run(&y[..out_len]);
            }
            return;
        }
        let w = self.weight.value.data();
        let b = self.bias.value.data();
        y[..n * out_len]
            .par_chunks_mut(GRAD_BLOCK * out_len)
            .zip(x[..n * in_len].par_chunks(GRAD_BLOCK * in_len))
            .zip(after.par_iter_mut())
            .for_each(|((y_b, x_b), after_b)| {
                SCRATCH.with_borrow_mut(|sc| {
                    if !direct {
                        sc.cols.resize(rows * ohw, 0.0);
                    }
                    let cols = &mut sc.cols[..];
                    for (y_n, x_n) in y_b.chunks_mut(out_len).zip(x_b.chunks(in_len)) {
                        if direct {
                            direct_with_act(&g, x_n, w, b, act, &mut sc.direct, y_n);
                            continue;
                        }
                        let relu = act == Activation::Relu;
                        im2col(x_n, &g, cols);
                        // y_n = act(W cols + b): bias and ReLU fused into the product's stores;
                        // any other activation is a pass of its own.
                        let (w, cols) = (MatRef::new(w, g.k, rows), MatRef::new(cols, rows, ohw));
                        gemm_bias_relu(w, cols, b, relu, MatMut::new(y_n, g.k, ohw));
                        if !relu {
                            activation::forward(act, y_n, out_len);
                        }
                    }
                });
                after_b.run(y_b);
            });
    }

    /// One image through the direct kernel, its filters in two halves on two threads (the
    /// calling thread takes the first): the latency path of inference at batch 1, where
    /// the batch gives nothing to split. The pooling layer after it splits its planes the
    /// same way (see `pool`), so each thread pools the planes it wrote and no output
    /// crosses between the cores' caches. Each output is computed as in the batched path,
    /// so the bits are the same. `act` must act element by element (not softmax).
    fn forward_one_direct(&mut self, x: &[f32], y: &mut [f32], act: Activation) {
        let g = self.geom;
        let half = g.k / 2;
        let (y0, y1) = y.split_at_mut(half * g.out_h * g.out_w);
        let this = &*self;
        rayon::join(
            || this.forward_one_filters(x, 0..half, act, y0),
            || this.forward_one_filters(x, half..g.k, act, y1),
        );
    }

    /// Where the one-image path splits the filters between two threads (the first half
    /// is `0..k/2`), if this layer takes it: a one-channel 3x3 convolution
    /// ([`direct::applies`]) whose activation acts element by element.
    pub(crate) fn one_image_split(&self) -> Option<usize> {
        self.one_image_split_for(self.act)
    }

    fn one_image_split_for(&self, act: Activation) -> Option<usize> {
        let direct = self.winograd.is_none() && direct::applies(&self.geom);
        (direct && act != Activation::Softmax).then_some(self.geom.k / 2)
    }

    /// Filters `ks` of one image `x` through the direct kernel, with `act`: `y` holds
    /// their output planes, `[ks.len(), H', W']`. The layer must take the one-image path
    /// ([`Conv2D::one_image_split`]).
    pub(crate) fn forward_one_filters(
        &self,
        x: &[f32],
        ks: std::ops::Range<usize>,
        act: Activation,
        y: &mut [f32],
    ) {
        let g = self.geom;
        if ks.is_empty() {
            return;
        }
        let per = g.kh * g.kw;
        let w = &self.weight.value.data()[ks.start * per..ks.end * per];
        let b = &self.bias.value.data()[ks.clone()];
        let part = ConvGeom { k: ks.len(), ..g };
        SCRATCH.with_borrow_mut(|sc| {
            direct_with_act(&part, x, w, b, act, &mut sc.direct, y);
        });
    }

    /// Sets the weight and bias gradients from `dy` and, if `dx` is given, writes dL/dx.
    /// `dy` is dL/d(activation output) on entry and is turned into dL/d(conv output) in
    /// place, using the input `x` and output `y` of the last forward pass, with the same
    /// `act` as that pass ([`Conv2D::forward_act`]).
    pub fn backward_act(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        n: usize,
        act: Activation,
    ) {
        let out_len = self.geom.k * self.geom.out_h * self.geom.out_w;
        let dy: Vec<&mut [f32]> = dy[..n * out_len].chunks_mut(GRAD_BLOCK * out_len).collect();
        self.backward_dy(x, y, dy, dx, n, act);
    }

    /// [`LayerOp::backward`] with dL/dy given block by block: `dy[b]` makes the dL/dy of
    /// block `b` of [`GRAD_BLOCK`] samples when the thread that computes the block asks for
    /// it, so that it is in that thread's cache (`crate::model::fused` makes it there from
    /// the max pooling's gradient).
    ///
    /// # Panics
    /// If `dy` does not hold one entry per block, `n.div_ceil(GRAD_BLOCK)`.
    pub(crate) fn backward_blocks_from(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: Vec<impl DyBlock>,
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        assert_eq!(dy.len(), n.div_ceil(GRAD_BLOCK), "one entry per block");
        let act = self.act;
        self.backward_dy(x, y, dy, dx, n, act);
    }

    /// [`Conv2D::backward_act`] with dL/dy block by block from `dy`: by Winograd where the
    /// layer uses it, else here (the direct one-pass kernel or im2col).
    fn backward_dy<D: DyBlock>(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: Vec<D>,
        dx: Option<&mut [f32]>,
        n: usize,
        act: Activation,
    ) {
        if let Some(plan) = self.winograd {
            return self.backward_winograd(&plan, x, y, dy, dx, n, act);
        }
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        let (rows, ohw) = (g.patch_len(), g.out_h * g.out_w);
        let wlen = g.k * rows;
        let w = self.weight.value.data();

        // Per block of GRAD_BLOCK samples, in parallel: undo the activation, then
        // dL/dW_blk = sum_n dy_n[K, H'W'] * cols_n^T and dL/db_blk[k] = sum_n sum_pixels dy_n[k],
        // and dL/dx_n = col2im(W^T[C kh kw, K] * dy_n), in the thread's cols buffer.
        let total = grad_blocks(
            &mut self.partial,
            self.shard,
            &g,
            wlen,
            (x, y, dy, dx),
            n,
            |sc, mut b| {
                // Nine weights per filter (a one-channel 3x3 convolution) and no dx to
                // compute from the undone dy: one pass over dy and y gives all three.
                let one_pass = b.dx.is_none() && direct::weight_grad9_applies(&g);
                if !one_pass {
                    sc.cols.resize(rows * ohw, 0.0);
                }
                let (cols, direct_sc) = (&mut sc.cols[..], &mut sc.direct);
                let mut beta = 0.0;
                for (s, (dy_s, y_s)) in
                    b.dy.chunks_mut(out_len)
                        .zip(b.y.chunks(out_len))
                        .enumerate()
                {
                    if one_pass {
                        let relu = act == Activation::Relu;
                        if !relu {
                            activation::backward(act, y_s, dy_s, dy_s.len());
                        }
                        let x_s = &b.x[s * in_len..(s + 1) * in_len];
                        let dw = &mut *b.dw;
                        direct::weight_grad9(&g, x_s, dy_s, y_s, relu, s > 0, direct_sc, dw, b.db);
                        continue;
                    }
                    undo_activation(act, y_s, dy_s, ohw, b.db);
                    im2col(&b.x[s * in_len..(s + 1) * in_len], &g, cols);
                    let (dy_m, cols_t) = (
                        MatRef::new(dy_s, g.k, ohw),
                        MatRef::new(cols, rows, ohw).t(),
                    );
                    gemm(dy_m, cols_t, beta, MatMut::new(b.dw, g.k, rows));
                    beta = 1.0;
                    if let Some(dx_b) = b.dx.as_deref_mut() {
                        // cols is free again: it holds dcols = W^T dy_s.
                        let (w_t, dy_m) =
                            (MatRef::new(w, g.k, rows).t(), MatRef::new(dy_s, g.k, ohw));
                        gemm(w_t, dy_m, 0.0, MatMut::new(cols, rows, ohw));
                        col2im(cols, &g, &mut dx_b[s * in_len..(s + 1) * in_len]);
                    }
                }
            },
        );
        self.weight.grad.data_mut().copy_from_slice(&total[..wlen]);
        self.bias.grad.data_mut().copy_from_slice(&total[wlen..]);
    }
}

impl Conv2D {
    /// The weights in the Winograd domain for this pass.
    fn winograd_ready(&mut self, plan: &Plan) {
        self.wino_u.resize(plan.u_len(), 0.0);
        winograd::transform_weights(plan, self.weight.value.data(), &mut self.wino_u);
    }

    /// [`Conv2D::forward_act`] by Winograd: in parallel over blocks of [`GRAD_BLOCK`] samples.
    fn forward_winograd<A: AfterBlock>(
        &mut self,
        plan: &Plan,
        x: &[f32],
        y: &mut [f32],
        n: usize,
        act: Activation,
        after: &mut [A],
    ) {
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        self.winograd_ready(plan);
        let (u, b) = (&self.wino_u, self.bias.value.data());
        let relu = act == Activation::Relu;
        y[..n * out_len]
            .par_chunks_mut(GRAD_BLOCK * out_len)
            .zip(x[..n * in_len].par_chunks(GRAD_BLOCK * in_len))
            .zip(after.par_iter_mut())
            .for_each(|((y_b, x_b), after_b)| {
                SCRATCH.with_borrow_mut(|sc| {
                    winograd::forward(plan, u, b, relu, x_b, &mut sc.wino, y_b)
                });
                if !relu {
                    for y_n in y_b.chunks_mut(out_len) {
                        activation::forward(act, y_n, out_len);
                    }
                }
                after_b.run(y_b);
            });
    }

    /// [`Conv2D::backward_act`] by Winograd: per block of [`GRAD_BLOCK`] samples, in parallel,
    /// the activation undone, the bias gradient, the block's dU and dx; then the blocks'
    /// dU and bias gradients summed in order and dW = G^T dU G.
    #[allow(clippy::too_many_arguments)]
    fn backward_winograd<D: DyBlock>(
        &mut self,
        plan: &Plan,
        x: &[f32],
        y: &[f32],
        dy: Vec<D>,
        dx: Option<&mut [f32]>,
        n: usize,
        act: Activation,
    ) {
        let g = self.geom;
        let (out_len, ohw) = (g.k * g.out_h * g.out_w, g.out_h * g.out_w);
        let ulen = plan.u_len();
        self.winograd_ready(plan);
        let u = &self.wino_u;
        let io = (x, y, dy, dx);
        let total = grad_blocks(&mut self.partial, self.shard, &g, ulen, io, n, |sc, b| {
            for (dy_s, y_s) in b.dy.chunks_mut(out_len).zip(b.y.chunks(out_len)) {
                undo_activation(act, y_s, dy_s, ohw, b.db);
            }
            winograd::backward(plan, u, b.x, b.dy, &mut sc.wino, b.dw, b.dx);
        });
        winograd::weight_grad(plan, &total[..ulen], self.weight.grad.data_mut());
        self.bias.grad.data_mut().copy_from_slice(&total[ulen..]);
    }
}

/// `y = act(conv(x) + b)` for one sample (or some of its filters, `g.k` of them) by the
/// direct one-channel kernel: ReLU fused into the kernel's stores, any other activation a
/// pass of its own over `y`, which holds the sample's whole output for softmax.
fn direct_with_act(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    act: Activation,
    scratch: &mut direct::Scratch,
    y: &mut [f32],
) {
    let relu = act == Activation::Relu;
    direct::conv3x3(g, x, w, b, relu, scratch, y);
    if !relu {
        activation::forward(act, y, y.len());
    }
}

/// One block of [`GRAD_BLOCK`] samples in backward, as [`grad_blocks`] hands it out.
struct GradBlock<'a> {
    /// dL/d(output) of the block's samples (the caller may change it in place), their
    /// output y and input x.
    dy: &'a mut [f32],
    y: &'a [f32],
    x: &'a [f32],
    /// The block's slice of dL/dx, if asked for.
    dx: Option<&'a mut [f32]>,
    /// The block's partial weight gradient (written by the caller; its layout is the
    /// caller's) and bias gradient (zeroed, to be added to).
    dw: &'a mut [f32],
    db: &'a mut [f32],
}

/// The input, output, dL/d(output) by block and dL/dx (if asked for) of a backward pass.
type GradIo<'a, D> = (&'a [f32], &'a [f32], Vec<D>, Option<&'a mut [f32]>);

/// Work on the output of one block of [`GRAD_BLOCK`] samples, run by
/// [`Conv2D::forward_blocks_then`] right after it computed the block, on the same thread.
pub(crate) trait AfterBlock: Send {
    /// `y`: the block's output, `[m, K, H', W']` for its m samples.
    fn run(&mut self, y: &[f32]);
}

/// No work after a block: the layer's own forward pass.
struct Nothing;

impl AfterBlock for Nothing {
    #[inline]
    fn run(&mut self, _y: &[f32]) {}
}

/// Where the dL/d(output) of one block of [`GRAD_BLOCK`] samples comes from in a backward
/// pass ([`Conv2D::backward_blocks_from`]).
pub(crate) trait DyBlock: Send {
    /// Calls `f` with the block's dL/d(output), `len` values, which `f` may overwrite.
    fn with(&mut self, len: usize, f: impl FnOnce(&mut [f32]));
}

/// The block's part of the batch's dL/d(output), in memory: the layer's own backward pass.
impl DyBlock for &mut [f32] {
    #[inline]
    fn with(&mut self, _len: usize, f: impl FnOnce(&mut [f32])) {
        f(self)
    }
}

/// Runs `block` on each block of [`GRAD_BLOCK`] of the `n` samples, in parallel, with the
/// thread's scratch buffers; each block's partial gradients (`wlen` weight values and K
/// bias values) live in `partial`. Returns their sum over the blocks, in block order, so
/// the result does not depend on the number of threads: the weight part, then the bias.
/// With the batch split over processes (`shard`, [`crate::distributed`]), the sum is over
/// every process's blocks, gathered in order: the same bytes as one process's.
#[allow(clippy::too_many_arguments)]
fn grad_blocks<'p, D: DyBlock>(
    partial: &'p mut Vec<f32>,
    shard: Shard,
    g: &ConvGeom,
    wlen: usize,
    (x, y, mut dy_blocks, dx): GradIo<D>,
    n: usize,
    block: impl Fn(&mut BlockScratch, GradBlock) + Sync + Send,
) -> &'p [f32] {
    let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
    let part_len = wlen + g.k;
    let blocks = n.div_ceil(GRAD_BLOCK);
    partial.resize(blocks * part_len, 0.0);
    let mut dx_blocks: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => dx[..n * in_len]
            .chunks_mut(GRAD_BLOCK * in_len)
            .map(Some)
            .collect(),
        None => (0..blocks).map(|_| None).collect(),
    };
    partial[..blocks * part_len]
        .par_chunks_mut(part_len)
        .zip(dy_blocks.par_iter_mut())
        .zip(y[..n * out_len].par_chunks(GRAD_BLOCK * out_len))
        .zip(x[..n * in_len].par_chunks(GRAD_BLOCK * in_len))
        .zip(dx_blocks.par_iter_mut())
        .for_each(|((((part, dy), y), x), dx)| {
            let (dw, db) = part.split_at_mut(wlen);
            db.fill(0.0);
            let dx = dx.as_deref_mut();
            let run = |dy: &mut [f32]| {
                SCRATCH.with_borrow_mut(|sc| {
                    block(
                        sc,
                        GradBlock {
                            dy,
                            y,
                            x,
                            dx,
                            dw,
                            db,
                        },
                    )
                })
            };
            dy.with(y.len(), run);
        });
    partial.truncate(blocks * part_len);
    if shard.exact() {
        *partial = shard.gather_blocks(partial, part_len);
    }
    if partial.is_empty() {
        // A process with no samples of this batch, adding nothing (Reduce::Sum).
        partial.resize(part_len, 0.0);
    }
    sum_blocks(partial, part_len)
}

/// Undoes the activation in one sample's `dy` (dL/d(output) becomes dL/d(conv output),
/// using the output `y`) and adds each of its planes of `ohw` values to the bias gradient.
fn undo_activation(act: Activation, y: &[f32], dy: &mut [f32], ohw: usize, db: &mut [f32]) {
    activation::backward(act, y, dy, dy.len());
    for (d, plane) in db.iter_mut().zip(dy.chunks(ohw)) {
        *d += sum(plane);
    }
}

/// Adds the blocks' partial gradients (`part_len` floats each) into the first one, in block
/// order, so the sum does not depend on the thread count; returns it. Runs in parallel
/// over ranges of elements (each still summed over the blocks in order): for Winograd's
/// dU of LeNet's second convolution, 32 blocks of 33 K floats, it took 0.4 ms on one
/// thread while the other waited.
fn sum_blocks(partial: &mut [f32], part_len: usize) -> &[f32] {
    /// Elements per parallel task.
    const RANGE: usize = 4096;
    let (first, rest) = partial.split_at_mut(part_len);
    first
        .par_chunks_mut(RANGE)
        .enumerate()
        .for_each(|(i, sums)| {
            for part in rest.chunks(part_len) {
                let part = &part[i * RANGE..][..sums.len()];
                sums.iter_mut().zip(part).for_each(|(d, p)| *d += p);
            }
        });
    first
}

impl LayerOp for Conv2D {
    fn prepare(&mut self, pass: super::Pass) {
        self.shard = pass.shard;
    }

    /// y = act(conv(x) + b), the activation fused per sample.
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let act = self.act;
        self.forward_act(x, y, n, act);
    }

    fn backward(&mut self, x: &[f32], y: &[f32], dy: &mut [f32], dx: Option<&mut [f32]>, n: usize) {
        let act = self.act;
        self.backward_act(x, y, dy, dx, n, act);
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        vec![("weight", &self.weight), ("bias", &self.bias)]
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        vec![("weight", &mut self.weight), ("bias", &mut self.bias)]
    }

    /// (C kh kw, K kh kw).
    fn fans(&self) -> Option<(usize, usize)> {
        let g = self.geom;
        Some((g.patch_len(), g.k * g.kh * g.kw))
    }

    fn window(&self) -> Option<Window> {
        let g = self.geom;
        Some(Window::Weighted {
            kh: g.kh,
            kw: g.kw,
            stride: g.stride,
            pad_top: g.pad_top,
            pad_left: g.pad_left,
        })
    }

    /// The definition (the module doc's forward), in f64, one output plane per task.
    fn reference(&self, x: &[f64], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        Some(conv_f64(&self.geom, x, &params[0], &params[1], n))
    }

    /// Weight `[k][c][i][j]` and bias `[k]` feed filter k's plane alone.
    fn reference_channel(&self, slot: usize, e: usize) -> Option<(usize, usize)> {
        let g = self.geom;
        let k = if slot == 0 { e / g.patch_len() } else { e };
        Some((k, g.out_h * g.out_w))
    }

    fn reference_one_channel(
        &self,
        x: &[f64],
        base_z: &[f64],
        params: &[Vec<f64>],
        c: usize,
        n: usize,
    ) -> Option<Vec<f64>> {
        let (g, w, b) = (self.geom, &params[0], &params[1]);
        let (ohw, hw, len) = (g.out_h * g.out_w, g.h * g.w, g.patch_len());
        let mut z = base_z.to_vec();
        for s in 0..n {
            let out = &mut z[(s * g.k + c) * ohw..(s * g.k + c + 1) * ohw];
            out.fill(b[c]);
            for ch in 0..g.c {
                let xc = &x[(s * g.c + ch) * hw..(s * g.c + ch + 1) * hw];
                let kernel = &w[c * len + ch * g.kh * g.kw..][..g.kh * g.kw];
                conv_channel_f64(&g, xc, kernel, out);
            }
        }
        Some(z)
    }

    /// Linear in x: `z = base_z + conv(x - base_x)` without the bias, over the changed
    /// input channels only.
    fn reference_changed_inputs(
        &self,
        x: &[f64],
        base_x: &[f64],
        base_z: &[f64],
        params: &[Vec<f64>],
        channels: &[usize],
        block: usize,
        n: usize,
    ) -> Option<Vec<f64>> {
        let (g, w) = (self.geom, &params[0]);
        let delta = super::changed_inputs(x, base_x, channels, block, n);
        let (ohw, len) = (g.out_h * g.out_w, g.patch_len());
        let mut z = base_z.to_vec();
        z.par_chunks_mut(ohw).enumerate().for_each(|(plane, out)| {
            let (s, k) = (plane / g.k, plane % g.k);
            for (j, &c) in channels.iter().enumerate() {
                let kernel = &w[k * len + c * g.kh * g.kw..][..g.kh * g.kw];
                conv_channel_f64(&g, &delta[s * channels.len() + j], kernel, out);
            }
        });
        Some(z)
    }

    /// K filters of C planes of kh x kw: the weight `[K, C, kh, kw]` as it is stored.
    fn filters(&self) -> Option<Filters<'_>> {
        let g = self.geom;
        Some(Filters {
            values: self.weight.value.data(),
            channels: g.c,
            height: g.kh,
            width: g.kw,
        })
    }
}

/// y[n][k][oy][ox] = b[k] + sum_{c,i,j} w[k][c][i][j] x[n][c][oy S + i - P][ox S + j - P],
/// in f64, one output plane per task.
fn conv_f64(g: &ConvGeom, x: &[f64], w: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let (ohw, hw, len) = (g.out_h * g.out_w, g.h * g.w, g.patch_len());
    let mut y = vec![0.0; n * g.k * ohw];
    y.par_chunks_mut(ohw).enumerate().for_each(|(plane, out)| {
        let (s, k) = (plane / g.k, plane % g.k);
        out.fill(b[k]);
        for c in 0..g.c {
            let xc = &x[(s * g.c + c) * hw..(s * g.c + c + 1) * hw];
            conv_channel_f64(g, xc, &w[k * len + c * g.kh * g.kw..][..g.kh * g.kw], out);
        }
    });
    y
}

/// `out[oy][ox] += sum_{i,j} kernel[i][j] xc[oy S + i - P][ox S + j - P]`: one input
/// channel's contribution to one output plane, in f64.
fn conv_channel_f64(g: &ConvGeom, xc: &[f64], kernel: &[f64], out: &mut [f64]) {
    for i in 0..g.kh {
        for j in 0..g.kw {
            let wv = kernel[i * g.kw + j];
            // Output columns whose input column ox S + j - P lies inside the image.
            let lo = g.pad_left.saturating_sub(j).div_ceil(g.stride);
            let hi = (g.w + g.pad_left)
                .saturating_sub(j)
                .div_ceil(g.stride)
                .min(g.out_w);
            for oy in 0..g.out_h {
                let Some(iy) = (oy * g.stride + i).checked_sub(g.pad_top) else {
                    continue;
                };
                if iy >= g.h {
                    continue;
                }
                let row = &mut out[oy * g.out_w..(oy + 1) * g.out_w];
                for (ox, v) in row.iter_mut().enumerate().take(hi).skip(lo) {
                    *v += wv * xc[iy * g.w + ox * g.stride + j - g.pad_left];
                }
            }
        }
    }
}

/// Reference forward by the definition (six nested loops), for tests.
pub fn conv2d_forward_naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0.0; n * g.k * g.out_h * g.out_w];
    for s in 0..n {
        for k in 0..g.k {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let mut acc = f64::from(b[k]);
                    for c in 0..g.c {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[((s * g.c + c) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((k * g.c + c) * g.kh + i) * g.kw + j];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    y[((s * g.k + k) * g.out_h + oy) * g.out_w + ox] = acc as f32;
                }
            }
        }
    }
    y
}

/// Reference backward by the definition: returns (dx, dw, db).
pub fn conv2d_backward_naive(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0f64; n * g.c * g.h * g.w];
    let mut dw = vec![0.0f64; g.k * g.patch_len()];
    let mut db = vec![0.0f64; g.k];
    for s in 0..n {
        for k in 0..g.k {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let d = f64::from(dy[((s * g.k + k) * g.out_h + oy) * g.out_w + ox]);
                    db[k] += d;
                    for c in 0..g.c {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = ((s * g.c + c) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((k * g.c + c) * g.kh + i) * g.kw + j;
                                dw[wi] += d * f64::from(x[xi]);
                                dx[xi] += d * f64::from(w[wi]);
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dx), f(dw), f(db))
}
