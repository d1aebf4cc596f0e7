//! A training run as a library type: the data, the run folder, checkpoints, metrics, plots
//! and `report.md`, around the training loop of [`crate::train`].
//!
//! ```no_run
//! use cnn::run::{Run, RunConfig, RunEvent};
//! use cnn::train::Control;
//!
//! let config = RunConfig { config: "examples/report1-10.cfg".into(), epochs: 2,
//!                          ..RunConfig::default() };
//! let mut run = Run::new(config, Some("runs/demo".into()), false)?;
//! let outcome = run.train(&mut |event: RunEvent| {
//!     if let RunEvent::Epoch { metrics, .. } = event {
//!         eprintln!("epoch {}: loss {:.4}", metrics.epoch, metrics.loss);
//!     }
//!     Control::Continue
//! })?;
//! # Ok::<(), cnn::Error>(())
//! ```
//!
//! [`Run::new`] and [`Run::resume`] check everything (the options, the network config, the
//! data, the run folder, that the run fits in the memory available: [`crate::memory`]) and
//! write nothing; [`Run::train`] makes the folder (over an old run with `--force`, first
//! removing the old run's files) and writes:
//! - `config.cfg`, and `run.json` (the [`RunConfig`], read back by [`Run::resume`]);
//! - `checkpoint.safetensors` after every epoch and when the observer says stop;
//! - `metrics.csv`, `metrics.jsonl`, `loss.png/.svg` and `accuracy.png/.svg` after every
//!   epoch, after the checkpoint (a disk filling up costs them, not the training state);
//! - `model.safetensors` and `report.md` at the end.
//!
//! A run made by [`Run::in_memory`] without a folder writes none of these.
//!
//! Every file is written atomically ([`crate::io::write_atomic`]). The library prints
//! nothing: progress goes to the observer, whose [`Control::Stop`] is also how a caller stops
//! the run (Ctrl-C): the checkpoint is written and [`Outcome::stopped`] says where.

mod folder;
pub mod options;
mod plots;
mod report;
mod run_config;
pub mod settings;
pub mod table;

use std::path::{Path, PathBuf};

pub use folder::{check_out_dir, is_run_folder, metrics_csv, EVAL_DIR, RUN_FILES, RUN_OUTPUTS};
pub use options::{RunConfig, RunOptions, OPTIONS};
pub use plots::{write_training_plots, HeldOut};
pub use report::metrics_table;
pub use run_config::{Change, OptimizerChoice, ReduceChoice, ScheduleChoice, Wording};

use crate::checkpoint;
use crate::config::{self as net_config, ParsedConfig};
use crate::data::{self, Dataset, LoadOptions, Normalization, Split};
use crate::early_stop::Monitor;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::model_file::{self, ModelMeta};
use crate::train::{self, Control, EpochMetrics, Event, TrainOptions, TrainState};

/// What a run tells its observer.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A gradient step finished: `step` of `steps` in `epoch` (1-based), with the batch's
    /// loss; `total` counts the steps of the whole run, before a resume too. The model holds
    /// the step's gradients and layer outputs (for gradient norms and dead ReLUs:
    /// [`crate::monitor`]; see [`Run::set_keep_outputs`]).
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        total: u64,
        loss: f32,
        model: &'a Model,
    },
    /// An epoch finished (its checkpoint and metrics are written right after this event).
    /// The model's weights and gradients are those after the epoch's last step; its layer
    /// outputs may be those of the epoch's evaluation.
    Epoch {
        metrics: &'a EpochMetrics,
        model: &'a Model,
    },
}

/// A run's final figures on a held-out set: its test set or its validation split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
    /// The views of each image averaged (`test_shift`, `test_flip`); 1: the image alone.
    pub views: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Every epoch's metrics, those before a resume too.
    pub history: Vec<EpochMetrics>,
    /// The final figures on the test set (`--test-data`, or the test split of an IDX or
    /// CIFAR-10 folder or of the demo set), when there is one and the run finished. With a validation split too,
    /// the test set is evaluated only then, once, after training.
    pub test: Option<TestResult>,
    /// The final figures on the validation split (`--val-split`), when there is one and the
    /// run finished.
    pub validation: Option<TestResult>,
    /// Why the run stopped when it diverged (the loss or a gradient NaN, infinite or huge),
    /// with where the last good checkpoint is.
    pub diverged: Option<String>,
    /// Where the observer stopped the run: (epoch, step), the epoch 1-based and the step the
    /// last finished in it. The checkpoint holds that point.
    pub stopped: Option<(usize, usize)>,
    /// When early stopping ended the run: when, why, and which epoch's weights were kept.
    pub early_stopped: Option<EarlyStopped>,
}

/// How early stopping ended a run.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopped {
    /// The 1-based epoch after which training stopped.
    pub epoch: usize,
    /// The epochs the run was set to train.
    pub epochs: usize,
    pub monitor: Monitor,
    /// The best value of the watched figure, and its 1-based epoch.
    pub best: f64,
    pub best_epoch: usize,
    /// Epochs without improvement that made it stop.
    pub patience: usize,
    /// Whether the model ended with the best epoch's weights (`--restore-best`); otherwise
    /// it has the last epoch's.
    pub restored: bool,
}

impl std::fmt::Display for EarlyStopped {
    /// "stopped early after epoch 7 of 30: val_loss has not improved on 0.3120 (epoch 4) for
    /// 3 epochs; the model has epoch 4's weights (--restore-best)"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped early after epoch {} of {}: {} has not improved on {:.4} (epoch {}) for {}; ",
            self.epoch,
            self.epochs,
            self.monitor.name(),
            self.best,
            self.best_epoch,
            crate::text::count(self.patience, "epoch")
        )?;
        if self.restored {
            write!(
                f,
                "the model has epoch {}'s weights, the best (--restore-best)",
                self.best_epoch
            )
        } else {
            write!(
                f,
                "the model has the last epoch's weights (epoch {}; --restore-best keeps the \
                 best epoch's)",
                self.epoch
            )
        }
    }
}

impl Outcome {
    /// Seconds of training over all epochs (evaluation excluded).
    pub fn seconds(&self) -> f64 {
        self.history
            .iter()
            .map(|m| m.seconds)
            .fold(0.0, |a, b| a + b)
    }
}

/// Refuses a run that would need more memory than is available ([`crate::memory`]):
/// [`Error::Usage`], one line, before the run folder is made. `what` names the run.
fn check_memory(config: &RunConfig, parsed: &ParsedConfig, data: &Data, what: &str) -> Result<()> {
    let bytes = |ds: &Dataset, held_out: bool| {
        let pixels = ds.images.len() / ds.len().max(1);
        crate::memory::data_bytes(ds.len(), pixels, held_out)
    };
    let in_memory = bytes(&data.train, false)
        + data.held_out.as_ref().map_or(0, |t| bytes(t, true))
        + data.final_test.as_ref().map_or(0, |t| bytes(t, true));
    let estimate = crate::memory::estimate(
        &parsed.spec,
        config.batch_size,
        config.optimizer().kind,
        rayon::current_num_threads(),
        in_memory,
    )?;
    crate::memory::check(&estimate, &format!("{what} at batch {}", config.batch_size))
}

/// The training set, the held-out sets, the sentence saying where they came from, and their
/// fingerprint (SHA-256 of the config text and the training images and labels).
struct Data {
    train: Dataset,
    /// Evaluated after every epoch: the validation split with `--val-split`, else the test set.
    held_out: Option<Dataset>,
    /// With both `--val-split` and `--test-data`: the test set, evaluated once, after
    /// training.
    final_test: Option<Dataset>,
    note: String,
    fingerprint: String,
}

/// What a run trains on and starts from when the caller holds them rather than files
/// (Python's `Model.fit` on NumPy arrays): see [`Run::in_memory`].
pub struct InMemory {
    /// The network config, parsed; its `Train` and `Augment` lines are not read here (they
    /// are [`settings::resolve_with`]'s), its text becomes the run folder's `config.cfg`.
    pub parsed: ParsedConfig,
    /// The training set and the held-out set evaluated after each epoch. `None`: the files
    /// that `config.data` and `config.test_data` name (the demo set without them), as
    /// [`Run::new`] reads them. `config.test_data` and `config.val_split` apply to a training
    /// set given here as they do to one read from files.
    pub data: Option<(Dataset, Option<Dataset>)>,
    /// The weights to start from, a model of `parsed`'s network (as `--init` gives a run
    /// the weights of a file). `None`: drawn from `config.init_scheme` and `config.seed`,
    /// as [`Run::new`] does.
    pub model: Option<Model>,
}

/// A training run, checked and ready: see the module documentation.
pub struct Run {
    config: RunConfig,
    dir: PathBuf,
    /// Whether the run has a folder to write (a run [`Run::in_memory`] without one writes
    /// nothing).
    folder: bool,
    parsed: ParsedConfig,
    model: Model,
    state: TrainState,
    data: Data,
    norm: Normalization,
    seed_of_weights: u64,
    resumed: bool,
    changes: Vec<Change>,
    /// What a resume's changes do beyond themselves, each a sentence.
    notes: Vec<String>,
    /// A new run with `--force` over an old one: clear the old run's files before writing.
    replaces: bool,
    /// The processes training this run together ([`Run::set_processes`]); `None`: this one
    /// alone.
    processes: Option<crate::distributed::Processes>,
}

impl Run {
    /// What the run's held-out set is: validation with `--val-split`, else test.
    fn held_out(&self) -> HeldOut {
        HeldOut::of_run(self.config.val_split)
    }

    /// A new run of `config` in `out` (default `runs/<config name>`, numbered `-2`, `-3`...
    /// when taken). A folder that holds a run already is refused unless `force`; with it,
    /// [`Run::train`] first removes the old run's files (those a run writes, and its `eval/`
    /// folder; nothing else), so none is left beside the new run's.
    ///
    /// Checks the options, reads the network config, builds the model (from `config.init`'s
    /// weights when given) and loads the data; writes nothing.
    pub fn new(config: RunConfig, out: Option<PathBuf>, force: bool) -> Result<Run> {
        config.validate()?;
        let dir = match out {
            Some(dir) => {
                check_out_dir(&dir, force)?;
                dir
            }
            None => folder::default_run_dir(&config.config),
        };
        let replaces = force && is_run_folder(&dir);
        let parsed = net_config::load(&config.config)?;
        let what = format!("training {}", config.config.display());
        let mut run = Run::build(config, Some(dir), parsed, None, None, &what)?;
        run.replaces = replaces;
        Ok(run)
    }

    /// A new run of `config` on data and from weights the caller holds (`parts`), in `out`
    /// if given (refused if it holds a run, unless `force`, as [`Run::new`]); without `out`
    /// the run has no folder and [`Run::train`] writes nothing, keeping the best epoch's
    /// weights for `restore_best` in memory. `config.config` only names the network in
    /// messages and `run.json`: its text is `parts.parsed`'s.
    ///
    /// Checks as [`Run::new`] does (the options, the data against the network, the memory)
    /// and writes nothing. The same options, data and starting weights train the same
    /// tensors, bit for bit, as [`Run::new`] on files holding that data.
    pub fn in_memory(
        config: RunConfig,
        parts: InMemory,
        out: Option<PathBuf>,
        force: bool,
    ) -> Result<Run> {
        config.validate()?;
        if let Some(dir) = &out {
            check_out_dir(dir, force)?;
        }
        let replaces = force && out.as_deref().is_some_and(is_run_folder);
        let what = format!("training {}", parts.parsed.file);
        let mut run = Run::build(config, out, parts.parsed, parts.data, parts.model, &what)?;
        run.replaces = replaces;
        Ok(run)
    }

    /// [`Run::new`] and [`Run::in_memory`] after the options and the folder are checked.
    fn build(
        config: RunConfig,
        dir: Option<PathBuf>,
        parsed: ParsedConfig,
        data: Option<(Dataset, Option<Dataset>)>,
        model: Option<Model>,
        what: &str,
    ) -> Result<Run> {
        let [_, h, w] = parsed.spec.input;
        if config.shift >= h.min(w) {
            return Err(Error::Usage(format!(
                "--shift {} is too large for the config's {h}x{w} images: it must be below the \
                 height and width (at most {}; 2 is usual for 28x28)",
                config.shift,
                h.min(w) - 1
            )));
        }
        // The data first, then the memory check, then the model: a network too large for
        // the machine is refused before its weights are allocated.
        let data = match data {
            None => load_data(&config, &parsed)?,
            Some((train, test)) => {
                let note = format!("training on {} ({} images)", train.source, train.len());
                finish_data(&config, &parsed, train, test, note)?
            }
        };
        parsed.check_classes(data.train.classes.len())?;
        check_memory(&config, &parsed, &data, what)?;
        let mut model = match model {
            Some(model) => model,
            None => Model::new(&parsed.spec, config.init_scheme, config.seed)?,
        };
        if let Some(init) = &config.init {
            model_file::load_weights(init, &mut model)?;
        }
        check_batches(&model, data.train.len(), config.batch_size)?;
        let norm = normalization(&config, &parsed, &data.train);
        let state = TrainState::new(config.optimizer());
        Ok(Run {
            seed_of_weights: config.seed,
            config,
            folder: dir.is_some(),
            dir: dir.unwrap_or_default(),
            parsed,
            model,
            state,
            data,
            norm,
            resumed: false,
            changes: Vec::new(),
            notes: Vec::new(),
            replaces: false,
            processes: None,
        })
    }

    /// The run in `dir`, from its checkpoint, with the options `given` again (see
    /// [`RunConfig::resumed`] for what may change; a network config given must have the
    /// checkpoint's text). Loads the data and checks it is the checkpoint's; writes nothing.
    ///
    /// # Errors
    /// [`Error::Usage`] when `dir` is not a run folder, or an option, the config or the data
    /// differs in a way that would not continue the run.
    pub fn resume(dir: &Path, given: &RunOptions) -> Result<Run> {
        folder::check_resumable(dir)?;
        let json_path = dir.join("run.json");
        let json = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
        let stored: RunConfig = serde_json::from_str(&json).map_err(|e| Error::Data {
            file: json_path.clone(),
            msg: format!("not a run description: {e}"),
        })?;
        let ck_path = dir.join("checkpoint.safetensors");
        let ck = checkpoint::load(&ck_path)?;
        folder::check_same_run(dir, &stored, &ck)?;
        let (config, mut changes) = stored.resumed(dir, given)?;
        // An epoch begun (a checkpoint mid-epoch) is finished, never cut short.
        let begun = ck.state.epoch + usize::from(ck.state.step > 0);
        if config.epochs < begun {
            return Err(Error::Usage(format!(
                "cannot resume with --epochs {}: the run has begun {}; give at \
                 least {begun}",
                config.epochs,
                crate::text::count(begun, "epoch")
            )));
        }
        let parsed = net_config::parse(
            &ck.meta.config,
            &format!("{} (checkpoint config)", dir.display()),
        )?;
        if let Some(path) = &given.config {
            let (text, _) = net_config::read(path)?;
            if text != parsed.text {
                return Err(Error::Usage(format!(
                    "cannot resume with {}: it differs from the run's network ({}), and a \
                     resumed run keeps its network; start a new run instead (--init {} starts \
                     one from this run's weights)",
                    path.display(),
                    dir.join("config.cfg").display(),
                    ck_path.display()
                )));
            }
        }
        let data = load_data(&config, &parsed)?;
        check_memory(
            &config,
            &parsed,
            &data,
            &format!("resuming {}", dir.display()),
        )?;
        // The data is checked against the checkpoint before against the network: data of
        // another class count is not the run's data, whatever else it is.
        if data.fingerprint != ck.fingerprint {
            let data_changed = changes.iter().any(|c| c.name == "data");
            return Err(Error::Usage(format!(
                "{}: {}; a resumed run needs the images and labels it was trained on",
                dir.display(),
                if data_changed {
                    format!(
                        "the training data at {} is not the run's (its SHA-256 differs from \
                         the checkpoint's)",
                        data.train.source
                    )
                } else {
                    "the config or training data changed since the checkpoint was written"
                        .to_string()
                }
            )));
        }
        parsed.check_classes(data.train.classes.len())?;
        let steps = data.train.len().div_ceil(config.batch_size.max(1));
        // run.json is the run's description; its learning rate wins over the checkpoint's
        // (edited by hand, or by a resume with --lr that stopped before its first step), and
        // says so. The checkpoint holds the rate of its last step, which the schedule gives
        // from run.json's base rate unless one of those happened.
        if !changes.iter().any(|c| c.name == "lr") {
            let ran = ck.state.optimizer.lr;
            let due = rate_of_last_step(&stored, ck.options.epochs, steps, &ck.state);
            if (ran - due).abs() > 1e-6 * due.abs() {
                changes.push(Change {
                    name: "lr",
                    from: ran.to_string(),
                    to: due.to_string(),
                });
            }
        }
        let notes = schedule_notes(ck.options.epochs, &config, steps, &ck.state);
        let mut state = ck.state;
        state.optimizer.lr = config.lr;
        Ok(Run {
            norm: ck.meta.normalization,
            seed_of_weights: ck.meta.seed,
            config,
            dir: dir.to_path_buf(),
            folder: true,
            parsed,
            model: ck.model,
            state,
            data,
            resumed: true,
            changes,
            notes,
            replaces: false,
            processes: None,
        })
    }

    /// Trains this run on the processes of `group` (`mpirun -np P`, [`crate::distributed`]),
    /// each step's batch split between them as `--reduce` says; `run.json` records P. Only
    /// rank 0 writes the run folder; the others train the same model and write nothing.
    /// Every process must have made the same run: [`Run::identity`] says what must agree.
    pub fn set_processes(&mut self, group: crate::distributed::Group) {
        self.config.processes = group.size();
        let reduce = match self.config.reduce {
            ReduceChoice::Exact => crate::distributed::Reduce::Exact,
            ReduceChoice::Sum => crate::distributed::Reduce::Sum,
        };
        self.processes = Some(crate::distributed::Processes { group, reduce });
    }

    /// What must be the same in every process that trains this run together, as (what,
    /// SHA-256) pairs: the options (`run.json` but the process count), the network config
    /// and training data (the checkpoint's fingerprint), the held-out data, and the weights
    /// and training state it starts from.
    pub fn identity(&self) -> Vec<(&'static str, String)> {
        let options = RunConfig {
            processes: 0,
            ..self.config.clone()
        };
        let json = serde_json::to_string(&options).unwrap_or_default();
        let held_out = |ds: &Option<Dataset>| match ds {
            Some(ds) => {
                let labels: Vec<u8> = ds.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
                checkpoint::fingerprint(&[&ds.images, &labels])
            }
            None => String::new(),
        };
        let mut weights: Vec<u8> = Vec::new();
        for (name, p) in self.model.named_params() {
            weights.extend_from_slice(name.as_bytes());
            p.value
                .data()
                .iter()
                .for_each(|v| weights.extend(v.to_le_bytes()));
        }
        let state = format!(
            "{} {} {} {:?}",
            self.state.epoch, self.state.step, self.state.seen, self.state.optimizer
        );
        vec![
            ("options", checkpoint::fingerprint(&[json.as_bytes()])),
            (
                "network config and training data",
                self.data.fingerprint.clone(),
            ),
            (
                "held-out data",
                held_out(&self.data.held_out) + &held_out(&self.data.final_test),
            ),
            (
                "starting weights and state",
                checkpoint::fingerprint(&[&weights, state.as_bytes()]),
            ),
        ]
    }

    /// Whether this process writes the run folder: it has one, and is rank 0 of the
    /// processes training it (or trains it alone).
    fn writes(&self) -> bool {
        self.folder && self.processes.is_none_or(|p| p.group.rank() == 0)
    }

    /// Whether every training step keeps every layer's output for [`RunEvent::Step`]'s
    /// model to show ([`Model::set_keep_outputs`]): off by default, as a convolution whose
    /// max pooling takes its output block by block does not write it.
    pub fn set_keep_outputs(&mut self, keep: bool) {
        self.model.set_keep_outputs(keep);
    }

    /// The run's options, as `run.json` will store them.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The run folder (empty for a run [`Run::in_memory`] without one).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model, as trained so far, and what its model file would hold besides the
    /// weights (the config, the classes, the normalisation, the seed).
    pub fn into_model(self) -> (Model, ModelMeta) {
        let meta = self.meta();
        (self.model, meta)
    }

    /// What the run's model files hold besides the weights.
    fn meta(&self) -> ModelMeta {
        ModelMeta {
            config: self.parsed.text.clone(),
            classes: self.data.train.classes.clone(),
            normalization: self.norm.clone(),
            seed: self.seed_of_weights,
        }
    }

    /// Where the data came from, as a sentence ("training on ... (N images)").
    pub fn data_note(&self) -> &str {
        &self.data.note
    }

    /// For a resumed run, where it goes on: (epoch, step) as 1-based epoch and steps done.
    pub fn resumed_at(&self) -> Option<(usize, usize)> {
        self.resumed
            .then_some((self.state.epoch + 1, self.state.step))
    }

    /// The options a resume changed, each to be shown to the user.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// What a resume's changes do beyond themselves, each a sentence to show the user: "the
    /// cosine schedule now spans 6 epochs instead of 3: ...".
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Gradient steps in one epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.data
            .train
            .len()
            .div_ceil(self.config.batch_size.max(1))
    }

    /// Trains until the epochs are done, the observer says stop (then a checkpoint is
    /// written) or the run diverges (the last good checkpoint is left as it was), writing the
    /// run folder as the module documentation says.
    ///
    /// # Errors
    /// A file that cannot be written, named; a diverged run is an [`Outcome`], not an error.
    pub fn train(&mut self, observer: &mut dyn FnMut(RunEvent) -> Control) -> Result<Outcome> {
        let dir = self.dir.clone();
        let in_folder = self.writes();
        if in_folder {
            crate::io::create_dir(&dir)?;
            // Everything is checked (Run::new): only now is the old run's place cleared.
            if self.replaces {
                folder::clear_old_run(&dir)?;
                self.replaces = false;
            }
            folder::remove_stale_temps(&dir);
            crate::io::write_atomic(&dir.join("config.cfg"), self.parsed.text.as_bytes())?;
            let json = serde_json::to_string_pretty(&self.config)
                .map_err(|e| Error::Invalid(format!("cannot encode run.json: {e}")))?;
            crate::io::write_atomic(&dir.join("run.json"), json.as_bytes())?;
        }

        self.state.optimizer.clip_grad_norm = self.config.clip_grad_norm;
        let opts = TrainOptions {
            epochs: self.config.epochs,
            batch_size: self.config.batch_size,
            shuffle: !self.config.no_shuffle,
            seed: self.config.seed,
            label_smoothing: self.config.label_smoothing,
            schedule: self.config.lr_schedule(),
            warmup: self.config.warmup,
            base_lr: Some(self.config.lr),
            augment: crate::augment::Augment {
                shift: self.config.shift,
                flip: self.config.flip,
                erase: self.config.erase,
            },
            eval_every: self.config.eval_every,
            early_stop: self.config.early_stop_rule(),
            processes: self.processes,
        };
        let meta = self.meta();
        let steps = self.steps_per_epoch() as u64;
        let mut total = self.state.epoch as u64 * steps + self.state.step as u64;
        let ck_path = dir.join("checkpoint.safetensors");
        let best_path = self.best_path();
        let keep_best = self.config.restore_best;
        let fingerprint = self.data.fingerprint.clone();
        let held_out = self.held_out();
        let mut io_error: Option<Error> = None;
        // Without a folder, the best epoch's weights stay in memory.
        let mut best_in_memory: Option<Model> = None;
        let mut on_event = |event: &Event, st: &TrainState, m: &Model| -> Control {
            let control = match *event {
                Event::Step {
                    epoch,
                    step,
                    steps,
                    loss,
                } => {
                    total += 1;
                    observer(RunEvent::Step {
                        epoch: epoch + 1,
                        step,
                        steps,
                        total,
                        loss,
                        model: m,
                    })
                }
                Event::Epoch => match st.history.last() {
                    Some(metrics) => observer(RunEvent::Epoch { metrics, model: m }),
                    None => Control::Continue,
                },
            };
            let at_epoch_end = matches!(event, Event::Epoch);
            // The best epoch's weights before the checkpoint that records it as the best: a
            // run killed in between redoes the epoch and writes the same file again.
            if at_epoch_end && keep_best && st.early_stop.is_best(st.epoch) {
                if !in_folder {
                    best_in_memory = Some(m.clone());
                } else if let Err(e) = model_file::save(&best_path, m, &meta) {
                    io_error = Some(e);
                    return Control::Stop;
                }
            }
            if !in_folder {
                return control;
            }
            if control == Control::Stop || at_epoch_end {
                if let Err(e) = checkpoint::save(&ck_path, m, &meta, st, &opts, &fingerprint) {
                    io_error = Some(e);
                    return Control::Stop;
                }
            }
            // The metrics and plots after the checkpoint: a disk filling up at an epoch's end
            // costs them rather than the training state, and they never show an epoch that
            // the checkpoint does not have (a resumed run rewrites them from its history).
            if at_epoch_end {
                if let Err(e) = folder::write_metrics(&dir, &st.history, held_out) {
                    io_error = Some(e);
                    return Control::Stop;
                }
            }
            control
        };
        let result = train::train(
            &mut self.model,
            &self.data.train,
            self.data.held_out.as_ref(),
            &self.norm,
            &opts,
            &mut self.state,
            &mut on_event,
        );
        if let Some(e) = io_error {
            return Err(e);
        }
        let mut outcome = Outcome {
            history: self.state.history.clone(),
            test: None,
            validation: None,
            diverged: None,
            stopped: None,
            early_stopped: None,
        };
        match result {
            Ok(true) => {
                outcome.early_stopped = self.finish_early_stop(best_in_memory)?;
            }
            Ok(false) => {
                outcome.stopped = Some((self.state.epoch + 1, self.state.step));
                return Ok(outcome);
            }
            Err(Error::Diverged(msg)) if !in_folder => {
                outcome.diverged = Some(msg);
                return Ok(outcome);
            }
            Err(Error::Diverged(msg)) => {
                outcome.diverged = Some(if ck_path.exists() {
                    format!("{msg}; the last good checkpoint is {}", ck_path.display())
                } else {
                    format!("{msg}; no checkpoint was written before it")
                });
                report::write_run_report(
                    &dir,
                    self.held_out(),
                    &self.parsed,
                    &outcome,
                    &self.data.note,
                )?;
                return Ok(outcome);
            }
            Err(e) => return Err(e),
        }
        if in_folder {
            model_file::save(&self.model_path(), &self.model, &meta)?;
        }
        let kind = self.held_out();
        let views = train::TestViews {
            flip: self.config.test_flip,
            shift: self.config.test_shift,
        };
        let mut score = |ds: &Option<Dataset>| -> Result<Option<TestResult>> {
            let Some(ds) = ds else {
                return Ok(None);
            };
            let e = train::evaluate(&mut self.model, ds, &self.norm, 256, views)?;
            Ok(Some(TestResult {
                accuracy: e.accuracy,
                loss: e.loss,
                images: ds.len(),
                views: views.views().len(),
            }))
        };
        let held_out = score(&self.data.held_out)?;
        match kind {
            HeldOut::Validation => outcome.validation = held_out,
            HeldOut::Test => outcome.test = held_out,
        }
        if self.data.final_test.is_some() {
            outcome.test = score(&self.data.final_test)?;
        }
        if !in_folder {
            return Ok(outcome);
        }
        report::write_run_report(
            &dir,
            self.held_out(),
            &self.parsed,
            &outcome,
            &self.data.note,
        )?;
        Ok(outcome)
    }

    /// `model.safetensors` in the run folder.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    /// `best.safetensors` in the run folder: the best epoch's weights, kept with
    /// `--restore-best`.
    pub fn best_path(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// After training is done: if early stopping ended it, restores the best epoch's weights
    /// (with `--restore-best`: from the folder, or `best_in_memory` for a run without one)
    /// and says what happened.
    fn finish_early_stop(&mut self, best_in_memory: Option<Model>) -> Result<Option<EarlyStopped>> {
        let es = &self.state.early_stop;
        let (Some(epoch), Some(best), Some(rule)) =
            (es.stopped_epoch, es.best, self.config.early_stop_rule())
        else {
            return Ok(None);
        };
        let best_epoch = es.best_epoch;
        if rule.restore_best {
            match best_in_memory {
                Some(best) if !self.writes() => self.model = best,
                _ => model_file::load_weights(&self.best_path(), &mut self.model)?,
            }
        }
        Ok(Some(EarlyStopped {
            epoch,
            epochs: self.config.epochs,
            monitor: rule.monitor,
            best,
            best_epoch,
            patience: rule.patience,
            restored: rule.restore_best,
        }))
    }
}

/// The learning rate that `config`'s schedule, over `epochs` epochs of `steps` steps, gives the
/// last step `state` has done (its base rate when none is done).
fn rate_of_last_step(config: &RunConfig, epochs: usize, steps: usize, state: &TrainState) -> f32 {
    let (epoch, step) = match (state.epoch, state.step) {
        (e, s) if s > 0 => (e, s - 1),
        (0, _) => return config.lr,
        (e, _) => (e - 1, steps.saturating_sub(1)),
    };
    let schedule = config.lr_schedule();
    crate::schedule::lr_at(
        schedule,
        config.lr,
        epoch,
        step,
        steps,
        epochs,
        config.warmup,
    )
}

/// What a resume that changes the epochs does to a cosine schedule, the one schedule that
/// depends on the run's length: it spans the new epochs, so from where the run is the rate
/// follows the longer (or shorter) curve. Says from which epoch (and step) the rate differs
/// from the rate of the run so far, and what it is there. `ran` is the epochs the checkpoint
/// was trained towards, `next` the resumed run, `state` where it resumes.
fn schedule_notes(ran: usize, next: &RunConfig, steps: usize, state: &TrainState) -> Vec<String> {
    if next.schedule != ScheduleChoice::Cosine || next.epochs == ran {
        return Vec::new();
    }
    let rate = |epoch, step, epochs| {
        let schedule = next.lr_schedule();
        crate::schedule::lr_at(schedule, next.lr, epoch, step, steps, epochs, next.warmup)
    };
    // The epochs of the warm-up, and the cosine's first, are at the same rates either way.
    let step = |epoch| if epoch == state.epoch { state.step } else { 0 };
    let Some(epoch) = (state.epoch..next.epochs)
        .find(|&e| e >= ran || rate(e, step(e), ran) != rate(e, step(e), next.epochs))
    else {
        return Vec::new();
    };
    let from = match step(epoch) {
        0 => format!("epoch {}", epoch + 1),
        s => format!("epoch {}, step {}", epoch + 1, s + 1),
    };
    let rate = rate(epoch, step(epoch), next.epochs);
    vec![format!(
        "the cosine schedule now spans {} epochs instead of {}: from {from} on the rate \
         follows the {} curve ({rate} in epoch {})",
        next.epochs,
        ran,
        if next.epochs > ran {
            "longer"
        } else {
            "shorter"
        },
        epoch + 1
    )]
}

/// Refuses a run with a batch that a layer cannot train on (BatchNorm1D needs two samples):
/// the full batches, and the last, partial one of each epoch.
fn check_batches(model: &Model, samples: usize, batch_size: usize) -> Result<()> {
    let batch = batch_size.clamp(1, samples.max(1));
    model.check_training_batch(batch)?;
    let last = samples % batch;
    if last != 0 {
        model.check_training_batch(last).map_err(|e| {
            Error::Invalid(format!(
                "{e}; with {samples} training images and --batch-size {batch_size} the last \
                 batch of each epoch has {last}: choose another batch size"
            ))
        })?;
    }
    Ok(())
}

/// The input normalisation: fitted on the training data with `--normalize`, else identity.
fn normalization(config: &RunConfig, parsed: &ParsedConfig, train: &Dataset) -> Normalization {
    if config.normalize {
        Normalization::fit(train)
    } else {
        Normalization::identity(parsed.spec.input[0])
    }
}

/// Loads the training and test sets that `config` names, checks their images' shape against
/// the network's input, and fingerprints them. The class count is the caller's to check
/// (after the fingerprint, for a resumed run).
fn load_data(config: &RunConfig, parsed: &ParsedConfig) -> Result<Data> {
    let input = parsed.spec.input;
    let opts = |split| LoadOptions {
        split,
        channels: Some(input[0]),
        size: Some((input[1], input[2])),
        resize: config.resize,
    };
    let (train, test, note) = match &config.data {
        None => (
            data::demo(Split::Train)?,
            Some(data::demo(Split::Test)?),
            "no --data given: training on the built-in demo set (Fashion-MNIST, 2,000 train \
             and 500 test images)"
                .to_string(),
        ),
        Some(path) => {
            let train = data::load(path, &opts(Split::Train))?;
            // An IDX folder carries its own test split (t10k-*), a CIFAR-10 folder its
            // test_batch.bin; other formats do not.
            let test = if data::has_test_split(path)
                && config.test_data.is_none()
                && config.val_split.is_none()
            {
                Some(load_test_set(path, &opts(Split::Test), &train.classes)?.0)
            } else {
                None
            };
            let mut note = format!(
                "training on {} ({})",
                train.source,
                crate::text::count(train.len(), "image")
            );
            // Images no label reaches are skipped by loading: said, not silent.
            if let Some(skipped) = data::skipped_images(path) {
                note = format!("{note}; {skipped}");
            }
            (train, test, note)
        }
    };
    finish_data(config, parsed, train, test, note)
}

/// The training and test sets of a run, however they were read: the test set of
/// `config.test_data` when given, the validation split of `config.val_split`, checked against
/// the network, and fingerprinted.
fn finish_data(
    config: &RunConfig,
    parsed: &ParsedConfig,
    mut train: Dataset,
    mut test: Option<Dataset>,
    mut note: String,
) -> Result<Data> {
    let input = parsed.spec.input;
    if let Some(path) = &config.test_data {
        let opts = LoadOptions {
            split: Split::Test,
            channels: Some(input[0]),
            size: Some((input[1], input[2])),
            resize: config.resize,
        };
        let (set, mapped) = load_test_set(path, &opts, &train.classes)?;
        test = Some(set);
        for said in [data::skipped_images(path), mapped].into_iter().flatten() {
            note = format!("{note}; test data: {said}");
        }
    }
    // With a validation split, it is the held-out set of every epoch; a test set given too
    // is checked now and evaluated once, after training.
    let mut final_test = None;
    if let Some(f) = config.val_split {
        let (t, v) = train.split(f, config.seed)?;
        note = format!("{note}; {} held out for validation", v.len());
        if config.test_data.is_some() {
            final_test = test.take();
        }
        if let Some(ts) = &final_test {
            note = format!(
                "{note}; tested once, after training, on {} ({} images)",
                ts.source,
                ts.len()
            );
        }
        train = t;
        test = Some(v);
    }
    for ds in std::iter::once(&train)
        .chain(test.as_ref())
        .chain(final_test.as_ref())
    {
        if ds.shape != input {
            return Err(Error::Data {
                file: PathBuf::from(&ds.source),
                msg: format!(
                    "images are {}x{}x{} (CxHxW) but the config's Input is {}x{}x{}; \
                     change `Input shape=` or pass --resize",
                    ds.shape[0], ds.shape[1], ds.shape[2], input[0], input[1], input[2]
                ),
            });
        }
    }
    let labels: Vec<u8> = train.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let fingerprint = checkpoint::fingerprint(&[parsed.text.as_bytes(), &train.images, &labels]);
    Ok(Data {
        train,
        held_out: test,
        final_test,
        note,
        fingerprint,
    })
}

/// Loads a test set for a model trained on `classes` (the training set's class names, which
/// become the model's) and matches its labels to them by name, so that a test set with
/// fewer classes, or with its classes in another order, is scored right. Every test set of a
/// run comes through here (`--test-data` and an IDX folder's t10k split; a `--val-split` set
/// is part of the training set).
/// The note says how the labels were mapped when not all by name.
fn load_test_set(
    path: &Path,
    opts: &LoadOptions,
    classes: &[String],
) -> Result<(Dataset, Option<String>)> {
    data::load(path, opts)?.match_classes(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_config() -> RunConfig {
        RunConfig {
            config: "examples/report1-10.cfg".into(),
            epochs: 2,
            batch_size: 64,
            val_split: Some(0.1),
            ..RunConfig::default()
        }
    }

    #[test]
    fn a_run_in_memory_without_a_folder_trains_the_tensors_of_a_run_on_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let mut on_files = Run::new(demo_config(), Some(out.clone()), false).unwrap();
        let a = on_files.train(&mut |_| Control::Continue).unwrap();
        let parts = InMemory {
            parsed: net_config::load(Path::new("examples/report1-10.cfg")).unwrap(),
            data: Some((data::demo(Split::Train).unwrap(), None)),
            model: None,
        };
        let mut in_memory = Run::in_memory(demo_config(), parts, None, false).unwrap();
        let b = in_memory.train(&mut |_| Control::Continue).unwrap();
        assert!(in_memory.dir().as_os_str().is_empty());
        let strip = |o: &Outcome| {
            let h: Vec<_> = o
                .history
                .iter()
                .map(|m| (m.loss, m.val_loss, m.lr))
                .collect();
            (h, o.test)
        };
        assert_eq!(strip(&a), strip(&b));
        let (model, meta) = in_memory.into_model();
        let (file_model, file_meta) = model_file::load(&out.join("model.safetensors")).unwrap();
        assert_eq!(meta, file_meta);
        for ((n, p), (m, q)) in model.named_params().iter().zip(file_model.named_params()) {
            assert_eq!(n, &m);
            assert_eq!(p.value.data(), q.value.data(), "{n}");
        }
    }
}
