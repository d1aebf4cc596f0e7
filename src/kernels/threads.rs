//! Keeping the thread pool's workers awake for the length of a computation.
//!
//! A training step is a chain of short parallel loops (one or two per layer, forward and
//! backward) separated by short serial parts. A rayon worker that finds no work for a few
//! microseconds goes to sleep, and waking it again took 15-20 us on the development
//! machine. `cargo run --release --example wake_latency` measures it: a loop of two 5 us
//! halves took a median 10-25 us with sleeping workers (the calling thread did both halves
//! alone, or waited for the woken worker) and 6 us with polling ones. At one such wait per
//! parallel loop, that was most of the gap between one and two threads on small batches.
//! [`with_awake_workers`] parks one polling job on every other worker instead: it runs each
//! job the computation hands out as soon as it appears. Between polls it yields its core to
//! the operating system, so on a busy machine other processes still get their turn.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a polling thread polls between offering its core to the operating system.
/// Offering it after every empty poll put the thread in the kernel for most of its time
/// (a `sched_yield` took microseconds on the development machine's virtual CPU), so that a
/// job handed out then waited for it: report 1's network at batch 1 spent about 3 of its
/// 8 us waiting for the second half to start.
const OS_YIELD_EVERY: Duration = Duration::from_micros(50);

/// Runs `f` on one of rayon's threads while every other thread of the current pool polls
/// for work instead of sleeping, and returns its result. The polling threads use their
/// cores fully until `f` returns (or panics): use this around computations, not around
/// waiting for input.
///
/// Results do not change: the same jobs run, only sooner.
pub fn with_awake_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    rayon::scope(|s| {
        let pollers = rayon::current_num_threads() - 1;
        let owner = rayon::current_thread_index();
        let (done_ref, started_ref) = (&done, &started);
        for _ in 0..pollers {
            s.spawn(move |_| {
                // A poller taken by the thread that runs `f` (possible only while `f`
                // waits on a parallel loop) must not run there: it would hold that thread
                // until `f` returns, and `f` would wait for it.
                if rayon::current_thread_index() == owner {
                    return;
                }
                started_ref.fetch_add(1, Ordering::AcqRel);
                let mut os_yield = Instant::now();
                while !done_ref.load(Ordering::Acquire) {
                    if rayon::yield_now() == Some(rayon::Yield::Executed) {
                        continue;
                    }
                    if os_yield.elapsed() < OS_YIELD_EVERY {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                        os_yield = Instant::now();
                    }
                }
            });
        }
        // Wait (outside rayon, so this thread takes none of them) until the pollers run on
        // the other threads, or give up after 50 ms if they are busy elsewhere.
        let t = Instant::now();
        while started.load(Ordering::Acquire) < pollers && t.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
        // Stops the pollers when `f` returns or unwinds, so the scope can end.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _stop = Stop(&done);
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn work_done_with_awake_workers_gives_the_same_result_and_returns() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let sum = pool.install(|| {
            with_awake_workers(|| {
                (0..50)
                    .map(|round| {
                        (0..10_000u64)
                            .into_par_iter()
                            .map(|i| i * round)
                            .sum::<u64>()
                    })
                    .sum::<u64>()
            })
        });
        // sum over rounds of round * (0 + ... + 9999) = 1225 * 49_995_000
        assert_eq!(sum, 1225 * 49_995_000);
    }

    #[test]
    fn a_panic_inside_stops_the_pollers_and_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| with_awake_workers(|| panic!("inside")))
        }));
        assert!(caught.is_err());
    }

    #[test]
    fn on_one_thread_it_just_runs_the_closure() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| with_awake_workers(|| 7)), 7);
    }
}
