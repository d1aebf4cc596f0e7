//! Measuring speed: training steps, inference, the machine's sgemm peak and a per-layer
//! profile. The library never prints; callers (the `cnn bench` command, the
//! `bench_step` example) format these numbers.
//!
//! Every timing is a median over `runs` repetitions after `warmup` untimed ones, because
//! wall-clock times on a shared machine are noisy and the median ignores the outliers.
//! GFLOP/s use the FLOP counts of [`NetworkSpec::train_flops_per_sample`] and
//! [`NetworkSpec::forward_flops_per_sample`] (a multiply-add counts 2).

use std::time::Instant;

use crate::error::{Error, Result};
use crate::init::Init;
use crate::kernels::gemm::{par_gemm, MatMut, MatRef};
use crate::layers::{NetworkSpec, Value};
use crate::loss::softmax_cross_entropy;
use crate::model::Model;
use crate::optim::{Optimizer, OptimizerKind};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Seconds per repetition (a training step or a forward pass of one batch) and the rates
/// derived from the median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Batch size N of each repetition.
    pub batch: usize,
    /// Number of timed repetitions.
    pub runs: usize,
    /// Median seconds per repetition.
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// N / median.
    pub images_per_s: f64,
    /// FLOPs per repetition / median, in 10^9 per second.
    pub gflops: f64,
}

impl Timing {
    fn from_samples(mut secs: Vec<f64>, batch: usize, flops: f64) -> Timing {
        secs.sort_by(f64::total_cmp);
        let median_s = median_sorted(&secs);
        Timing {
            batch,
            runs: secs.len(),
            median_s,
            min_s: secs[0],
            max_s: secs[secs.len() - 1],
            images_per_s: batch as f64 / median_s,
            gflops: flops / median_s / 1e9,
        }
    }
}

/// Median of an ascending, non-empty slice (mean of the middle two for an even length).
fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    median_sorted(&v)
}

/// A random batch of `batch` samples of the spec's input shape, N(0, 1) values, and random
/// labels below the network's output size.
pub fn synthetic_batch(
    spec: &NetworkSpec,
    batch: usize,
    seed: u64,
) -> Result<(Tensor, Vec<usize>)> {
    let classes: usize = spec.output_shape()?.iter().product();
    let [c, h, w] = spec.input;
    let mut rng = Rng::for_purpose(seed, "bench");
    let data = (0..batch * c * h * w)
        .map(|_| rng.normal() as f32)
        .collect();
    let x = Tensor::from_vec(&[batch, c, h, w], data)?;
    let labels = (0..batch).map(|_| rng.below(classes.max(1))).collect();
    Ok((x, labels))
}

fn check_args(batch: usize, runs: usize) -> Result<()> {
    if batch == 0 || runs == 0 {
        return Err(Error::Invalid(
            "bench: batch and runs must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Times [`Model::train_step`] (forward, fused softmax cross-entropy, backward, SGD with
/// lr 0.01) on one synthetic batch, repeated: `warmup` untimed steps, then `runs` timed ones.
pub fn time_training_steps(
    spec: &NetworkSpec,
    batch: usize,
    warmup: usize,
    runs: usize,
) -> Result<Timing> {
    check_args(batch, runs)?;
    let mut model = Model::new(spec, Init::He, 1)?;
    let (x, labels) = synthetic_batch(spec, batch, 1)?;
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.01, 0.0);
    for _ in 0..warmup {
        model.train_step(&x, &labels, &mut opt)?;
    }
    let mut secs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        model.train_step(&x, &labels, &mut opt)?;
        secs.push(t.elapsed().as_secs_f64());
    }
    let flops = spec.train_flops_per_sample()? as f64 * batch as f64;
    Ok(Timing::from_samples(secs, batch, flops))
}

/// Times [`Model::forward`] (logits, no softmax) on one synthetic batch.
pub fn time_inference(
    spec: &NetworkSpec,
    batch: usize,
    warmup: usize,
    runs: usize,
) -> Result<Timing> {
    check_args(batch, runs)?;
    let mut model = Model::new(spec, Init::He, 1)?;
    let (x, _) = synthetic_batch(spec, batch, 1)?;
    for _ in 0..warmup {
        model.infer(&x)?;
    }
    let mut secs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        model.infer(&x)?;
        secs.push(t.elapsed().as_secs_f64());
    }
    let flops = spec.forward_flops_per_sample()? as f64 * batch as f64;
    Ok(Timing::from_samples(secs, batch, flops))
}

/// The best GFLOP/s of a 1024 x 1024 x 1024 sgemm through [`par_gemm`] on all of rayon's
/// threads (1 warm-up, then timed runs for at least [`PEAK_SECONDS`] and at least
/// [`PEAK_RUNS`] of them): the ceiling the layers' GEMMs are measured against. The best
/// rather than the median, because a disturbance (another process, a core clocking up from
/// idle) can only make a run slower: on an idle 2-core machine the median of 5 runs moved
/// between 217 and 464 GFLOP/s from one call to the next, which made every share of it
/// meaningless.
pub fn peak_gflops() -> f64 {
    let n = 1024;
    let mut rng = Rng::new(7);
    let a: Vec<f32> = (0..n * n).map(|_| rng.normal() as f32).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.normal() as f32).collect();
    let mut c = vec![0.0f32; n * n];
    let flops = 2.0 * (n * n * n) as f64;
    let mut best = 0.0f64;
    let start = Instant::now();
    let mut timed = 0;
    for i in 0.. {
        let t = Instant::now();
        let (am, bm) = (MatRef::new(&a, n, n), MatRef::new(&b, n, n));
        par_gemm(am, bm, 0.0, MatMut::new(&mut c, n, n));
        let s = t.elapsed().as_secs_f64();
        if i == 0 {
            continue;
        }
        best = best.max(flops / s / 1e9);
        timed += 1;
        if timed >= PEAK_RUNS && start.elapsed().as_secs_f64() >= PEAK_SECONDS {
            break;
        }
    }
    best
}

/// The fewest timed multiplies [`peak_gflops`] takes the best of.
pub const PEAK_RUNS: usize = 5;
/// The least time [`peak_gflops`] spends multiplying, in seconds: long enough for the cores
/// to reach their clock and for a passing disturbance to leave some runs alone.
pub const PEAK_SECONDS: f64 = 0.5;

/// Time spent in one step of an inference pass ([`profile_inference`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StepTiming {
    /// `"{index} {LayerName}"` for a layer run alone, `"{first}-{last} {Name}+{Name}..."`
    /// for layers run together, `"rest"` for what the pass spends outside its steps
    /// (copying chunks in and logits out).
    pub name: String,
    /// Median milliseconds per pass.
    pub ms: f64,
    /// FLOPs of the step for the whole batch.
    pub flops: u64,
    /// `flops` / median time, in 10^9 per second.
    pub gflops: f64,
}

/// Times each step of [`Model::infer`] on one synthetic batch of `batch` images (the steps
/// of the plan for that batch: a layer, or layers run together), `warmup` untimed passes
/// then `runs` timed ones; the median of each step, then a `"rest"` row, the median of
/// each pass's time outside its steps.
pub fn profile_inference(
    spec: &NetworkSpec,
    batch: usize,
    warmup: usize,
    runs: usize,
) -> Result<Vec<StepTiming>> {
    check_args(batch, runs)?;
    let mut model = Model::new(spec, Init::He, 1)?;
    let (x, _) = synthetic_batch(spec, batch, 1)?;
    let steps = model.inference_steps(batch);
    let mut times = vec![0.0; steps.len()];
    for _ in 0..warmup {
        model.infer_timed(&x, Some(&mut times))?;
    }
    let mut per_step = vec![Vec::with_capacity(runs); steps.len()];
    let mut rest = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.fill(0.0);
        let t = Instant::now();
        model.infer_timed(&x, Some(&mut times))?;
        let total = t.elapsed().as_secs_f64();
        rest.push(total - times.iter().sum::<f64>());
        for (v, &s) in per_step.iter_mut().zip(&times) {
            v.push(s);
        }
    }
    let shapes = spec.shapes().map_err(|(_, e)| e)?;
    let mut rows = Vec::with_capacity(steps.len() + 1);
    for (range, secs) in steps.iter().zip(per_step) {
        let names: Vec<&str> = range.clone().map(|i| spec.layers[i].name()).collect();
        let name = if range.len() == 1 {
            format!("{} {}", range.start, names[0])
        } else {
            format!("{}-{} {}", range.start, range.end - 1, names.join("+"))
        };
        let flops: u64 = range
            .clone()
            .map(|i| spec.layers[i].forward_flops(&shapes[i].input).unwrap_or(0))
            .sum::<u64>()
            * batch as u64;
        rows.push(step_row(name, median(secs), flops));
    }
    rows.push(step_row("rest".into(), median(rest).max(0.0), 0));
    Ok(rows)
}

fn step_row(name: String, secs: f64, flops: u64) -> StepTiming {
    StepTiming {
        name,
        ms: secs * 1e3,
        flops,
        gflops: if secs > 0.0 {
            flops as f64 / secs / 1e9
        } else {
            0.0
        },
    }
}

/// Time spent in one part of a training step.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTiming {
    /// `"{index} {LayerName}"`, or `"loss"` / `"update"` for the fused softmax
    /// cross-entropy and the SGD update.
    pub name: String,
    pub forward_ms: f64,
    pub backward_ms: f64,
    /// FLOPs of the forward pass for the whole batch (0 for layers without multiply-adds).
    pub forward_flops: u64,
    /// FLOPs of the backward pass (weight gradient, plus input gradient except for the first
    /// layer).
    pub backward_flops: u64,
    pub forward_gflops: f64,
    pub backward_gflops: f64,
}

impl LayerTiming {
    fn new(name: String, fwd_s: f64, bwd_s: f64, ff: u64, bf: u64) -> LayerTiming {
        let rate = |f: u64, s: f64| if s > 0.0 { f as f64 / s / 1e9 } else { 0.0 };
        LayerTiming {
            name,
            forward_ms: fwd_s * 1e3,
            backward_ms: bwd_s * 1e3,
            forward_flops: ff,
            backward_flops: bf,
            forward_gflops: rate(ff, fwd_s),
            backward_gflops: rate(bf, bwd_s),
        }
    }
}

/// Times one training step layer by layer, with its own activation and gradient buffers and
/// optimiser kept from step to step (as a training run keeps them): the first step grows
/// them, later ones measure the layers and not the page faults of fresh buffers.
#[derive(Debug, Default)]
pub struct Profiler {
    acts: Vec<Tensor>,
    grads: Vec<Tensor>,
    opt: Option<Optimizer>,
}

impl Profiler {
    pub fn new() -> Profiler {
        Profiler::default()
    }

    /// One training step on `(x, labels)` done layer by layer with the pub
    /// [`crate::layers::Layer`] API, timing each layer's forward and backward. Like
    /// [`Model::train_step`], it ends with an SGD update (lr 0.01, timed as the `"update"`
    /// row), so the model's weights change. Returns one row per layer, then `"loss"`, then
    /// `"update"`.
    ///
    /// # Panics
    /// If the labels do not match the batch or the network's outputs (caller's data).
    pub fn step(&mut self, model: &mut Model, x: &Tensor, labels: &[usize]) -> Vec<LayerTiming> {
        let n = x.batch();
        assert_eq!(labels.len(), n, "profile step: one label per sample");
        let count = model.layers().len();
        let last = count - 1;
        let shapes = model
            .spec()
            .shapes()
            .expect("a built model has valid shapes");
        self.acts.resize(count, Tensor::default());
        self.grads.resize(count, Tensor::default());
        let (acts, grads) = (&mut self.acts, &mut self.grads);
        let mut fwd = vec![0.0; count];
        let mut bwd = vec![0.0; count];

        for (i, fwd) in fwd.iter_mut().enumerate() {
            let reads = model.layers()[i].shapes.reads.clone();
            let (before, rest) = acts.split_at_mut(i);
            let xs: Vec<&Tensor> = reads
                .iter()
                .map(|&v| match v {
                    Value::Input => x,
                    Value::Output(j) => &before[j],
                })
                .collect();
            let t = Instant::now();
            // A training pass: Dropout drops, as in Model::train_step.
            let pass = crate::layers::Pass {
                training: true,
                stream: i as u64,
                ..Default::default()
            };
            model.layers_mut()[i].op.prepare(pass);
            model.layers_mut()[i].forward_many(&xs, &mut rest[0]);
            *fwd = t.elapsed().as_secs_f64();
        }

        let k = model.classes();
        let t = Instant::now();
        grads[last].resize(acts[last].shape());
        softmax_cross_entropy(acts[last].data(), labels, k, grads[last].data_mut());
        let loss_s = t.elapsed().as_secs_f64();

        // Every layer here runs its own copy, a one-layer Route too; a value read by several
        // layers gets their gradients summed as in `Model` (the highest layer's first).
        let mut written = vec![false; count];
        for i in (0..count).rev() {
            let reads = model.layers()[i].shapes.reads.clone();
            let mut dy = std::mem::take(&mut grads[i]);
            let mut dxs: Vec<Option<Tensor>> = reads
                .iter()
                .map(|v| match v {
                    Value::Input => None,
                    Value::Output(j) if !written[*j] => Some(std::mem::take(&mut grads[*j])),
                    Value::Output(_) => Some(Tensor::default()),
                })
                .collect();
            let xs: Vec<&Tensor> = reads
                .iter()
                .map(|&v| match v {
                    Value::Input => x,
                    Value::Output(j) => &acts[j],
                })
                .collect();
            let t = Instant::now();
            let mut targets: Vec<Option<&mut Tensor>> =
                dxs.iter_mut().map(Option::as_mut).collect();
            model.layers_mut()[i].backward_many(&xs, &acts[i], &mut dy, &mut targets);
            bwd[i] = t.elapsed().as_secs_f64();
            grads[i] = dy;
            for (v, dx) in reads.iter().zip(dxs) {
                if let (Value::Output(j), Some(dx)) = (*v, dx) {
                    if written[j] {
                        grads[j]
                            .data_mut()
                            .iter_mut()
                            .zip(dx.data())
                            .for_each(|(g, d)| *g += d);
                    } else {
                        grads[j] = dx;
                        written[j] = true;
                    }
                }
            }
        }

        let opt = self
            .opt
            .get_or_insert_with(|| Optimizer::new(OptimizerKind::Sgd, 0.01, 0.0));
        let t = Instant::now();
        opt.step(&mut model.params_mut());
        let update_s = t.elapsed().as_secs_f64();

        let mut rows = Vec::with_capacity(count + 2);
        for (i, (spec, s)) in model.spec().layers.iter().zip(&shapes).enumerate() {
            let f = spec.forward_flops(&s.input).unwrap_or(0) * n as u64;
            let bf = if i == 0 { f } else { 2 * f };
            rows.push(LayerTiming::new(
                format!("{i} {}", spec.name()),
                fwd[i],
                bwd[i],
                f,
                bf,
            ));
        }
        rows.push(LayerTiming::new("loss".into(), loss_s, 0.0, 0, 0));
        rows.push(LayerTiming::new("update".into(), 0.0, update_s, 0, 0));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::INFER_CHUNK;

    #[test]
    fn timings_are_consistent() {
        let spec = crate::examples::report1(10);
        let t = time_training_steps(&spec, 4, 1, 3).unwrap();
        assert_eq!((t.batch, t.runs), (4, 3));
        assert!(t.min_s <= t.median_s && t.median_s <= t.max_s && t.min_s > 0.0);
        assert!((t.images_per_s - 4.0 / t.median_s).abs() < 1e-6 * t.images_per_s);
        let i = time_inference(&spec, 2, 0, 1).unwrap();
        assert!(i.gflops > 0.0);
        assert!(time_training_steps(&spec, 0, 0, 1).is_err());
    }

    /// One row per step of the plan for the batch, then the rest; the FLOPs add up to the
    /// network's. Batch 1 runs report 1's one-image chain as one step.
    #[test]
    fn the_inference_profile_has_a_row_per_step() {
        let spec = crate::examples::report1(10);
        let per_sample = spec.forward_flops_per_sample().unwrap();
        for batch in [1, 3, INFER_CHUNK + 2] {
            let rows = profile_inference(&spec, batch, 1, 3).unwrap();
            let model = Model::new(&spec, Init::He, 1).unwrap();
            assert_eq!(rows.len(), model.inference_steps(batch).len() + 1);
            assert_eq!(rows.last().unwrap().name, "rest");
            let flops: u64 = rows.iter().map(|r| r.flops).sum();
            assert_eq!(flops, per_sample * batch as u64, "batch {batch}");
            assert!(rows.iter().all(|r| r.ms >= 0.0));
        }
        let one = profile_inference(&spec, 1, 0, 1).unwrap();
        let chained = Model::new(&spec, Init::He, 1).unwrap().inference_steps(1)[0].len() == 3;
        if chained {
            assert_eq!(one[0].name, "0-2 Conv2D+MaxPool2D+Dense");
        }
        assert_eq!(
            profile_inference(&spec, 2, 0, 1).unwrap()[0].name,
            "0-1 Conv2D+MaxPool2D"
        );
    }

    #[test]
    fn profile_has_a_row_per_layer_and_matches_train_step() {
        let spec = crate::examples::lenet();
        let (x, labels) = synthetic_batch(&spec, 3, 2).unwrap();
        let mut a = Model::new(&spec, Init::He, 5).unwrap();
        let mut b = a.clone();
        let rows = Profiler::new().step(&mut a, &x, &labels);
        assert_eq!(rows.len(), spec.layers.len() + 2);
        assert_eq!(rows[0].name, "0 Conv2D");
        assert_eq!(rows[0].forward_flops, 3 * 2 * 32 * 784 * 9);
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.01, 0.0);
        b.train_step(&x, &labels, &mut opt).unwrap();
        // The profiled step is the same computation as a training step.
        let pa: Vec<_> = a
            .named_params()
            .iter()
            .map(|(_, p)| p.value.clone())
            .collect();
        let pb: Vec<_> = b
            .named_params()
            .iter()
            .map(|(_, p)| p.value.clone())
            .collect();
        assert_eq!(pa, pb);
    }
}
