//! Every run option, written once. An entry is
//!
//! ```text
//! /// What it means, with its formula (the field's doc comment).
//! name: Type = default => { flag: "...", help: "...", key: train("..."), range: ..., ... },
//! ```
//!
//! whose `{ ... }` holds the fields of [`Spec`] that differ from [`Spec::BASE`] (no flag, no
//! config key, any value, always applies, kept on resume). From this list follow:
//!
//! - [`RunConfig`], its `Default` and `run.json` (serde, field names as here, in this order);
//! - [`RunOptions`] (an `Option` per option) and [`RunOptions::over`]: flag > config line >
//!   default;
//! - [`OPTIONS`], which the rest walks: [`RunOptions::set`] (an option by name, from text),
//!   [`RunConfig::with`], the range and applies-to checks and the resume rule
//!   ([`RunConfig::validate`], [`RunOptions::check`], [`RunConfig::resumed`]), the
//!   `Train`/`Augment` line parser ([`super::settings`]), the flags of `cnn train` and
//!   `cnn sweep`, and the option table of docs/GUIDE.md ([`markdown_table`]).
//!
//! Adding an option is adding an entry here, and then using its [`RunConfig`] field where it
//! acts (the optimiser, the training loop...).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::table::{augment, run_options, train, Applies, Kind, Range, Resume, Spec};
use super::{OptimizerChoice, ReduceChoice, ScheduleChoice};
use crate::early_stop::Monitor;
use crate::init::Init;

/// Largest `epochs`, `batch_size`, `step_size`, `warmup` or `patience`.
pub const MAX_COUNT: usize = 1_000_000;

/// A whole number of at least 1.
const COUNT: Range = Range::Whole {
    min: 1,
    max: MAX_COUNT,
};

run_options! {
    /// The network config file (report 1's format). A resumed run uses the checkpoint's copy
    /// of its text, not the file.
    config: PathBuf = PathBuf::new() => {
        resume: Resume::Checkpoint,
    },
    /// Training data: an IDX folder or file, a CIFAR-10 folder or batch file, a folder with
    /// labels.txt, or a folder per class. `None`: the built-in Fashion-MNIST demo set.
    data: Option<PathBuf> = None => {
        flag: "data",
        help: "Training data: an IDX folder or file, a CIFAR-10 folder or .bin file, a folder \
               with labels.txt, or a folder per class. Default: the built-in Fashion-MNIST demo \
               set.",
        resume: Resume::MayChange,
        unset: "the built-in demo set",
    },
    /// Test data, evaluated after each epoch; with `val_split`, once, after training (the
    /// validation split is then evaluated after each epoch). Its classes are matched to the
    /// training data's by name, as `cnn evaluate` does, before training. `None`: the t10k
    /// split of an IDX folder, the test_batch.bin of a CIFAR-10 folder (or the demo set's
    /// test split) when there is one and no `val_split`.
    test_data: Option<PathBuf> = None => {
        flag: "test-data",
        help: "Test data, evaluated after each epoch (with --val-split: once, after training). \
               Default: the test split of the training data (an IDX folder's t10k files, a \
               CIFAR-10 folder's test_batch.bin, the demo set's), if it has one.",
        resume: Resume::MayChange,
        unset: "the data's test split, if any",
    },
    /// Hold out this share (strictly between 0 and 1) of the training data, stratified, as
    /// the set evaluated after each epoch (and watched by early stopping), instead of the
    /// test set.
    val_split: Option<f64> = None => {
        flag: "val-split",
        help: "Hold out this share of the training data (stratified), evaluated after each \
               epoch instead of the test set (a --test-data is then evaluated once, at the end).",
        key: train("val_split"),
        range: Range::Fraction,
        example: "0.1",
    },
    /// Passes over the training data to reach. Default 10 (report 1's). 0 only with `init`:
    /// the run then saves the given weights as its model.
    #[serde(deserialize_with = "epochs_or_default")]
    epochs: usize = 10 => {
        flag: "epochs",
        help: "Passes over the training data (with --resume: the epoch to reach).",
        key: train("epochs"),
        range: COUNT,
        resume: Resume::MayChange,
    },
    /// Learning rate lr: SGD's step is w <- w - lr g ([`crate::optim`]). Default 0.01.
    lr: f32 = 0.01 => {
        flag: "lr",
        help: "Learning rate (may change on --resume).",
        key: train("lr"),
        range: Range::Positive,
        example: "0.01",
        resume: Resume::MayChange,
    },
    /// Images per gradient step. Default 32 (report 2's).
    batch_size: usize = 32 => {
        flag: "batch-size",
        help: "Images per gradient step.",
        key: train("batch"),
        range: COUNT,
    },
    /// The optimiser ([`crate::optim`]). Default plain SGD.
    optimizer: OptimizerChoice = OptimizerChoice::Sgd => {
        flag: "optimizer",
        help: "The optimiser.",
        key: train("optimizer"),
    },
    /// Momentum factor mu of SGD: v <- mu v + g. Read as PyTorch's `SGD(momentum=mu)`: given
    /// above 0 with `optimizer` sgd (or no optimizer), the run is SGD with momentum
    /// ([`OptimizerChoice::Momentum`]). Default 0.9, for `momentum` and `nesterov`. Refused
    /// with Adam and AdamW.
    momentum: f32 = 0.9 => {
        flag: "momentum",
        help: "Momentum factor of SGD, as PyTorch's SGD(momentum): --optimizer sgd --momentum \
               0.5 is SGD with momentum 0.5, as --optimizer momentum --momentum 0.5 is; \
               --optimizer momentum and nesterov default to 0.9.",
        key: train("momentum"),
        range: Range::BelowOne,
        example: "0.9",
        applies: Applies::Sgd,
    },
    /// L2 weight decay wd, added to the gradient, g <- g + wd w (PyTorch's convention; AdamW
    /// instead shrinks the weights, w <- w (1 - lr wd)). Default 0.
    weight_decay: f32 = 0.0 => {
        flag: "weight-decay",
        help: "L2 weight decay, added to the gradient (PyTorch's convention).",
        key: train("weight_decay"),
        range: Range::NonNegative,
        example: "5e-4",
    },
    /// Label smoothing eps in [0, 1): the loss's target is (1 - eps) one-hot + eps / K, as
    /// PyTorch's `CrossEntropyLoss(label_smoothing=eps)`. Default 0 (plain cross-entropy).
    label_smoothing: f32 = 0.0 => {
        flag: "label-smoothing",
        help: "Label smoothing eps: the loss's target is (1 - eps) one-hot + eps / classes, as \
               PyTorch's CrossEntropyLoss(label_smoothing).",
        key: train("label_smoothing"),
        range: Range::BelowOne,
        example: "0.1",
    },
    /// The learning-rate schedule, by epoch ([`crate::schedule`]). Default constant.
    schedule: ScheduleChoice = ScheduleChoice::Constant => {
        flag: "schedule",
        help: "Learning-rate schedule, by epoch.",
        key: train("schedule"),
    },
    /// For the step schedule: epochs between two multiplications by `gamma`. Default 10.
    step_size: usize = 10 => {
        flag: "step-size",
        help: "Epochs between two multiplications by --gamma (--schedule step).",
        key: train("step"),
        range: COUNT,
        applies: Applies::Schedule(ScheduleChoice::Step),
    },
    /// For the step schedule: the factor, lr_e = lr gamma^floor(e / step_size). Default 0.1.
    gamma: f32 = 0.1 => {
        flag: "gamma",
        help: "The factor of --schedule step.",
        key: train("gamma"),
        range: Range::UpToOne,
        example: "0.1",
        applies: Applies::Schedule(ScheduleChoice::Step),
    },
    /// For the cosine schedule: the rate it ends at, lr_e = min_lr + (lr - min_lr)
    /// (1 + cos(pi e / E)) / 2. At most `lr`. Default 0.
    min_lr: f32 = 0.0 => {
        flag: "min-lr",
        help: "The rate --schedule cosine ends at.",
        key: train("min_lr"),
        range: Range::NonNegative,
        example: "0.0001",
        applies: Applies::Schedule(ScheduleChoice::Cosine),
    },
    /// Epochs of warm-up before the schedule, linear per step: over its T = warmup x (steps
    /// an epoch) steps, step t (from 0) is at lr (t + 1) / T, PyTorch's
    /// `LinearLR(start_factor=1/T, total_iters=T-1)` stepped every step ([`crate::schedule`]).
    /// Fewer than `epochs`. Default 0.
    warmup: usize = 0 => {
        flag: "warmup",
        help: "Epochs of warm-up before the schedule: the rate climbs step by step, linearly, \
               from lr / (the warm-up's steps) to lr at its last step.",
        key: train("warmup"),
        range: Range::Whole { min: 0, max: MAX_COUNT },
    },
    /// Weight initialisation ([`crate::init`]). Default N(0, 1/fan_in).
    init_scheme: Init = Init::Normal => {
        flag: "init-scheme",
        help: "Weight initialisation.",
        key: train("init"),
        resume: Resume::Started,
    },
    /// Start from the weights of this model file (or checkpoint) instead.
    init: Option<PathBuf> = None => {
        flag: "init",
        help: "Start from the weights of this model file (e.g. exported from PyTorch).",
        resume: Resume::Started,
    },
    /// The seed of every random stream: initialisation, shuffling, the validation split,
    /// augmentation, dropout.
    seed: u64 = 0 => {
        flag: "seed",
        help: "Seed of every random stream (initialisation, shuffling, the validation split); \
               the same seed gives the same model, byte for byte, for any --threads.",
        key: train("seed"),
    },
    /// Keep the data in file order every epoch.
    no_shuffle: bool = false => {
        flag: "no-shuffle",
        help: "Keep the data in file order every epoch.",
    },
    /// Normalise each input channel by the training data's mean and standard deviation
    /// (stored in the model file).
    normalize: bool = false => {
        flag: "normalize",
        help: "Normalise each input channel by the training data's mean and standard deviation \
               (stored in the model, so evaluate and predict do the same).",
        key: train("normalize"),
    },
    /// Resize images whose size differs from the config's input instead of refusing them.
    resize: bool = false => {
        flag: "resize",
        help: "Resize images whose size differs from the config's input instead of refusing \
               them.",
    },
    /// Shift each training image by up to this many pixels along each axis, at random, with
    /// zero fill ([`crate::augment`]); below the image's height and width. Default 0.
    shift: usize = 0 => {
        flag: "shift",
        help: "Shift each training image by up to this many pixels along each axis, at random, \
               with zero fill.",
        key: augment("shift"),
        range: Range::Whole { min: 0, max: 1000 },
    },
    /// Flip half the training images left to right, at random. Default off.
    flip: bool = false => {
        flag: "flip",
        help: "Flip half the training images left to right, at random (right for clothes, wrong \
               for digits).",
        key: augment("flip"),
    },
    /// Erase a rectangle of each training image with this probability p, after the shift and
    /// the flip: torchvision's `RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3),
    /// value=0)` after `Normalize`, so the rectangle's pixels become 0 of the normalised image
    /// ([`crate::augment`]). Default 0 (off).
    erase: f32 = 0.0 => {
        flag: "erase",
        help: "Erase a random rectangle (2% to 33% of the image, height / width 0.3 to 3.3) of \
               each training image with this probability, as torchvision's RandomErasing after \
               Normalize: its pixels become 0 after normalisation.",
        key: augment("erase"),
        range: Range::Probability,
        example: "0.5",
    },
    /// Score the test set at the end of the run also on each image mirrored left to right,
    /// averaging the views' softmax outputs ([`crate::train::TestViews`]: test-time
    /// augmentation). The figures after each epoch stay one view. Default off.
    test_flip: bool = false => {
        flag: "test-flip",
        help: "Score the test set at the end of the run also on each image mirrored left to \
               right, averaging the views' probabilities (test-time augmentation; right for \
               clothes, wrong for digits). The figures after each epoch stay one view.",
        key: augment("test_flip"),
        resume: Resume::MayChange,
    },
    /// Score the test set at the end of the run on each image moved by every offset
    /// (dy, dx) with |dy|, |dx| <= S, zero fill as `shift` ((2S + 1)^2 views, times 2 with
    /// `test_flip`), averaging the views' softmax outputs. Default 0: one view.
    test_shift: usize = 0 => {
        flag: "test-shift",
        help: "Score the test set at the end of the run on each image moved by every offset \
               of up to this many pixels along each axis ((2S+1)^2 views, twice that with \
               --test-flip), averaging the views' probabilities. The figures after each \
               epoch stay one view.",
        key: augment("test_shift"),
        range: Range::Whole { min: 0, max: 1000 },
        resume: Resume::MayChange,
    },
    /// Evaluate the held-out set (the test set, or the validation split) after every N-th
    /// epoch and after the last, instead of after every epoch, as Keras's
    /// `validation_freq`: the epochs between have no held-out figures (in the log, the
    /// plots and `metrics.csv`). Evaluating 10,000 test images costs as much as training
    /// on about 1,000, so a long run on a small network saves a few percent. Default 1.
    eval_every: usize = 1 => {
        flag: "eval-every",
        help: "Evaluate the held-out set (test or validation) after every N-th epoch and after \
               the last, instead of after every epoch (Keras's validation_freq).",
        key: train("eval_every"),
        range: COUNT,
        resume: Resume::MayChange,
    },
    /// Stop when this figure of the validation split (`val_split`, required) has not
    /// improved for `patience` epochs ([`crate::early_stop`]). Default off.
    early_stop: Option<Monitor> = None => {
        flag: "early-stop",
        help: "Stop when this figure of the validation split (--val-split; never the test set) \
               has not improved for --patience epochs, as Keras's EarlyStopping.",
        key: train("early_stop"),
    },
    /// Epochs without improvement before early stopping stops. Default 5 (Keras's is 0,
    /// which stops at the first epoch that does not improve; noisy figures need more).
    patience: usize = 5 => {
        flag: "patience",
        help: "Epochs without improvement before --early-stop stops.",
        key: train("patience"),
        range: COUNT,
        applies: Applies::EarlyStop,
    },
    /// The least change of the watched figure that counts as an improvement. Default 0.
    min_delta: f64 = 0.0 => {
        flag: "min-delta",
        help: "The least change that counts as an improvement for --early-stop.",
        key: train("min_delta"),
        range: Range::NonNegative,
        example: "0.001",
        applies: Applies::EarlyStop,
    },
    /// A run that stops early ends with its best epoch's weights (kept in the run folder's
    /// `best.safetensors`), as Keras's `restore_best_weights=True`. Default off, as Keras.
    restore_best: bool = false => {
        flag: "restore-best",
        help: "When --early-stop stops the run, end it with the best epoch's weights (kept in \
               the run folder's best.safetensors) instead of the last epoch's, as Keras's \
               restore_best_weights. Off by default, as in Keras.",
        key: train("restore_best"),
        applies: Applies::EarlyStop,
    },
    /// How the processes of a run started by `mpirun` combine their gradients
    /// ([`crate::distributed`]): `exact` gives the model of one process, byte for byte;
    /// `allreduce` sums them with one MPI all-reduce (PyTorch DDP's way), equal to one
    /// process's up to rounding. One process ignores it.
    reduce: ReduceChoice = ReduceChoice::Exact => {
        flag: "reduce",
        help: "Under mpirun: how the processes combine gradients. exact: the model of one \
               process, byte for byte; allreduce: one MPI all-reduce, equal up to rounding.",
    },
    /// The processes the run trains on (`mpirun -np P`; 1 without it), set by `cnn train`
    /// and recorded in `run.json`. A resumed run may use another number: the bytes are the
    /// same.
    processes: usize = 1 => {
        resume: Resume::MayChange,
    },
    /// Clip the global gradient norm to this before each optimiser step:
    /// g <- g min(1, clip / (||g|| + 1e-6)) over every parameter's gradient, before weight
    /// decay, as PyTorch's `clip_grad_norm_(params, max_norm=clip)` ([`crate::optim`]).
    /// Default off.
    #[serde(skip_serializing_if = "Option::is_none")]
    clip_grad_norm: Option<f32> = None => {
        flag: "clip-grad-norm",
        help: "Clip the global gradient L2 norm to this before each optimiser step, as \
               PyTorch's clip_grad_norm_. Default: off.",
        key: train("clip_grad_norm"),
        range: Range::Positive,
        example: "1.0",
        unset: "off",
    },
}

/// A null `epochs` (written by runs that were not given `--epochs`) is the default.
fn epochs_or_default<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.unwrap_or(RunConfig::default().epochs))
}

/// The option called `name` (its field's name).
pub fn find(name: &str) -> Option<&'static Spec> {
    OPTIONS.iter().find(|s| s.name == name)
}

/// The table of docs/GUIDE.md: each option with a flag or a config key, its values and its
/// default, in Markdown.
pub fn markdown_table() -> String {
    let mut s = String::from(
        "| flag | config key | value | default | note |\n| --- | --- | --- | --- | --- |\n",
    );
    for spec in OPTIONS {
        if spec.flag.is_empty() && spec.key.is_none() {
            continue;
        }
        let flag = if spec.flag.is_empty() {
            "-".to_string()
        } else {
            format!("`--{}`", spec.flag)
        };
        let key = spec.key.map_or("-".to_string(), |k| {
            format!("`{}` ({})", k.name, k.line.name())
        });
        let value = match spec.kind {
            Kind::Choice(choices) => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
                names.join(", ")
            }
            Kind::Switch => "switch".into(),
            Kind::Path => "path".into(),
            kind => spec.range.line_words(kind),
        };
        let default = match spec.kind {
            Kind::Switch => "off".to_string(),
            _ => spec.show(&RunConfig::default()),
        };
        let note = match (spec.applies, spec.resume) {
            (Applies::Schedule(s), _) => format!(" with `--schedule {s}` |"),
            (Applies::EarlyStop, _) => " with `--early-stop` |".into(),
            (Applies::Sgd, _) => " with an SGD `--optimizer` (not `adam`, `adamw`) |".into(),
            (_, Resume::MayChange) => " may change on `--resume` |".into(),
            _ => " |".into(),
        };
        s += &format!("| {flag} | {key} | {value} | {default} |{note}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_flags_and_keys_are_each_used_once() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(a.flag.is_empty() || a.flag != b.flag, "{}", a.flag);
                assert!(a.key.is_none() || a.key != b.key, "{:?}", a.key);
            }
            // A flag is the name with dashes; a key may be shorter (`batch`, `step`, `init`).
            assert!(
                a.flag.is_empty() || a.flag == a.name.replace('_', "-"),
                "{}",
                a.name
            );
            assert!(!a.doc.is_empty(), "{} has no doc comment", a.name);
        }
    }

    #[test]
    fn the_guide_has_the_option_table() {
        let guide = include_str!("../../docs/GUIDE.md");
        assert!(
            guide.contains(&markdown_table()),
            "docs/GUIDE.md's option table differs from the options; it should be:\n{}",
            markdown_table()
        );
    }
}
