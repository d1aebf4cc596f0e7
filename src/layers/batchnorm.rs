//! Batch normalisation: PyTorch's `nn.BatchNorm2d` (after a convolution) and `nn.BatchNorm1d`
//! (after a Dense layer).
//!
//! Legend: N batch, C channels (BatchNorm1D: features), S values per channel and sample
//! (H W for BatchNorm2D, 1 for BatchNorm1D), M = N S the values each channel's statistics
//! are taken over, gamma (`weight`) and beta (`bias`) the learned scale and shift, eps the
//! small constant that keeps the division finite, m the momentum.
//!
//! In a training step each channel c is normalised with the statistics of the batch, and
//! the running statistics move towards them:
//!
//! ```text
//! mu_c     = (1/M) sum x                       over the N S values of channel c
//! var_c    = (1/M) sum (x - mu_c)^2            biased: this one normalises
//! xhat     = (x - mu_c) / sqrt(var_c + eps)
//! y        = gamma_c xhat + beta_c
//! running_mean_c = (1 - m) running_mean_c + m mu_c
//! running_var_c  = (1 - m) running_var_c  + m var_c M / (M - 1)     unbiased, as PyTorch
//! num_batches_tracked += 1
//! ```
//!
//! In evaluation (inference, `cnn evaluate`, the test set after each epoch) the running
//! statistics take the batch's place, so a sample's output depends on that sample alone:
//!
//! ```text
//! y = gamma_c (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
//! ```
//!
//! Backward of the training form (mu and var depend on every x of the channel, hence the
//! two sums; derived by the chain rule through xhat, mu and var):
//!
//! ```text
//! dbeta_c  = sum dy                            over the channel's M values
//! dgamma_c = sum dy xhat
//! dx       = gamma_c / sqrt(var_c + eps) * (dy - dbeta_c / M - xhat dgamma_c / M)
//! ```
//!
//! Backward after an evaluation pass is that of the fixed affine map:
//! `dx = gamma_c / sqrt(running_var_c + eps) * dy`.
//!
//! The forward pass keeps mu and 1/sqrt(var + eps) per channel (2 C floats) and backward
//! recomputes xhat from x: nothing of size N C S is cached. Each channel's sums run in one
//! fixed order in f64, whatever the thread count, so results are the same bytes for any
//! number of threads: one sum per block of 4 samples (Conv2D's gradient blocks), the blocks
//! added in order. Processes that split a batch ([`crate::distributed`]) each sum their own
//! blocks and exchange them mid-pass, so the statistics are the global batch's
//! (PyTorch's `SyncBatchNorm`), the same bytes as one process.

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::conv2d::GRAD_BLOCK;
use super::keys::LineKeys;
use super::param::{Buffer, BufferMut, Param};
use super::{Counts, InputForm, LayerKind, LayerOp, Pass, SampleShape};
use crate::distributed::Shard;
use crate::error::{Error, Result};
use crate::kernels::on_best_simd;
use crate::onnx::export::{float, Graph, LayerAt};
use crate::onnx::import::{Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::text::thousands;

/// PyTorch's default momentum.
pub const DEFAULT_MOMENTUM: f32 = 0.1;
/// PyTorch's default eps.
pub const DEFAULT_EPS: f32 = 1e-5;

/// What a BatchNorm line normalises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dims {
    /// `BatchNorm2D`: each channel of a (C, H, W) input, over N H W values.
    Two,
    /// `BatchNorm1D`: each feature of a flat input, over the N samples.
    One,
}

/// A BatchNorm config line: `BatchNorm2D` or `BatchNorm1D`, with optional
/// `momentum=0.1 eps=1e-5 activation=relu`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormSpec {
    pub dims: Dims,
    /// m, the weight of each batch in the running statistics, in (0, 1]. Default 0.1.
    pub momentum: f32,
    /// eps > 0, added to the variance under the square root. Default 1e-5.
    pub eps: f32,
    /// Fused into the layer (`BatchNorm2D activation=relu` is `BatchNorm2D` then `ReLU` in
    /// one pass over memory). Default [`Activation::None`].
    pub activation: Activation,
}

/// The BatchNorm kind (both lines).
pub struct Kind;

impl LayerKind for Kind {
    type Spec = BatchNormSpec;
    type Op = BatchNorm;
    const LINES: &'static [(&'static str, &'static [&'static str])] = &[
        ("BatchNorm2D", &["momentum", "eps", "activation", "alpha"]),
        ("BatchNorm1D", &["momentum", "eps", "activation", "alpha"]),
    ];
    const INPUT: InputForm = InputForm::Any;

    fn parse(name: &str, keys: &LineKeys) -> Result<BatchNormSpec> {
        let dims = if name == "BatchNorm1D" {
            Dims::One
        } else {
            Dims::Two
        };
        let number = |key: &str, default: f32, ok: fn(f32) -> bool, want: &str| match keys.get(key)
        {
            None => Ok(default),
            Some(a) => match a.value.parse::<f32>() {
                Ok(v) if ok(v) => Ok(v),
                _ => Err(keys.err(
                    a.value_pos,
                    format!("`{key}` must be {want}, found `{}`", a.value),
                )),
            },
        };
        Ok(BatchNormSpec {
            dims,
            momentum: number(
                "momentum",
                DEFAULT_MOMENTUM,
                |v| v > 0.0 && v <= 1.0,
                "a number above 0 and at most 1 (the weight of each batch in the running \
                 statistics, e.g. `momentum=0.1`)",
            )?,
            eps: number(
                "eps",
                DEFAULT_EPS,
                |v| v.is_finite() && v > 0.0,
                "a positive number (added to the variance, e.g. `eps=1e-5`)",
            )?,
            activation: keys.activation()?,
        })
    }

    fn name(spec: &BatchNormSpec) -> &'static str {
        match spec.dims {
            Dims::Two => "BatchNorm2D",
            Dims::One => "BatchNorm1D",
        }
    }

    fn output_shape(spec: &BatchNormSpec, input: &[usize]) -> Result<SampleShape> {
        channels(spec, input)?;
        Ok(input.to_vec())
    }

    fn counts(spec: &BatchNormSpec, input: &[usize], _output: &[usize]) -> Counts {
        let c = channels(spec, input).map_or(0, |(c, _)| c as u128);
        let len: u128 = input.iter().map(|&d| d as u128).product();
        Counts {
            params: 2 * c,
            flops: 2 * len,
        }
    }

    fn describe(spec: &BatchNormSpec) -> String {
        let mut s = Self::name(spec).to_string();
        if spec.momentum != DEFAULT_MOMENTUM {
            s += &format!(" momentum={}", spec.momentum);
        }
        if spec.eps != DEFAULT_EPS {
            s += &format!(" eps={}", spec.eps);
        }
        s + &spec.activation.suffix()
    }

    fn activation(spec: &BatchNormSpec) -> Activation {
        spec.activation
    }

    fn with_activation(spec: &BatchNormSpec, act: Activation) -> BatchNormSpec {
        BatchNormSpec {
            activation: act,
            ..spec.clone()
        }
    }

    fn explain(spec: &BatchNormSpec, input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        let (c, s) = channels(spec, input)?;
        let over = match spec.dims {
            Dims::Two => format!("N*{}*{} values", input[1], input[2]),
            Dims::One => "N values".to_string(),
        };
        Ok(vec![
            format!(
                "params = 2*{c} = {}  (a scale gamma and a shift beta per channel), plus \
                 running_mean and running_var ({c} each) and num_batches_tracked, not trained",
                thousands(2 * c as u128)
            ),
            format!(
                "training: each channel is normalised over its {over} with the batch's mean and \
                 variance; evaluation: with the running ones (momentum {}, eps {})",
                spec.momentum, spec.eps
            ),
            format!(
                "FLOPs = 2*{} = {}  (one multiply-add per value in evaluation)",
                thousands((c * s) as u128),
                thousands(2 * (c * s) as u128)
            ),
        ])
    }

    /// `BatchNormalization` in its inference form, with the scale, the shift and the running
    /// statistics; ONNX's momentum weighs the running value, ours the batch: 1 - m.
    /// (`num_batches_tracked` goes into the model's `metadata_props`, so that the file
    /// round-trips.)
    fn onnx(spec: &BatchNormSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        Ok(g.node(
            "BatchNormalization",
            at.name,
            &[
                input,
                &at.tensor("weight"),
                &at.tensor("bias"),
                &at.tensor("running_mean"),
                &at.tensor("running_var"),
            ],
            vec![
                float("epsilon", spec.eps),
                float("momentum", 1.0 - spec.momentum),
            ],
        ))
    }

    const ONNX_OPS: &'static [&'static str] = &["BatchNormalization"];

    /// `BatchNormalization` in its inference form: `BatchNorm2D` on a (C, H, W) value,
    /// `BatchNorm1D` on a flat one, with ONNX's momentum turned back into ours (1 - m).
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        let attrs = Attrs::of(node);
        if attrs.int("training_mode", 0) != 0 {
            return Err("training_mode is set; export the model in eval mode".into());
        }
        if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
            return Err("outputs running statistics (training form); export in eval mode".into());
        }
        let &[c, ..] = cx.shape.as_slice() else {
            return Err("needs an input with channels".into());
        };
        let name = match cx.shape.len() {
            3 => "BatchNorm2D",
            1 => "BatchNorm1D",
            _ => return Err("needs a [N, C, H, W] or [N, F] value".into()),
        };
        let mut tensors = Vec::new();
        for (idx, key) in [
            (1, "weight"),
            (2, "bias"),
            (3, "running_mean"),
            (4, "running_var"),
        ] {
            let input = node.input.get(idx).ok_or("has fewer than 5 inputs")?;
            tensors.push((key, vec![c], cx.vector(input, c)?));
        }
        if tensors[3].2.iter().any(|&v| v < 0.0) {
            return Err("a variance is negative".into());
        }
        let eps = attrs.float("epsilon", 1e-5);
        if !(eps.is_finite() && eps > 0.0) {
            return Err(format!("epsilon {eps} is not positive"));
        }
        // ONNX's momentum weighs the running value, PyTorch's (and ours) the batch.
        let momentum = round6(1.0 - attrs.float("momentum", 0.9));
        // `cnn export` keeps num_batches_tracked in the metadata, named as the scale is
        // with `num_batches_tracked` for `weight`.
        let batches = node.input[1]
            .strip_suffix("weight")
            .map(|p| format!("{p}num_batches_tracked"))
            .and_then(|n| cx.batches_tracked(&n))
            .unwrap_or(0);
        cx.push(Step {
            batches,
            ..Step::new(
                format!("{name} momentum={momentum} eps={eps}"),
                StepKind::Fusable {
                    fused: false,
                    flat_input: false,
                },
                tensors,
            )
        });
        Ok(())
    }

    /// 8: over 2 samples BatchNorm1D's output is about +-1 whatever its input, a function
    /// too ill-conditioned for f32 to differentiate finely.
    fn gradcheck_batch(_spec: &BatchNormSpec) -> usize {
        8
    }

    fn build(spec: &BatchNormSpec, input: &[usize]) -> Result<BatchNorm> {
        let (c, s) = channels(spec, input)?;
        let mut weight = Param::zeros(&[c]);
        weight.value.fill(1.0);
        let mut running_var = crate::tensor::Tensor::zeros(&[c]);
        running_var.fill(1.0);
        Ok(BatchNorm {
            dims: spec.dims,
            act: spec.activation,
            channels: c,
            spatial: s,
            momentum: spec.momentum,
            eps: spec.eps,
            weight,
            bias: Param::zeros(&[c]),
            running_mean: crate::tensor::Tensor::zeros(&[c]),
            running_var,
            num_batches_tracked: 0,
            training: false,
            mean: vec![0.0; c],
            inv_std: vec![0.0; c],
            shard: Shard::default(),
        })
    }
}

/// `x` to 6 significant decimals: 1 - (1 - 0.1) in f32 is 0.100000024, shown as 0.1.
fn round6(x: f32) -> f32 {
    format!("{x:.6}").parse().unwrap_or(x)
}

/// (C, S) of a per-sample input shape: BatchNorm2D needs (C, H, W), BatchNorm1D a flat input.
fn channels(spec: &BatchNormSpec, input: &[usize]) -> Result<(usize, usize)> {
    match (spec.dims, input) {
        (Dims::Two, [c, h, w]) => Ok((*c, h * w)),
        (Dims::One, [f]) => Ok((*f, 1)),
        (Dims::Two, _) => Err(Error::Shape {
            op: "BatchNorm2D",
            expected: "a (C, H, W) input (after Conv2D or pooling; after Dense use BatchNorm1D)"
                .into(),
            got: crate::text::fmt_shape(input),
        }),
        (Dims::One, _) => Err(Error::Shape {
            op: "BatchNorm1D",
            expected: "a flat input (after Dense; after Conv2D or pooling use BatchNorm2D)".into(),
            got: crate::text::fmt_shape(input),
        }),
    }
}

/// BatchNorm at run time.
///
/// # Shapes
/// input `[N, C, H, W]` (BatchNorm2D) or `[N, C]` (BatchNorm1D), output the same.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Which of the two lines built it.
    pub dims: Dims,
    /// The fused activation, applied last.
    pub act: Activation,
    /// C.
    pub channels: usize,
    /// S, values per channel and sample.
    pub spatial: usize,
    /// m.
    pub momentum: f32,
    /// eps.
    pub eps: f32,
    /// gamma `[C]`, 1 at the start.
    pub weight: Param,
    /// beta `[C]`, 0 at the start.
    pub bias: Param,
    /// `[C]`, 0 at the start.
    pub running_mean: crate::tensor::Tensor,
    /// `[C]`, 1 at the start.
    pub running_var: crate::tensor::Tensor,
    /// Training batches seen (PyTorch keeps it as an I64 scalar; it informs, and no formula
    /// here uses it).
    pub num_batches_tracked: i64,
    /// Whether the last forward pass was a training one.
    training: bool,
    /// Per channel, of the last forward pass: the mean used and 1/sqrt(var + eps).
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// This process's part of the batch ([`Pass::shard`]).
    shard: Shard,
}

impl BatchNorm {
    /// `[start, end)` of channel `ch` of sample `n` in a flat NCS batch.
    fn block(&self, n: usize, ch: usize) -> std::ops::Range<usize> {
        let start = (n * self.channels + ch) * self.spatial;
        start..start + self.spatial
    }

    /// The batch's (mean, biased variance) of every channel, in one pass over x: the sums of
    /// x and x^2 in f64, var = E[x^2] - mean^2 (f64's 53 bits leave the cancellation far
    /// below f32 rounding for any data whose mean is not 10^4 standard deviations from 0).
    /// Each channel is summed in one fixed order, whatever the thread count and the number of
    /// processes: by blocks of samples ([`BatchNorm::per_channel`]), over the global batch.
    fn batch_stats(&self, x: &[f32], n: usize) -> Vec<(f64, f64)> {
        let m = (self.shard.total(n) * self.spatial) as f64;
        let partials = self.per_channel(
            n,
            #[inline(always)]
            |chs, samples, acc| {
                for sample in samples {
                    for (ch, (sum, sum_sq)) in chs.clone().zip(acc.iter_mut()) {
                        add_sums(&x[self.block(sample, ch)], sum, sum_sq);
                    }
                }
            },
        );
        self.merge_blocks(&partials)
            .0
            .into_iter()
            .map(|(sum, sum_sq)| {
                let mean = sum / m;
                (mean, (sum_sq / m - mean * mean).max(0.0))
            })
            .collect()
    }

    /// Two sums per channel and block of [`GRAD_BLOCK`] samples, in f64, block-major (C
    /// pairs a block): `add(channels, samples, accumulators)` adds every value of a group of
    /// consecutive channels in the given samples to their accumulators (one pair of
    /// [`LANES`] lanes per channel), and each pair's lanes are totalled at the end of each
    /// block. The groups run in parallel. `add` should be `#[inline(always)]`, so that it is
    /// compiled for the vector instructions [`on_best_simd`] picks.
    ///
    /// `add` goes through a block sample by sample and, within a sample, channel by
    /// channel, so it reads a group's planes where they lie side by side in memory rather
    /// than one plane of every sample in turn (which made every 3 KB plane a new stream for
    /// the prefetcher). Each channel still sees its values in the same order, so the sums
    /// are the same bits whatever the group size and thread count. The blocks are those over
    /// which Conv2D sums its gradients, so that processes splitting a batch
    /// ([`crate::distributed`]) each own whole blocks; [`BatchNorm::merge_blocks`] adds them.
    fn per_channel(
        &self,
        n: usize,
        add: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>, &mut [([f64; LANES], [f64; LANES])])
            + Sync,
    ) -> Vec<f64> {
        let c = self.channels;
        let blocks = n.div_ceil(GRAD_BLOCK);
        let group = c.div_ceil(2 * rayon::current_num_threads()).max(1);
        let groups: Vec<Vec<(f64, f64)>> = (0..c.div_ceil(group))
            .into_par_iter()
            .map(|g| {
                let chs = g * group..((g + 1) * group).min(c);
                let mut out = Vec::with_capacity(blocks * chs.len());
                let mut acc = vec![([0.0f64; LANES], [0.0f64; LANES]); chs.len()];
                for b in 0..blocks {
                    acc.iter_mut()
                        .for_each(|a| *a = ([0.0; LANES], [0.0; LANES]));
                    let samples = b * GRAD_BLOCK..((b + 1) * GRAD_BLOCK).min(n);
                    on_best_simd(
                        #[inline(always)]
                        || add(chs.clone(), samples, &mut acc),
                    );
                    out.extend(acc.iter().map(|(a, b)| (lanes_total(a), lanes_total(b))));
                }
                out
            })
            .collect();
        let mut partials = vec![0.0f64; 2 * blocks * c];
        let mut ch0 = 0;
        for g in &groups {
            let width = g.len() / blocks.max(1);
            for b in 0..blocks {
                for j in 0..width {
                    let (s, q) = g[b * width + j];
                    let at = 2 * (b * c + ch0 + j);
                    partials[at] = s;
                    partials[at + 1] = q;
                }
            }
            ch0 += width;
        }
        partials
    }

    /// The per-channel sums of the global batch from this process's block partials of
    /// [`BatchNorm::per_channel`]: every process's blocks gathered ([`crate::distributed`];
    /// one process has them all) and added in block order. Also the sums of this process's
    /// own blocks alone, the parameter gradients of [`crate::distributed::Reduce::Sum`].
    fn merge_blocks(&self, partials: &[f64]) -> (ChannelSums, ChannelSums) {
        let c = self.channels;
        let all = self.shard.gather_blocks(partials, 2 * c);
        let add = |blocks: &[f64]| -> Vec<(f64, f64)> {
            let mut sums = vec![(0.0f64, 0.0f64); c];
            for block in blocks.chunks(2 * c) {
                for (s, pair) in sums.iter_mut().zip(block.chunks(2)) {
                    s.0 += pair[0];
                    s.1 += pair[1];
                }
            }
            sums
        };
        let own = if self.shard.is_split() && !self.shard.exact() {
            add(partials)
        } else {
            Vec::new()
        };
        (add(&all), own)
    }

    /// Channel `ch`'s map before the activation with the statistics of the last forward
    /// pass: the forward pass applies it and backward recomputes it, from this one place,
    /// so both get the same z.
    #[inline(always)]
    fn affine(&self, ch: usize) -> Affine {
        Affine {
            mu: self.mean[ch],
            k: self.weight.value.data()[ch] * self.inv_std[ch],
            b: self.bias.value.data()[ch],
        }
    }

    /// Fewer than two values per channel in a training batch cannot be normalised (the
    /// variance is 0 and the unbiased one undefined): PyTorch refuses such a batch too.
    pub fn min_training_batch(&self) -> usize {
        if self.spatial >= 2 {
            1
        } else {
            2
        }
    }
}

/// Two sums per channel: (sum x, sum x^2), or (sum g, sum g xhat) in backward.
type ChannelSums = Vec<(f64, f64)>;

/// Independent f64 accumulators of a channel's sums: element i of every run of 8 values
/// goes to lane i (a run's remainder to the first lanes), and the lanes are added at the
/// end by [`lanes_total`]. One accumulator would be a chain of dependent additions, one per
/// value, and the passes would wait on it rather than on memory.
const LANES: usize = 8;

/// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
fn lanes_total(l: &[f64; LANES]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// Adds `x` to `sum` and `x^2` to `sq`, lane by lane ([`LANES`]).
#[inline(always)]
fn add_sums(x: &[f32], sum: &mut [f64; LANES], sq: &mut [f64; LANES]) {
    let runs = x.chunks_exact(LANES);
    let rest = runs.remainder();
    for run in runs {
        for l in 0..LANES {
            let v = f64::from(run[l]);
            sum[l] += v;
            sq[l] += v * v;
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        let v = f64::from(v);
        sum[l] += v;
        sq[l] += v * v;
    }
}

/// One channel's map in the forward pass before the activation: `z = (x - mu) k + b`, with
/// `k = gamma inv_std` and `b = beta`, in f32. Backward recomputes it from x to undo a fused
/// ReLU rather than read the layer's output from memory: the same operations on the same
/// values give the same z, and `max(z, 0) > 0` exactly when `z > 0` (NaN included: ReLU
/// turns it into 0, and `NaN > 0` is false).
#[derive(Debug, Clone, Copy)]
struct Affine {
    mu: f32,
    k: f32,
    b: f32,
}

impl Affine {
    #[inline(always)]
    fn of(self, x: f32) -> f32 {
        (x - self.mu) * self.k + self.b
    }

    /// ReLU's backward: `g` where the output `max(z, 0)` is > 0, else 0.
    #[inline(always)]
    fn relu_grad(self, x: f32, g: f32) -> f32 {
        if self.of(x) > 0.0 {
            g
        } else {
            0.0
        }
    }
}

/// Adds `g` to `db` and `g (x - mu) k` to `dg`, lane by lane ([`LANES`]), where g is `dy`,
/// or with `RELU` 0 where the layer's output was <= 0 (ReLU's backward on the fly, with the
/// output recomputed from x by `fwd`).
#[inline(always)]
fn add_grad_sums<const RELU: bool>(
    dy: &[f32],
    x: &[f32],
    fwd: Affine,
    k: f64,
    db: &mut [f64; LANES],
    dg: &mut [f64; LANES],
) {
    let mu = fwd.mu;
    for (g, v) in dy.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        // The f32 part of a run first, then its f64 sums: written in two loops, both
        // compile to vector instructions (one loop did not, with the recomputed ReLU).
        let (mut gs, mut ds) = ([0.0f32; LANES], [0.0f32; LANES]);
        for l in 0..LANES {
            gs[l] = if RELU {
                fwd.relu_grad(v[l], g[l])
            } else {
                g[l]
            };
            ds[l] = v[l] - mu;
        }
        for l in 0..LANES {
            db[l] += f64::from(gs[l]);
            dg[l] += f64::from(gs[l]) * f64::from(ds[l]) * k;
        }
    }
    let done = dy.len() / LANES * LANES;
    for (l, (&g, &v)) in dy[done..].iter().zip(&x[done..]).enumerate() {
        let g = if RELU { fwd.relu_grad(v, g) } else { g };
        db[l] += f64::from(g);
        dg[l] += f64::from(g) * f64::from(v - mu) * k;
    }
}

impl LayerOp for BatchNorm {
    fn prepare(&mut self, pass: Pass) {
        self.training = pass.training;
        self.shard = pass.shard;
    }

    /// The training form by its definition, in f64: y = gamma (x - mu) / sqrt(var + eps) +
    /// beta, mu and the biased var over each channel's N S values.
    fn reference(&self, x: &[f64], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let (channels, spatial, eps) = (self.channels, self.spatial, f64::from(self.eps));
        let (gamma, beta) = (&params[0], &params[1]);
        let m = (n * spatial) as f64;
        let at = |s: usize, c: usize| (s * channels + c) * spatial;
        let mut y = vec![0.0; n * channels * spatial];
        for c in 0..channels {
            let values = || (0..n).flat_map(|s| &x[at(s, c)..at(s, c) + spatial]);
            let mu = values().sum::<f64>() / m;
            let var = values().map(|v| (v - mu).powi(2)).sum::<f64>() / m;
            let inv = 1.0 / (var + eps).sqrt();
            for s in 0..n {
                for j in at(s, c)..at(s, c) + spatial {
                    y[j] = gamma[c] * (x[j] - mu) * inv + beta[c];
                }
            }
        }
        Some(y)
    }

    /// gamma\[c] and beta\[c] feed channel c alone (the whole reference is cheap already).
    fn reference_channel(&self, _slot: usize, e: usize) -> Option<(usize, usize)> {
        Some((e, self.spatial))
    }

    /// Channel by channel.
    fn reference_channel_block(&self, block: usize) -> Option<usize> {
        Some(block)
    }

    fn check_batch(&self, n: usize, pass: Pass) -> std::result::Result<(), String> {
        if pass.training && n < self.min_training_batch() {
            let name = match self.dims {
                Dims::Two => "BatchNorm2D",
                Dims::One => "BatchNorm1D",
            };
            return Err(format!(
                "{name} cannot normalise a training batch of {n} sample: each channel needs \
                 at least 2 values (PyTorch refuses it too); use a batch of 2 or more"
            ));
        }
        Ok(())
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let c = self.channels;
        if self.training {
            let stats = self.batch_stats(x, n);
            let m = (self.shard.total(n) * self.spatial) as f64;
            let keep = 1.0 - f64::from(self.momentum);
            let moved = f64::from(self.momentum);
            let rm = self.running_mean.data_mut();
            for (ch, &(mean, var)) in stats.iter().enumerate() {
                self.mean[ch] = mean as f32;
                self.inv_std[ch] = (1.0 / (var + f64::from(self.eps)).sqrt()) as f32;
                rm[ch] = (keep * f64::from(rm[ch]) + moved * mean) as f32;
            }
            let unbiased = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
            let rv = self.running_var.data_mut();
            for (ch, &(_, var)) in stats.iter().enumerate() {
                rv[ch] = (keep * f64::from(rv[ch]) + moved * var * unbiased) as f32;
            }
            self.num_batches_tracked += 1;
        } else {
            for ch in 0..c {
                self.mean[ch] = self.running_mean.data()[ch];
                self.inv_std[ch] = (1.0
                    / (f64::from(self.running_var.data()[ch]) + f64::from(self.eps)).sqrt())
                    as f32;
            }
        }
        // y = act(gamma (x - mu) inv_std + beta), channel by channel, a sample at a time.
        let (this, s, act) = (&*self, self.spatial, self.act);
        y[..n * c * s]
            .par_chunks_mut(c * s)
            .zip(x[..n * c * s].par_chunks(c * s))
            .for_each(|(y, x)| {
                on_best_simd(
                    #[inline(always)]
                    || {
                        for ch in 0..c {
                            let f = this.affine(ch);
                            let (y, x) = (&mut y[ch * s..(ch + 1) * s], &x[ch * s..]);
                            if act == Activation::Relu {
                                // ReLU in the same pass: max(v, 0), as activation::forward.
                                for (y, &x) in y.iter_mut().zip(x) {
                                    *y = f.of(x).max(0.0);
                                }
                            } else {
                                for (y, &x) in y.iter_mut().zip(x) {
                                    *y = f.of(x);
                                }
                            }
                        }
                    },
                );
                if act != Activation::Relu {
                    activation::forward(act, y, c * s);
                }
            });
    }

    fn backward(&mut self, x: &[f32], y: &[f32], dy: &mut [f32], dx: Option<&mut [f32]>, n: usize) {
        let (c, s) = (self.channels, self.spatial);
        let len = n * c * s;
        // Through the fused activation first: ReLU's is applied on the fly below (g = 0
        // where y <= 0, as `activation::backward` does), which saves a pass over dy; any
        // other activation turns dy into the gradient before it here.
        let relu = self.act == Activation::Relu;
        if !relu {
            activation::backward(self.act, &y[..len], &mut dy[..len], c * s);
        }
        let dy = &dy[..len];
        let inv_std = &self.inv_std;
        // The forward pass's map of each channel (`affine`) recomputes where ReLU let dy
        // through, reading x, which the sums need anyway, instead of also reading y.
        // dbeta_c = sum g, dgamma_c = sum g xhat, per channel in f64 (in 8 lanes, added at
        // the end in a fixed order).
        let partials = self.per_channel(
            n,
            #[inline(always)]
            |chs, samples, acc| {
                for sample in samples {
                    for (ch, (db, dg)) in chs.clone().zip(acc.iter_mut()) {
                        let (f, k) = (self.affine(ch), f64::from(inv_std[ch]));
                        let r = self.block(sample, ch);
                        let (g, x) = (&dy[r.clone()], &x[r]);
                        if relu {
                            add_grad_sums::<true>(g, x, f, k, db, dg);
                        } else {
                            add_grad_sums::<false>(g, x, f, k, db, dg);
                        }
                    }
                }
            },
        );
        // The global batch's sums (the same as one process's); with Reduce::Sum, the
        // parameters take this process's own, which the all-reduce adds up.
        let (sums, own) = self.merge_blocks(&partials);
        let param_sums = if own.is_empty() { &sums } else { &own };
        for (ch, &(db, dg)) in param_sums.iter().enumerate() {
            self.bias.grad.data_mut()[ch] = db as f32;
            self.weight.grad.data_mut()[ch] = dg as f32;
        }
        let Some(dx) = dx else { return };
        let m = (self.shard.total(n) * s) as f64;
        // Per channel: dx = k (g - a - xhat b), with k = gamma inv_std, a = dbeta / M and
        // b = dgamma / M in training; a = b = 0 after an evaluation pass.
        let coef: Vec<(f32, f32, f32)> = sums
            .iter()
            .enumerate()
            .map(|(ch, &(db, dg))| {
                let k = self.affine(ch).k;
                if self.training {
                    (k, (db / m) as f32, (dg / m) as f32)
                } else {
                    (k, 0.0, 0.0)
                }
            })
            .collect();
        dx[..len]
            .par_chunks_mut(c * s)
            .zip(dy.par_chunks(c * s))
            .zip(x[..len].par_chunks(c * s))
            .for_each(|((dx, dy), x)| {
                on_best_simd(
                    #[inline(always)]
                    || {
                        for ch in 0..c {
                            let (k, a, b) = coef[ch];
                            let (f, is) = (self.affine(ch), inv_std[ch]);
                            let r = ch * s..(ch + 1) * s;
                            let (dx, g, x) = (&mut dx[r.clone()], &dy[r.clone()], &x[r]);
                            for ((d, &g), &v) in dx.iter_mut().zip(g).zip(x) {
                                let g = if relu { f.relu_grad(v, g) } else { g };
                                *d = k * (g - a - (v - f.mu) * is * b);
                            }
                        }
                    },
                );
            });
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        vec![("weight", &self.weight), ("bias", &self.bias)]
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        vec![("weight", &mut self.weight), ("bias", &mut self.bias)]
    }

    fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
        vec![
            ("running_mean", Buffer::F32(&self.running_mean)),
            ("running_var", Buffer::F32(&self.running_var)),
            ("num_batches_tracked", Buffer::I64(self.num_batches_tracked)),
        ]
    }

    fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
        vec![
            ("running_mean", BufferMut::F32(&mut self.running_mean)),
            ("running_var", BufferMut::F32(&mut self.running_var)),
            (
                "num_batches_tracked",
                BufferMut::I64(&mut self.num_batches_tracked),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dims: Dims, input: &[usize]) -> BatchNorm {
        let spec = BatchNormSpec {
            dims,
            momentum: DEFAULT_MOMENTUM,
            eps: DEFAULT_EPS,
            activation: Activation::None,
        };
        Kind::build(&spec, input).unwrap()
    }

    fn training() -> Pass {
        Pass {
            training: true,
            stream: 0,
            ..Default::default()
        }
    }

    /// By hand: one feature, batch [1, 2, 3, 6]: mean 3, biased variance
    /// (4 + 1 + 0 + 9) / 4 = 3.5, unbiased 14 / 3.
    #[test]
    fn batchnorm1d_by_hand() {
        let mut bn = layer(Dims::One, &[1]);
        bn.weight.value.data_mut()[0] = 2.0;
        bn.bias.value.data_mut()[0] = 0.5;
        bn.prepare(training());
        let x = [1.0, 2.0, 3.0, 6.0];
        let mut y = [0.0; 4];
        bn.forward(&x, &mut y, 4);
        let inv = 1.0 / (3.5f64 + 1e-5).sqrt();
        for (&got, &xv) in y.iter().zip(&x) {
            let want = 2.0 * (f64::from(xv) - 3.0) * inv + 0.5;
            assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
        }
        // running_mean = 0.9 * 0 + 0.1 * 3; running_var = 0.9 * 1 + 0.1 * 14/3.
        assert!((bn.running_mean.data()[0] - 0.3).abs() < 1e-7);
        assert!((f64::from(bn.running_var.data()[0]) - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6);
        assert_eq!(bn.num_batches_tracked, 1);
        // Evaluation uses the running statistics: x = 0.3 gives beta exactly-ish.
        bn.prepare(Pass::default());
        let mut y1 = [0.0; 1];
        bn.forward(&[0.3], &mut y1, 1);
        assert!((y1[0] - 0.5).abs() < 1e-6, "{}", y1[0]);
        assert_eq!(bn.num_batches_tracked, 1, "evaluation does not count");
    }

    /// The training backward: dy = 1 everywhere gives dx = 0 (a constant shift of y is
    /// absorbed by the mean), and dgamma = sum xhat = 0, dbeta = M.
    #[test]
    fn a_uniform_gradient_vanishes_through_the_batch_mean() {
        let mut bn = layer(Dims::Two, &[2, 2, 2]);
        bn.prepare(training());
        let x: Vec<f32> = (0..3 * 8)
            .map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.0)
            .collect();
        let mut y = vec![0.0; x.len()];
        bn.forward(&x, &mut y, 3);
        let mut dy = vec![1.0; x.len()];
        let mut dx = vec![9.0; x.len()];
        bn.backward(&x, &y, &mut dy, Some(&mut dx), 3);
        assert!(dx.iter().all(|v| v.abs() < 1e-5), "{dx:?}");
        assert_eq!(bn.bias.grad.data(), &[12.0, 12.0]);
        assert!(bn.weight.grad.data().iter().all(|v| v.abs() < 1e-5));
    }

    #[test]
    fn a_batch_of_one_is_refused_in_training_for_batchnorm1d_only() {
        let one = layer(Dims::One, &[3]);
        assert!(one.check_batch(1, training()).is_err());
        assert!(one.check_batch(2, training()).is_ok());
        assert!(one.check_batch(1, Pass::default()).is_ok());
        let two = layer(Dims::Two, &[3, 2, 2]);
        assert!(two.check_batch(1, training()).is_ok());
    }

    #[test]
    fn the_wrong_input_form_is_a_shape_error_naming_the_other_kind() {
        let spec = BatchNormSpec {
            dims: Dims::One,
            momentum: 0.1,
            eps: 1e-5,
            activation: Activation::None,
        };
        let e = Kind::output_shape(&spec, &[4, 5, 5])
            .unwrap_err()
            .to_string();
        assert!(e.contains("use BatchNorm2D"), "{e}");
        let spec = BatchNormSpec {
            dims: Dims::Two,
            ..spec
        };
        let e = Kind::output_shape(&spec, &[10]).unwrap_err().to_string();
        assert!(e.contains("use BatchNorm1D"), "{e}");
    }
}
