//! What the run options mean together: [`RunConfig::with`] and [`RunOptions::set`] (an option
//! from text), the range and applies-to checks ([`RunConfig::validate`],
//! [`RunOptions::check`]), the rules between options, and what a resume may change
//! ([`RunConfig::resumed`]). The options themselves, with their defaults, ranges and resume
//! rules, are the table of [`super::options`].
//!
//! **What may change on resume** ([`RunConfig::resumed`]). A resumed run continues the
//! stored one bit for bit, so only what cannot break that may be given again (the options
//! marked [`Resume::MayChange`]):
//! - the learning rate (from the next step on; `metrics.csv` shows each epoch's rate);
//! - the number of epochs to reach (at least the epochs already begun);
//! - the training data's path, when the data at the new path has the checkpoint's SHA-256;
//! - the test data's path (it only changes the test figures of later epochs).
//!
//! Each change is reported as a [`Change`] ("lr 0.05 -> 0.01"); giving the stored value (or
//! `--data demo` for a run of the demo set) is no change. Any other option given with a value
//! that differs from the stored one (the batch size, optimiser, seed, the network config...)
//! is refused with [`Error::Usage`], saying why.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;

use crate::early_stop::EarlyStop;
use crate::error::{Error, Result};
use crate::names::named_enum;
use crate::optim::{Optimizer, OptimizerKind};
use crate::schedule::Schedule;
use crate::text::did_you_mean;

use super::options::{find, OPTIONS};
use super::table::{Applies, Resume, Spec};
use super::{RunConfig, RunOptions};

named_enum! {
    /// Which learning-rate schedule a run uses (see [`crate::schedule`]).
    pub enum ScheduleChoice {
        /// The base rate throughout.
        Constant = "constant",
        /// The rate times --gamma every --step-size epochs.
        Step = "step",
        /// A half cosine from the base rate down to --min-lr.
        Cosine = "cosine",
    }
    default Constant
}

named_enum! {
    /// How processes that train one run together (`mpirun`, [`crate::distributed`]) combine
    /// their gradients.
    pub enum ReduceChoice {
        /// Gather every block's partial sums and add them in one process's order: the same
        /// model, byte for byte, as one process.
        Exact = "exact",
        /// Sum the processes' gradients with one MPI all-reduce, as PyTorch's DDP and
        /// Horovod: one process's model up to rounding.
        Sum = "allreduce",
    }
    default Exact
}

named_enum! {
    /// Which optimiser a run uses ([`crate::optim`]). Run folders written before `cnn::run`
    /// say `Sgd`, `Momentum`, ...
    pub enum OptimizerChoice {
        /// Plain gradient descent, w <- w - lr g (the reports').
        Sgd = "sgd",
        /// SGD with momentum (--momentum): v <- mu v + g, w <- w - lr v.
        Momentum = "momentum",
        /// SGD with Nesterov momentum (--momentum): w <- w - lr (g + mu v).
        Nesterov = "nesterov",
        /// Adam (betas 0.9, 0.999, eps 1e-8).
        Adam = "adam",
        /// AdamW: Adam with decoupled weight decay, w <- w (1 - lr wd) (--weight-decay), as
        /// PyTorch's AdamW.
        AdamW = "adamw",
    }
    default Sgd
}

/// How messages name an option the caller gave: as a command-line flag (`--lr`, `cnn train`)
/// or as a keyword argument (`lr`, its [`RunConfig`] field's name: Python's `fit(lr=...)`).
/// A config file's `Train` and `Augment` lines have words of their own ([`super::settings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wording {
    #[default]
    Flag,
    Keyword,
}

/// An option whose value does not go with the others': which, and why, in a flag's words
/// (`flag`, the whole message), a keyword's (`keyword`, the whole message) and a config
/// line's (`line`, what follows `key=value`).
#[derive(Debug, Clone)]
pub(crate) struct Misfit {
    pub option: &'static Spec,
    pub flag: String,
    pub keyword: String,
    pub line: String,
}

impl Misfit {
    /// The whole message, in `wording`'s words.
    pub(crate) fn given(self, wording: Wording) -> String {
        match wording {
            Wording::Flag => self.flag,
            Wording::Keyword => self.keyword,
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

impl RunOptions {
    /// Sets the option called `name` (its [`RunConfig`] field's name, as `run.json` spells it)
    /// from `text`, as a flag or a config line would: `set("lr", "0.05")`,
    /// `set("optimizer", "adam")`, `set("normalize", "true")`. The value's range is checked
    /// with the others' ([`RunConfig::validate`]).
    ///
    /// # Errors
    /// An unknown name (with a "did you mean"), or a text that is not a value of the option's
    /// type, saying what was expected.
    pub fn set(&mut self, name: &str, text: &str) -> std::result::Result<(), String> {
        self.set_os(name, OsStr::new(text))
    }

    /// [`RunOptions::set`] from the command line, whose paths need not be UTF-8.
    pub fn set_os(&mut self, name: &str, text: &OsStr) -> std::result::Result<(), String> {
        let Some(spec) = find(name) else {
            let names: Vec<&str> = OPTIONS.iter().map(|s| s.name).collect();
            return Err(format!(
                "unknown option `{name}`{}",
                did_you_mean(name, &names)
            ));
        };
        (spec.field.set)(self, text)
    }

    /// The first option given without the option it belongs to (`--gamma` without
    /// `--schedule step`), which would otherwise be silently ignored.
    pub(crate) fn misplaced(&self) -> Option<Misfit> {
        let schedule = self.schedule.unwrap_or_default();
        let optimizer = self.optimizer.unwrap_or_default();
        let sgd = !matches!(optimizer, OptimizerChoice::Adam | OptimizerChoice::AdamW);
        OPTIONS.iter().find_map(|spec| {
            (spec.field.given)(self)?;
            let (flag, name) = (spec.flag, spec.name);
            let key = spec.key.map_or(spec.name, |k| k.name);
            let (flag, keyword, line) = match spec.applies {
                Applies::Always => return None,
                Applies::Schedule(s) if s == schedule => return None,
                Applies::EarlyStop if self.early_stop.is_some() => return None,
                Applies::Sgd if sgd => return None,
                Applies::Schedule(s) => (
                    format!("--{flag} applies to --schedule {s}; add it, or leave --{flag} out"),
                    format!("{name} applies to schedule='{s}'; add it, or leave {name} out"),
                    format!("applies to `schedule={s}`; add it, or leave `{key}` out"),
                ),
                Applies::Sgd => (
                    format!(
                        "--{flag} applies to SGD (--optimizer sgd, momentum or nesterov), not to \
                         --optimizer {optimizer}, whose betas are fixed; leave --{flag} out"
                    ),
                    format!(
                        "{name} applies to SGD (optimizer='sgd', 'momentum' or 'nesterov'), not \
                         to optimizer='{optimizer}', whose betas are fixed; leave {name} out"
                    ),
                    format!(
                        "applies to SGD (`optimizer=sgd`, `momentum` or `nesterov`), not to \
                         `optimizer={optimizer}`, whose betas are fixed; leave `{key}` out"
                    ),
                ),
                Applies::EarlyStop => (
                    format!(
                        "--{flag} applies to early stopping; add --early-stop val_loss (or \
                         val_accuracy), or leave --{flag} out"
                    ),
                    format!(
                        "{name} applies to early stopping; add early_stop='val_loss' (or \
                         'val_accuracy'), or leave {name} out"
                    ),
                    "applies to early stopping; add `early_stop=val_loss` (or val_accuracy)"
                        .to_string(),
                ),
            };
            Some(Misfit {
                option: spec,
                flag,
                keyword,
                line,
            })
        })
    }

    /// Refuses options given without the option they belong to (`--gamma` without
    /// `--schedule step`, `--patience` without `--early-stop`).
    ///
    /// # Errors
    /// [`Error::Usage`] naming the option and what it needs.
    pub fn check(&self) -> Result<()> {
        match self.misplaced() {
            Some(m) => Err(Error::Usage(m.flag)),
            None => Ok(()),
        }
    }

    /// Sets the option called `name` from a value given as a keyword argument (Python's
    /// `fit(lr=0.05)`), as text: [`RunOptions::set`], with a message that names the keyword
    /// and its value ("lr=abc: expected a number, got `abc`").
    ///
    /// # Errors
    /// As [`RunOptions::set`]: an unknown name with a "did you mean", or a value of the wrong
    /// type.
    pub fn set_keyword(&mut self, name: &str, text: &str) -> std::result::Result<(), String> {
        match find(name) {
            Some(_) => self
                .set(name, text)
                .map_err(|e| format!("{name}={text}: {e}")),
            None => self.set(name, text),
        }
    }
}

impl RunOptions {
    /// Whether these options ask for SGD with momentum the way PyTorch's `SGD(momentum=mu)`
    /// does: the optimiser `sgd` (given, or by default) with a momentum above 0 given. The
    /// flags then mean what a config line's `optimizer=sgd momentum=mu` means.
    pub fn sgd_with_momentum(&self) -> bool {
        matches!(self.optimizer, None | Some(OptimizerChoice::Sgd))
            && self.momentum.is_some_and(|mu| mu > 0.0)
    }
}

impl RunConfig {
    /// `self` with every option that `given` holds put in. A momentum above 0 given with the
    /// optimiser `sgd` (given or `self`'s) makes it SGD with momentum, as PyTorch's
    /// `SGD(momentum=mu)`: see [`RunOptions::sgd_with_momentum`].
    pub fn with(mut self, given: &RunOptions) -> RunConfig {
        for spec in OPTIONS {
            (spec.field.take)(&mut self, given);
        }
        if given.sgd_with_momentum() && self.optimizer == OptimizerChoice::Sgd {
            self.optimizer = OptimizerChoice::Momentum;
        }
        self
    }

    /// Checks every option's range ([`super::table::Range`]), then the rules between
    /// options, so that a bad option is refused before anything is written.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the option, the value and what it must be.
    pub fn validate(&self) -> Result<()> {
        self.validate_as(Wording::Flag)
    }

    /// [`RunConfig::validate`], its messages naming options in `wording`'s words.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the option, the value and what it must be.
    pub fn validate_as(&self, wording: Wording) -> Result<()> {
        self.check_ranges_as(wording)?;
        match self.misfit() {
            Some(m) => Err(Error::Usage(m.given(wording))),
            None => Ok(()),
        }
    }

    /// Every option's value in its range, in the table's order, in `wording`'s words.
    pub(crate) fn check_ranges_as(&self, wording: Wording) -> Result<()> {
        for spec in OPTIONS {
            // `epochs` 0 is the rule of `misfit`'s (allowed with `init`).
            if spec.name == "epochs" && self.epochs == 0 {
                continue;
            }
            if let Some(x) = (spec.field.number)(self) {
                if !spec.range.holds(x) {
                    let shown = spec.show(self);
                    let msg = match wording {
                        Wording::Flag => spec.range.flag_error(spec.flag, &shown, x),
                        Wording::Keyword => spec.range.keyword_error(spec.name, &shown, x),
                    };
                    return Err(Error::Usage(msg));
                }
            }
        }
        Ok(())
    }

    /// The first rule between options that `self` breaks, blamed on one of them.
    pub(crate) fn misfit(&self) -> Option<Misfit> {
        let misfit = |name: &str, flag: String, keyword: String, line: String| {
            let option = find(name).expect("an option of the table");
            Some(Misfit {
                option,
                flag,
                keyword,
                line,
            })
        };
        if self.epochs == 0 && self.init.is_none() {
            return misfit(
                "epochs",
                "--epochs must be at least 1 (0 is allowed with --init, to save the given \
                 weights as the run's model)"
                    .into(),
                "epochs must be at least 1 (0 is allowed with init=, to save the given \
                 weights as the run's model)"
                    .into(),
                "must be at least 1 (0 is allowed with --init, to save the given weights as \
                 the run's model)"
                    .into(),
            );
        }
        if self.min_lr > self.lr {
            return misfit(
                "min_lr",
                format!(
                    "--min-lr must be from 0 to --lr ({}), got {}",
                    self.lr, self.min_lr
                ),
                format!(
                    "min_lr must be from 0 to lr ({}), got {}",
                    self.lr, self.min_lr
                ),
                format!("must be at most the run's learning rate ({})", self.lr),
            );
        }
        if self.warmup > 0 && self.warmup >= self.epochs {
            return misfit(
                "warmup",
                format!(
                    "--warmup must be fewer epochs than --epochs ({}), got {}",
                    self.epochs, self.warmup
                ),
                format!(
                    "warmup must be fewer epochs than epochs ({}), got {}",
                    self.epochs, self.warmup
                ),
                format!(
                    "must be fewer epochs than the run's {} (warm-up comes before the schedule)",
                    self.epochs
                ),
            );
        }
        if self.optimizer == OptimizerChoice::Nesterov && self.momentum == 0.0 {
            return misfit(
                "momentum",
                "--optimizer nesterov needs a --momentum above 0, got 0 (as PyTorch's \
                 SGD(nesterov=True), which refuses Nesterov without momentum)"
                    .into(),
                "optimizer='nesterov' needs a momentum above 0, got 0 (as PyTorch's \
                 SGD(nesterov=True), which refuses Nesterov without momentum)"
                    .into(),
                "must be above 0 for Nesterov's momentum (as PyTorch's SGD(nesterov=True), \
                 which refuses Nesterov without momentum)"
                    .into(),
            );
        }
        if let (Some(monitor), true) = (self.early_stop, self.eval_every > 1) {
            let n = self.eval_every;
            return misfit(
                "eval_every",
                format!(
                    "--eval-every {n} leaves early stopping (--early-stop {monitor}) without a \
                     figure for most epochs: leave --eval-every out with --early-stop"
                ),
                format!(
                    "eval_every={n} leaves early stopping (early_stop='{monitor}') without a \
                     figure for most epochs: leave eval_every out with early_stop"
                ),
                format!(
                    "must be 1 with `early_stop={monitor}` (early stopping needs the figure of \
                     every epoch), found {n}"
                ),
            );
        }
        if let (Some(monitor), None) = (self.early_stop, self.val_split) {
            return misfit(
                "early_stop",
                format!(
                    "--early-stop {monitor} watches a validation split, and this run has none: \
                     add --val-split 0.1 (early stopping never looks at the test set)"
                ),
                format!(
                    "early_stop='{monitor}' watches a validation split, and this run has none: \
                     add val_split=0.1 (early stopping never looks at the test set)"
                ),
                "watches a validation split, and this run has none: add `val_split=0.1` (early \
                 stopping never looks at the test set)"
                    .into(),
            );
        }
        None
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
        let refuse = |flag: &str, value: String, has: String, why: &str| {
            Error::Usage(format!(
                "cannot resume with --{flag} {value}: the run has {has}, and {why}; start a new \
                 run instead (--init {} starts one from this run's weights)",
                dir.join("checkpoint.safetensors").display()
            ))
        };
        let keep = "a resumed run keeps it, so that it continues the stopped run exactly";
        // `--optimizer sgd --momentum 0.5` is the momentum optimiser (RunOptions::
        // sgd_with_momentum); `--momentum 0.5` alone, on a run of plain SGD, would make it one.
        let mut given = given.clone();
        if given.sgd_with_momentum() {
            if given.optimizer.is_none() && self.optimizer == OptimizerChoice::Sgd {
                let mu = given.momentum.unwrap_or_default();
                return Err(refuse("momentum", mu.to_string(), "plain SGD".into(), keep));
            }
            if given.optimizer.is_some() {
                given.optimizer = Some(OptimizerChoice::Momentum);
            }
        }
        // The name `demo` is the built-in demo set, which a run without --data trains on.
        if self.data.is_none() && given.data.as_deref().is_some_and(crate::data::is_demo) {
            given.data = None;
        }
        let given = &given;
        for spec in OPTIONS {
            let why = match spec.resume {
                Resume::Keep => keep,
                Resume::Started => "the run's weights were initialised when it started",
                Resume::MayChange | Resume::Checkpoint => continue,
            };
            if (spec.field.take)(&mut self.clone(), given) {
                return Err(refuse(
                    spec.flag,
                    (spec.field.given)(given).unwrap_or_default(),
                    spec.show(self),
                    why,
                ));
            }
        }
        let mut next = self.clone();
        let mut changes = Vec::new();
        for spec in OPTIONS.iter().filter(|s| s.resume == Resume::MayChange) {
            let from = spec.show(&next);
            if (spec.field.take)(&mut next, given) {
                changes.push(Change {
                    name: spec.name,
                    from,
                    to: spec.show(&next),
                });
            }
        }
        next.validate()?;
        Ok((next, changes))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::init::Init;

    #[test]
    fn keyword_wording_names_the_keyword_not_the_flag() {
        let c = RunConfig {
            lr: -1.0,
            ..RunConfig::default()
        };
        let e = c.validate_as(Wording::Keyword).unwrap_err().to_string();
        assert_eq!(e, "lr must be positive, got -1");
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "--lr must be positive, got -1"
        );
        let c = RunConfig {
            batch_size: 0,
            ..RunConfig::default()
        };
        let e = c.validate_as(Wording::Keyword).unwrap_err().to_string();
        assert_eq!(e, "batch_size must be at least 1");
        let mut given = RunOptions::default();
        given.set_keyword("gamma", "0.5").unwrap();
        let e = crate::run::settings::resolve_with(&given, None, Wording::Keyword).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gamma applies to schedule='step'; add it, or leave gamma out"
        );
        let e = given.set_keyword("lr", "abc").unwrap_err();
        assert_eq!(e, "lr=abc: expected a number, got `abc`");
        let e = given.set_keyword("learning_rate", "0.1").unwrap_err();
        assert!(e.starts_with("unknown option `learning_rate`"), "{e}");
    }

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

    #[test]
    fn set_reads_an_option_by_its_name_from_text() {
        let mut o = RunOptions::default();
        o.set("lr", "0.05").unwrap();
        o.set("optimizer", "adamw").unwrap();
        o.set("normalize", "true").unwrap();
        o.set("data", "mnist").unwrap();
        o.set("early_stop", "val_loss").unwrap();
        let want = RunOptions {
            lr: Some(0.05),
            optimizer: Some(OptimizerChoice::AdamW),
            normalize: Some(true),
            data: Some(PathBuf::from("mnist")),
            early_stop: Some(crate::early_stop::Monitor::ValLoss),
            ..RunOptions::default()
        };
        assert_eq!(o, want);
        assert_eq!(
            o.set("learning_rate", "1").unwrap_err(),
            "unknown option `learning_rate`"
        );
        assert_eq!(
            o.set("bach_size", "1").unwrap_err(),
            "unknown option `bach_size`; did you mean `batch_size`?"
        );
        assert_eq!(
            o.set("batch_size", "many").unwrap_err(),
            "expected a whole number, got `many`"
        );
        assert_eq!(
            o.set("schedule", "cosin").unwrap_err(),
            "expected one of constant, step, cosine, got `cosin`; did you mean `cosine`?"
        );
        // Every option reads back what it shows.
        let c = RunConfig::default();
        for spec in OPTIONS {
            if let Some(text) = (spec.field.show)(&c) {
                let mut o = RunOptions::default();
                let text = if text == "off" { "false".into() } else { text };
                o.set(spec.name, &text).unwrap();
                assert!(!(spec.field.take)(&mut c.clone(), &o), "{}", spec.name);
            }
        }
    }

    #[test]
    fn validate_says_each_range_in_a_flags_words() {
        let bad = |given: &[(&str, &str)]| {
            let mut o = RunOptions::default();
            for (name, text) in given {
                o.set(name, text).unwrap();
            }
            RunConfig::default()
                .with(&o)
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(&[("momentum", "1")]),
            "--momentum must be at least 0 and below 1, got 1"
        );
        assert_eq!(
            bad(&[("gamma", "0")]),
            "--gamma must be above 0 and at most 1, got 0"
        );
        assert_eq!(
            bad(&[("val_split", "1")]),
            "--val-split must be strictly between 0 and 1, got 1"
        );
        assert_eq!(
            bad(&[("weight_decay", "-0.5")]),
            "--weight-decay must be 0 or positive, got -0.5"
        );
        assert_eq!(bad(&[("lr", "inf")]), "--lr must be positive, got inf");
        assert_eq!(bad(&[("patience", "0")]), "--patience must be at least 1");
        assert_eq!(
            bad(&[("shift", "2000")]),
            "--shift must be at most 1,000, got 2000"
        );
        assert_eq!(
            bad(&[("min_lr", "0.5")]),
            "--min-lr must be from 0 to --lr (0.01), got 0.5"
        );
        assert_eq!(
            bad(&[("epochs", "3"), ("warmup", "3")]),
            "--warmup must be fewer epochs than --epochs (3), got 3"
        );
        assert!(bad(&[("early_stop", "val_accuracy")])
            .starts_with("--early-stop val_accuracy watches a validation split"));
    }

    #[test]
    fn check_refuses_an_option_without_the_one_it_applies_to() {
        let check = |given: &[(&str, &str)]| {
            let mut o = RunOptions::default();
            for (name, text) in given {
                o.set(name, text).unwrap();
            }
            o.check().map_err(|e| e.to_string())
        };
        assert_eq!(
            check(&[("gamma", "0.5")]).unwrap_err(),
            "--gamma applies to --schedule step; add it, or leave --gamma out"
        );
        assert!(check(&[("gamma", "0.5"), ("schedule", "step")]).is_ok());
        assert_eq!(
            check(&[("min_lr", "0.001"), ("schedule", "step")]).unwrap_err(),
            "--min-lr applies to --schedule cosine; add it, or leave --min-lr out"
        );
        assert!(check(&[("restore_best", "true")])
            .unwrap_err()
            .starts_with("--restore-best applies to early stopping; add --early-stop"));
        assert!(check(&[("patience", "2"), ("early_stop", "val_loss")]).is_ok());
    }

    #[test]
    fn resuming_refuses_what_the_table_keeps_saying_both_values_and_why() {
        let stored = RunConfig::default();
        let refused = |name: &str, text: &str| {
            let mut o = RunOptions::default();
            o.set(name, text).unwrap();
            stored
                .resumed(Path::new("run"), &o)
                .unwrap_err()
                .to_string()
        };
        let err = refused("flip", "true");
        assert!(
            err.starts_with(
                "cannot resume with --flip on: the run has off, and a resumed run \
                             keeps it"
            ),
            "{err}"
        );
        let err = refused("init_scheme", "he");
        assert!(
            err.starts_with(
                "cannot resume with --init-scheme he: the run has normal, and the run's \
                 weights were initialised when it started; start a new run instead (--init \
                 run/checkpoint.safetensors"
            ),
            "{err}"
        );
        assert!(refused("val_split", "0.1")
            .starts_with("cannot resume with --val-split 0.1: the run has none"));
        // The data's path may change; its contents are checked against the checkpoint.
        let mut o = RunOptions::default();
        o.set("data", "elsewhere").unwrap();
        o.set("test_data", "t").unwrap();
        let (next, changes) = stored.resumed(Path::new("run"), &o).unwrap();
        assert_eq!(next.data, Some(PathBuf::from("elsewhere")));
        let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            [
                "data the built-in demo set -> elsewhere",
                "test_data the data's test split, if any -> t"
            ]
        );
    }

    #[test]
    fn momentum_reads_as_pytorchs_sgd_and_is_refused_with_adam_and_on_resume_of_plain_sgd() {
        let options = |given: &[(&str, &str)]| {
            let mut o = RunOptions::default();
            for (name, text) in given {
                o.set(name, text).unwrap();
            }
            o
        };
        let config = |given: &[(&str, &str)]| RunConfig::default().with(&options(given));
        let sgd_05 = config(&[("optimizer", "sgd"), ("momentum", "0.5")]);
        assert_eq!(
            (sgd_05.optimizer, sgd_05.momentum),
            (OptimizerChoice::Momentum, 0.5)
        );
        assert_eq!(
            config(&[("momentum", "0.5")]).optimizer,
            OptimizerChoice::Momentum
        );
        assert_eq!(
            config(&[("optimizer", "sgd"), ("momentum", "0")]).optimizer,
            OptimizerChoice::Sgd
        );
        assert_eq!(
            config(&[("optimizer", "sgd")]).optimizer,
            OptimizerChoice::Sgd
        );
        assert_eq!(
            options(&[("optimizer", "adamw"), ("momentum", "0.5")])
                .check()
                .unwrap_err()
                .to_string(),
            "--momentum applies to SGD (--optimizer sgd, momentum or nesterov), not to \
             --optimizer adamw, whose betas are fixed; leave --momentum out"
        );
        assert!(config(&[("optimizer", "nesterov"), ("momentum", "0")])
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--optimizer nesterov needs a --momentum above 0"));

        // Resuming: the same optimiser said either way is no change; a momentum on a run of
        // plain SGD is refused.
        let run = Path::new("run");
        let given = options(&[("optimizer", "sgd"), ("momentum", "0.5")]);
        assert_eq!(sgd_05.resumed(run, &given).unwrap().1, []);
        let err = RunConfig::default()
            .resumed(run, &options(&[("momentum", "0.5")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot resume with --momentum 0.5: the run has plain SGD"),
            "{err}"
        );
    }

    #[test]
    fn resuming_a_run_of_the_demo_set_with_data_demo_is_no_change() {
        let mut o = RunOptions::default();
        o.set("data", "demo").unwrap();
        let (next, changes) = RunConfig::default().resumed(Path::new("run"), &o).unwrap();
        assert_eq!((next.data, changes), (None, vec![]));
        // A folder called demo is ./demo, another path.
        o.set("data", "./demo").unwrap();
        let (_, changes) = RunConfig::default().resumed(Path::new("run"), &o).unwrap();
        assert_eq!(changes.len(), 1);
    }

    #[test]
    fn clip_grad_norm_is_kept_on_resume_and_left_out_of_run_json_when_off() {
        let stored = RunConfig::default();
        let json = serde_json::to_string(&stored).unwrap();
        assert!(!json.contains("clip_grad_norm"), "{json}");
        let clipped = RunConfig {
            clip_grad_norm: Some(0.5),
            ..RunConfig::default()
        };
        let json = serde_json::to_string(&clipped).unwrap();
        assert!(json.ends_with(r#","clip_grad_norm":0.5}"#), "{json}");
        assert_eq!(serde_json::from_str::<RunConfig>(&json).unwrap(), clipped);
        assert_eq!(
            RunConfig::default()
                .with(&RunOptions::default())
                .optimizer()
                .clip_grad_norm,
            None
        );
        let mut o = RunOptions::default();
        o.set("clip_grad_norm", "2").unwrap();
        let err = stored
            .resumed(Path::new("run"), &o)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "cannot resume with --clip-grad-norm 2: the run has off, and a resumed run \
                 keeps it"
            ),
            "{err}"
        );
        o.clip_grad_norm = Some(0.5);
        assert!(clipped.resumed(Path::new("run"), &o).is_ok());
        o.clip_grad_norm = Some(-1.0);
        assert_eq!(
            RunConfig::default()
                .with(&o)
                .validate()
                .unwrap_err()
                .to_string(),
            "--clip-grad-norm must be positive, got -1"
        );
    }
}
