//! How long a tiny parallel loop takes after a serial gap, with rayon's idle workers
//! sleeping (the default) and with them kept polling by `with_awake_workers`.
//!
//! ```sh
//! cargo run --release --example wake_latency
//! ```
//!
//! On the development machine (2 cores): a loop of two 5 us halves took a median 10 us
//! (gaps up to 50 us: the calling thread ran both halves) to 25 us (gaps of 100 us and
//! more: it waited for the woken worker) with sleeping workers, and 6 us with polling ones.

use cnn::kernels::threads::with_awake_workers;
use rayon::prelude::*;
use std::time::{Duration, Instant};

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {}
}

/// Median and 90th percentile, in us, of a loop of two 5 us halves after each serial gap.
fn measure(label: &str) {
    for gap_us in [0u64, 5, 10, 50, 100, 500] {
        let mut v: Vec<f64> = (0..300)
            .map(|_| {
                spin(Duration::from_micros(gap_us));
                let t = Instant::now();
                (0..2)
                    .into_par_iter()
                    .for_each(|_| spin(Duration::from_micros(5)));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        v.sort_by(f64::total_cmp);
        println!(
            "{label}: gap {gap_us:>3} us -> loop of 2 x 5 us takes median {:.1} us, p90 {:.1} us",
            v[150], v[270]
        );
    }
}

fn main() {
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(2).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot start 2 threads: {e}");
            std::process::exit(1);
        }
    };
    pool.install(|| rayon::scope(|_| measure("workers sleep  ")));
    pool.install(|| with_awake_workers(|| measure("workers polling")));
}
