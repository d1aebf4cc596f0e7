//! [`RunConfig`]: everything that defines a training run, with every default in one place
//! ([`RunConfig::default`]). It is what a run folder's `run.json` stores, and what
//! `cnn train` and `cnn sweep` turn their options into.
//!
//! **What may change on resume** ([`RunConfig::resumed`]). A resumed run continues the
//! stored one bit for bit, so only what cannot break that may be given again:
//! - the learning rate (from the next step on; `metrics.csv` shows each epoch's rate);
//! - the number of epochs to reach (at least the epochs already begun);
//! - the training data's path, when the data at the new path has the checkpoint's SHA-256;
//! - the test data's path (it only changes the test figures of later epochs).
//!
//! Each change is reported as a [`Change`] ("lr 0.05 -> 0.01"). Any other option given with a
//! value that differs from the stored one (the batch size, optimiser, seed, the network
//! config...) is refused with [`Error::Usage`], saying why; giving the stored value is fine.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::early_stop::{EarlyStop, Monitor};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::optim::{Optimizer, OptimizerKind};
use crate::schedule::Schedule;

/// Which learning-rate schedule a run uses (see [`crate::schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleChoice {
    /// The base rate throughout.
    #[default]
    Constant,
    /// The rate times `gamma` every `step_size` epochs.
    Step,
    /// A half cosine from the base rate to `min_lr`.
    Cosine,
}

impl ScheduleChoice {
    /// The name `run.json` and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleChoice::Constant => "constant",
            ScheduleChoice::Step => "step",
            ScheduleChoice::Cosine => "cosine",
        }
    }
}

/// Which optimiser a run uses. Stored as `sgd`, `momentum`, `nesterov` or `adam` (run
/// folders written before `cnn::run` say `Sgd`, `Momentum`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerChoice {
    /// Plain gradient descent, w <- w - lr g (the reports').
    #[default]
    #[serde(alias = "Sgd")]
    Sgd,
    /// SGD with momentum: v <- mu v + g, w <- w - lr v.
    #[serde(alias = "Momentum")]
    Momentum,
    /// SGD with Nesterov momentum: w <- w - lr (g + mu v).
    #[serde(alias = "Nesterov")]
    Nesterov,
    /// Adam with betas 0.9, 0.999 and eps 1e-8.
    #[serde(alias = "Adam")]
    Adam,
    /// AdamW: Adam with decoupled weight decay, w <- w (1 - lr wd) (PyTorch's `AdamW`).
    #[serde(rename = "adamw")]
    AdamW,
}

impl OptimizerChoice {
    /// The name `run.json` and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerChoice::Sgd => "sgd",
            OptimizerChoice::Momentum => "momentum",
            OptimizerChoice::Nesterov => "nesterov",
            OptimizerChoice::Adam => "adam",
            OptimizerChoice::AdamW => "adamw",
        }
    }
}

/// The name of an initialisation scheme, as `run.json` and the command line spell it.
pub fn init_name(init: Init) -> &'static str {
    match init {
        Init::Normal => "normal",
        Init::He => "he",
        Init::Glorot => "glorot",
    }
}

/// Everything that defines a training run. Serialised, it is the run folder's `run.json`.
///
/// Reading accepts the `run.json` of run folders written before this type existed: their
/// extra keys (`threads`, `out`, `monitor`, ...) are ignored, a null `epochs` means the
/// default, and missing keys take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// The network config file (report 1's format). A resumed run uses the checkpoint's copy
    /// of its text, not the file.
    pub config: PathBuf,
    /// Training data: an IDX folder or file, a folder with labels.txt, or a folder per class.
    /// `None`: the built-in Fashion-MNIST demo set.
    pub data: Option<PathBuf>,
    /// Test data, evaluated after each epoch. `None`: the t10k split of an IDX folder (or of
    /// the demo set) when there is one.
    pub test_data: Option<PathBuf>,
    /// Hold out this share (strictly between 0 and 1) of the training data, stratified, as
    /// the test set instead.
    pub val_split: Option<f64>,
    /// Passes over the training data to reach. Default 10 (report 1's).
    #[serde(deserialize_with = "epochs_or_default")]
    pub epochs: usize,
    /// Learning rate. Default 0.01.
    pub lr: f32,
    /// Images per gradient step. Default 32 (report 2's).
    pub batch_size: usize,
    /// Default plain SGD.
    pub optimizer: OptimizerChoice,
    /// Momentum factor mu for the momentum and Nesterov optimisers. Default 0.9.
    pub momentum: f32,
    /// L2 weight decay, added to the gradient (PyTorch's convention). Default 0.
    pub weight_decay: f32,
    /// Label smoothing eps in [0, 1): the loss's target is (1 - eps) one-hot + eps / K, as
    /// PyTorch's `CrossEntropyLoss(label_smoothing=eps)`. Default 0 (plain cross-entropy).
    pub label_smoothing: f32,
    /// The learning-rate schedule. Default constant.
    pub schedule: ScheduleChoice,
    /// For the step schedule: epochs between two multiplications by `gamma`. Default 10.
    pub step_size: usize,
    /// For the step schedule: the factor. Default 0.1.
    pub gamma: f32,
    /// For the cosine schedule: the rate it ends at. Default 0.
    pub min_lr: f32,
    /// Epochs of linear warm-up before the schedule. Default 0.
    pub warmup: usize,
    /// Weight initialisation. Default N(0, 1/fan_in).
    pub init_scheme: Init,
    /// Start from the weights of this model file (or checkpoint) instead.
    pub init: Option<PathBuf>,
    /// The seed of every random stream: initialisation, shuffling, the validation split.
    pub seed: u64,
    /// Keep the data in file order every epoch.
    pub no_shuffle: bool,
    /// Normalise each input channel by the training data's mean and standard deviation.
    pub normalize: bool,
    /// Resize images whose size differs from the config's input instead of refusing them.
    pub resize: bool,
    /// Shift each training image by up to this many pixels along each axis, at random, with
    /// zero fill ([`crate::augment`]). Default 0.
    pub shift: usize,
    /// Flip half the training images left to right, at random. Default off.
    pub flip: bool,
    /// Stop when this figure of the validation split (`val_split`, required) has not
    /// improved for `patience` epochs ([`crate::early_stop`]). Default off.
    pub early_stop: Option<Monitor>,
    /// Epochs without improvement before early stopping stops. Default 5 (Keras's is 0,
    /// which stops at the first epoch that does not improve; noisy figures need more).
    pub patience: usize,
    /// The least change of the watched figure that counts as an improvement. Default 0.
    pub min_delta: f64,
    /// A run that stops early ends with its best epoch's weights (kept in the run folder's
    /// `best.safetensors`), as Keras's `restore_best_weights=True`. Default off, as Keras.
    pub restore_best: bool,
}

impl Default for RunConfig {
    /// The defaults of every option: the one place they are written.
    fn default() -> RunConfig {
        RunConfig {
            config: PathBuf::new(),
            data: None,
            test_data: None,
            val_split: None,
            epochs: 10,
            lr: 0.01,
            batch_size: 32,
            optimizer: OptimizerChoice::Sgd,
            momentum: 0.9,
            weight_decay: 0.0,
            label_smoothing: 0.0,
            schedule: ScheduleChoice::Constant,
            step_size: 10,
            gamma: 0.1,
            min_lr: 0.0,
            warmup: 0,
            init_scheme: Init::Normal,
            init: None,
            seed: 0,
            no_shuffle: false,
            normalize: false,
            shift: 0,
            flip: false,
            resize: false,
            early_stop: None,
            patience: 5,
            min_delta: 0.0,
            restore_best: false,
        }
    }
}

/// A null `epochs` (written by runs that were not given `--epochs`) is the default.
fn epochs_or_default<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.unwrap_or(RunConfig::default().epochs))
}

/// The options given for a run (on the command line): each `None` (or `false` for the
/// switches) when not given. A new run takes the defaults for the rest
/// ([`RunConfig::with`]); a resumed run keeps its stored values ([`RunConfig::resumed`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub test_data: Option<PathBuf>,
    pub val_split: Option<f64>,
    pub epochs: Option<usize>,
    pub lr: Option<f32>,
    pub batch_size: Option<usize>,
    pub optimizer: Option<OptimizerChoice>,
    pub momentum: Option<f32>,
    pub weight_decay: Option<f32>,
    pub label_smoothing: Option<f32>,
    pub schedule: Option<ScheduleChoice>,
    pub step_size: Option<usize>,
    pub gamma: Option<f32>,
    pub min_lr: Option<f32>,
    pub warmup: Option<usize>,
    pub init_scheme: Option<Init>,
    pub init: Option<PathBuf>,
    pub seed: Option<u64>,
    pub no_shuffle: bool,
    pub normalize: bool,
    pub resize: bool,
    pub shift: Option<usize>,
    pub flip: bool,
    pub early_stop: Option<Monitor>,
    pub patience: Option<usize>,
    pub min_delta: Option<f64>,
    pub restore_best: bool,
}

impl RunOptions {
    /// Refuses schedule options given without the schedule they belong to, which would
    /// otherwise be silently ignored.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the option and the schedule it needs.
    pub fn check(&self) -> Result<()> {
        let schedule = self.schedule.unwrap_or_default();
        let needs = |given: bool, flag: &str, kind: ScheduleChoice| {
            if given && schedule != kind {
                Err(Error::Usage(format!(
                    "{flag} applies to --schedule {}; add it, or leave {flag} out",
                    kind.name()
                )))
            } else {
                Ok(())
            }
        };
        needs(
            self.step_size.is_some(),
            "--step-size",
            ScheduleChoice::Step,
        )?;
        needs(self.gamma.is_some(), "--gamma", ScheduleChoice::Step)?;
        needs(self.min_lr.is_some(), "--min-lr", ScheduleChoice::Cosine)?;
        for (given, flag) in [
            (self.patience.is_some(), "--patience"),
            (self.min_delta.is_some(), "--min-delta"),
            (self.restore_best, "--restore-best"),
        ] {
            if given && self.early_stop.is_none() {
                return Err(Error::Usage(format!(
                    "{flag} applies to early stopping; add --early-stop val_loss (or \
                     val_accuracy), or leave {flag} out"
                )));
            }
        }
        Ok(())
    }

    /// `self`'s options, with `base`'s where `self` has none: the command line's flags
    /// (`self`) over a config file's `Train` and `Augment` lines (`base`). A switch is on
    /// when either turns it on.
    pub fn over(&self, base: &RunOptions) -> RunOptions {
        let (a, b) = (self.clone(), base.clone());
        RunOptions {
            config: a.config.or(b.config),
            data: a.data.or(b.data),
            test_data: a.test_data.or(b.test_data),
            val_split: a.val_split.or(b.val_split),
            epochs: a.epochs.or(b.epochs),
            lr: a.lr.or(b.lr),
            batch_size: a.batch_size.or(b.batch_size),
            optimizer: a.optimizer.or(b.optimizer),
            momentum: a.momentum.or(b.momentum),
            weight_decay: a.weight_decay.or(b.weight_decay),
            label_smoothing: a.label_smoothing.or(b.label_smoothing),
            schedule: a.schedule.or(b.schedule),
            step_size: a.step_size.or(b.step_size),
            gamma: a.gamma.or(b.gamma),
            min_lr: a.min_lr.or(b.min_lr),
            warmup: a.warmup.or(b.warmup),
            init_scheme: a.init_scheme.or(b.init_scheme),
            init: a.init.or(b.init),
            seed: a.seed.or(b.seed),
            no_shuffle: a.no_shuffle || b.no_shuffle,
            normalize: a.normalize || b.normalize,
            resize: a.resize || b.resize,
            shift: a.shift.or(b.shift),
            flip: a.flip || b.flip,
            early_stop: a.early_stop.or(b.early_stop),
            patience: a.patience.or(b.patience),
            min_delta: a.min_delta.or(b.min_delta),
            restore_best: a.restore_best || b.restore_best,
        }
    }
}

/// An option that a resumed run changed: `name` went `from` -> `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: &'static str,
    pub from: String,
    pub to: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.name, self.from, self.to)
    }
}

/// A data path for a [`Change`], or what `None` stands for.
fn path_text(p: &Option<PathBuf>, none: &str) -> String {
    p.as_ref().map_or(none.into(), |p| p.display().to_string())
}

impl RunConfig {
    /// `self` with every option that `given` holds put in.
    pub fn with(mut self, given: &RunOptions) -> RunConfig {
        let g = given.clone();
        self.config = g.config.unwrap_or(self.config);
        self.data = g.data.or(self.data);
        self.test_data = g.test_data.or(self.test_data);
        self.val_split = g.val_split.or(self.val_split);
        self.epochs = g.epochs.unwrap_or(self.epochs);
        self.lr = g.lr.unwrap_or(self.lr);
        self.batch_size = g.batch_size.unwrap_or(self.batch_size);
        self.optimizer = g.optimizer.unwrap_or(self.optimizer);
        self.momentum = g.momentum.unwrap_or(self.momentum);
        self.weight_decay = g.weight_decay.unwrap_or(self.weight_decay);
        self.label_smoothing = g.label_smoothing.unwrap_or(self.label_smoothing);
        self.schedule = g.schedule.unwrap_or(self.schedule);
        self.step_size = g.step_size.unwrap_or(self.step_size);
        self.gamma = g.gamma.unwrap_or(self.gamma);
        self.min_lr = g.min_lr.unwrap_or(self.min_lr);
        self.warmup = g.warmup.unwrap_or(self.warmup);
        self.init_scheme = g.init_scheme.unwrap_or(self.init_scheme);
        self.init = g.init.or(self.init);
        self.seed = g.seed.unwrap_or(self.seed);
        self.no_shuffle |= g.no_shuffle;
        self.normalize |= g.normalize;
        self.shift = g.shift.unwrap_or(self.shift);
        self.flip |= g.flip;
        self.resize |= g.resize;
        self.early_stop = g.early_stop.or(self.early_stop);
        self.patience = g.patience.unwrap_or(self.patience);
        self.min_delta = g.min_delta.unwrap_or(self.min_delta);
        self.restore_best |= g.restore_best;
        self
    }

    /// Checks every number, so that a bad option is refused before anything is written.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the option, the value and what it must be.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Usage(msg));
        if self.epochs == 0 && self.init.is_none() {
            return bad(
                "--epochs must be at least 1 (0 is allowed with --init, to save the \
                        given weights as the run's model)"
                    .into(),
            );
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr must be positive, got {}", self.lr));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(format!(
                "--momentum must be at least 0 and below 1, got {}",
                self.momentum
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "--weight-decay must be 0 or positive, got {}",
                self.weight_decay
            ));
        }
        if !(self.label_smoothing.is_finite() && (0.0..1.0).contains(&self.label_smoothing)) {
            return bad(format!(
                "--label-smoothing must be at least 0 and below 1, got {}",
                self.label_smoothing
            ));
        }
        if self.shift > 1000 {
            return bad(format!(
                "--shift must be at most 1000 pixels, got {}",
                self.shift
            ));
        }
        if self.step_size == 0 {
            return bad("--step-size must be at least 1".into());
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0 && self.gamma <= 1.0) {
            return bad(format!(
                "--gamma must be above 0 and at most 1, got {}",
                self.gamma
            ));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad(format!(
                "--min-lr must be from 0 to --lr ({}), got {}",
                self.lr, self.min_lr
            ));
        }
        if self.warmup > 0 && self.warmup >= self.epochs {
            return bad(format!(
                "--warmup must be fewer epochs than --epochs ({}), got {}",
                self.epochs, self.warmup
            ));
        }
        if let Some(f) = self.val_split {
            if !(f > 0.0 && f < 1.0) {
                return bad(format!(
                    "--val-split must be strictly between 0 and 1, got {f}"
                ));
            }
        }
        if let Some(monitor) = self.early_stop {
            if self.val_split.is_none() {
                return bad(format!(
                    "--early-stop {} watches a validation split, and this run has none: add \
                     --val-split 0.1 (early stopping never looks at the test set)",
                    monitor.name()
                ));
            }
        }
        if self.patience == 0 {
            return bad("--patience must be at least 1".into());
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return bad(format!(
                "--min-delta must be 0 or positive, got {}",
                self.min_delta
            ));
        }
        Ok(())
    }

    /// The early-stopping rule this config asks for, if any.
    pub fn early_stop_rule(&self) -> Option<EarlyStop> {
        self.early_stop.map(|monitor| EarlyStop {
            monitor,
            patience: self.patience,
            min_delta: self.min_delta,
            restore_best: self.restore_best,
        })
    }

    /// The learning-rate schedule this config asks for.
    pub fn lr_schedule(&self) -> Schedule {
        match self.schedule {
            ScheduleChoice::Constant => Schedule::Constant,
            ScheduleChoice::Step => Schedule::Step {
                every: self.step_size,
                gamma: self.gamma,
            },
            ScheduleChoice::Cosine => Schedule::Cosine {
                min_lr: self.min_lr,
            },
        }
    }

    /// The optimiser this config asks for, at its start.
    pub fn optimizer(&self) -> Optimizer {
        let kind = match self.optimizer {
            OptimizerChoice::Sgd => OptimizerKind::Sgd,
            OptimizerChoice::Momentum | OptimizerChoice::Nesterov => OptimizerKind::Momentum {
                mu: self.momentum,
                nesterov: self.optimizer == OptimizerChoice::Nesterov,
            },
            OptimizerChoice::Adam => OptimizerKind::adam(),
            OptimizerChoice::AdamW => OptimizerKind::adamw(),
        };
        Optimizer::new(kind, self.lr, self.weight_decay)
    }

    /// The config of the stored run `self` (from `dir`'s run.json) resumed with the options
    /// `given`, and what changed (see the module documentation for what may).
    ///
    /// The network config (`given.config`) and the data's contents are checked by
    /// [`super::Run::resume`], which has the checkpoint.
    ///
    /// # Errors
    /// [`Error::Usage`] for an option that may not change, naming it, both values and why.
    pub fn resumed(&self, dir: &Path, given: &RunOptions) -> Result<(RunConfig, Vec<Change>)> {
        let restart = format!(
            "start a new run instead (--init {} starts one from this run's weights)",
            dir.join("checkpoint.safetensors").display()
        );
        let exact = "a resumed run keeps it, so that it continues the stopped run exactly";
        fn differs<T: PartialEq + fmt::Display>(
            flag: &str,
            given: Option<T>,
            stored: T,
            why: &str,
            restart: &str,
        ) -> Result<()> {
            match given {
                Some(g) if g != stored => Err(Error::Usage(format!(
                    "cannot resume with {flag} {g}: the run has {stored}, and {why}; {restart}"
                ))),
                _ => Ok(()),
            }
        }
        let on = |b: bool| if b { Some("on") } else { None };
        let onoff = |b: bool| if b { "on" } else { "off" };
        differs(
            "--batch-size",
            given.batch_size,
            self.batch_size,
            exact,
            &restart,
        )?;
        differs("--seed", given.seed, self.seed, exact, &restart)?;
        differs(
            "--optimizer",
            given.optimizer.map(OptimizerChoice::name),
            self.optimizer.name(),
            exact,
            &restart,
        )?;
        differs("--momentum", given.momentum, self.momentum, exact, &restart)?;
        differs(
            "--weight-decay",
            given.weight_decay,
            self.weight_decay,
            exact,
            &restart,
        )?;
        differs(
            "--label-smoothing",
            given.label_smoothing,
            self.label_smoothing,
            exact,
            &restart,
        )?;
        differs(
            "--schedule",
            given.schedule.map(ScheduleChoice::name),
            self.schedule.name(),
            exact,
            &restart,
        )?;
        differs(
            "--step-size",
            given.step_size,
            self.step_size,
            exact,
            &restart,
        )?;
        differs("--gamma", given.gamma, self.gamma, exact, &restart)?;
        differs("--min-lr", given.min_lr, self.min_lr, exact, &restart)?;
        differs("--warmup", given.warmup, self.warmup, exact, &restart)?;
        differs(
            "--no-shuffle",
            on(given.no_shuffle),
            onoff(self.no_shuffle),
            exact,
            &restart,
        )?;
        differs("--shift", given.shift, self.shift, exact, &restart)?;
        differs("--flip", on(given.flip), onoff(self.flip), exact, &restart)?;
        differs(
            "--normalize",
            on(given.normalize),
            onoff(self.normalize),
            exact,
            &restart,
        )?;
        differs(
            "--resize",
            on(given.resize),
            onoff(self.resize),
            exact,
            &restart,
        )?;
        differs(
            "--val-split",
            given.val_split.map(|f| f.to_string()),
            self.val_split.map_or("none".into(), |f| f.to_string()),
            exact,
            &restart,
        )?;
        differs(
            "--early-stop",
            given.early_stop.map(Monitor::name),
            self.early_stop.map_or("none", Monitor::name),
            exact,
            &restart,
        )?;
        differs("--patience", given.patience, self.patience, exact, &restart)?;
        differs(
            "--min-delta",
            given.min_delta,
            self.min_delta,
            exact,
            &restart,
        )?;
        differs(
            "--restore-best",
            on(given.restore_best),
            onoff(self.restore_best),
            exact,
            &restart,
        )?;
        let started = "the run's weights were initialised when it started";
        differs(
            "--init-scheme",
            given.init_scheme.map(init_name),
            init_name(self.init_scheme),
            started,
            &restart,
        )?;
        differs(
            "--init",
            given.init.as_ref().map(|p| p.display().to_string()),
            self.init
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string()),
            started,
            &restart,
        )?;

        let mut next = self.clone();
        let mut changes = Vec::new();
        if let Some(e) = given.epochs {
            if e != self.epochs {
                changes.push(Change {
                    name: "epochs",
                    from: self.epochs.to_string(),
                    to: e.to_string(),
                });
                next.epochs = e;
            }
        }
        if let Some(lr) = given.lr {
            if lr != self.lr {
                changes.push(Change {
                    name: "lr",
                    from: self.lr.to_string(),
                    to: lr.to_string(),
                });
                next.lr = lr;
            }
        }
        for (name, given, stored, none) in [
            ("data", &given.data, &mut next.data, "the built-in demo set"),
            (
                "test data",
                &given.test_data,
                &mut next.test_data,
                "none given",
            ),
        ] {
            if given.is_some() && given != stored {
                changes.push(Change {
                    name,
                    from: path_text(stored, none),
                    to: path_text(given, none),
                });
                stored.clone_from(given);
            }
        }
        next.validate()?;
        Ok((next, changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_json_written_before_run_config_reads_with_its_values() {
        let old = r#"{"config":"net.cfg","data":"data","test_data":null,"val_split":null,
            "epochs":null,"lr":0.05,"batch_size":4,"optimizer":"Momentum","momentum":0.9,
            "weight_decay":0.0,"init_scheme":"He","init":null,"seed":7,"threads":1,
            "out":"run","no_shuffle":false,"normalize":false,"resize":false,"resume":null,
            "monitor":false,"stop_after_steps":5}"#;
        let c: RunConfig = serde_json::from_str(old).unwrap();
        assert_eq!(c.epochs, RunConfig::default().epochs);
        assert_eq!(c.optimizer, OptimizerChoice::Momentum);
        assert_eq!(c.init_scheme, Init::He);
        assert_eq!((c.lr, c.batch_size, c.seed), (0.05, 4, 7));
        assert_eq!(c.data, Some(PathBuf::from("data")));
    }

    #[test]
    fn run_config_round_trips_through_json_in_lowercase_names() {
        let c = RunConfig {
            optimizer: OptimizerChoice::Nesterov,
            init_scheme: Init::Glorot,
            ..RunConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""optimizer":"nesterov""#), "{json}");
        assert!(json.contains(r#""init_scheme":"glorot""#), "{json}");
        assert_eq!(serde_json::from_str::<RunConfig>(&json).unwrap(), c);
    }

    #[test]
    fn resuming_changes_lr_and_epochs_and_refuses_another_batch_size() {
        let stored = RunConfig::default();
        let given = RunOptions {
            lr: Some(0.001),
            epochs: Some(20),
            batch_size: Some(32),
            ..RunOptions::default()
        };
        let (next, changes) = stored.resumed(Path::new("run"), &given).unwrap();
        assert_eq!((next.lr, next.epochs), (0.001, 20));
        let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(text, ["epochs 10 -> 20", "lr 0.01 -> 0.001"]);

        let given = RunOptions {
            batch_size: Some(64),
            ..RunOptions::default()
        };
        let err = stored.resumed(Path::new("run"), &given).unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert!(
            err.to_string()
                .starts_with("cannot resume with --batch-size 64: the run has 32"),
            "{err}"
        );
    }

    #[test]
    fn validate_refuses_zero_epochs_zero_batch_and_a_negative_rate() {
        let bad = |c: RunConfig| c.validate().unwrap_err().to_string();
        assert!(bad(RunConfig {
            epochs: 0,
            ..RunConfig::default()
        })
        .starts_with("--epochs must be at least 1"));
        assert_eq!(
            bad(RunConfig {
                batch_size: 0,
                ..RunConfig::default()
            }),
            "--batch-size must be at least 1"
        );
        assert_eq!(
            bad(RunConfig {
                lr: -1.0,
                ..RunConfig::default()
            }),
            "--lr must be positive, got -1"
        );
        let with_init = RunConfig {
            epochs: 0,
            init: Some("m.safetensors".into()),
            ..RunConfig::default()
        };
        assert!(with_init.validate().is_ok());
    }
}
