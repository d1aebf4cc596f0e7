//! How much memory a training run needs, estimated from the network, the batch size, the
//! optimiser and the data before anything is allocated; and how much the machine has.
//!
//! [`estimate`] counts what training keeps, by what the code allocates (in floats of 4 bytes
//! unless said otherwise):
//!
//! | part | what |
//! | --- | --- |
//! | weights | every parameter (and BatchNorm's running statistics) |
//! | gradients | one per parameter |
//! | optimiser state | none for SGD, one per parameter for momentum and Nesterov, two for Adam and AdamW |
//! | activations | every layer's output, kept for backward, at max(batch, [`INFER_CHUNK`]) samples (evaluation runs chunks of 64 through the same buffers, keeping an output only until its last reader has run, so it never needs more), except a one-layer Route's (it is the output it names); the batch's input |
//! | activation gradients | one buffer per layer output, except a convolution's whose max pooling runs backward with it; one more for the largest output read by several layers (a second reader's share, before it is added) |
//! | layer buffers | a convolution's partial weight gradients, ceil(batch / 4) x (its weights) (Winograd: 16 K C + K per block, and its weights in the Winograd domain); Dense's X^T and Y^T; max pooling's record of winners (4 bytes an output); Dropout's mask |
//! | scratch | per worker thread: im2col's columns (C kh kw x H' W'), Winograd's transforms, a block's output gradient behind a max pooling |
//! | evaluation | a batch of 256 images as floats, one chunk of 64, the logits |
//! | checkpoint | writing one copies the weights once and the optimiser state twice, then serialises both |
//! | data | the images as stored (one byte a pixel), labels, the epoch's order and the held-out set's predictions, as given by the caller |
//! | program | the binary, its libraries and the threads' stacks: 10 MiB, measured with a one-layer network |
//!
//! Measured against `cnn train`'s peak resident memory (`/usr/bin/time -v`), the estimate
//! was within 10 % either way for five networks and batch sizes: see `tests/safety.rs`.
//!
//! [`available`] reads what the machine can give: `MemAvailable` in `/proc/meminfo`, or the
//! process's cgroup limit (`memory.max` less what the cgroup uses, its inactive file cache
//! aside) if that is lower. Elsewhere it is unknown and nothing is refused.

use crate::error::{Error, Result};
use crate::kernels::winograd::Plan;
use crate::layers::conv2d::GRAD_BLOCK;
use crate::layers::{LayerSpec, NetworkSpec};
use crate::model::INFER_CHUNK;
use crate::optim::OptimizerKind;

/// Images per evaluation batch (`train::evaluate`'s callers in a run).
const EVAL_BATCH: usize = 256;

/// The program's own memory, data and network aside: measured as the peak resident memory
/// of `cnn train` with a one-layer network on the 2,500-image demo set (13.6 MB), less the
/// demo set.
const PROGRAM: u64 = 10 << 20;

/// The estimated peak memory of a training run, in bytes, by part (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEstimate {
    /// The batch size it was made for.
    pub batch: usize,
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub activations: u64,
    pub activation_gradients: u64,
    pub layer_buffers: u64,
    pub scratch: u64,
    pub evaluation: u64,
    pub checkpoint: u64,
    pub data: u64,
    pub program: u64,
}

impl MemoryEstimate {
    /// Every part added up.
    pub fn total(&self) -> u64 {
        self.parts().iter().map(|(_, b)| b).sum()
    }

    /// The parts with their names, in the order of the module doc.
    pub fn parts(&self) -> [(&'static str, u64); 11] {
        [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimiser state", self.optimizer),
            ("activations", self.activations),
            ("activation gradients", self.activation_gradients),
            ("layer buffers", self.layer_buffers),
            ("scratch", self.scratch),
            ("evaluation", self.evaluation),
            ("checkpoint", self.checkpoint),
            ("data", self.data),
            ("program", self.program),
        ]
    }

    /// `weights 1.5 MiB, gradients 1.5 MiB, ...`: each part that is not zero (the data too
    /// when `with_data`).
    pub fn parts_text(&self, with_data: bool) -> String {
        let parts: Vec<String> = self
            .parts()
            .iter()
            .filter(|(name, b)| *b > 0 && (with_data || *name != "data"))
            .map(|(name, b)| format!("{name} {}", fmt_bytes(*b)))
            .collect();
        parts.join(", ")
    }

    /// What to make smaller to need less: the advice for the largest part.
    pub fn advice(&self) -> &'static str {
        let per_batch = self.activations
            + self.activation_gradients
            + self.layer_buffers
            + self.scratch
            + self.evaluation;
        let per_weight = self.weights + self.gradients + self.optimizer + self.checkpoint;
        if self.data > per_batch.max(per_weight) {
            "use a smaller data set (it is held in memory, one byte a pixel)"
        } else if per_batch >= per_weight && self.batch > INFER_CHUNK {
            "reduce --batch-size, or the network's filters, units or input size"
        } else if per_batch >= per_weight {
            // Evaluation runs 64 images at a time through the same buffers: a smaller batch
            // does not make them smaller.
            "reduce the network's filters, units or input size (every layer's output is kept \
             for 64 images at least)"
        } else {
            "reduce the network's filters or units (its parameters), or use SGD, which \
             keeps no optimiser state"
        }
    }
}

/// The peak memory of training `spec` at `batch` samples a step with `optimizer`, on
/// `threads` worker threads, with `data` bytes of data in memory (see the module doc for
/// what each part counts).
///
/// # Errors
/// A network whose shapes do not work out.
pub fn estimate(
    spec: &NetworkSpec,
    batch: usize,
    optimizer: OptimizerKind,
    threads: usize,
    data: u64,
) -> Result<MemoryEstimate> {
    let shapes = spec.shapes().map_err(|(_, e)| e)?;
    let batch = batch.max(1) as u64;
    let rows = batch.max(INFER_CHUNK as u64);
    let blocks = batch.div_ceil(GRAD_BLOCK as u64);
    let threads = (threads.max(1) as u64).min(blocks);
    let input: u64 = spec.input.iter().product::<usize>() as u64;
    let f = 4u64;
    let winograd_on = std::env::var_os("CNN_NO_WINOGRAD").is_none();

    let (mut params, mut buffers) = (0u64, 0u64);
    let mut e = MemoryEstimate {
        batch: batch as usize,
        program: PROGRAM,
        data,
        ..MemoryEstimate::default()
    };
    // The largest of each per-thread buffer over the layers: each thread keeps one of each,
    // grown to the largest layer's.
    let (mut cols, mut wino, mut dy_block) = (0u64, [0u64; 4], 0u64);
    e.activations = f * batch * input;
    // Who reads each layer's output: a value read by several layers needs a buffer for the
    // contribution of each reader after the first, before it is added (one per position in
    // a reader's list of values, grown to the largest).
    let mut readers = vec![0usize; spec.layers.len()];
    for s in &shapes {
        for v in &s.reads {
            if let crate::layers::Value::Output(j) = v {
                readers[*j] += 1;
            }
        }
    }
    let mut second_reader = 0u64;
    let last = spec.layers.len().saturating_sub(1);
    for (i, (layer, s)) in spec.layers.iter().zip(&shapes).enumerate() {
        let out: u64 = s.output.iter().product::<usize>() as u64;
        let inp: u64 = s.input.iter().product::<usize>() as u64;
        let p = layer.counts(&s.input, &s.output).params as u64;
        params += p;
        // A one-layer Route is the value it names: no buffer of its own.
        let passes_on = matches!(layer, LayerSpec::Route(r) if r.layers.len() == 1) && i != last;
        if passes_on {
            continue;
        }
        if readers[i] > 1 {
            second_reader = second_reader.max(out);
        }
        e.activations += f * rows * out;
        let pooled_next = matches!(spec.layers.get(i + 1), Some(LayerSpec::MaxPool2D(_)))
            && readers[i] == 1
            && shapes[i + 1].reads == [crate::layers::Value::Output(i)];
        let conv_then_pool = matches!(layer, LayerSpec::Conv2D(_)) && pooled_next;
        if !conv_then_pool {
            e.activation_gradients += f * batch * out;
        }
        match layer {
            LayerSpec::Conv2D(c) => {
                let [ch, h, w] = [s.input[0], s.input[1], s.input[2]];
                let g = c.geom([ch, h, w])?;
                let (k, ch) = (g.k as u64, g.c as u64);
                let ohw = (g.out_h * g.out_w) as u64;
                let depthwise = c.groups > 1 && crate::kernels::depthwise::applies(&g, c.groups);
                match Plan::new(&g).filter(|_| winograd_on && c.groups == 1) {
                    Some(plan) => {
                        let u = plan.u_len() as u64;
                        let slots = plan.slots() as u64;
                        e.layer_buffers += f * (blocks * (u + k) + u);
                        let parts = [
                            16 * ch * slots,
                            16 * k * slots,
                            4 * ch.max(k) * (slots + plan.tiles_w as u64 + 2),
                            16 * ch * slots,
                        ];
                        for (m, v) in wino.iter_mut().zip(parts) {
                            *m = (*m).max(v);
                        }
                    }
                    None => {
                        e.layer_buffers += f * blocks * p;
                        // One group's columns; the depthwise kernels' padded planes instead.
                        let len = if depthwise {
                            crate::kernels::depthwise::scratch_len(&g, GRAD_BLOCK)
                        } else {
                            g.patch_len() / c.groups
                        } as u64;
                        cols = cols.max(if depthwise { len } else { len * ohw });
                    }
                }
                if conv_then_pool {
                    dy_block = dy_block.max(GRAD_BLOCK as u64 * out);
                }
            }
            LayerSpec::Dense(_) => e.layer_buffers += f * rows * (inp + out),
            // The record of winners: one u32 an output.
            LayerSpec::MaxPool2D(_) => e.layer_buffers += 4 * batch * out,
            LayerSpec::Dropout(_) => e.layer_buffers += f * batch * out,
            // The running mean and variance: as many as its weight and bias.
            LayerSpec::BatchNorm(_) => buffers += p,
            _ => {}
        }
    }
    let state = match optimizer {
        OptimizerKind::Sgd => 0,
        OptimizerKind::Momentum { .. } => params,
        OptimizerKind::Adam { .. } => 2 * params,
    };
    e.weights = f * (params + buffers);
    e.gradients = f * params;
    e.optimizer = f * state;
    e.scratch = f * threads * (cols + wino.iter().sum::<u64>() + dy_block);
    e.activation_gradients += f * batch * second_reader;
    let classes = shapes
        .last()
        .map_or(0, |s| s.output.iter().product::<usize>()) as u64;
    e.evaluation = f * ((EVAL_BATCH + INFER_CHUNK) as u64 * input + EVAL_BATCH as u64 * classes);
    // A checkpoint: the optimiser state cloned, every tensor as bytes, then serialised.
    e.checkpoint = f * (2 * (params + buffers) + 3 * state);
    Ok(e)
}

/// The summary's line: `Memory in training at batch 32: ~20 MiB (weights 1.5 MiB, ...),
/// plus the data set (one byte a pixel)`, for `spec` trained with `optimizer` on `threads`
/// threads.
///
/// # Errors
/// A network whose shapes do not work out.
pub fn summary_line(
    spec: &NetworkSpec,
    batch: usize,
    optimizer: OptimizerKind,
    threads: usize,
) -> Result<String> {
    let e = estimate(spec, batch, optimizer, threads, 0)?;
    Ok(format!(
        "Memory in training at batch {batch}: ~{} ({}), plus the data set (one byte a pixel)\n",
        fmt_bytes(e.total()),
        e.parts_text(false)
    ))
}

/// The bytes a data set of `images` images of `pixels` bytes each takes in a run: the
/// images as stored (one byte a pixel), a 2-byte label each, and 8 bytes each for the
/// epoch's order (training) or 16 for the predictions and labels kept (held out).
pub fn data_bytes(images: usize, pixels: usize, held_out: bool) -> u64 {
    let per = pixels as u64 + 2 + if held_out { 16 } else { 8 };
    images as u64 * per
}

/// Memory the process can still use, and where that figure comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    pub bytes: u64,
    /// `MemAvailable in /proc/meminfo`, or the cgroup file it was read from.
    pub source: String,
}

/// The memory available to this process (see the module doc), or `None` where it is not
/// known.
pub fn available() -> Option<Available> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut best = Available {
        bytes: meminfo_available(&meminfo)?,
        source: "MemAvailable in /proc/meminfo".into(),
    };
    if let Some(c) = cgroup_available() {
        if c.bytes < best.bytes {
            best = c;
        }
    }
    Some(best)
}

/// `MemAvailable:  123456 kB` in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the process's cgroup (v2, else v1) lets it still use: its limit less its usage,
/// the inactive file cache (which the kernel reclaims first) not counted as used.
fn cgroup_available() -> Option<Available> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    // cgroup v2: `0::/path` in /proc/self/cgroup; the files under /sys/fs/cgroup/path.
    let own = read("/proc/self/cgroup")
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .unwrap_or_default();
    let mut dirs = vec![format!("/sys/fs/cgroup{}", own.trim_end_matches('/'))];
    if !own.is_empty() && own != "/" {
        dirs.push("/sys/fs/cgroup".into());
    }
    for dir in dirs {
        let max = format!("{dir}/memory.max");
        let Some(limit) = read(&max).and_then(|t| t.trim().parse::<u64>().ok()) else {
            continue;
        };
        let current = read(&format!("{dir}/memory.current"))
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let inactive = read(&format!("{dir}/memory.stat"))
            .and_then(|t| stat_value(&t, "inactive_file"))
            .unwrap_or(0);
        let used = current.saturating_sub(inactive);
        return Some(Available {
            bytes: limit.saturating_sub(used),
            source: max,
        });
    }
    // cgroup v1: an unlimited limit reads as a huge number.
    let v1 = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
    let limit = read(v1).and_then(|t| t.trim().parse::<u64>().ok())?;
    if limit >= 1 << 60 {
        return None;
    }
    let usage = read("/sys/fs/cgroup/memory/memory.usage_in_bytes")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let inactive = read("/sys/fs/cgroup/memory/memory.stat")
        .and_then(|t| stat_value(&t, "total_inactive_file"))
        .unwrap_or(0);
    Some(Available {
        bytes: limit.saturating_sub(usage.saturating_sub(inactive)),
        source: v1.into(),
    })
}

/// The value of `key` in a `memory.stat` file (`key value` lines).
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Refuses a run whose estimate is more than the memory available, with
/// [`Error::Usage`]: one line giving the estimate, what is available and what to reduce.
/// `what` names the run (`training net.cfg at batch 32`). Nothing is refused where the
/// available memory is unknown.
pub fn check(estimate: &MemoryEstimate, what: &str) -> Result<()> {
    let Some(avail) = available() else {
        return Ok(());
    };
    check_against(estimate, &avail, what)
}

fn check_against(estimate: &MemoryEstimate, avail: &Available, what: &str) -> Result<()> {
    if estimate.total() <= avail.bytes {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{what} needs about {} of memory ({}), more than the {} available ({}); {}",
        fmt_bytes(estimate.total()),
        estimate.parts_text(true),
        fmt_bytes(avail.bytes),
        avail.source,
        estimate.advice()
    )))
}

/// `512 B`, `3.4 KiB`, `41 MiB`, `2.5 GiB`: two or three significant digits.
pub fn fmt_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ if x < 10.0 => format!("{x:.1} {}", units[u]),
        _ => format!("{x:.0} {}", units[u]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn spec(text: &str) -> NetworkSpec {
        parse(text, "t.cfg").unwrap().spec
    }

    const REPORT1_10: &str = include_str!("../examples/report1-10.cfg");

    #[test]
    fn weights_gradients_and_optimiser_state_follow_the_parameter_count() {
        let s = spec(REPORT1_10);
        let params = s.param_count().unwrap() as u64;
        let sgd = estimate(&s, 32, OptimizerKind::Sgd, 2, 0).unwrap();
        let momentum = estimate(&s, 32, OptimizerKind::momentum(), 2, 0).unwrap();
        let adam = estimate(&s, 32, OptimizerKind::adam(), 2, 0).unwrap();
        assert_eq!(sgd.weights, 4 * params);
        assert_eq!(sgd.gradients, 4 * params);
        assert_eq!(sgd.optimizer, 0);
        assert_eq!(momentum.optimizer, 4 * params);
        assert_eq!(adam.optimizer, 8 * params);
        assert_eq!(sgd.checkpoint, 8 * params);
        assert_eq!(adam.checkpoint, 8 * params + 24 * params);
    }

    /// Report 1's network at batch 128: every output kept ([128, 16, 28, 28] the largest),
    /// the pooling's gradient but not the convolution's (they run backward together).
    #[test]
    fn activations_and_their_gradients_are_counted_per_layer() {
        let s = spec(REPORT1_10);
        let e = estimate(&s, 128, OptimizerKind::Sgd, 1, 0).unwrap();
        let outs = [16 * 28 * 28, 16 * 14 * 14, 128, 10];
        let input = 28 * 28;
        assert_eq!(e.activations, 4 * 128 * (input + outs.iter().sum::<u64>()));
        assert_eq!(
            e.activation_gradients,
            4 * 128 * (outs[1] + outs[2] + outs[3])
        );
        // Partial gradients of 32 blocks, the record of winners, Dense's X^T and Y^T.
        let conv = 16 * 9 + 16;
        let dense = 128 * (3136 + 128) + 128 * (128 + 10);
        assert_eq!(
            e.layer_buffers,
            4 * 32 * conv + 4 * 128 * outs[1] + 4 * dense
        );
    }

    /// A one-layer Route is the output it names: no buffer of its own. An output read by
    /// two layers needs one more gradient buffer, for the second reader's share; a
    /// convolution whose output a Route reads too does not run fused with its pooling.
    #[test]
    fn a_graph_counts_what_its_plan_keeps() {
        let net = |middle: &str| {
            spec(&format!(
                "5\nInput shape=1x8x8\nConv2D filters=2 kernel=3x3 padding=same\n\
                 MaxPool2D pool=2\n{middle}\nConv2D filters=2 kernel=1x1\nDense units=3\n"
            ))
        };
        let e = |s: &NetworkSpec| estimate(s, 100, OptimizerKind::Sgd, 1, 0).unwrap();
        let chain = e(&spec(
            "4\nInput shape=1x8x8\nConv2D filters=2 kernel=3x3 padding=same\n\
             MaxPool2D pool=2\nConv2D filters=2 kernel=1x1\nDense units=3\n",
        ));
        let routed = e(&net("Route layers=-1"));
        assert_eq!(routed.activations, chain.activations);
        assert_eq!(routed.activation_gradients, chain.activation_gradients);
        // Conv 2x8x8 -> pool 2x4x4 -> Shortcut of the pooling with itself: the pooling's
        // output has two readers (the Shortcut twice), the convolution still one.
        let shortcut = e(&net("Shortcut from=-1"));
        let pooled = 4 * 100 * 2 * 4 * 4;
        assert_eq!(shortcut.activations, chain.activations + pooled);
        assert_eq!(
            shortcut.activation_gradients,
            chain.activation_gradients + 2 * pooled
        );
    }

    #[test]
    fn a_hundred_thousand_filters_need_gigabytes() {
        let s = spec(
            "3\nInput shape=1x28x28\nConv2D filters=100000 kernel=3x3 padding=same\n\
             Flatten\nDense units=10\n",
        );
        let e = estimate(&s, 32, OptimizerKind::Sgd, 2, 0).unwrap();
        assert!(e.total() > 50 << 30, "{}", e.parts_text(true));
        let avail = Available {
            bytes: 8 << 30,
            source: "MemAvailable in /proc/meminfo".into(),
        };
        let msg = check_against(&e, &avail, "training big.cfg at batch 32")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("training big.cfg at batch 32 needs about 87 GiB of memory (weights "),
            "{msg}"
        );
        assert!(
            msg.contains("more than the 8.0 GiB available (MemAvailable in /proc/meminfo)"),
            "{msg}"
        );
        assert!(
            msg.ends_with(
                "; reduce the network's filters, units or input size (every layer's output \
                 is kept for 64 images at least)"
            ),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn available_memory_is_read_from_meminfo_and_cgroup_stat_files() {
        let meminfo = "MemTotal:       24683520 kB\nMemFree:         7838976 kB\n\
                       MemAvailable:   22991872 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(22991872 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
        let stat = "anon 123\nfile 456\ninactive_file 789\nactive_file 1\n";
        assert_eq!(stat_value(stat, "inactive_file"), Some(789));
        assert_eq!(stat_value(stat, "missing"), None);
        if cfg!(target_os = "linux") {
            assert!(available().is_some_and(|a| a.bytes > 0));
        }
    }

    #[test]
    fn sizes_read_with_two_or_three_digits() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(3 << 10), "3.0 KiB");
        assert_eq!(fmt_bytes(41 << 20), "41 MiB");
        assert_eq!(fmt_bytes(5 << 29), "2.5 GiB");
    }
}
