//! The time of a prediction through the library's Rust API, the baseline that
//! `python/tools/overhead.py` measures `cnn.Model.predict` against: bytes of the demo set's
//! test images to class probabilities (the normalisation of `cnn predict`, then
//! `Model::predict_proba`), called from a program's main thread as a Rust user would, with
//! rayon's default pool.
//!
//! ```text
//! cargo run --release --example predict_latency -- MODEL [BATCH ...]
//! ```
//!
//! Prints one line per batch size: `batch N: median X us (R runs)`.

use std::time::Instant;

use cnn::data::{demo, Split};
use cnn::model_file;
use cnn::tensor::Tensor;

fn main() -> cnn::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: predict_latency MODEL [BATCH ...]");
    let batches: Vec<usize> = match args.get(1..) {
        Some(b) if !b.is_empty() => b.iter().map(|s| s.parse().expect("a batch size")).collect(),
        _ => vec![1, 1000],
    };
    let (mut model, meta) = model_file::load(std::path::Path::new(path))?;
    let test = demo(Split::Test)?;
    let [c, h, w] = test.shape;
    let norm = &meta.normalization;
    for n in batches {
        let bytes: Vec<u8> = (0..n)
            .flat_map(|i| test.image(i % test.len()).to_vec())
            .collect();
        let runs = if n == 1 { 2000 } else { 60 };
        let mut times = Vec::with_capacity(runs);
        for run in 0..runs + runs / 10 {
            let start = Instant::now();
            let mut x = Tensor::zeros(&[n, c, h, w]);
            let plane = h * w;
            let planes = x.data_mut().chunks_mut(plane).zip(bytes.chunks(plane));
            for (k, (d, s)) in planes.enumerate() {
                let (m, sd) = (norm.mean[k % c], norm.std[k % c]);
                for (d, &b) in d.iter_mut().zip(s) {
                    *d = (f32::from(b) / 255.0 - m) / sd;
                }
            }
            let p = model.predict_proba(&x)?;
            std::hint::black_box(p);
            // The first tenth warms up.
            if run >= runs / 10 {
                times.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "batch {n}: median {:.1} us ({runs} runs)",
            times[times.len() / 2]
        );
    }
    Ok(())
}
