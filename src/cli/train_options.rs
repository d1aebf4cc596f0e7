//! The training options that `cnn train` and `cnn sweep` share (one clap struct, flattened
//! into both), turned into [`RunOptions`]. Every option is optional here: its default lives
//! in [`RunConfig::default`] alone, and the help text shows it from there.

use std::fmt::Display;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use cnn::early_stop::Monitor;
use cnn::init::Init;
use cnn::run::{OptimizerChoice, RunConfig, RunOptions, ScheduleChoice};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// Plain gradient descent, w <- w - lr * g (the reports').
    Sgd,
    /// SGD with momentum (--momentum).
    Momentum,
    /// SGD with Nesterov momentum (--momentum).
    Nesterov,
    /// Adam (betas 0.9, 0.999, eps 1e-8).
    Adam,
    /// AdamW: Adam with decoupled weight decay, w <- w (1 - lr * wd) (--weight-decay).
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The base rate throughout.
    Constant,
    /// The rate times --gamma every --step-size epochs.
    Step,
    /// A half cosine from the base rate down to --min-lr.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MonitorArg {
    /// The validation loss; stop when it stops falling.
    #[value(name = "val_loss")]
    ValLoss,
    /// The validation accuracy; stop when it stops rising.
    #[value(name = "val_accuracy")]
    ValAccuracy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    /// N(0, 1/fan_in), report 2's.
    Normal,
    /// N(0, 2/fan_in), He / Kaiming.
    He,
    /// U(-a, a), a = sqrt(6/(fan_in + fan_out)), Glorot / Xavier.
    Glorot,
}

/// `what [default: value]`, with the value from [`RunConfig::default`].
pub fn with_default(what: &str, value: impl Display) -> String {
    format!("{what} [default: {value}]")
}

fn defaults() -> RunConfig {
    RunConfig::default()
}

// The numeric options accept a leading minus, so that `--lr -1` is refused with "must be
// positive" (exit code 2) rather than clap's "unexpected argument".
#[derive(Debug, Clone, Args)]
pub struct TrainingOptions {
    /// Training data: an IDX folder or file, a folder with labels.txt, or a folder per
    /// class. Default: the built-in Fashion-MNIST demo set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test data, evaluated after each epoch. Default: the t10k split of an IDX folder (or of
    /// the demo set), if there is one.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Hold out this share of the training data (stratified) as the test set instead.
    #[arg(long, allow_negative_numbers = true)]
    pub val_split: Option<f64>,
    #[arg(long, allow_negative_numbers = true,
          help = with_default("Images per gradient step.", defaults().batch_size))]
    pub batch_size: Option<usize>,
    #[arg(long, value_enum,
          help = with_default("The optimiser.", defaults().optimizer.name()))]
    pub optimizer: Option<OptimizerArg>,
    #[arg(long, allow_negative_numbers = true,
          help = with_default("Momentum factor for --optimizer momentum or nesterov.",
                              defaults().momentum))]
    pub momentum: Option<f32>,
    #[arg(long, allow_negative_numbers = true,
          help = with_default("L2 weight decay, added to the gradient (PyTorch's convention).",
                              defaults().weight_decay))]
    pub weight_decay: Option<f32>,
    #[arg(long, allow_negative_numbers = true,
          help = with_default("Label smoothing eps: the loss's target is (1 - eps) one-hot + \
                               eps / classes, as PyTorch's CrossEntropyLoss(label_smoothing).",
                              defaults().label_smoothing))]
    pub label_smoothing: Option<f32>,
    #[arg(long, value_enum,
          help = with_default("Learning-rate schedule, by epoch.", defaults().schedule.name()))]
    pub schedule: Option<ScheduleArg>,
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::at_least_one,
          help = with_default("Epochs between two multiplications by --gamma (--schedule step).",
                              defaults().step_size))]
    pub step_size: Option<usize>,
    #[arg(long, allow_negative_numbers = true,
          help = with_default("The factor of --schedule step.", defaults().gamma))]
    pub gamma: Option<f32>,
    #[arg(long, allow_negative_numbers = true,
          help = with_default("The rate --schedule cosine ends at.", defaults().min_lr))]
    pub min_lr: Option<f32>,
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::whole_number,
          help = with_default("Epochs of linear warm-up to the base rate, before the schedule.",
                              defaults().warmup))]
    pub warmup: Option<usize>,
    #[arg(long, value_enum,
          help = with_default("Weight initialisation.",
                              cnn::run::init_name(defaults().init_scheme)))]
    pub init_scheme: Option<InitArg>,
    /// Start from the weights of this model file (e.g. exported from PyTorch).
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[arg(long, help = with_default(
        "Seed of every random stream (initialisation, shuffling, the validation split); the \
         same seed gives the same model, byte for byte, for any --threads.",
        defaults().seed))]
    pub seed: Option<u64>,
    /// Keep the data in file order every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Normalise each input channel by the training data's mean and standard deviation
    /// (stored in the model, so evaluate and predict do the same).
    #[arg(long)]
    pub normalize: bool,
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::whole_number,
          help = with_default("Shift each training image by up to this many pixels along each \
                               axis, at random, with zero fill.", defaults().shift))]
    pub shift: Option<usize>,
    /// Flip half the training images left to right, at random (right for clothes, wrong for
    /// digits).
    #[arg(long)]
    pub flip: bool,
    /// Resize images whose size differs from the config's input instead of refusing them.
    #[arg(long)]
    pub resize: bool,
    /// Stop when this figure of the validation split (--val-split; never the test set) has
    /// not improved for --patience epochs, as Keras's EarlyStopping.
    #[arg(long, value_enum)]
    pub early_stop: Option<MonitorArg>,
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::at_least_one,
          help = with_default("Epochs without improvement before --early-stop stops.",
                              defaults().patience))]
    pub patience: Option<usize>,
    #[arg(long, allow_negative_numbers = true,
          help = with_default("The least change that counts as an improvement for \
                               --early-stop.", defaults().min_delta))]
    pub min_delta: Option<f64>,
    /// When --early-stop stops the run, end it with the best epoch's weights (kept in the
    /// run folder's best.safetensors) instead of the last epoch's, as Keras's
    /// restore_best_weights. Off by default, as in Keras.
    #[arg(long)]
    pub restore_best: bool,
    /// Worker threads [default: all cores; at most 4 per core]. Results are bit-identical
    /// for any count.
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::thread_count)]
    pub threads: Option<usize>,
    /// After each epoch, print each parameter tensor's gradient L2 norm (of the epoch's last
    /// step) and each ReLU layer's share of dead units (0 for every image of the last batch).
    #[arg(long)]
    pub monitor: bool,
}

impl TrainingOptions {
    /// The options given, for [`RunConfig::with`] or [`cnn::run::Run::resume`] (the
    /// network config, epochs and learning rate are the command's own).
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            data: self.data.clone(),
            test_data: self.test_data.clone(),
            val_split: self.val_split,
            batch_size: self.batch_size,
            optimizer: self.optimizer.map(|o| match o {
                OptimizerArg::Sgd => OptimizerChoice::Sgd,
                OptimizerArg::Momentum => OptimizerChoice::Momentum,
                OptimizerArg::Nesterov => OptimizerChoice::Nesterov,
                OptimizerArg::Adam => OptimizerChoice::Adam,
                OptimizerArg::Adamw => OptimizerChoice::AdamW,
            }),
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            label_smoothing: self.label_smoothing,
            schedule: self.schedule.map(|s| match s {
                ScheduleArg::Constant => ScheduleChoice::Constant,
                ScheduleArg::Step => ScheduleChoice::Step,
                ScheduleArg::Cosine => ScheduleChoice::Cosine,
            }),
            step_size: self.step_size,
            gamma: self.gamma,
            min_lr: self.min_lr,
            warmup: self.warmup,
            init_scheme: self.init_scheme.map(|i| match i {
                InitArg::Normal => Init::Normal,
                InitArg::He => Init::He,
                InitArg::Glorot => Init::Glorot,
            }),
            init: self.init.clone(),
            seed: self.seed,
            no_shuffle: self.no_shuffle,
            normalize: self.normalize,
            shift: self.shift,
            flip: self.flip,
            resize: self.resize,
            early_stop: self.early_stop.map(|m| match m {
                MonitorArg::ValLoss => Monitor::ValLoss,
                MonitorArg::ValAccuracy => Monitor::ValAccuracy,
            }),
            patience: self.patience,
            min_delta: self.min_delta,
            restore_best: self.restore_best,
            ..RunOptions::default()
        }
    }
}
