//! The worker threads: one rayon pool per thread count asked for, made on first use and kept
//! (as `cnn` makes one for a command), with the stack size the command line gives its
//! threads, since a whole training run goes on one of them.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use rayon::ThreadPool;

use crate::errors::value_error;

/// Worker threads allowed per core: more only take turns (the command line's bound).
const THREADS_PER_CORE: usize = 4;

/// Cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get())
}

/// The pool of `threads` workers (every core when `None`), checked as `--threads` is.
pub fn pool(threads: Option<i64>) -> PyResult<Arc<ThreadPool>> {
    static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());
    let cores = cores();
    let max = THREADS_PER_CORE * cores;
    let n = match threads {
        None => cores,
        Some(t) if t < 1 => return Err(value_error("threads must be at least 1")),
        Some(t) if t as u64 > max as u64 => {
            return Err(value_error(format!(
                "threads must be at most {max} here ({THREADS_PER_CORE} per core, {cores} \
                 cores): more threads than cores take turns and slow the work down; leave \
                 threads out to use every core"
            )))
        }
        Some(t) => t as usize,
    };
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = pools.iter().find(|(k, _)| *k == n) {
        return Ok(p.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .stack_size(8 << 20)
        .thread_name(|i| format!("cnn-worker-{i}"))
        .build()
        .map_err(|e| value_error(format!("cannot start {n} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.push((n, pool.clone()));
    Ok(pool)
}
