//! The training loop: epochs of shuffled mini-batches, evaluation, and resumable state.
//!
//! One epoch visits every training image once, in an order drawn from
//! `Rng::for_purpose(seed, "shuffle-EPOCH")`. Because each epoch's order depends only on the
//! seed and the epoch number, a run can stop anywhere and resume from (epoch, step) with
//! bit-identical results: [`TrainState`] holds everything else that changes (the optimiser's
//! buffers and the running sums of the current epoch).
//!
//! The loop never prints: it reports through a callback, which also decides whether to go on.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Normalization};
use crate::error::{Error, Result};
use crate::model::{argmax, Model};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// What to train for, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Passes over the training set. Default 10 (report 1).
    pub epochs: usize,
    /// Images per gradient step. Default 32 (report 2).
    pub batch_size: usize,
    /// Shuffle each epoch (default true).
    pub shuffle: bool,
    /// The seed every random stream of the run derives from.
    pub seed: u64,
    /// Label smoothing eps of the training loss (see
    /// [`crate::loss::softmax_cross_entropy_smoothed`]). Default 0. The test loss after each
    /// epoch is plain cross-entropy, so that runs with and without smoothing compare.
    pub label_smoothing: f32,
    /// How the learning rate changes by epoch after the warm-up, from `base_lr`; default
    /// constant ([`crate::schedule`]).
    pub schedule: crate::schedule::Schedule,
    /// Epochs of warm-up before the schedule, linear per step; default 0.
    pub warmup: usize,
    /// The base rate the schedule starts from; `None`: the optimiser's rate is left alone.
    pub base_lr: Option<f32>,
    /// Random shifts, flips and erasing of the training images; default none.
    pub augment: crate::augment::Augment,
    /// Evaluate `val` after every N-th epoch and after the last (Keras's `validation_freq`);
    /// default 1, every epoch.
    pub eval_every: usize,
    /// Stop when the held-out figure stops improving ([`crate::early_stop`]); default never.
    pub early_stop: Option<crate::early_stop::EarlyStop>,
    /// The processes that train together, each step's batch split between them
    /// ([`crate::distributed`]); default none: this process computes every batch whole.
    pub processes: Option<crate::distributed::Processes>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 10,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            label_smoothing: 0.0,
            schedule: crate::schedule::Schedule::Constant,
            warmup: 0,
            base_lr: None,
            augment: crate::augment::Augment::default(),
            eval_every: 1,
            early_stop: None,
            processes: None,
        }
    }
}

/// One row of `metrics.csv`: an epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub loss: f64,
    /// Share of training images classified right during the epoch.
    pub accuracy: f64,
    /// Loss and accuracy on the held-out set after the epoch, when there is one. A run
    /// folder's `metrics.jsonl` names them `test_loss` and `test_accuracy` when that set is
    /// the test set (`val_` for a validation split); both read back.
    #[serde(alias = "test_loss")]
    pub val_loss: Option<f64>,
    #[serde(alias = "test_accuracy")]
    pub val_accuracy: Option<f64>,
    /// The learning rate of the epoch's last step (during warm-up the rate climbs step by
    /// step; after it, it is the epoch's).
    pub lr: f32,
    /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
    pub seconds: f64,
    pub images_per_second: f64,
}

/// Everything of a run that changes as it trains, besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Batches completed in the current epoch.
    pub step: usize,
    pub optimizer: Optimizer,
    pub history: Vec<EpochMetrics>,
    /// Running sums of the current epoch.
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub seconds: f64,
    /// What early stopping has seen (unchanged when the run does not stop early).
    pub early_stop: crate::early_stop::EarlyStopState,
}

impl TrainState {
    /// A run at its start.
    pub fn new(optimizer: Optimizer) -> TrainState {
        TrainState {
            epoch: 0,
            step: 0,
            optimizer,
            history: Vec::new(),
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            seconds: 0.0,
            early_stop: crate::early_stop::EarlyStopState::default(),
        }
    }
}

/// What the loop reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A gradient step finished: `step` of `steps` in 0-based `epoch`, with the batch's loss.
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f32,
    },
    /// An epoch finished (its metrics are the last of `state.history`).
    Epoch,
}

/// The callback's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop after this event (the state is consistent: the run can resume from it).
    Stop,
}

/// The order of the training images in `epoch` (0-based).
pub fn epoch_order(n: usize, epoch: usize, seed: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        Rng::for_purpose(seed, &format!("shuffle-{epoch}")).shuffle(&mut order);
    }
    order
}

/// The normalised value of a black pixel in each of `channels` channels: 0 before
/// normalisation is `-mean / std` after. Augmentation fills shifted-in pixels with it.
fn black_pixel(norm: &Normalization, channels: usize) -> Vec<f32> {
    (0..channels)
        .map(|ch| {
            let mean = norm.mean.get(ch).copied().unwrap_or(0.0);
            let std = norm.std.get(ch).copied().unwrap_or(1.0);
            -mean / std
        })
        .collect()
}

/// Applies `opts.augment` to every image of the batch `x`, whose images are the training
/// set's `idx`, in `epoch`; `fill` is [`black_pixel`].
fn augment_batch(
    x: &mut Tensor,
    idx: &[usize],
    fill: &[f32],
    opts: &TrainOptions,
    epoch: usize,
    scratch: &mut Vec<f32>,
) {
    let &[_, c, h, w] = x.shape() else {
        return;
    };
    for (image, &i) in x.data_mut().chunks_mut(c * h * w).zip(idx) {
        let mut rng = crate::augment::stream(opts.seed, epoch, i);
        opts.augment
            .apply(image, [c, h, w], fill, &mut rng, scratch);
    }
}

/// Trains `model` on `train` until `opts.epochs` epochs are done, early stopping says stop
/// (see [`crate::early_stop`]; the callback sees that epoch first) or the callback says
/// stop. Returns true when training is done (all epochs, or stopped early). After each
/// epoch (or each `opts.eval_every`-th, and the last) the model is evaluated on `val` if
/// given.
///
/// # Errors
/// [`Error::Diverged`] when a batch's loss is NaN or infinite, naming the epoch and step.
pub fn train(
    model: &mut Model,
    train: &Dataset,
    val: Option<&Dataset>,
    norm: &Normalization,
    opts: &TrainOptions,
    state: &mut TrainState,
    on_event: &mut dyn FnMut(&Event, &TrainState, &Model) -> Control,
) -> Result<bool> {
    if train.is_empty() {
        return Err(Error::Invalid("the training set is empty".into()));
    }
    if opts.batch_size == 0 {
        return Err(Error::Invalid("batch size must be at least 1".into()));
    }
    let n = train.len();
    let steps = n.div_ceil(opts.batch_size);
    model.set_label_smoothing(opts.label_smoothing);
    let mut x = Tensor::default();
    let mut labels = Vec::new();
    let mut scratch = Vec::new();
    let fill = black_pixel(norm, train.shape[0]);
    while state.epoch < opts.epochs && state.early_stop.stopped_epoch.is_none() {
        let order = epoch_order(n, state.epoch, opts.seed, opts.shuffle);
        while state.step < steps {
            // The rate of this step, from (epoch, step) alone: a resumed run sets the same.
            if let Some(base) = opts.base_lr {
                state.optimizer.lr = crate::schedule::lr_at(
                    opts.schedule,
                    base,
                    state.epoch,
                    state.step,
                    steps,
                    opts.epochs,
                    opts.warmup,
                );
            }
            let start = Instant::now();
            let lo = state.step * opts.batch_size;
            let idx = &order[lo..(lo + opts.batch_size).min(n)];
            // With several processes, this one's share of the batch (whole blocks of it).
            let mine = match &opts.processes {
                Some(p) => {
                    let shard = p.shard(idx.len());
                    model.set_shard(shard);
                    &idx[shard.samples(idx.len())]
                }
                None => idx,
            };
            train.batch(mine, norm, &mut x, &mut labels);
            if !opts.augment.is_identity() {
                augment_batch(&mut x, mine, &fill, opts, state.epoch, &mut scratch);
            }
            model.set_step(opts.seed, state.epoch, state.step);
            let (loss, correct) = model.train_step(&x, &labels, &mut state.optimizer)?;
            if let Some(why) = divergence(model, loss) {
                return Err(Error::Diverged(format!(
                    "training diverged at epoch {}, step {}: {why}; \
                     try a lower learning rate (now {})",
                    state.epoch + 1,
                    state.step + 1,
                    state.optimizer.lr
                )));
            }
            state.seconds += start.elapsed().as_secs_f64();
            state.loss_sum += f64::from(loss) * idx.len() as f64;
            state.correct += correct as u64;
            state.seen += idx.len() as u64;
            state.step += 1;
            let event = Event::Step {
                epoch: state.epoch,
                step: state.step,
                steps,
                loss,
            };
            if agreed(opts, on_event(&event, state, model)) == Control::Stop && state.step < steps {
                return Ok(false);
            }
        }
        let done = state.epoch + 1;
        let evaluated = done.is_multiple_of(opts.eval_every.max(1)) || done == opts.epochs;
        let (val_loss, val_accuracy) = match val {
            Some(v) if !v.is_empty() && evaluated => {
                let e = evaluate(model, v, norm, 256, TestViews::ONE)?;
                (Some(e.loss), Some(e.accuracy))
            }
            _ => (None, None),
        };
        let seen = state.seen.max(1) as f64;
        state.history.push(EpochMetrics {
            epoch: state.epoch + 1,
            loss: state.loss_sum / seen,
            accuracy: state.correct as f64 / seen,
            val_loss,
            val_accuracy,
            lr: state.optimizer.lr,
            seconds: state.seconds,
            images_per_second: seen / state.seconds.max(1e-9),
        });
        state.epoch += 1;
        state.step = 0;
        state.loss_sum = 0.0;
        state.correct = 0;
        state.seen = 0;
        state.seconds = 0.0;
        let stop_early = match (&opts.early_stop, state.history.last()) {
            (Some(rule), Some(m)) => state.early_stop.update(rule, &m.clone()),
            _ => false,
        };
        if agreed(opts, on_event(&Event::Epoch, state, model)) == Control::Stop || stop_early {
            return Ok(state.epoch >= opts.epochs || stop_early);
        }
    }
    Ok(true)
}

/// The callback's answer, the same on every process training together: stop when any
/// process says stop (Ctrl-C reaches them at different steps; a full disk only the one that
/// writes), so that all stop after the same step.
fn agreed(opts: &TrainOptions, control: Control) -> Control {
    match &opts.processes {
        Some(p) if p.any(control == Control::Stop) => Control::Stop,
        Some(_) => Control::Continue,
        None => control,
    }
}

/// Multiple of ln(classes) (the loss of a uniform guess) above which a batch's loss counts
/// as diverged: a network that learns never comes near it.
pub const DIVERGED_LOSS_FACTOR: f32 = 100.0;

/// Why a training step shows divergence, if it does: a NaN or infinite loss or global
/// gradient norm ([`Model::grad_norm`]), naming the first layer whose values went bad, or a
/// loss above [`DIVERGED_LOSS_FACTOR`] x ln(classes).
pub fn divergence(model: &Model, loss: f32) -> Option<String> {
    let place = || match model.first_non_finite() {
        Some((i, what)) => format!(
            "; the first bad values are in the {what} of layer {i} ({})",
            model.layers()[i].spec.name()
        ),
        None => String::new(),
    };
    if !loss.is_finite() {
        return Some(format!("the loss is {loss}{}", place()));
    }
    let norm = model.grad_norm();
    if !norm.is_finite() {
        return Some(format!("the gradient norm is {norm}{}", place()));
    }
    let bound = DIVERGED_LOSS_FACTOR * (model.classes().max(2) as f32).ln();
    if loss > bound {
        return Some(format!(
            "the loss is {loss:.1}, over {bound:.1} = {DIVERGED_LOSS_FACTOR} x ln({} classes): \
             the weights are blowing up",
            model.classes()
        ));
    }
    None
}

/// The result of running a model over a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Share of images whose arg-max class is the label.
    pub accuracy: f64,
    /// Predicted class of each image, in dataset order.
    pub predictions: Vec<usize>,
    /// True class of each image.
    pub labels: Vec<usize>,
}

/// The views of each test image that evaluation averages (test-time augmentation): the
/// image moved by every offset (dy, dx) with |dy|, |dx| <= `shift` (zero fill, as training's
/// `--shift`), each also mirrored left to right with `flip`. The default, one view, is the
/// image as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestViews {
    /// Each view also mirrored left to right.
    pub flip: bool,
    /// The largest offset, in pixels along each axis.
    pub shift: usize,
}

impl TestViews {
    /// The image as it is.
    pub const ONE: TestViews = TestViews {
        flip: false,
        shift: 0,
    };

    /// The views in the order their probabilities are added: offsets row by row from
    /// (-shift, -shift), each unmirrored then mirrored.
    pub fn views(&self) -> Vec<([isize; 2], bool)> {
        let s = self.shift as isize;
        let flips: &[bool] = if self.flip { &[false, true] } else { &[false] };
        let mut out = Vec::new();
        for dy in -s..=s {
            for dx in -s..=s {
                out.extend(flips.iter().map(|&f| ([dy, dx], f)));
            }
        }
        out
    }
}

/// Runs `model` over all of `ds` in batches of `batch_size`.
///
/// With more than one view ([`TestViews`]: test-time augmentation), each image x is
/// classified in each of its V views v_1(x) .. v_V(x) and the softmax outputs averaged:
///
/// ```text
/// p = (softmax(f(v_1(x))) + ... + softmax(f(v_V(x)))) / V,   prediction argmax p,   loss -ln p_y
/// ```
///
/// The mirrored views are right for images whose mirror image shows the same class
/// (clothes, most photographs), wrong for digits and letters.
pub fn evaluate(
    model: &mut Model,
    ds: &Dataset,
    norm: &Normalization,
    batch_size: usize,
    views: TestViews,
) -> Result<Evaluation> {
    let k = model.classes();
    if ds.classes.len() > k {
        return Err(Error::Invalid(format!(
            "{}: the data has {} classes but the network has {k} outputs",
            ds.source,
            ds.classes.len()
        )));
    }
    let views = views.views();
    let fill = black_pixel(norm, ds.shape[0]);
    let mut x = Tensor::default();
    let mut xv = Tensor::default();
    let mut labels = Vec::new();
    let mut loss_sum = 0.0f64;
    let mut predictions = Vec::with_capacity(ds.len());
    let mut all_labels = Vec::with_capacity(ds.len());
    let (mut probs, mut p) = (Vec::new(), Vec::new());
    let idx: Vec<usize> = (0..ds.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        ds.batch(chunk, norm, &mut x, &mut labels);
        if views.len() > 1 {
            let len = ds.shape.iter().product::<usize>();
            xv.resize(x.shape());
            probs.clear();
            probs.resize(chunk.len() * k, 0.0f32);
            for &(offset, flip) in &views {
                for (src, dst) in x.data().chunks(len).zip(xv.data_mut().chunks_mut(len)) {
                    crate::augment::place(src, dst, ds.shape, offset, flip, &fill);
                }
                p.clear();
                p.extend_from_slice(model.infer(&xv)?.data());
                for (row, sum) in p.chunks_mut(k).zip(probs.chunks_mut(k)) {
                    crate::layers::activation::softmax_in_place(row);
                    sum.iter_mut().zip(row.iter()).for_each(|(s, v)| *s += v);
                }
            }
            let v = views.len() as f32;
            for (row, &y) in probs.chunks_mut(k).zip(&labels) {
                row.iter_mut().for_each(|s| *s /= v);
                loss_sum -= f64::from(row[y]).max(f64::MIN_POSITIVE).ln();
                predictions.push(argmax(row));
            }
        } else {
            let logits = model.infer(&x)?;
            loss_sum += f64::from(crate::loss::cross_entropy_only(logits.data(), &labels, k))
                * chunk.len() as f64;
            predictions.extend(logits.data().chunks(k).map(argmax));
        }
        all_labels.extend_from_slice(&labels);
    }
    let n = ds.len().max(1) as f64;
    let correct = predictions
        .iter()
        .zip(&all_labels)
        .filter(|(p, y)| p == y)
        .count();
    Ok(Evaluation {
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
        predictions,
        labels: all_labels,
    })
}
