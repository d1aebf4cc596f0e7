//! `cnn train`: train a network from a config file, leaving a run folder behind.
//!
//! The run folder gets `config.cfg`, `run.json` (the options, for `--resume`),
//! `metrics.csv` and `metrics.jsonl` (one row per epoch), `checkpoint.safetensors` (after
//! every epoch and on Ctrl-C) and `model.safetensors` at the end. Every file is written
//! atomically, so a full disk stops the run with an error naming the file and leaves the
//! previous version of every file whole.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use cnn::checkpoint;
use cnn::config::{self, ParsedConfig};
use cnn::data::{self, Dataset, LoadOptions, Normalization, Split};
use cnn::init::Init;
use cnn::io::{create_dir, write_atomic};
use cnn::model::Model;
use cnn::model_file::{self, ModelMeta};
use cnn::optim::{Optimizer, OptimizerKind};
use cnn::train::{self, Control, EpochMetrics, Event, TrainOptions, TrainState};
use cnn::Error;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::{CmdResult, Failure};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum OptimizerArg {
    /// Plain gradient descent, w <- w - lr * g (the reports').
    Sgd,
    /// SGD with momentum (--momentum, default 0.9).
    Momentum,
    /// SGD with Nesterov momentum.
    Nesterov,
    /// Adam (betas 0.9, 0.999, eps 1e-8).
    Adam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum InitArg {
    /// N(0, 1/fan_in), report 2's.
    Normal,
    /// N(0, 2/fan_in), He / Kaiming.
    He,
    /// U(-a, a), a = sqrt(6/(fan_in + fan_out)), Glorot / Xavier.
    Glorot,
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct TrainArgs {
    /// The network config file (report 1's format). Not needed with --resume.
    #[arg(required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Training data: an IDX folder or file, a folder with labels.txt, or a folder per
    /// class. Default: the built-in Fashion-MNIST demo set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test data, evaluated after each epoch. Default: the t10k split of an IDX folder (or
    /// of the demo set), if there is one.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Hold out this share of the training data (stratified) as the test set instead.
    #[arg(long)]
    pub val_split: Option<f64>,
    /// Passes over the training data [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// Images per gradient step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    pub optimizer: OptimizerArg,
    /// Momentum factor for --optimizer momentum or nesterov.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// L2 weight decay, added to the gradient (PyTorch's convention).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Weight initialisation.
    #[arg(long, value_enum, default_value_t = InitArg::Normal)]
    pub init_scheme: InitArg,
    /// Start from the weights of this model file (e.g. exported from PyTorch).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Seed of every random stream (initialisation, shuffling, splits).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads [default: all cores]. Results are bit-identical for any count.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run folder [default: runs/<config name>, numbered if it exists].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the data in file order every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Normalise each input channel by the training data's mean and standard deviation
    /// (stored in the model, so evaluate and predict do the same).
    #[arg(long)]
    pub normalize: bool,
    /// Resize images whose size differs from the config's input instead of refusing them.
    #[arg(long)]
    pub resize: bool,
    /// Continue the run in this folder from its checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// After each epoch, print each parameter tensor's gradient L2 norm (of the epoch's last
    /// step) and each ReLU layer's share of dead units (0 for every image of the last batch).
    #[arg(long)]
    #[serde(default)]
    pub monitor: bool,
    /// Stop (with a checkpoint) after this many gradient steps in total, as if interrupted.
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
}

/// The training and test sets, and a sentence saying where they came from.
struct Data {
    train: Dataset,
    test: Option<Dataset>,
    note: String,
}

fn load_data(args: &TrainArgs, spec_input: [usize; 3]) -> Result<Data, Error> {
    let opts = |split| LoadOptions {
        split,
        channels: Some(spec_input[0]),
        size: Some((spec_input[1], spec_input[2])),
        resize: args.resize,
    };
    let (train, mut test, mut note) = match &args.data {
        None => (
            data::demo(Split::Train)?,
            Some(data::demo(Split::Test)?),
            "no --data given: training on the built-in demo set (Fashion-MNIST, 2,000 train \
             and 500 test images)"
                .to_string(),
        ),
        Some(path) => {
            let train = data::load(path, &opts(Split::Train))?;
            // An IDX folder carries its own test split (t10k-*); other formats do not.
            let test = if data::has_idx_test_split(path)
                && args.test_data.is_none()
                && args.val_split.is_none()
            {
                Some(data::load(path, &opts(Split::Test))?)
            } else {
                None
            };
            let note = format!("training on {} ({} images)", train.source, train.len());
            (train, test, note)
        }
    };
    let mut train = train;
    if let Some(path) = &args.test_data {
        test = Some(data::load(path, &opts(Split::Test))?);
    }
    if let Some(f) = args.val_split {
        let (t, v) = train.split(f, args.seed)?;
        note = format!("{note}; {} held out for validation", v.len());
        train = t;
        test = Some(v);
    }
    for ds in std::iter::once(&train).chain(test.as_ref()) {
        if ds.shape != spec_input {
            return Err(Error::Data {
                file: PathBuf::from(&ds.source),
                msg: format!(
                    "images are {}x{}x{} (CxHxW) but the config's Input is {}x{}x{}; \
                     change `Input shape=` or pass --resize",
                    ds.shape[0],
                    ds.shape[1],
                    ds.shape[2],
                    spec_input[0],
                    spec_input[1],
                    spec_input[2]
                ),
            });
        }
    }
    Ok(Data { train, test, note })
}

fn optimizer(args: &TrainArgs) -> Result<Optimizer, Error> {
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(Error::Invalid(format!(
            "--lr must be a positive number, got {}",
            args.lr
        )));
    }
    let kind = match args.optimizer {
        OptimizerArg::Sgd => OptimizerKind::Sgd,
        OptimizerArg::Momentum | OptimizerArg::Nesterov => OptimizerKind::Momentum {
            mu: args.momentum,
            nesterov: args.optimizer == OptimizerArg::Nesterov,
        },
        OptimizerArg::Adam => OptimizerKind::adam(),
    };
    Ok(Optimizer::new(kind, args.lr, args.weight_decay))
}

/// `runs/<stem>`, or `runs/<stem>-2`, `-3`, ... if taken.
fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let base = Path::new("runs").join(&stem);
    if !base.exists() {
        return base;
    }
    (2..)
        .map(|i| Path::new("runs").join(format!("{stem}-{i}")))
        .find(|p| !p.exists())
        .expect("an unused run folder name exists")
}

fn metrics_csv(history: &[EpochMetrics]) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut s =
        String::from("epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds,images_per_second\n");
    for m in history {
        s += &format!(
            "{},{:.6},{:.6},{},{},{},{:.6},{:.1}\n",
            m.epoch,
            m.loss,
            m.accuracy,
            opt(m.val_loss),
            opt(m.val_accuracy),
            m.lr,
            m.seconds,
            m.images_per_second
        );
    }
    s
}

fn metrics_jsonl(history: &[EpochMetrics]) -> String {
    history
        .iter()
        .map(|m| serde_json::to_string(m).expect("metrics serialise") + "\n")
        .collect()
}

fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    let test = match (m.val_loss, m.val_accuracy) {
        (Some(l), Some(a)) => format!("  test loss {l:.4}  test acc {:6.2}%", a * 100.0),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}/{epochs}  loss {:.4}  acc {:6.2}%{test}  {:.2}s  {:.0} img/s",
        m.epoch,
        m.loss,
        m.accuracy * 100.0,
        m.seconds,
        m.images_per_second
    )
}

/// The `--monitor` lines of the model's last step: one per layer with parameters or a ReLU.
fn monitor_lines(model: &Model) -> String {
    let mut s = String::new();
    for h in cnn::monitor::layer_health(model) {
        if h.grad_norms.is_empty() && h.dead_relu.is_none() {
            continue;
        }
        s += &format!("  layer {} {:<9}", h.index, h.name);
        for (name, norm) in &h.grad_norms {
            let short = name.rsplit('.').next().unwrap_or(name);
            s += &format!("  |grad {short}| {norm:.3e}");
        }
        if let Some(d) = h.dead_relu {
            s += &format!("  dead ReLU {:.1}%", d * 100.0);
        }
        s += "\n";
    }
    s
}

/// Files of a run folder.
struct RunFiles {
    dir: PathBuf,
    held_out: super::plots::HeldOut,
}

impl RunFiles {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_metrics(&self, history: &[EpochMetrics]) -> Result<(), Error> {
        write_atomic(&self.path("metrics.csv"), metrics_csv(history).as_bytes())?;
        write_atomic(
            &self.path("metrics.jsonl"),
            metrics_jsonl(history).as_bytes(),
        )?;
        super::plots::write_training_plots(&self.dir, history, self.held_out)
    }
}

/// Removes the temporary files that a run killed while writing left in `dir` (see
/// [`cnn::io::is_temp_name`]), so that they do not pile up run after run. Best effort, and
/// done before this run writes anything. They are never read: the files they were to replace
/// are whole.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if cnn::io::is_temp_name(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a training run ended with.
pub struct Outcome {
    pub history: Vec<EpochMetrics>,
    /// Final (accuracy, loss) on the test set, when there is one and the run finished.
    pub test: Option<(f64, f64)>,
    /// The divergence message, when the loss became NaN or infinite.
    pub diverged: Option<String>,
}

pub fn run(args: TrainArgs) -> CmdResult {
    let outcome = train_run(args)?;
    match outcome.diverged {
        Some(msg) => Err(Failure::Diverged(msg)),
        None => Ok(()),
    }
}

/// Runs `cnn train`, returning how the run ended (used by `cnn sweep` too).
pub fn train_run(mut args: TrainArgs) -> Result<Outcome, Failure> {
    let resume_from = args.resume.clone();
    let (parsed, mut model, state, meta_seed, run_dir): (
        ParsedConfig,
        Model,
        Option<TrainState>,
        u64,
        PathBuf,
    );
    let mut resumed_fingerprint = None;
    if let Some(dir) = &resume_from {
        let stored = std::fs::read_to_string(dir.join("run.json"))
            .map_err(|e| Error::io(dir.join("run.json"), e))?;
        let mut stored: TrainArgs = serde_json::from_str(&stored).map_err(|e| Error::Data {
            file: dir.join("run.json"),
            msg: format!("not a run description: {e}"),
        })?;
        stored.epochs = args.epochs.or(stored.epochs);
        stored.threads = args.threads;
        stored.monitor = args.monitor;
        stored.stop_after_steps = args.stop_after_steps;
        stored.resume = None;
        args = stored;
        let ck = checkpoint::load(&dir.join("checkpoint.safetensors"))?;
        parsed = config::parse(
            &ck.meta.config,
            &format!("{} (checkpoint config)", dir.display()),
        )?;
        model = ck.model;
        let mut st = ck.state;
        st.optimizer.lr = args.lr;
        state = Some(st);
        meta_seed = ck.meta.seed;
        resumed_fingerprint = Some(ck.fingerprint);
        run_dir = dir.clone();
    } else {
        let cfg_path = args
            .config
            .clone()
            .expect("clap requires CONFIG without --resume");
        parsed = config::load(&cfg_path)?;
        let init = match args.init_scheme {
            InitArg::Normal => Init::Normal,
            InitArg::He => Init::He,
            InitArg::Glorot => Init::Glorot,
        };
        model = Model::new(&parsed.spec, init, args.seed)?;
        if let Some(init_path) = &args.init {
            model_file::load_weights(init_path, &mut model)?;
        }
        state = None;
        meta_seed = args.seed;
        run_dir = args
            .out
            .clone()
            .unwrap_or_else(|| default_run_dir(&cfg_path));
    }
    let epochs = args.epochs.unwrap_or(10);
    let data = load_data(&args, parsed.spec.input)?;
    parsed.check_classes(data.train.classes.len())?;
    let norm = if args.normalize {
        Normalization::fit(&data.train)
    } else {
        Normalization::identity(parsed.spec.input[0])
    };
    let fingerprint = checkpoint::fingerprint(&[
        parsed.text.as_bytes(),
        &data.train.images,
        &data
            .train
            .labels
            .iter()
            .flat_map(|l| l.to_le_bytes())
            .collect::<Vec<u8>>(),
    ]);
    if let Some(fp) = &resumed_fingerprint {
        if *fp != fingerprint {
            return Err(Error::Invalid(format!(
                "{}: the config or training data changed since the checkpoint was written; \
                 resume needs the same ones",
                run_dir.display()
            ))
            .into());
        }
    }
    let mut state = match state {
        Some(s) => s,
        None => TrainState::new(optimizer(&args)?),
    };
    let opts = TrainOptions {
        epochs,
        batch_size: args.batch_size,
        shuffle: !args.no_shuffle,
        seed: args.seed,
    };
    let meta = ModelMeta {
        config: parsed.text.clone(),
        classes: data.train.classes.clone(),
        normalization: norm.clone(),
        seed: meta_seed,
    };

    create_dir(&run_dir)?;
    remove_stale_temps(&run_dir);
    let files = RunFiles {
        dir: run_dir.clone(),
        held_out: super::plots::HeldOut::of_run(args.val_split),
    };
    write_atomic(&files.path("config.cfg"), parsed.text.as_bytes())?;
    let run_json = serde_json::to_string_pretty(&args).expect("options serialise");
    write_atomic(&files.path("run.json"), run_json.as_bytes())?;

    eprintln!("{}", data.note);
    if resume_from.is_some() {
        eprintln!(
            "resuming {} at epoch {}, step {}",
            run_dir.display(),
            state.epoch + 1,
            state.step
        );
    }
    eprintln!("run folder: {}", run_dir.display());

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second handler cannot be installed (tests call run once per process): ignore.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let steps_per_epoch = data.train.len().div_ceil(args.batch_size.max(1)) as u64;
    let bar = ProgressBar::new(steps_per_epoch);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, {eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let mut total_steps = state.epoch as u64 * steps_per_epoch + state.step as u64;
    let ck_path = files.path("checkpoint.safetensors");
    let mut io_error: Option<Error> = None;
    let mut on_event = |event: &Event, st: &TrainState, m: &Model| -> Control {
        let mut stop = false;
        match event {
            Event::Step {
                epoch, step, loss, ..
            } => {
                total_steps += 1;
                if *step == 1 {
                    bar.reset();
                    bar.set_prefix(format!("{}/{}", epoch + 1, opts.epochs));
                }
                bar.set_position(*step as u64);
                bar.set_message(format!("loss {loss:.4}"));
                if args.stop_after_steps.is_some_and(|s| total_steps >= s)
                    || interrupted.load(Ordering::SeqCst)
                {
                    stop = true;
                }
            }
            Event::Epoch => {
                bar.finish_and_clear();
                if let Some(h) = st.history.last() {
                    println!("{}", epoch_line(h, opts.epochs));
                }
                if args.monitor {
                    print!("{}", monitor_lines(m));
                }
                stop = args.stop_after_steps.is_some_and(|s| total_steps >= s)
                    || interrupted.load(Ordering::SeqCst);
            }
        }
        let at_epoch_end = matches!(event, Event::Epoch);
        if stop || at_epoch_end {
            if let Err(e) = checkpoint::save(&ck_path, m, &meta, st, &opts, &fingerprint) {
                io_error = Some(e);
                return Control::Stop;
            }
        }
        // The metrics and plots after the checkpoint: a disk filling up at an epoch's end
        // costs them rather than the training state, and they never show an epoch that the
        // checkpoint does not have (a resumed run rewrites them from the checkpoint's history).
        if at_epoch_end {
            if let Err(e) = files.write_metrics(&st.history) {
                io_error = Some(e);
                return Control::Stop;
            }
        }
        if stop {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let result = train::train(
        &mut model,
        &data.train,
        data.test.as_ref(),
        &norm,
        &opts,
        &mut state,
        &mut on_event,
    );
    bar.finish_and_clear();
    if let Some(e) = io_error {
        return Err(e.into());
    }
    let mut outcome = Outcome {
        history: state.history.clone(),
        test: None,
        diverged: None,
    };
    let finished = match result {
        Ok(finished) => finished,
        Err(Error::Diverged(msg)) => {
            outcome.diverged = Some(if ck_path.exists() {
                format!("{msg}; the last good checkpoint is {}", ck_path.display())
            } else {
                format!("{msg}; no checkpoint was written before it")
            });
            super::report::write_run_report(
                &run_dir,
                files.held_out,
                &parsed,
                &outcome,
                &data.note,
            )?;
            return Ok(outcome);
        }
        Err(e) => return Err(e.into()),
    };
    if !finished {
        eprintln!(
            "stopped at epoch {}, step {}; checkpoint saved: continue with `cnn train --resume {}`",
            state.epoch + 1,
            state.step,
            run_dir.display()
        );
        return Ok(outcome);
    }
    model_file::save(&files.path("model.safetensors"), &model, &meta)?;
    if let Some(test) = &data.test {
        let e = train::evaluate(&mut model, test, &norm, 256)?;
        println!(
            "test accuracy {:.2}% ({} of {}), test loss {:.4}",
            e.accuracy * 100.0,
            (e.accuracy * test.len() as f64).round() as usize,
            test.len(),
            e.loss
        );
        outcome.test = Some((e.accuracy, e.loss));
    }
    let secs: f64 = state
        .history
        .iter()
        .map(|m| m.seconds)
        .fold(0.0, |a, b| a + b);
    println!(
        "trained {} epochs in {secs:.2}s; model saved to {}",
        state.history.len(),
        files.path("model.safetensors").display()
    );
    super::report::write_run_report(&run_dir, files.held_out, &parsed, &outcome, &data.note)?;
    Ok(outcome)
}
