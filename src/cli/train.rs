//! `cnn train`: the command-line options turned into a [`RunConfig`] (or a resume of a run
//! folder) and driven on the terminal. The run itself, its folder and its files are
//! [`cnn::run`]'s.

use std::path::PathBuf;

use clap::Args;
use cnn::run::{Run, RunConfig, RunOptions};

use super::train_options::{CliOptions, RunFlags};
use super::{progress, CmdResult, Failure};

/// Examples for `cnn train --help`.
pub const EXAMPLES: &str = "Examples:
  cnn train report1-10
      a built-in example (cnn examples lists them), 10 epochs on the built-in demo set, into
      runs/report1-10
  cnn train lenet --data data/fashion-mnist --epochs 5 --lr 0.05 --out runs/lenet
  cnn train recipe.cfg --lr 0.01
      the settings of recipe.cfg's Train and Augment lines, with the learning rate overridden
      (flag > config line > default)
  cnn train lenet --val-split 0.1 --early-stop val_loss --patience 3 --restore-best
      stop when the validation loss has not fallen for 3 epochs; keep the best epoch's weights
  cnn train --resume runs/lenet --epochs 10 --lr 0.01
      go on to epoch 10 at a lower learning rate (only --lr, --epochs, --data with the same
      contents and --test-data may change on resume)";

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// The network config file (report 1's format), or a built-in example's name (`cnn
    /// examples`). With --resume it may be left out; if given, it must be the run's.
    #[arg(required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    // Every run option.
    #[command(flatten)]
    pub run: RunFlags<false>,
    #[command(flatten)]
    pub options: CliOptions,
    /// Run folder [default: runs/<config name>, numbered if it exists].
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Train a new run in an --out folder that holds a run already: once the new run is
    /// checked, the old run's files (and its eval/ folder) are removed; other files stay.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the run in this folder (it holds run.json and checkpoint.safetensors) from
    /// its checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop (with a checkpoint) after this many gradient steps in total, as if interrupted.
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
}

impl TrainArgs {
    /// The options given on the command line.
    fn run_options(&self) -> RunOptions {
        RunOptions {
            config: self.config.clone(),
            ..self.run.given.clone()
        }
    }
}

pub fn run(args: TrainArgs) -> CmdResult {
    // Under mpirun, every process first joins the job (and checks its run against rank 0's
    // below); each reads the data itself.
    let job = super::mpi_job::join()?;
    let built = build(&args);
    let mut run = match &job {
        None => built?,
        Some(job) => {
            let mut run = super::mpi_job::agree(job, built)?;
            run.set_processes(job.group);
            if job.rank() != 0 {
                progress::drive_quietly(&mut run, args.stop_after_steps)?;
                return Ok(());
            }
            run
        }
    };
    let outcome = progress::drive(&mut run, args.options.monitor, args.stop_after_steps)?;
    match outcome.diverged {
        Some(msg) => Err(Failure::Diverged(msg)),
        None => Ok(()),
    }
}

/// The run the arguments describe, checked: a new one, or the resume of a run folder.
fn build(args: &TrainArgs) -> Result<Run, Failure> {
    let given = args.run_options();
    let run = match &args.resume {
        Some(dir) => {
            // Every number first, before any file is read or written. Whether early stopping
            // has its validation split is the stored run's to say (`Run::resume` checks).
            RunConfig {
                early_stop: None,
                ..RunConfig::default().with(&given)
            }
            .validate()?;
            Run::resume(dir, &given)?
        }
        // Flags over the config file's Train and Augment lines over the defaults, checked
        // before any data is read or any file written.
        None => Run::new(
            cnn::run::settings::resolve(&given)?,
            args.out.clone(),
            args.force,
        )?,
    };
    Ok(run)
}
