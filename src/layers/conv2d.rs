//! Conv2D: a 2-D convolution over a batch, forward and backward.
//!
//! Legend: N batch, C input channels, H, W input size, K filters, kh, kw kernel,
//! S stride, P padding, H', W' output size (see [`ConvGeom`]); G groups (`groups=`,
//! default 1), which divide C and K.
//!
//! Forward (report 1, eq. 1, with stride, padding and groups): filter k reads the C/G
//! input channels of its group, `c0(k) = (k / (K/G)) (C/G)` onwards, and its weight is
//! `w[k][c][i][j]` for c < C/G (the weight is `[K, C/G, kh, kw]`, PyTorch's layout):
//!
//! ```text
//! y[n][k][oy][ox] = b[k] + sum_{c < C/G, i, j} w[k][c][i][j] * x[n][c0(k) + c][oy*S + i - P][ox*S + j - P]
//! ```
//!
//! With G = 1 every filter reads every channel (c0 = 0); with G = C (and K = m C) the
//! convolution is depthwise: filter k reads channel k / m alone. Without a bias
//! (`bias=false`) b is 0 and not a parameter.
//!
//! Backward, given dy = dL/dy:
//!
//! ```text
//! dL/db[k]          = sum_{n, oy, ox} dy[n][k][oy][ox]
//! dL/dw[k][c][i][j] = sum_{n, oy, ox} dy[n][k][oy][ox] * x[n][c0(k) + c][oy*S + i - P][ox*S + j - P]
//! dL/dx[n][c0(k) + c][y][x] = sum of dy[n][k][oy][ox] * w[k][c][i][j] over every (k, oy, ox, i, j)
//!                     with oy*S + i - P = y and ox*S + j - P = x (k over the filters of
//!                     the channel's group)
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
//!
//! Groups: each group is an ordinary convolution on contiguous slices (its C/G channels of
//! x and dx, its K/G filters of W, y and dy), so the im2col path runs group by group with
//! the group's geometry ([`Conv2D::group_geom`]); with one group that is the whole layer,
//! the same calls as without groups. Winograd is for one group only. A depthwise
//! convolution (G = C > 1) does kh kw multiply-adds per output instead of C kh kw, so it is
//! bound by memory, not arithmetic: it runs on kernels of its own ([`depthwise`]) that read
//! each plane once, in the same blocks of [`GRAD_BLOCK`] samples with the same ordered sum
//! of the blocks' gradients.

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::keys::{LineKeys, MAX_DIM, MAX_UNITS};
use super::param::Param;
use super::{chw, Counts, Filters, InputForm, LayerKind, LayerOp, SampleShape, Window};
use crate::distributed::Shard;
use crate::error::{Error, Result};
use crate::kernels::gemm::{gemm, gemm_bias_relu, sum, MatMut, MatRef};
use crate::kernels::geom::{ConvGeom, Padding, PoolGeom};
use crate::kernels::im2col::{col2im, im2col};
use crate::kernels::winograd::{self, Plan};
use crate::kernels::{conv_relu_pool, depthwise, direct};
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
    /// G, the groups the input channels and the filters are split into: filter k reads
    /// only the C/G channels of its group, `(k / (K/G)) (C/G) .. + C/G`. Must divide C and
    /// K. Default 1 (every filter reads every channel); `groups=C` is a depthwise
    /// convolution.
    pub groups: usize,
    /// Whether the layer has a bias `[K]`. Default true; `bias=false` drops it (a
    /// convolution followed by BatchNorm needs none: the mean removes it).
    pub bias: bool,
}

impl Conv2dSpec {
    /// The convolution's geometry on an input of shape (C, H, W), once its groups are
    /// checked against C and K ([`Conv2dSpec::check_groups`]).
    pub fn geom(&self, input: [usize; 3]) -> Result<ConvGeom> {
        self.check_groups(input[0])?;
        ConvGeom::new(input, self.filters, self.kernel, self.stride, self.padding)
    }

    /// That G divides both the `c` input channels and the K filters.
    pub fn check_groups(&self, c: usize) -> Result<()> {
        let (g, k) = (self.groups, self.filters);
        if g == 0 {
            return Err(Error::Invalid("Conv2D: groups must be at least 1".into()));
        }
        let which = match (c.is_multiple_of(g), k.is_multiple_of(g)) {
            (true, true) => return Ok(()),
            (false, true) => format!("{c} is not a multiple of {g}"),
            (true, false) => format!("{k} is not a multiple of {g}"),
            (false, false) => format!("neither {c} nor {k} is a multiple of {g}"),
        };
        Err(Error::Invalid(format!(
            "Conv2D: groups={g} must divide both the input channels (C = {c}) and the filters \
             (K = {k}); {which}"
        )))
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
            "groups",
            "bias",
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
            groups: keys.whole_or("groups", 1, MAX_UNITS, 1)?,
            bias: keys.bool_or("bias", true)?,
        })
    }

    /// `groups` when it does not divide the input's channels or the filters, else `kernel`.
    fn shape_error_key(spec: &Conv2dSpec, input: &[usize]) -> Option<&'static str> {
        let c = input.first().copied().unwrap_or(1);
        match spec.check_groups(c) {
            Err(_) => Some("groups"),
            Ok(()) => Self::SHAPE_KEY,
        }
    }

    fn name(_spec: &Conv2dSpec) -> &'static str {
        "Conv2D"
    }

    fn output_shape(spec: &Conv2dSpec, input: &[usize]) -> Result<SampleShape> {
        let g = spec.geom(chw("Conv2D", input)?)?;
        Ok(vec![g.k, g.out_h, g.out_w])
    }

    /// params = K (C/G) kh kw + K (no K without a bias); FLOPs = 2 K H' W' (C/G) kh kw.
    fn counts(spec: &Conv2dSpec, input: &[usize], output: &[usize]) -> Counts {
        let c = input.first().copied().unwrap_or(0) as u128 / spec.groups.max(1) as u128;
        let patch = c * spec.kernel.0 as u128 * spec.kernel.1 as u128;
        let k = spec.filters as u128;
        let out: u128 = output.iter().map(|&d| d as u128).product();
        Counts {
            params: k * patch + if spec.bias { k } else { 0 },
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
        if s.groups != 1 {
            d += &format!(" groups {}", s.groups);
        }
        if !s.bias {
            d += " no bias";
        }
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
        if s.groups == 1 {
            let params = g.kh * g.kw * g.c * g.k + if s.bias { g.k } else { 0 };
            let flops = 2 * (g.k * g.out_h * g.out_w * g.c * g.kh * g.kw) as u128;
            let biases = if s.bias {
                format!(
                    "{} = {}  (kh*kw*C*K weights + K biases)",
                    g.k,
                    thousands(params as u128)
                )
            } else {
                format!(
                    "0 = {}  (kh*kw*C*K weights, no bias)",
                    thousands(params as u128)
                )
            };
            return Ok(vec![
                hw,
                format!("params = {}*{}*{}*{} + {biases}", g.kh, g.kw, g.c, g.k),
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
            ]);
        }
        let (gs, cg, kg) = (s.groups, g.c / s.groups, g.k / s.groups);
        let params = g.kh * g.kw * cg * g.k + if s.bias { g.k } else { 0 };
        let flops = 2 * (g.k * g.out_h * g.out_w * cg * g.kh * g.kw) as u128;
        let grouping = if gs == g.c && kg == 1 {
            format!("groups = C = {gs}: depthwise, filter k reads input channel k alone")
        } else if gs == g.c {
            format!(
                "groups = C = {gs}: depthwise, filter k reads input channel k/{kg} alone \
                 ({kg} filters per channel)"
            )
        } else {
            format!(
                "groups = {gs}: filter k reads the C/G = {cg} input channels \
                 (k/{kg})*{cg} .. +{cg} of its group ({kg} filters per group)"
            )
        };
        let biases = if s.bias {
            format!(
                "{} = {}  (kh*kw*(C/G)*K weights + K biases)",
                g.k,
                thousands(params as u128)
            )
        } else {
            format!(
                "0 = {}  (kh*kw*(C/G)*K weights, no bias)",
                thousands(params as u128)
            )
        };
        Ok(vec![
            hw,
            grouping,
            format!("params = {}*{}*{}*{} + {biases}", g.kh, g.kw, cg, g.k),
            format!(
                "FLOPs = 2*{}*{}*{}*{}*{}*{} = {}  (2*K*H'*W'*(C/G)*kh*kw)",
                g.k,
                g.out_h,
                g.out_w,
                cg,
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

    /// `Conv` with the weight `[K, C/G, kh, kw]`, the bias `[K]` (no third input without
    /// one) and `group` G, its pads (top, left, bottom, right) those the output size
    /// implies: report 1's P on both sides when explicit, the larger half of `same`'s total
    /// after.
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
        let (weight, bias) = (at.tensor("weight"), at.tensor("bias"));
        let inputs: &[&str] = if s.bias {
            &[input, &weight, &bias]
        } else {
            &[input, &weight]
        };
        Ok(g.node(
            "Conv",
            at.name,
            inputs,
            vec![
                ints("kernel_shape", &[geom.kh, geom.kw]),
                ints("strides", &[s.stride, s.stride]),
                ints("pads", &pads),
                ints("dilations", &[1, 1]),
                int("group", s.groups as i64),
            ],
        ))
    }

    const ONNX_OPS: &'static [&'static str] = &["Conv"];

    /// `Conv` with a constant weight `[K, C/G, kh, kw]` and `group` G (1 by default), a
    /// bias or none (then `bias=false`), undilated, equal strides, and pads equal on every
    /// side or those of `same` padding.
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
            return Err(format!(
                "weight shape {wshape:?}, expected [K, C/G, kh, kw]"
            ));
        };
        let groups = attrs.int("group", 1);
        let groups = match usize::try_from(groups) {
            Ok(g) if (1..=MAX_UNITS).contains(&g) => g,
            _ => return Err(format!("group {groups} is not from 1 to {MAX_UNITS}")),
        };
        if wc * groups != c {
            return Err(format!(
                "its weight {wshape:?} with group {groups} takes {} channels, the value it reads \
                 has {c} (shapes do not chain)",
                wc * groups
            ));
        }
        if k % groups != 0 {
            return Err(format!(
                "group {groups} does not divide its {k} filters (weight {wshape:?})"
            ));
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
            Some(b) => Some(cx.vector(b, k)?),
            None => None,
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
            groups,
            bias: bias.is_some(),
        };
        let g = spec.geom([c, h, w]).map_err(|e| e.to_string())?;
        cx.shape = vec![k, g.out_h, g.out_w];
        let mut line =
            format!("Conv2D filters={k} kernel={kh}x{kw} stride={stride} padding={padding_text}");
        if groups != 1 {
            line += &format!(" groups={groups}");
        }
        let mut tensors = vec![("weight", wshape, weight)];
        match bias {
            Some(b) => tensors.push(("bias", vec![k], b)),
            None => line += " bias=false",
        }
        cx.push(Step::new(
            line,
            StepKind::Fusable {
                fused: false,
                flat_input: false,
            },
            tensors,
        ));
        Ok(())
    }

    fn build(spec: &Conv2dSpec, input: &[usize]) -> Result<Conv2D> {
        let geom = spec.geom(chw("Conv2D", input)?)?;
        let mut layer = Conv2D::grouped(geom, spec.groups, spec.bias);
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

/// A convolution layer with weight `[K, C/G, kh, kw]` and bias `[K]` (PyTorch's layout).
///
/// # Shapes
/// input `[N, C, H, W]`, output `[N, K, H', W']`.
#[derive(Debug, Clone)]
pub struct Conv2D {
    pub geom: ConvGeom,
    pub weight: Param,
    /// The bias `[K]`; without one (`bias=false`) it stays zero and is no parameter: not
    /// in [`LayerOp::params`], so not in model files, not trained.
    pub bias: Param,
    /// The activation fused into the layer (applied by [`LayerOp::forward`]).
    pub act: Activation,
    /// G: filter k reads input channels `(k / (K/G)) (C/G) .. + C/G` (see the module doc).
    groups: usize,
    /// Whether [`Conv2D::bias`] is a parameter.
    has_bias: bool,
    /// Whether a depthwise convolution (G = C > 1) runs on [`depthwise`]'s kernels
    /// rather than G im2col products of one channel each ([`Conv2D::set_depthwise`]).
    depthwise: bool,
    /// Partial weight and bias gradients, `K (C/G) kh kw + K` per block of samples (with
    /// Winograd, `16 K C + K`: the weights' gradient in the Winograd domain).
    partial: Vec<f32>,
    /// Winograd F(2x2, 3x3) instead of im2col (see [`winograd`]): chosen by
    /// [`winograd::Plan::new`] for 3x3 convolutions with stride 1 and enough input
    /// channels, unless the environment sets `CNN_NO_WINOGRAD` ([`Conv2D::set_winograd`]
    /// changes it).
    winograd: Option<Plan>,
    /// The weights in the Winograd domain, `U[16][K][C]`, made from the weights in
    /// `wino_from`, and made again by a pass that finds the weights changed.
    wino_u: Vec<f32>,
    /// This process's part of the batch ([`super::Pass::shard`]): with a batch split over
    /// processes, the blocks' partial gradients are gathered from all before they are added.
    shard: Shard,
    /// The weights `wino_u` was made from (empty before the first pass).
    wino_from: Vec<f32>,
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
    /// The split padded plane of the kernel that pools as it goes.
    relu_pool: conv_relu_pool::Scratch,
    /// The depthwise kernels' padded planes.
    depthwise: depthwise::Scratch,
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
    /// A layer with zero weights (the model initialises them), one group and a bias.
    pub fn new(geom: ConvGeom) -> Conv2D {
        Conv2D::grouped(geom, 1, true)
    }

    /// A layer of `groups` groups, with a bias or none, and zero weights.
    ///
    /// # Panics
    /// If `groups` does not divide the geometry's C and K (the spec checks it first).
    pub fn grouped(geom: ConvGeom, groups: usize, bias: bool) -> Conv2D {
        assert!(
            groups >= 1 && geom.c.is_multiple_of(groups) && geom.k.is_multiple_of(groups),
            "Conv2D: groups {groups} must divide C = {} and K = {}",
            geom.c,
            geom.k
        );
        Conv2D {
            geom,
            weight: Param::zeros(&[geom.k, geom.c / groups, geom.kh, geom.kw]),
            bias: Param::zeros(&[geom.k]),
            act: Activation::None,
            groups,
            has_bias: bias,
            depthwise: true,
            partial: Vec::new(),
            shard: Shard::default(),
            winograd: Plan::new(&geom)
                .filter(|_| groups == 1)
                .filter(|_| winograd_wanted()),
            wino_u: Vec::new(),
            wino_from: Vec::new(),
        }
    }

    /// G, the number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Whether the layer has a bias parameter.
    pub fn has_bias(&self) -> bool {
        self.has_bias
    }

    /// The geometry of one group: C/G input channels and K/G filters (the whole layer's
    /// with one group).
    pub fn group_geom(&self) -> ConvGeom {
        ConvGeom {
            c: self.geom.c / self.groups,
            k: self.geom.k / self.groups,
            ..self.geom
        }
    }

    /// Whether the layer runs on the depthwise kernels ([`depthwise`]): G = C > 1 (each
    /// filter reads one channel), unless [`Conv2D::set_depthwise`] turned them off.
    pub fn uses_depthwise(&self) -> bool {
        self.depthwise && self.groups == self.geom.c && self.groups > 1
    }

    /// Turns the depthwise kernels on (where G = C > 1) or off (the G one-channel im2col
    /// products instead); returns whether they run. For tests and measurements of one
    /// path against the other.
    pub fn set_depthwise(&mut self, on: bool) -> bool {
        self.depthwise = on;
        self.uses_depthwise()
    }

    /// Whether the layer runs as Winograd F(2x2, 3x3) rather than im2col or the direct
    /// kernel.
    pub fn uses_winograd(&self) -> bool {
        self.winograd.is_some()
    }

    /// Turns Winograd on, where the layer's shape allows it (3x3, stride 1, enough input
    /// channels, one group) whatever `CNN_NO_WINOGRAD` says, or off; returns whether it is
    /// on. For tests and measurements of one path against the other. A model decides its
    /// fused steps from its layers when it is built, so change a layer's path before that.
    pub fn set_winograd(&mut self, on: bool) -> bool {
        self.winograd = Plan::new(&self.geom).filter(|_| on && self.groups == 1);
        self.uses_winograd()
    }

    /// y = act(conv(x) + b) for a batch of `n` samples, with `act` in place of the
    /// layer's own activation (what [`LayerOp::forward`] applies).
    pub fn forward_act(&mut self, x: &[f32], y: &mut [f32], n: usize, act: Activation) {
        let mut nothing: Vec<Nothing> = (0..n.div_ceil(GRAD_BLOCK)).map(|_| Nothing).collect();
        self.forward_blocks(x, Some(y), n, act, &mut nothing);
    }

    /// [`LayerOp::forward`], with `after[b].run` called on the output of each block `b` of
    /// [`GRAD_BLOCK`] samples right after it is computed, by the thread that computed it,
    /// while it is in that thread's cache (`crate::model::fused` pools it there). With no
    /// `y` the output is not kept: each block goes to a buffer of the thread's, reused from
    /// block to block, for inference that needs only what `after` makes of it.
    ///
    /// # Panics
    /// If `after` does not hold one entry per block, `n.div_ceil(GRAD_BLOCK)`.
    pub(crate) fn forward_blocks_then(
        &mut self,
        x: &[f32],
        y: Option<&mut [f32]>,
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
        mut y: Option<&mut [f32]>,
        n: usize,
        act: Activation,
        after: &mut [A],
    ) {
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        // One group's geometry, input and output lengths per sample, and weights.
        let sub = self.group_geom();
        let (rows, ohw) = (sub.patch_len(), g.out_h * g.out_w);
        let (sub_in, sub_out) = (sub.c * g.h * g.w, sub.k * ohw);
        if let Some(plan) = self.winograd {
            return self.forward_winograd(&plan, x, y, n, act, after);
        }
        if self.uses_depthwise() {
            return self.forward_depthwise(x, y, n, act, after);
        }
        // One-channel 3x3 convolutions (every example's first layer) skip im2col: the
        // direct kernel gives the same bits (see `kernels::direct`).
        let direct = direct::applies(&g);
        // (One sample of a larger batch split over processes takes the batch's path.)
        let one_image =
            n == 1 && self.shard.total(n) == 1 && self.one_image_split_for(act).is_some();
        if let Some(y) = y.as_deref_mut().filter(|_| one_image) {
            self.forward_one_direct(&x[..in_len], &mut y[..out_len], act);
            if let Some(a) = after.first_mut() {
                a.run(&y[..out_len]);
            }
            return;
        }
        let w = self.weight.value.data();
        let b = self.bias.value.data();
        let (x, sizes) = (&x[..n * in_len], (in_len, out_len));
        for_each_block(x, y, sizes, after, |x_b, y_b| {
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
                    // Group by group (one group: the whole sample), y_n = act(W cols + b):
                    // bias and ReLU fused into the product's stores; any other activation
                    // is a pass of its own.
                    for (((x_g, y_g), w_g), b_g) in x_n
                        .chunks(sub_in)
                        .zip(y_n.chunks_mut(sub_out))
                        .zip(w.chunks(sub.k * rows))
                        .zip(b.chunks(sub.k))
                    {
                        im2col(x_g, &sub, cols);
                        let (w_g, cols) =
                            (MatRef::new(w_g, sub.k, rows), MatRef::new(cols, rows, ohw));
                        gemm_bias_relu(w_g, cols, b_g, relu, MatMut::new(y_g, sub.k, ohw));
                    }
                    if !relu {
                        activation::forward(act, y_n, out_len);
                    }
                }
            })
        });
    }

    /// Whether [`Conv2D::forward_pooled`] runs this layer and the max pooling `p` after it
    /// in one kernel ([`conv_relu_pool`]): a one-channel 3x3 "same" convolution with ReLU,
    /// pooled 2x2 at stride 2.
    pub(crate) fn pools_in_kernel(&self, p: &PoolGeom) -> bool {
        let relu = self.act == Activation::Relu;
        self.winograd.is_none() && self.groups == 1 && conv_relu_pool::applies(&self.geom, p, relu)
    }

    /// Inference through this layer and the max pooling `p` after it, where
    /// [`Conv2D::pools_in_kernel`] holds: `y` = the pooling's output `[N, K, H/2, W/2]` of
    /// the `n` samples of `x`, by one kernel per sample that never stores the convolution's
    /// output, in parallel over blocks of [`GRAD_BLOCK`] samples. The same bits as the two
    /// layers' passes.
    pub(crate) fn forward_pooled(&self, x: &[f32], n: usize, p: &PoolGeom, y: &mut [f32]) {
        let g = self.geom;
        let (in_len, out_len) = (g.h * g.w, g.k * p.out_h * p.out_w);
        let (w, b) = (self.weight.value.data(), self.bias.value.data());
        let mut nothing: Vec<Nothing> = (0..n.div_ceil(GRAD_BLOCK)).map(|_| Nothing).collect();
        let (x, sizes) = (&x[..n * in_len], (in_len, out_len));
        for_each_block(x, Some(y), sizes, &mut nothing, |x_b, y_b| {
            SCRATCH.with_borrow_mut(|sc| {
                for (y_n, x_n) in y_b.chunks_mut(out_len).zip(x_b.chunks(in_len)) {
                    let sc = &mut sc.relu_pool;
                    conv_relu_pool::conv3x3_relu_pool2(&g, p, x_n, w, b, sc, y_n);
                }
            })
        });
    }

    /// Filters `ks` of one image `x` through this layer and the max pooling `p` after it
    /// ([`Conv2D::pools_in_kernel`] must hold): `y` holds their pooled planes, `[ks.len(),
    /// H/2, W/2]`, by the kernel that never stores the convolution's output.
    pub(crate) fn forward_pooled_filters(
        &self,
        x: &[f32],
        ks: std::ops::Range<usize>,
        p: &PoolGeom,
        y: &mut [f32],
    ) {
        if ks.is_empty() {
            return;
        }
        let w = &self.weight.value.data()[ks.start * 9..ks.end * 9];
        let b = &self.bias.value.data()[ks.clone()];
        let g = ConvGeom {
            k: ks.len(),
            ..self.geom
        };
        let p = PoolGeom { c: ks.len(), ..*p };
        SCRATCH.with_borrow_mut(|sc| {
            conv_relu_pool::conv3x3_relu_pool2(&g, &p, x, w, b, &mut sc.relu_pool, y);
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
        self.backward_dy(x, Some(y), dy, dx, n, act);
    }

    /// [`LayerOp::backward`] with dL/dy given block by block: `dy[b]` makes the dL/dy of
    /// block `b` of [`GRAD_BLOCK`] samples when the thread that computes the block asks for
    /// it, so that it is in that thread's cache (`crate::model::fused` makes it there from
    /// the max pooling's gradient). With the output `y` of the last forward pass, the
    /// activation is undone here; with none, `dy` gives dL/d(conv output), the activation
    /// already undone.
    ///
    /// # Panics
    /// If `dy` does not hold one entry per block, `n.div_ceil(GRAD_BLOCK)`.
    pub(crate) fn backward_blocks_from(
        &mut self,
        x: &[f32],
        y: Option<&[f32]>,
        dy: Vec<impl DyBlock>,
        dx: Option<&mut [f32]>,
        n: usize,
    ) {
        assert_eq!(dy.len(), n.div_ceil(GRAD_BLOCK), "one entry per block");
        let act = if y.is_some() {
            self.act
        } else {
            Activation::None
        };
        self.backward_dy(x, y, dy, dx, n, act);
    }

    /// [`Conv2D::backward_act`] with dL/dy block by block from `dy`: by Winograd where the
    /// layer uses it, else here (the direct one-pass kernel or im2col). `y` may be left out
    /// when `act` is [`Activation::None`], which does not read it.
    fn backward_dy<D: DyBlock>(
        &mut self,
        x: &[f32],
        y: Option<&[f32]>,
        dy: Vec<D>,
        dx: Option<&mut [f32]>,
        n: usize,
        act: Activation,
    ) {
        assert!(
            y.is_some() || act == Activation::None,
            "Conv2D backward: {act:?} is undone from the output, and none was given"
        );
        if let Some(plan) = self.winograd {
            return self.backward_winograd(&plan, x, y, dy, dx, n, act);
        }
        if self.uses_depthwise() {
            return self.backward_depthwise(x, y, dy, dx, n, act);
        }
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        let sub = self.group_geom();
        let (rows, ohw) = (sub.patch_len(), g.out_h * g.out_w);
        let (sub_in, sub_out) = (sub.c * g.h * g.w, sub.k * ohw);
        let wlen = g.k * rows;
        let w = self.weight.value.data();
        let grouped = self.groups > 1;

        // Per block of GRAD_BLOCK samples, in parallel: undo the activation, then for each
        // group (one group: the whole sample), with W, dy, cols and dx its own rows and
        // channels, dL/dW_blk = sum_n dy_n[K, H'W'] * cols_n^T and
        // dL/db_blk[k] = sum_n sum_pixels dy_n[k], and dL/dx_n = col2im(W^T[C kh kw, K] * dy_n),
        // in the thread's cols buffer.
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
                let one_pass = !grouped && b.dx.is_none() && direct::weight_grad9_applies(&g);
                if !one_pass {
                    sc.cols.resize(rows * ohw, 0.0);
                }
                let (cols, direct_sc) = (&mut sc.cols[..], &mut sc.direct);
                let mut beta = 0.0;
                for (s, dy_s) in b.dy.chunks_mut(out_len).enumerate() {
                    let y_s = sample_of(b.y, s, out_len);
                    if one_pass {
                        let relu = act == Activation::Relu;
                        if !relu {
                            activation::backward(act, y_s, dy_s, dy_s.len());
                        }
                        let x_s = &b.x[s * in_len..(s + 1) * in_len];
                        let (dw, mask) = (&mut *b.dw, relu.then_some(y_s));
                        direct::weight_grad9(&g, x_s, dy_s, mask, s > 0, direct_sc, dw, b.db);
                        continue;
                    }
                    undo_activation(act, y_s, dy_s, ohw, b.db);
                    let x_s = &b.x[s * in_len..(s + 1) * in_len];
                    let mut dx_s = b.dx.as_deref_mut().map(|d| &mut d[s * in_len..][..in_len]);
                    for (gi, ((x_g, dy_g), w_g)) in x_s
                        .chunks(sub_in)
                        .zip(dy_s.chunks(sub_out))
                        .zip(w.chunks(sub.k * rows))
                        .enumerate()
                    {
                        im2col(x_g, &sub, cols);
                        let (dy_m, cols_t) = (
                            MatRef::new(dy_g, sub.k, ohw),
                            MatRef::new(cols, rows, ohw).t(),
                        );
                        let dw_g = &mut b.dw[gi * sub.k * rows..][..sub.k * rows];
                        gemm(dy_m, cols_t, beta, MatMut::new(dw_g, sub.k, rows));
                        if let Some(dx_s) = dx_s.as_deref_mut() {
                            // cols is free again: it holds dcols = W^T dy_g.
                            let (w_t, dy_m) = (
                                MatRef::new(w_g, sub.k, rows).t(),
                                MatRef::new(dy_g, sub.k, ohw),
                            );
                            gemm(w_t, dy_m, 0.0, MatMut::new(cols, rows, ohw));
                            col2im(cols, &sub, &mut dx_s[gi * sub_in..][..sub_in]);
                        }
                    }
                    beta = 1.0;
                }
            },
        );
        self.weight.grad.data_mut().copy_from_slice(&total[..wlen]);
        self.bias.grad.data_mut().copy_from_slice(&total[wlen..]);
    }
}

impl Conv2D {
    /// [`Conv2D::forward_act`] on the depthwise kernels (G = C): in parallel over blocks of
    /// [`GRAD_BLOCK`] samples, each block then handed to `after`.
    fn forward_depthwise<A: AfterBlock>(
        &mut self,
        x: &[f32],
        y: Option<&mut [f32]>,
        n: usize,
        act: Activation,
        after: &mut [A],
    ) {
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        let (w, b) = (self.weight.value.data(), self.bias.value.data());
        let relu = act == Activation::Relu;
        let (x, sizes) = (&x[..n * in_len], (in_len, out_len));
        for_each_block(x, y, sizes, after, |x_b, y_b| {
            SCRATCH.with_borrow_mut(|sc| {
                for (y_n, x_n) in y_b.chunks_mut(out_len).zip(x_b.chunks(in_len)) {
                    depthwise::forward(&g, x_n, w, b, relu, &mut sc.depthwise, y_n);
                    if !relu {
                        activation::forward(act, y_n, out_len);
                    }
                }
            })
        });
    }

    /// [`Conv2D::backward_act`] on the depthwise kernels (G = C): per block of
    /// [`GRAD_BLOCK`] samples, in parallel, the activation undone, then the block's weight
    /// and bias gradients and dx; the blocks' gradients summed in order.
    fn backward_depthwise<D: DyBlock>(
        &mut self,
        x: &[f32],
        y: Option<&[f32]>,
        dy: Vec<D>,
        dx: Option<&mut [f32]>,
        n: usize,
        act: Activation,
    ) {
        let g = self.geom;
        let out_len = g.k * g.out_h * g.out_w;
        let wlen = g.k * g.kh * g.kw;
        let w = self.weight.value.data();
        let total = grad_blocks(
            &mut self.partial,
            self.shard,
            &g,
            wlen,
            (x, y, dy, dx),
            n,
            |sc, mut b| {
                if act != Activation::None {
                    for (s, dy_s) in b.dy.chunks_mut(out_len).enumerate() {
                        activation::backward(act, sample_of(b.y, s, out_len), dy_s, dy_s.len());
                    }
                }
                let m = b.dy.len() / out_len;
                let dx = b.dx.as_deref_mut();
                depthwise::backward(&g, b.x, b.dy, w, m, &mut sc.depthwise, b.dw, b.db, dx);
            },
        );
        self.weight.grad.data_mut().copy_from_slice(&total[..wlen]);
        self.bias.grad.data_mut().copy_from_slice(&total[wlen..]);
    }

    /// The weights in the Winograd domain for this pass: those of the last pass if the
    /// weights are the same bits, else transformed again. Inference calls the layer again
    /// and again with the same weights, and the transform, one scattered store per value,
    /// took about half of LeNet's second convolution at batch 1. The weights are compared,
    /// not tracked, since they are a public field anyone may write; a training step
    /// changes them, so its forward pass transforms them and its backward pass reuses
    /// that. Either way U holds the transform of the current weights, the same bits.
    fn winograd_ready(&mut self, plan: &Plan) {
        let w = self.weight.value.data();
        if self.wino_u.len() == plan.u_len() && same_bits(&self.wino_from, w) {
            return;
        }
        self.wino_u.resize(plan.u_len(), 0.0);
        winograd::transform_weights(plan, w, &mut self.wino_u);
        self.wino_from.clear();
        self.wino_from.extend_from_slice(w);
    }

    /// [`Conv2D::forward_act`] by Winograd: in parallel over blocks of [`GRAD_BLOCK`] samples.
    fn forward_winograd<A: AfterBlock>(
        &mut self,
        plan: &Plan,
        x: &[f32],
        y: Option<&mut [f32]>,
        n: usize,
        act: Activation,
        after: &mut [A],
    ) {
        let g = self.geom;
        let (in_len, out_len) = (g.c * g.h * g.w, g.k * g.out_h * g.out_w);
        self.winograd_ready(plan);
        let (u, b) = (&self.wino_u, self.bias.value.data());
        let relu = act == Activation::Relu;
        let (x, sizes) = (&x[..n * in_len], (in_len, out_len));
        for_each_block(x, y, sizes, after, |x_b, y_b| {
            SCRATCH
                .with_borrow_mut(|sc| winograd::forward(plan, u, b, relu, x_b, &mut sc.wino, y_b));
            if !relu {
                for y_n in y_b.chunks_mut(out_len) {
                    activation::forward(act, y_n, out_len);
                }
            }
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
        y: Option<&[f32]>,
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
            for (s, dy_s) in b.dy.chunks_mut(out_len).enumerate() {
                undo_activation(act, sample_of(b.y, s, out_len), dy_s, ohw, b.db);
            }
            winograd::backward(plan, u, b.x, b.dy, &mut sc.wino, b.dw, b.dx);
        });
        winograd::weight_grad(plan, &total[..ulen], self.weight.grad.data_mut());
        self.bias.grad.data_mut().copy_from_slice(&total[ulen..]);
    }
}

/// Whether `a` and `b` hold the same bits (a NaN equals the same NaN, 0 differs from -0).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.chunks(64).zip(b.chunks(64)).all(|(x, y)| {
            x.iter()
                .zip(y)
                .fold(0, |d, (p, q)| d | (p.to_bits() ^ q.to_bits()))
                == 0
        })
}

thread_local! {
    /// Each thread's buffer for the output of a block that is not kept
    /// ([`Conv2D::forward_blocks_then`] with no `y`), reused from block to block so that it
    /// stays in the thread's cache.
    static BLOCK_OUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `compute(x_b, y_b)` on each block of [`GRAD_BLOCK`] samples of `x`, in parallel,
/// then `after[b].run(y_b)` on the same thread. `y_b` is the block's part of `y` when `y`
/// is given, else the thread's [`BLOCK_OUT`]. `sizes`: the floats of one sample's input
/// and output.
fn for_each_block<A: AfterBlock>(
    x: &[f32],
    y: Option<&mut [f32]>,
    (in_len, out_len): (usize, usize),
    after: &mut [A],
    compute: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    let n = x.len() / in_len;
    let x_blocks = x.par_chunks(GRAD_BLOCK * in_len);
    match y {
        Some(y) => y[..n * out_len]
            .par_chunks_mut(GRAD_BLOCK * out_len)
            .zip(x_blocks)
            .zip(after.par_iter_mut())
            .for_each(|((y_b, x_b), after_b)| {
                compute(x_b, y_b);
                after_b.run(y_b);
            }),
        None => x_blocks
            .zip(after.par_iter_mut())
            .for_each(|(x_b, after_b)| {
                BLOCK_OUT.with_borrow_mut(|buf| {
                    let len = x_b.len() / in_len * out_len;
                    buf.resize(len, 0.0);
                    compute(x_b, &mut buf[..len]);
                    after_b.run(&buf[..len]);
                })
            }),
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
    /// output y (if given: see [`sample_of`]) and input x.
    dy: &'a mut [f32],
    y: Option<&'a [f32]>,
    x: &'a [f32],
    /// The block's slice of dL/dx, if asked for.
    dx: Option<&'a mut [f32]>,
    /// The block's partial weight gradient (written by the caller; its layout is the
    /// caller's) and bias gradient (zeroed, to be added to).
    dw: &'a mut [f32],
    db: &'a mut [f32],
}

/// The input, output (if given), dL/d(output) by block and dL/dx (if asked for) of a
/// backward pass.
type GradIo<'a, D> = (&'a [f32], Option<&'a [f32]>, Vec<D>, Option<&'a mut [f32]>);

/// Sample `s`'s `len` values of a block's output `y`, or none where no output was given (a
/// backward pass whose activation is already undone reads none).
fn sample_of(y: Option<&[f32]>, s: usize, len: usize) -> &[f32] {
    y.map_or(&[], |y| &y[s * len..(s + 1) * len])
}

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
    let y_blocks: Vec<Option<&[f32]>> = match y {
        Some(y) => y[..n * out_len]
            .chunks(GRAD_BLOCK * out_len)
            .map(Some)
            .collect(),
        None => vec![None; blocks],
    };
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
        .zip(y_blocks.par_iter())
        .zip(x[..n * in_len].par_chunks(GRAD_BLOCK * in_len))
        .zip(dx_blocks.par_iter_mut())
        .for_each(|((((part, dy), &y), x), dx)| {
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
            dy.with(x.len() / in_len * out_len, run);
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

    /// The weight and, if the layer has one, the bias.
    fn params(&self) -> Vec<(&'static str, &Param)> {
        let mut p = vec![("weight", &self.weight)];
        if self.has_bias {
            p.push(("bias", &self.bias));
        }
        p
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        let mut p = vec![("weight", &mut self.weight)];
        if self.has_bias {
            p.push(("bias", &mut self.bias));
        }
        p
    }

    /// ((C/G) kh kw, K kh kw), as PyTorch counts them for a grouped convolution.
    fn fans(&self) -> Option<(usize, usize)> {
        let g = self.geom;
        Some((self.group_geom().patch_len(), g.k * g.kh * g.kw))
    }

    /// The page of `cnn serve` recomputes a cell over every input channel, plus a bias:
    /// none for a grouped convolution or one without a bias.
    fn window(&self) -> Option<Window> {
        let g = self.geom;
        if self.groups != 1 || !self.has_bias {
            return None;
        }
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
        let b = self.bias_f64(params);
        Some(conv_f64(&self.geom, self.groups, x, &params[0], &b, n))
    }

    /// Weight `[k][c][i][j]` and bias `[k]` feed filter k's plane alone.
    fn reference_channel(&self, slot: usize, e: usize) -> Option<(usize, usize)> {
        let g = self.geom;
        let k = if slot == 0 {
            e / self.group_geom().patch_len()
        } else {
            e
        };
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
        let (g, w, b) = (self.geom, &params[0], self.bias_f64(params));
        let (ohw, hw) = (g.out_h * g.out_w, g.h * g.w);
        let sub = self.group_geom();
        let len = sub.patch_len();
        let first = (c / sub.k) * sub.c;
        let mut z = base_z.to_vec();
        for s in 0..n {
            let out = &mut z[(s * g.k + c) * ohw..(s * g.k + c + 1) * ohw];
            out.fill(b[c]);
            for cl in 0..sub.c {
                let ch = first + cl;
                let xc = &x[(s * g.c + ch) * hw..(s * g.c + ch + 1) * hw];
                let kernel = &w[c * len + cl * g.kh * g.kw..][..g.kh * g.kw];
                conv_channel_f64(&g, xc, kernel, out);
            }
        }
        Some(z)
    }

    /// Linear in x: `z = base_z + conv(x - base_x)` without the bias, over the changed
    /// input channels only (each feeding the filters of its group).
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
        let sub = self.group_geom();
        let delta = super::changed_inputs(x, base_x, channels, block, n);
        let (ohw, len) = (g.out_h * g.out_w, sub.patch_len());
        let mut z = base_z.to_vec();
        z.par_chunks_mut(ohw).enumerate().for_each(|(plane, out)| {
            let (s, k) = (plane / g.k, plane % g.k);
            for (j, &c) in channels.iter().enumerate() {
                if c / sub.c != k / sub.k {
                    continue;
                }
                let kernel = &w[k * len + (c % sub.c) * g.kh * g.kw..][..g.kh * g.kw];
                conv_channel_f64(&g, &delta[s * channels.len() + j], kernel, out);
            }
        });
        Some(z)
    }

    /// K filters of C/G planes of kh x kw: the weight `[K, C/G, kh, kw]` as it is stored.
    fn filters(&self) -> Option<Filters<'_>> {
        let g = self.geom;
        Some(Filters {
            values: self.weight.value.data(),
            channels: g.c / self.groups,
            height: g.kh,
            width: g.kw,
        })
    }
}

impl Conv2D {
    /// The bias of the f64 reference: the parameter's copy, or zeros without one.
    fn bias_f64(&self, params: &[Vec<f64>]) -> Vec<f64> {
        match params.get(1) {
            Some(b) if self.has_bias => b.clone(),
            _ => vec![0.0; self.geom.k],
        }
    }
}

/// y[n][k][oy][ox] = b[k] + sum_{c,i,j} w[k][c][i][j] x[n][g0 + c][oy S + i - P][ox S + j - P]
/// with g0 = (k / (K/G)) (C/G) and c over the C/G channels of the group, in f64, one
/// output plane per task.
fn conv_f64(g: &ConvGeom, groups: usize, x: &[f64], w: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let (cg, kg) = (g.c / groups, g.k / groups);
    let (ohw, hw, len) = (g.out_h * g.out_w, g.h * g.w, cg * g.kh * g.kw);
    let mut y = vec![0.0; n * g.k * ohw];
    y.par_chunks_mut(ohw).enumerate().for_each(|(plane, out)| {
        let (s, k) = (plane / g.k, plane % g.k);
        out.fill(b[k]);
        let first = (k / kg) * cg;
        for c in 0..cg {
            let xc = &x[(s * g.c + first + c) * hw..][..hw];
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
    grouped_conv2d_forward_naive(g, 1, x, w, b, n)
}

/// [`conv2d_forward_naive`] with `groups` groups: filter k reads the C/G input channels
/// `(k / (K/G)) (C/G) ..`, the weight is `[K, C/G, kh, kw]`.
pub fn grouped_conv2d_forward_naive(
    g: &ConvGeom,
    groups: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
) -> Vec<f32> {
    let (cg, kg) = (g.c / groups, g.k / groups);
    let mut y = vec![0.0; n * g.k * g.out_h * g.out_w];
    for s in 0..n {
        for k in 0..g.k {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let mut acc = f64::from(b[k]);
                    for c in 0..cg {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xc = (k / kg) * cg + c;
                                let xv =
                                    x[((s * g.c + xc) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((k * cg + c) * g.kh + i) * g.kw + j];
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
    grouped_conv2d_backward_naive(g, 1, x, w, dy, n)
}

/// [`conv2d_backward_naive`] with `groups` groups (see [`grouped_conv2d_forward_naive`]).
pub fn grouped_conv2d_backward_naive(
    g: &ConvGeom,
    groups: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (cg, kg) = (g.c / groups, g.k / groups);
    let mut dx = vec![0.0f64; n * g.c * g.h * g.w];
    let mut dw = vec![0.0f64; g.k * cg * g.kh * g.kw];
    let mut db = vec![0.0f64; g.k];
    for s in 0..n {
        for k in 0..g.k {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let d = f64::from(dy[((s * g.k + k) * g.out_h + oy) * g.out_w + ox]);
                    db[k] += d;
                    for c in 0..cg {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (oy * g.stride + i) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xc = (k / kg) * cg + c;
                                let xi = ((s * g.c + xc) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((k * cg + c) * g.kh + i) * g.kw + j;
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
