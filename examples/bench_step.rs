//! Times report 1's network (a training step at batch 32, inference at batches 1 and 1000)
//! and LeNet-style's (a step at batch 128), with a per-layer profile of each step:
//! `cargo run --release --example bench_step [quick]`. `kernels` times report 1's first
//! layer's kernels instead, and `r1` or `lenet` only that network's steps (for `perf record`).
//! Set RAYON_NUM_THREADS to choose the thread count.

use cnn::bench::{
    peak_gflops, synthetic_batch, time_inference, time_training_steps, LayerTiming, Profiler,
};
use cnn::examples::{lenet as lenet_spec, report1 as report1_spec};
use cnn::init::Init;
use cnn::model::Model;

fn med(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Min and median microseconds of `f` over `reps` calls on this thread (the minimum is the
/// robust figure on a shared machine: it is the run that got a core to itself).
fn micro(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[0], v[reps / 2])
}

/// The conv kernels of report 1's first layer (K 16, C kh kw 9, H'W' 784), one sample.
fn kernels() {
    use cnn::kernels::gemm::{gemm, MatMut, MatRef};
    let mut r = cnn::rng::Rng::new(1);
    let mut rnd = |n: usize| -> Vec<f32> { (0..n).map(|_| r.normal() as f32).collect() };
    let (k, rows, ohw) = (16, 9, 784);
    let (w, cols, dy, b) = (rnd(k * rows), rnd(rows * ohw), rnd(k * ohw), rnd(k));
    let mut y = vec![0.0; k * ohw];
    let mut dw = vec![0.0; k * rows];
    let flops = 2.0 * (k * rows * ohw) as f64;
    let show = |name: &str, (mn, md): (f64, f64)| {
        println!(
            "  {name:<34} min {mn:7.2} us  median {md:7.2} us  ({:5.1} GFLOP/s at min)",
            flops / mn / 1e3
        )
    };
    show(
        "fwd gemm (fill bias, beta 1)",
        micro(2000, || {
            for (kk, row) in y.chunks_mut(ohw).enumerate() {
                row.fill(b[kk]);
            }
            let (wm, cm) = (MatRef::new(&w, k, rows), MatRef::new(&cols, rows, ohw));
            gemm(wm, cm, 1.0, MatMut::new(&mut y, k, ohw));
        }),
    );
    show(
        "dW gemm (dy * cols^T)",
        micro(2000, || {
            let (dym, cols_t) = (MatRef::new(&dy, k, ohw), MatRef::new(&cols, rows, ohw).t());
            gemm(dym, cols_t, 0.0, MatMut::new(&mut dw, k, rows))
        }),
    );

    // Whole layers of report 1 at batch 32.
    use cnn::layers::*;
    let n = 32;
    let spec = report1_spec(10);
    let shapes = spec.shapes().unwrap();
    for (l, s) in spec.layers.iter().zip(&shapes) {
        let mut layer = Layer::new(l, &s.input).unwrap();
        let mut shape = vec![n];
        shape.extend_from_slice(&s.input);
        let len: usize = shape.iter().product();
        let x = cnn::Tensor::from_vec(&shape, rnd(len)).unwrap();
        let mut y = cnn::Tensor::default();
        let mut dx = cnn::Tensor::default();
        let (fm, fd) = micro(300, || layer.forward(&x, &mut y));
        let mut dy = y.clone();
        let (bm, bd) = micro(300, || layer.backward(&x, &y, &mut dy, Some(&mut dx)));
        println!("  layer {:<10} fwd min {fm:8.1} us med {fd:8.1} us | bwd(with dx) min {bm:8.1} us med {bd:8.1} us", l.name());
    }
}

fn main() -> cnn::Result<()> {
    if std::env::args().any(|a| a == "kernels") {
        kernels();
        return Ok(());
    }
    if let Some(which) = std::env::args().find(|a| a == "r1" || a == "lenet") {
        // Only the training steps of one benchmark, many of them (for `perf record`).
        let (spec, batch) = if which == "r1" {
            (report1_spec(10), 32)
        } else {
            (lenet_spec(), 128)
        };
        let t = time_training_steps(&spec, batch, 5, if which == "r1" { 400 } else { 30 })?;
        println!(
            "{which} train: median {:.3} ms/step (min {:.3}), {:.1} GFLOP/s",
            t.median_s * 1e3,
            t.min_s * 1e3,
            t.gflops
        );
        return Ok(());
    }
    let quick = std::env::args().any(|a| a == "quick");
    let runs = if quick { 15 } else { 41 };
    println!("threads {}", rayon::current_num_threads());
    println!("peak sgemm 1024^3: {:.1} GFLOP/s", peak_gflops());
    for (name, spec, batch, epoch_steps) in [
        ("report1 b32", report1_spec(10), 32, 60_000.0 / 32.0),
        ("lenet b128", lenet_spec(), 128, 60_000.0 / 128.0),
    ] {
        let t = time_training_steps(&spec, batch, 5, runs)?;
        println!(
            "{name} train: median {:.3} ms/step (min {:.3} max {:.3}), {:.1} GFLOP/s, {:.2} s/epoch",
            t.median_s * 1e3,
            t.min_s * 1e3,
            t.max_s * 1e3,
            t.gflops,
            t.median_s * epoch_steps
        );
        // Per-layer profile: median of each row over repeated steps.
        let mut model = Model::new(&spec, Init::He, 1)?;
        let (x, labels) = synthetic_batch(&spec, batch, 1)?;
        let mut all: Vec<Vec<LayerTiming>> = Vec::new();
        let mut profiler = Profiler::new();
        for i in 0..runs {
            let rows = profiler.step(&mut model, &x, &labels);
            if i >= 3 {
                all.push(rows);
            }
        }
        for r in 0..all[0].len() {
            let f = med(all.iter().map(|p| p[r].forward_ms).collect());
            let b = med(all.iter().map(|p| p[r].backward_ms).collect());
            let row = &all[0][r];
            let gf = |flops: u64, ms: f64| {
                if ms > 0.0 {
                    flops as f64 / ms / 1e6
                } else {
                    0.0
                }
            };
            println!(
                "  {:<12} fwd {:7.3} ms ({:6.1} GFLOP/s)  bwd {:7.3} ms ({:6.1} GFLOP/s)",
                row.name,
                f,
                gf(row.forward_flops, f),
                b,
                gf(row.backward_flops, b)
            );
        }
    }
    let spec = report1_spec(10);
    for batch in [1, 1000] {
        let t = time_inference(&spec, batch, 5, if batch == 1 { 201 } else { runs })?;
        println!(
            "report1 inference b{batch}: {:.2} us/image ({:.1} GFLOP/s)",
            t.median_s * 1e6 / batch as f64,
            t.gflops
        );
    }
    Ok(())
}
