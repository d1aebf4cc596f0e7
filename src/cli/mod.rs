//! Command-line interface: argument parsing (clap derive) and one module per command.
//!
//! Every command is a function returning `Result`; [`main`] prints `error: ...` on failure
//! and turns it into the exit code: 0 success, 1 error at run time, 2 bad usage (clap's own,
//! printed on one line by [`usage_error_line`], and options the library refuses before
//! writing anything), 3 training diverged, 130 when Ctrl-C stopped training and 143 when
//! SIGTERM did (after its checkpoint was written).

mod arg_values;
mod bench;
mod data_cmd;
mod download;
mod evaluate;
mod examples;
mod export;
mod gallery;
mod gradcheck;
mod import;
mod mpi_job;
mod predict;
mod progress;
mod serve;
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
/// Exit code after SIGTERM (`timeout`, `docker stop`, Slurm, systemd) stopped training:
/// 128 + SIGTERM, as shells expect.
pub const EXIT_TERMINATED: i32 = 128 + progress::SIGTERM;

#[derive(Debug, Parser)]
#[command(
    name = "cnn",
    version,
    about = "Train and inspect convolutional neural networks written from scratch",
    long_about = "Train and inspect convolutional neural networks written from scratch.\n\n\
                  A network is a text config file (report 1's format), or the name of a \
                  built-in one: `cnn examples` lists them.\n\
                  Start with: cnn train report1-10"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each layer's output shape, parameters and FLOPs (with --explain, the arithmetic).
    #[command(after_help = "Examples:\n  \
        cnn summary report1 --explain   (a built-in example: cnn examples)\n  \
        cnn summary runs/report1-10/model.safetensors   (a model file: its embedded config)")]
    Summary {
        /// The network config file, a built-in example's name (`cnn examples`), or a model
        /// file (whose config is stored inside it).
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
    /// Fetch MNIST, Fashion-MNIST or CIFAR-10 (checked by SHA-256) into data/<name> or --dir.
    Download(download::DownloadArgs),
    /// Write a model file as ONNX (opset 13): class probabilities of [N, C, H, W] pixels.
    Export(export::ExportArgs),
    /// Read a CNN from ONNX (cnn export, PyTorch) into a model file.
    Import(import::ImportArgs),
    /// A live web page for a model or run folder: draw, see every layer, watch training.
    Serve(serve::ServeArgs),
    /// Inspect or export datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// List the built-in example networks (usable by name wherever a CONFIG goes), print
    /// one, or write them out.
    Examples(examples::ExamplesArgs),
}

/// A command's failure: the library's error, bad usage, a diverged run, or a run stopped
/// by Ctrl-C or SIGTERM (each its own exit code).
#[derive(Debug)]
pub enum Failure {
    Error(cnn::Error),
    Usage(String),
    Diverged(String),
    /// Ctrl-C stopped training after writing its checkpoint; the message says how to go on.
    Interrupted(String),
    /// SIGTERM stopped training after writing its checkpoint; the message says how to go on.
    Terminated(String),
    /// Errors the command printed already, each on its own line, while it went on with the
    /// rest (`cnn predict` with an unreadable image among others): exit code 1.
    Reported,
    /// Exit with this code; what happened was said already (by rank 0 of an MPI job, or by
    /// this process).
    Silent(i32),
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
            use clap::error::ErrorKind;
            match e.kind() {
                // --help, --version, and `cnn` or `cnn data` alone: clap's text as it is.
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                }
                _ => eprintln!("{}", usage_error_line(&e, program_args())),
            }
            return e.exit_code();
        }
    };
    // Every command's --threads is at least 1 and at most 4 per core (checked by its value
    // parser, arg_values::thread_count).
    if let Err(e) = set_threads(cli.command.threads()) {
        eprintln!("error: {e}");
        return 1;
    }
    // The command runs on one of the pool's threads, so the layers' parallel loops start
    // from inside the pool: a small loop then runs at once on the calling thread instead of
    // waking a sleeping worker and waiting for it, which took most of a batch-1 forward pass.
    // Commands that compute also keep the other workers polling for work, so that no
    // parallel loop waits 15-20 us for a sleeping worker to wake (kernels::threads).
    let outcome = if matches!(cli.command, Command::Serve(_)) {
        // The server waits on the main thread, outside the pool: a worker blocked there
        // would be one fewer for the inference loops (and, with one core, none at all).
        run(cli.command)
    } else if cli.command.computes() {
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
        Err(Failure::Terminated(msg)) => {
            eprintln!("{msg}");
            EXIT_TERMINATED
        }
        Err(Failure::Reported) => 1,
        Err(Failure::Silent(code)) => code,
    }
}

/// clap's error as one line: `error: WHAT; TIP (see cnn SUBCOMMAND --help)`.
///
/// clap writes a usage error over several lines (the error, an indented list or tip, a
/// `Usage:` line, a pointer to `--help`); the README promises one line per error, so they are
/// joined, and the pointer names the subcommand (found by walking `args` down the command
/// tree) so that it says where the options are described.
pub fn usage_error_line(e: &clap::Error, args: impl IntoIterator<Item = String>) -> String {
    let text = e.render().to_string();
    let mut what = String::new();
    let mut listed = Vec::new();
    let mut tips = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Usage:") || t.starts_with("For more information") {
            break;
        }
        if t.is_empty() {
            continue;
        }
        if what.is_empty() {
            what = t.strip_prefix("error: ").unwrap_or(t).to_string();
        } else if let Some(tip) = t.strip_prefix("tip: ") {
            tips.push(tip.to_string());
        } else {
            listed.push(t.to_string());
        }
    }
    let mut out = format!("error: {what}");
    if !listed.is_empty() {
        out += &format!(" {}", listed.join(", "));
    }
    for tip in tips {
        out += &format!("; {tip}");
    }
    out + &format!(" (see {} --help)", command_path(args))
}

/// The command line, lossily decoded (`std::env::args` would panic on a non-UTF-8 path).
fn program_args() -> impl Iterator<Item = String> {
    std::env::args_os().map(|a| a.to_string_lossy().into_owned())
}

/// `cnn` followed by the subcommands named in `args` (the first being the program), e.g.
/// `cnn data export`: the command whose `--help` describes the options.
fn command_path(args: impl IntoIterator<Item = String>) -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut path = vec!["cnn".to_string()];
    for arg in args.into_iter().skip(1) {
        if cmd.get_subcommands().next().is_none() {
            break;
        }
        if arg.starts_with('-') {
            continue;
        }
        match cmd.find_subcommand(&arg) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                cmd = sub.clone();
            }
            None => break,
        }
    }
    path.join(" ")
}

/// Prints `line`, which says what was written to `out`, on stdout; on stderr when `out` is
/// not a regular file (`/dev/stdout`, a pipe, a terminal), where stdout may be the output
/// itself: `cnn export model.safetensors /dev/stdout | ...` then pipes the bytes alone.
fn say_written(out: &std::path::Path, line: &str) {
    if std::fs::metadata(out).is_ok_and(|m| m.is_file()) {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
}

/// `cnn summary FILE`: the summary of a config file, or of the config a model (or checkpoint)
/// file carries in its metadata, then that model's classes.
fn summary(path: &std::path::Path, explain: bool) -> CmdResult {
    // A built-in example's name is no file: it goes to config::load.
    if path.is_file() && cnn::model_file::looks_like_safetensors(path)? {
        let meta = cnn::model_file::read_meta(path)?;
        let parsed = cnn::config::parse(
            &meta.config,
            &format!("{} (embedded config)", path.display()),
        )?;
        print!("{}", cnn::summary::render(&parsed.spec, explain)?);
        print!("{}", memory_line(&parsed)?);
        print!("{}", cnn::run::settings::describe(&parsed.settings));
        println!(
            "Classes ({}): {}",
            meta.classes.len(),
            meta.classes.join(", ")
        );
        return Ok(());
    }
    let parsed = cnn::config::load(path)?;
    cnn::run::settings::from_config(&parsed)?;
    print!("{}", cnn::summary::render(&parsed.spec, explain)?);
    print!("{}", memory_line(&parsed)?);
    print!("{}", cnn::run::settings::describe(&parsed.settings));
    Ok(())
}

/// The summary's estimate of the memory training takes, at the batch size and with the
/// optimiser of the config's `Train` line (else the defaults).
fn memory_line(parsed: &cnn::config::ParsedConfig) -> Result<String, cnn::Error> {
    let given = cnn::run::settings::from_config(parsed).unwrap_or_default();
    let config = cnn::run::RunConfig::default().with(&given);
    cnn::memory::summary_line(
        &parsed.spec,
        config.batch_size,
        config.optimizer().kind,
        rayon::current_num_threads(),
    )
}

fn run(command: Command) -> CmdResult {
    match command {
        Command::Summary { config, explain } => summary(&config, explain),
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Gradcheck(args) => gradcheck::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Visualize(args) => visualize::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Download(args) => download::run(args),
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Examples(args) => examples::run(args),
    }
}

impl Command {
    /// Whether the command spends its time computing (training, inference, benchmarks)
    /// rather than reading, writing or downloading files.
    fn computes(&self) -> bool {
        !matches!(
            self,
            Command::Summary { .. }
                | Command::Data(_)
                | Command::Download(_)
                | Command::Export(_)
                | Command::Import(_)
                | Command::Examples(_)
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
    let t = threads.unwrap_or(0);
    rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .stack_size(8 << 20)
        .build_global()
        .map_err(|e| cnn::Error::Invalid(format!("cannot start {t} threads: {e}")))
}
