//! Command-line interface: argument parsing (clap derive) and one module per command.
//!
//! Every command is a function returning `Result`; [`main`] prints `error: ...` on failure
//! and turns it into the exit code: 0 success, 1 error at run time, 2 bad usage (clap's own,
//! and options the library refuses before writing anything), 3 training diverged, 130 when
//! Ctrl-C stopped training (after its checkpoint was written).

mod bench;
mod data_cmd;
mod download;
mod evaluate;
mod gradcheck;
mod predict;
mod progress;
mod sweep;
mod train;
mod train_options;
mod visualize;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit code for bad usage: an option out of range or that cannot work with the others.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when training diverged (loss NaN or infinite).
pub const EXIT_DIVERGED: i32 = 3;
/// Exit code after Ctrl-C stopped training: 128 + SIGINT, as shells expect.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "cnn",
    version,
    about = "Train and inspect convolutional neural networks written from scratch",
    long_about = "Train and inspect convolutional neural networks written from scratch.\n\n\
                  A network is a text config file (report 1's format; see examples/).\n\
                  Start with: cnn train examples/report1-10.cfg"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each layer's output shape, parameters and FLOPs (with --explain, the arithmetic).
    Summary {
        /// The network config file.
        config: PathBuf,
        /// Show how each shape, parameter count and FLOP count is computed.
        #[arg(long)]
        explain: bool,
    },
    /// Train a network; without --data, on the built-in Fashion-MNIST demo set.
    #[command(after_help = train::EXAMPLES)]
    Train(train::TrainArgs),
    /// Accuracy, loss, confusion matrix and per-class metrics of a model on a dataset.
    Evaluate(evaluate::EvaluateArgs),
    /// Classify images (PNG, JPEG, BMP) or the images of an IDX file.
    Predict(predict::PredictArgs),
    /// Compare every parameter's backprop gradient with finite differences.
    Gradcheck(gradcheck::GradcheckArgs),
    /// Picture the first layer's filters and every layer's activations for one image.
    Visualize(visualize::VisualizeArgs),
    /// Train one model per learning rate and epoch count; overlay their loss curves.
    #[command(after_help = sweep::EXAMPLES)]
    Sweep(sweep::SweepArgs),
    /// Time training steps and inference on synthetic data (images/s, GFLOP/s, share of peak).
    Bench(bench::BenchArgs),
    /// Fetch MNIST or Fashion-MNIST (checked by SHA-256) into data/<name> or --dir.
    Download(download::DownloadArgs),
    /// Inspect or export datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
}

/// A command's failure: the library's error, bad usage, a diverged run, or a run stopped
/// by Ctrl-C (each its own exit code).
#[derive(Debug)]
pub enum Failure {
    Error(cnn::Error),
    Usage(String),
    Diverged(String),
    /// Ctrl-C stopped training after writing its checkpoint; the message says how to go on.
    Interrupted(String),
}

impl From<cnn::Error> for Failure {
    fn from(e: cnn::Error) -> Failure {
        match e {
            cnn::Error::Diverged(msg) => Failure::Diverged(msg),
            cnn::Error::Usage(msg) => Failure::Usage(msg),
            other => Failure::Error(other),
        }
    }
}

pub type CmdResult = Result<(), Failure>;

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    if let Err(e) = set_threads(cli.command.threads()) {
        eprintln!("error: {e}");
        return match e {
            cnn::Error::Usage(_) => EXIT_USAGE,
            _ => 1,
        };
    }
    // The command runs on one of the pool's threads, so the layers' parallel loops start
    // from inside the pool: a small loop then runs at once on the calling thread instead of
    // waking a sleeping worker and waiting for it, which took most of a batch-1 forward pass.
    // Commands that compute also keep the other workers polling for work, so that no
    // parallel loop waits 15-20 us for a sleeping worker to wake (kernels::threads).
    let outcome = if cli.command.computes() {
        cnn::kernels::threads::with_awake_workers(|| run(cli.command))
    } else {
        rayon::scope(|_| run(cli.command))
    };
    match outcome {
        Ok(()) => 0,
        Err(Failure::Error(e)) => {
            eprintln!("error: {e}");
            1
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            EXIT_USAGE
        }
        Err(Failure::Diverged(msg)) => {
            eprintln!("error: {msg}");
            EXIT_DIVERGED
        }
        Err(Failure::Interrupted(msg)) => {
            eprintln!("{msg}");
            EXIT_INTERRUPTED
        }
    }
}

fn run(command: Command) -> CmdResult {
    match command {
        Command::Summary { config, explain } => {
            let parsed = cnn::config::load(&config)?;
            print!("{}", cnn::summary::render(&parsed.spec, explain)?);
            Ok(())
        }
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Gradcheck(args) => gradcheck::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Visualize(args) => visualize::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Download(args) => download::run(args),
    }
}

impl Command {
    /// Whether the command spends its time computing (training, inference, benchmarks)
    /// rather than reading, writing or downloading files.
    fn computes(&self) -> bool {
        !matches!(
            self,
            Command::Summary { .. } | Command::Data(_) | Command::Download(_)
        )
    }

    /// The `--threads` option of the commands that have one.
    fn threads(&self) -> Option<usize> {
        match self {
            Command::Train(a) => a.options.threads,
            Command::Evaluate(a) => a.threads,
            Command::Sweep(a) => a.options.threads,
            Command::Bench(a) => a.threads,
            _ => None,
        }
    }
}

/// Starts the worker threads (all cores when `None`), with main-thread-sized stacks since
/// the whole command runs on one of them.
fn set_threads(threads: Option<usize>) -> Result<(), cnn::Error> {
    if threads == Some(0) {
        return Err(cnn::Error::Usage("--threads must be at least 1".into()));
    }
    let t = threads.unwrap_or(0);
    rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .stack_size(8 << 20)
        .build_global()
        .map_err(|e| cnn::Error::Invalid(format!("cannot start {t} threads: {e}")))
}
