//! The dynamic batcher: predictions that arrive together run as one forward pass.
//!
//! A request handler reads and decodes its image and normalises it (on a blocking thread
//! of its own, in parallel with the others), then hands the input to the batcher as a
//! [`Job`] with a one-shot channel for its answer, and waits. A worker thread (one of
//! [`Batching::workers`], `--workers`, which take turns at the queue) takes the oldest job
//! waiting and gathers more: those already queued, then those that arrive until
//! the oldest has waited [`Batching::wait`] (`--batch-wait-ms`), at most
//! [`Batching::max_batch`] (`--max-batch`) in all, as Triton's dynamic batcher does with its
//! queue delay, with one difference: it waits only while another prediction is on its way
//! (its image read and being decoded, [`Coming`]). A request alone, with nothing behind
//! it, goes at once instead of waiting for company that cannot come (at one connection,
//! waiting 2 ms made every answer 2 ms later). The batch is one call of
//! [`Model::predict_proba`], whose layers spread it over the cores, and each job gets its
//! row back. Under load the queue fills while a pass runs, and the next worker gathers it
//! meanwhile, so the next batch is ready without waiting. A wait of zero turns batching off: each request is a pass of its own.
//!
//! A pass needs `&mut Model` (the layers keep their buffers), so each worker runs a copy of
//! its own of the served model ([`Snapshot`]), taken again when the model file changes;
//! nothing holds a lock across a pass, and the requests that read every layer's output run
//! on another copy (`super::api`).
//!
//! Batching does not change an answer: inference gives each image the bits it gets alone
//! whatever the batch (`Model::infer`, tested there), so a request's probabilities are
//! those of `cnn predict` on the same image, bit for bit, in a batch of one or of 64.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::oneshot;

use super::api::ApiError;
use super::source::{lock, Models, Snapshot};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor::Tensor;

/// How predictions are batched (`cnn serve --batch-wait-ms --max-batch`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    /// How long the oldest request of a batch may wait for others to join it; zero turns
    /// batching off (each request is a pass of its own).
    pub wait: Duration,
    /// The most requests in one pass.
    pub max_batch: usize,
    /// How many passes may run at once, each by a worker with a copy of the model of its
    /// own (Triton's instance count): while one worker runs a pass, the next gathers the
    /// requests that arrive meanwhile and starts as soon as it has them.
    pub workers: usize,
}

impl Batching {
    /// `--batch-wait-ms`'s default: long enough for requests sent together to meet, short
    /// against a request's own time over the network.
    pub const DEFAULT_WAIT_MS: f64 = 2.0;
    /// `--max-batch`'s default (measured: see docs/PERFORMANCE.md).
    pub const DEFAULT_MAX_BATCH: usize = 32;
    /// The longest wait accepted, in milliseconds.
    pub const MAX_WAIT_MS: f64 = 1000.0;
    /// The largest batch accepted.
    pub const MAX_MAX_BATCH: usize = 1024;
    /// `--workers`' default (measured: see docs/PERFORMANCE.md).
    pub const DEFAULT_WORKERS: usize = 2;
    /// The most workers accepted.
    pub const MAX_WORKERS: usize = 64;

    /// A wait of `wait_ms` milliseconds (0 to [`Batching::MAX_WAIT_MS`], fractions allowed),
    /// batches of at most `max_batch` (1 to [`Batching::MAX_MAX_BATCH`]), `workers` passes
    /// at once (1 to [`Batching::MAX_WORKERS`]).
    ///
    /// # Errors
    /// [`Error::Usage`] naming the flag, for a value out of range.
    pub fn new(wait_ms: f64, max_batch: usize, workers: usize) -> Result<Batching> {
        if !(0.0..=Self::MAX_WAIT_MS).contains(&wait_ms) {
            return Err(Error::Usage(format!(
                "--batch-wait-ms must be from 0 (no batching) to {} milliseconds, not {wait_ms}",
                Self::MAX_WAIT_MS
            )));
        }
        if !(1..=Self::MAX_MAX_BATCH).contains(&max_batch) {
            return Err(Error::Usage(format!(
                "--max-batch must be from 1 to {}, not {max_batch}",
                Self::MAX_MAX_BATCH
            )));
        }
        if !(1..=Self::MAX_WORKERS).contains(&workers) {
            return Err(Error::Usage(format!(
                "--workers must be from 1 to {}, not {workers}",
                Self::MAX_WORKERS
            )));
        }
        Ok(Batching {
            wait: Duration::from_secs_f64(wait_ms / 1000.0),
            max_batch,
            workers,
        })
    }

    /// The most requests in one pass: 1 when batching is off.
    fn limit(&self) -> usize {
        if self.wait.is_zero() {
            1
        } else {
            self.max_batch
        }
    }
}

impl Default for Batching {
    fn default() -> Batching {
        Batching::new(
            Self::DEFAULT_WAIT_MS,
            Self::DEFAULT_MAX_BATCH,
            Self::DEFAULT_WORKERS,
        )
        .expect("in range")
    }
}

/// One image to predict.
pub(super) struct Job {
    /// The input as the first layer reads it, normalised for model version `version`.
    pub input: Vec<f32>,
    /// Its pixels (C, H, W bytes), to normalise again if the model changed meanwhile.
    pub pixels: Vec<u8>,
    pub version: u64,
    arrived: Instant,
    reply: oneshot::Sender<std::result::Result<Answer, ApiError>>,
}

/// A job's answer.
pub(super) struct Answer {
    /// Softmax of the logits, in class order.
    pub probabilities: Vec<f32>,
    /// The model that answered (its classes and version).
    pub model: Arc<Snapshot>,
    /// How many images the pass held, this one included.
    pub batch: usize,
}

/// Counts of the passes run, for `/api/model`.
#[derive(Debug, Default)]
pub(super) struct Counts {
    passes: AtomicU64,
    images: AtomicU64,
    largest: AtomicU64,
}

impl Counts {
    fn add(&self, n: usize) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.images.fetch_add(n as u64, Ordering::Relaxed);
        self.largest.fetch_max(n as u64, Ordering::Relaxed);
    }

    /// (passes, images, largest batch).
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.passes.load(Ordering::Relaxed),
            self.images.load(Ordering::Relaxed),
            self.largest.load(Ordering::Relaxed),
        )
    }
}

/// The queue of jobs and the workers that run them.
pub(super) struct Batcher {
    queue: Sender<Job>,
    pub batching: Batching,
    pub counts: Arc<Counts>,
    /// Predictions being decoded, which a worker may wait for.
    coming: Arc<AtomicUsize>,
}

/// A prediction on its way to the batcher, counted from when its image has been read until
/// just before it is queued (or until it fails): while there is one, a batch may wait for
/// it.
pub(super) struct Coming(Arc<AtomicUsize>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Batcher {
    /// Starts the workers, which serve `models`' current model.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(models: Arc<Models>, batching: Batching) -> Result<Batcher> {
        let (queue, jobs) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let coming = Arc::new(AtomicUsize::new(0));
        // The workers take turns at the queue: one gathers a batch while the others run
        // theirs.
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..batching.workers {
            let (jobs, models) = (Arc::clone(&jobs), Arc::clone(&models));
            let (counts, coming) = (Arc::clone(&counts), Arc::clone(&coming));
            std::thread::Builder::new()
                .name(format!("cnn-batcher-{i}"))
                .spawn(move || work(&jobs, &models, batching, &counts, &coming))
                .map_err(|e| Error::Invalid(format!("cannot start a batcher's thread: {e}")))?;
        }
        Ok(Batcher {
            queue,
            batching,
            counts,
            coming,
        })
    }

    /// Counts a prediction as on its way until the [`Coming`] is given to
    /// [`Batcher::predict`] or dropped.
    pub fn coming(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming(Arc::clone(&self.coming))
    }

    /// Queues `input` (normalised for model version `version`, from `pixels`) and waits for
    /// its answer; `coming` stops counting as the job is queued.
    pub async fn predict(
        &self,
        input: Vec<f32>,
        pixels: Vec<u8>,
        version: u64,
        coming: Coming,
    ) -> std::result::Result<Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            pixels,
            version,
            arrived: Instant::now(),
            reply,
        };
        let gone = || {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the prediction worker stopped; restart cnn serve",
            )
        };
        // Not counted once it can be in the queue: a worker that took it from there would
        // otherwise wait for itself, for the whole wait, with nothing else coming.
        drop(coming);
        self.queue.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// A worker: gathers a batch, runs it on its copy of the current model, answers; until
/// the queue closes.
fn work(
    jobs: &Mutex<Receiver<Job>>,
    models: &Models,
    batching: Batching,
    counts: &Counts,
    coming: &AtomicUsize,
) {
    let mut copy: Option<(Arc<Snapshot>, Model)> = None;
    loop {
        let Some(batch) = gather(&lock(jobs), batching, coming) else {
            return;
        };
        let snapshot = models.current();
        let model = match &mut copy {
            Some((s, m)) if s.version == snapshot.version => m,
            _ => {
                let model = snapshot.model.clone();
                &mut copy.insert((Arc::clone(&snapshot), model)).1
            }
        };
        run(batch, &snapshot, model, counts);
    }
}

/// The next batch: the oldest job, the jobs queued behind it, and those that arrive until
/// it has waited `batching.wait` while others are `coming`, at most `batching.limit()`.
/// `None` once the queue is closed and empty.
fn gather(jobs: &Receiver<Job>, batching: Batching, coming: &AtomicUsize) -> Option<Vec<Job>> {
    let first = jobs.recv().ok()?;
    let deadline = first.arrived + batching.wait;
    let limit = batching.limit();
    let mut batch = Vec::with_capacity(limit);
    batch.push(first);
    while batch.len() < limit {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || coming.load(Ordering::SeqCst) == 0 {
                    break;
                }
                match jobs.recv_timeout(left) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        batch.push(job);
    }
    Some(batch)
}

/// Runs `batch` on `model` (a copy of `snapshot`'s) as one pass, counts it in `counts`
/// (before answering, so that a client that got its answer sees the pass counted), and
/// answers each job; a batch whose clients have all gone is not run.
fn run(batch: Vec<Job>, snapshot: &Arc<Snapshot>, model: &mut Model, counts: &Counts) {
    let [c, h, w] = model.input_shape();
    let mut x = Vec::with_capacity(batch.len() * c * h * w);
    let mut waiting = Vec::with_capacity(batch.len());
    for mut job in batch {
        if job.reply.is_closed() {
            continue;
        }
        let pixels = std::mem::take(&mut job.pixels);
        let input = std::mem::take(&mut job.input);
        match input_for(snapshot, input, &pixels, job.version) {
            Ok(input) => x.extend_from_slice(&input),
            Err(e) => {
                let _ = job.reply.send(Err(e));
                continue;
            }
        }
        waiting.push(job);
    }
    let n = waiting.len();
    if n == 0 {
        return;
    }
    let k = model.classes();
    let probabilities = Tensor::from_vec(&[n, c, h, w], x).and_then(|x| {
        // A panic in a layer would be a bug; it fails this batch, not the worker.
        std::panic::catch_unwind(AssertUnwindSafe(|| model.predict_proba(&x))).unwrap_or_else(
            |_| {
                Err(Error::Invalid(
                    "the forward pass failed (a bug: please report it)".into(),
                ))
            },
        )
    });
    counts.add(n);
    match probabilities {
        Ok(p) => {
            for (job, row) in waiting.into_iter().zip(p.data().chunks(k)) {
                let _ = job.reply.send(Ok(Answer {
                    probabilities: row.to_vec(),
                    model: Arc::clone(snapshot),
                    batch: n,
                }));
            }
        }
        Err(e) => {
            for job in waiting {
                let error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
                let _ = job.reply.send(Err(error));
            }
        }
    }
}

/// The input of an image for `snapshot`'s model: `input` when it was normalised for that
/// model version, else its `pixels` normalised again (the model file changed since the
/// image was read); 409 when the new model takes images of another size.
pub(super) fn input_for(
    snapshot: &Snapshot,
    input: Vec<f32>,
    pixels: &[u8],
    version: u64,
) -> std::result::Result<Vec<f32>, ApiError> {
    if version == snapshot.version {
        return Ok(input);
    }
    let [c, h, w] = snapshot.model.input_shape();
    if pixels.len() != c * h * w {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the served model changed to one that takes {c}x{h}x{w} images while this one \
                 was read; send it again"
            ),
        ));
    }
    Ok(snapshot.meta.normalization.image(pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        arrived: Instant,
    ) -> (
        Job,
        oneshot::Receiver<std::result::Result<Answer, ApiError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input: Vec::new(),
            pixels: Vec::new(),
            version: 1,
            arrived,
            reply,
        };
        (job, answer)
    }

    /// Queued jobs go together up to the limit; the rest make the next batch. With no
    /// wait, one job per batch.
    #[test]
    fn a_batch_takes_the_jobs_queued_up_to_the_limit() {
        let (tx, rx) = mpsc::channel();
        let mut answers = Vec::new();
        for _ in 0..5 {
            let (j, a) = job(Instant::now());
            tx.send(j).unwrap();
            answers.push(a);
        }
        let batching = Batching::new(1000.0, 3, 1).unwrap();
        let none = AtomicUsize::new(0);
        assert_eq!(gather(&rx, batching, &none).unwrap().len(), 3);
        // Two left, and nothing on its way: they go at once.
        let start = Instant::now();
        assert_eq!(gather(&rx, batching, &none).unwrap().len(), 2);
        assert!(start.elapsed() < Duration::from_millis(500));
        // One on its way: the batch waits for it, until the oldest has waited a second...
        let one = AtomicUsize::new(1);
        for _ in 0..2 {
            tx.send(job(Instant::now()).0).unwrap();
        }
        let start = Instant::now();
        let (late, _a) = job(Instant::now());
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send(late).unwrap();
            tx
        });
        assert_eq!(gather(&rx, batching, &one).unwrap().len(), 3);
        assert!(start.elapsed() >= Duration::from_millis(40));
        let tx = sender.join().unwrap();
        // ...and no longer than that: a job that arrived long ago goes at once, alone.
        let (old, _a) = job(Instant::now() - Duration::from_secs(5));
        tx.send(old).unwrap();
        let start = Instant::now();
        assert_eq!(gather(&rx, batching, &one).unwrap().len(), 1);
        assert!(start.elapsed() < Duration::from_millis(500));
        // No wait: one at a time, whatever is queued.
        for _ in 0..2 {
            tx.send(job(Instant::now()).0).unwrap();
        }
        let off = Batching::new(0.0, 64, 1).unwrap();
        assert_eq!(gather(&rx, off, &one).unwrap().len(), 1);
        assert_eq!(gather(&rx, off, &one).unwrap().len(), 1);
        drop(tx);
        assert!(
            gather(&rx, off, &one).is_none(),
            "a closed queue ends the worker"
        );
    }

    #[test]
    fn waits_and_batch_sizes_out_of_range_are_usage_errors_naming_the_flag() {
        for (wait, max, workers, flag) in [
            (-1.0, 32, 2, "--batch-wait-ms"),
            (f64::NAN, 32, 2, "--batch-wait-ms"),
            (1000.5, 32, 2, "--batch-wait-ms"),
            (2.0, 0, 2, "--max-batch"),
            (2.0, 1025, 2, "--max-batch"),
            (2.0, 32, 0, "--workers"),
            (2.0, 32, 65, "--workers"),
        ] {
            match Batching::new(wait, max, workers) {
                Err(Error::Usage(msg)) => assert!(msg.starts_with(flag), "{msg}"),
                other => panic!("{wait} {max}: {other:?}"),
            }
        }
        let b = Batching::new(0.5, 1, 3).unwrap();
        assert_eq!(b.workers, 3);
        assert_eq!(b.wait, Duration::from_micros(500));
        assert_eq!(Batching::default().max_batch, Batching::DEFAULT_MAX_BATCH);
    }
}
