//! The worker threads. `threads=None` (every core) is rayon's global pool, built on first use
//! with the stack size the command line gives its threads (a whole training run goes on one
//! of them); a computation then runs from the calling thread as from a Rust program's main
//! thread, without handing it to a worker first (which cost a batch-1 `predict` tens of
//! microseconds). Another thread count gets a pool of its own, made on first use and kept.

use std::sync::{Arc, Mutex, Once};

use pyo3::prelude::*;
use rayon::ThreadPool;

use crate::errors::value_error;

/// Worker threads allowed per core: more only take turns (the command line's bound).
const THREADS_PER_CORE: usize = 4;

/// Where a computation runs.
pub enum Pool {
    /// rayon's global pool, every core.
    Global,
    /// A pool of the thread count asked for.
    Own(Arc<ThreadPool>),
}

impl Pool {
    /// Runs `f` with this pool as the one its parallel loops use.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Pool::Global => f(),
            Pool::Own(p) => p.install(f),
        }
    }

    /// Its number of threads.
    pub fn threads(&self) -> usize {
        match self {
            Pool::Global => rayon::current_num_threads(),
            Pool::Own(p) => p.current_num_threads(),
        }
    }
}

/// Cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get())
}

/// The pool of `threads` workers (every core when `None`), checked as `--threads` is.
pub fn pool(threads: Option<i64>) -> PyResult<Pool> {
    static GLOBAL: Once = Once::new();
    static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());
    let n = match threads {
        None => {
            GLOBAL.call_once(|| {
                // Fails only when something in this process built it already: then it is
                // used as it is.
                let _ = rayon::ThreadPoolBuilder::new()
                    .stack_size(8 << 20)
                    .thread_name(|i| format!("cnn-worker-{i}"))
                    .build_global();
            });
            return Ok(Pool::Global);
        }
        Some(t) if t < 1 => return Err(value_error("threads must be at least 1")),
        // Cores are counted only here: std's count reads /proc and the cgroup files, which
        // took half of a batch-1 prediction's time.
        Some(t) if t as u64 > (THREADS_PER_CORE * cores()) as u64 => {
            let (cores, max) = (cores(), THREADS_PER_CORE * cores());
            return Err(value_error(format!(
                "threads must be at most {max} here ({THREADS_PER_CORE} per core, {cores} \
                 cores): more threads than cores take turns and slow the work down; leave \
                 threads out to use every core"
            )));
        }
        Some(t) => t as usize,
    };
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = pools.iter().find(|(k, _)| *k == n) {
        return Ok(Pool::Own(p.clone()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .stack_size(8 << 20)
        .thread_name(|i| format!("cnn-worker-{i}"))
        .build()
        .map_err(|e| value_error(format!("cannot start {n} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.push((n, pool.clone()));
    Ok(Pool::Own(pool))
}
