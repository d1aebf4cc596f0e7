//! `cnn bench CONFIG`: how fast training and inference run on this machine, in images/s,
//! GFLOP/s and share of the machine's measured peak.

use std::path::PathBuf;

use clap::Args;
use cnn::bench::{
    peak_gflops, profile_inference, synthetic_batch, time_inference, time_training_steps, Profiler,
};
use cnn::init::Init;
use cnn::model::Model;

use super::CmdResult;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn bench report1-10 --threads 2 --runs 30 --profile\n  \
    cnn bench lenet --batch-size 128 --inference-batch 1,256")]
pub struct BenchArgs {
    /// The network config file, or a built-in example's name (`cnn examples`).
    config: PathBuf,
    /// Images per training step.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true,
          value_parser = super::arg_values::at_least_one)]
    batch_size: usize,
    /// Batch sizes for the inference timings.
    #[arg(long, value_delimiter = ',', default_value = "1,1000", allow_negative_numbers = true,
          value_parser = super::arg_values::at_least_one)]
    inference_batch: Vec<usize>,
    /// Timed repetitions (after a warm-up); the median is reported.
    #[arg(long, default_value_t = 20, allow_negative_numbers = true,
          value_parser = super::arg_values::at_least_one)]
    runs: usize,
    /// Worker threads [default: all cores; at most 4 per core].
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::thread_count)]
    pub(super) threads: Option<usize>,
    /// Also print the time of each step of the inference passes and each layer's forward
    /// and backward time in a training step.
    #[arg(long)]
    profile: bool,
    /// Epoch size used to turn a step time into seconds per epoch.
    #[arg(long, default_value_t = 60_000, allow_negative_numbers = true,
          value_parser = super::arg_values::at_least_one)]
    epoch_images: usize,
}

pub fn run(args: BenchArgs) -> CmdResult {
    let parsed = cnn::config::load(&args.config)?;
    let spec = &parsed.spec;
    let threads = rayon::current_num_threads();
    let peak = peak_gflops();
    println!(
        "{}: {threads} threads; machine peak {peak:.1} GFLOP/s (best of 1024^3 matrix multiplies over half a second)",
        args.config.display()
    );
    let runs = args.runs;
    let t = time_training_steps(spec, args.batch_size, 3, runs)?;
    let steps = args.epoch_images.div_ceil(args.batch_size);
    println!(
        "train step, batch {:>4}: {:>9.3} ms median (min {:.3}, max {:.3}) {:>10.0} img/s {:>7.1} GFLOP/s ({:.0}% of peak)  = {:.2} s per {}-image epoch",
        t.batch,
        t.median_s * 1e3,
        t.min_s * 1e3,
        t.max_s * 1e3,
        t.images_per_s,
        t.gflops,
        100.0 * t.gflops / peak.max(1e-9),
        t.median_s * steps as f64,
        args.epoch_images
    );
    for &b in &args.inference_batch {
        let t = time_inference(spec, b, 3, runs)?;
        println!(
            "inference,  batch {:>4}: {:>9.3} ms median (min {:.3}, max {:.3}) {:>10.0} img/s {:>7.1} GFLOP/s ({:.0}% of peak)  = {:.1} us per image",
            t.batch,
            t.median_s * 1e3,
            t.min_s * 1e3,
            t.max_s * 1e3,
            t.images_per_s,
            t.gflops,
            100.0 * t.gflops / peak.max(1e-9),
            t.median_s * 1e6 / t.batch as f64
        );
    }
    if args.profile {
        for &b in &args.inference_batch {
            let rows = profile_inference(spec, b, 3, runs)?;
            println!(
                "\ninference by step, batch {b} (median of {runs} passes):\n{:<36} {:>10} {:>12} {:>8}",
                "step", "ms", "GFLOP/s", "of peak"
            );
            for r in rows {
                let share = if r.flops > 0 {
                    format!("{:.0}%", 100.0 * r.gflops / peak.max(1e-9))
                } else {
                    String::new()
                };
                println!(
                    "{:<36} {:>10.4} {:>12.1} {share:>8}",
                    r.name, r.ms, r.gflops
                );
            }
        }
        let mut model = Model::new(spec, Init::He, 1)?;
        let (x, labels) = synthetic_batch(spec, args.batch_size, 1)?;
        // Warm up the buffers, then keep the median of several profiles per layer.
        let mut profiler = Profiler::new();
        let mut rows: Vec<Vec<cnn::bench::LayerTiming>> = Vec::new();
        for _ in 0..runs.min(11) + 2 {
            rows.push(profiler.step(&mut model, &x, &labels));
        }
        rows.drain(..2);
        println!(
            "\ntraining by layer, batch {} (median of {} steps):",
            args.batch_size,
            rows.len()
        );
        println!(
            "{:<28} {:>10} {:>10} {:>12} {:>12}",
            "layer", "fwd ms", "bwd ms", "fwd GFLOP/s", "bwd GFLOP/s"
        );
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for i in 0..rows[0].len() {
            let name = &rows[0][i].name;
            let f = median(rows.iter().map(|r| r[i].forward_ms).collect());
            let b = median(rows.iter().map(|r| r[i].backward_ms).collect());
            let fg = median(rows.iter().map(|r| r[i].forward_gflops).collect());
            let bg = median(rows.iter().map(|r| r[i].backward_gflops).collect());
            println!("{name:<28} {f:>10.3} {b:>10.3} {fg:>12.1} {bg:>12.1}");
        }
    }
    Ok(())
}
