//! `cnn sweep`: the reports' experiments as one command. One model is trained per
//! learning rate and epoch count; their loss curves are overlaid in one plot (report 1,
//! Figures 4 to 6) and a table gives each run's final loss, accuracy and seconds (report 1,
//! Table I). A run that diverges is marked as such and the sweep goes on.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use cnn::io::{create_dir, write_atomic};
use cnn::plot::{line_chart, Series};
use cnn::run::{check_out_dir, Run, RunConfig, RunOptions};

use super::train_options::{with_default, CliOptions, RunFlags};
use super::{progress, CmdResult, Failure};

/// Examples for `cnn sweep --help`.
pub const EXAMPLES: &str = "Examples:
  cnn sweep report1 --lr 0.001,0.01,0.2 --epochs 10 --out sweeps/lr
      report 1's learning-rate experiment: three models, their loss curves in one plot
  cnn sweep report1-10 --data data/fashion-mnist --epochs 1,2,5 --out sweeps/epochs
      report 1's Table I: one model per epoch count, with its seconds and test accuracy";

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The network config file, or a built-in example's name (`cnn examples`).
    config: PathBuf,
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true,
          help = with_default("Learning rates to try, comma-separated.", RunConfig::default().lr))]
    lr: Vec<f32>,
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true,
          help = with_default("Epoch counts to try, comma-separated (each trains a fresh model).",
                              RunConfig::default().epochs))]
    epochs: Vec<usize>,
    // Every run option but the two above.
    #[command(flatten)]
    run: RunFlags<true>,
    #[command(flatten)]
    pub(super) options: CliOptions,
    /// The sweep folder: one run folder per setting, plus loss.png/.svg, sweep.csv and
    /// report.md.
    #[arg(long)]
    out: PathBuf,
    /// Train into run folders (inside --out) that hold runs already, replacing them.
    #[arg(long)]
    force: bool,
}

/// One row of the sweep's table.
struct Row {
    name: String,
    lr: f32,
    epochs: usize,
    final_loss: Option<f64>,
    test_accuracy: Option<f64>,
    seconds: f64,
    diverged: bool,
    points: Vec<(f64, f64)>,
}

/// Every setting of the sweep: its run folder's name and its config, each checked.
fn settings(args: &SweepArgs) -> Result<Vec<(String, RunConfig)>, Failure> {
    // An empty list: the config file's `Train` value, else the default.
    let epoch_counts: Vec<Option<usize>> = if args.epochs.is_empty() {
        vec![None]
    } else {
        args.epochs.iter().copied().map(Some).collect()
    };
    let rates: Vec<Option<f32>> = if args.lr.is_empty() {
        vec![None]
    } else {
        args.lr.iter().copied().map(Some).collect()
    };
    let mut out = Vec::new();
    for &epochs in &epoch_counts {
        for &lr in &rates {
            let given = RunOptions {
                config: Some(args.config.clone()),
                epochs,
                lr,
                ..args.run.given.clone()
            };
            let config = cnn::run::settings::resolve(&given)?;
            let name = format!("lr{}-epochs{}", config.lr, config.epochs);
            check_out_dir(&args.out.join(&name), args.force)?;
            out.push((name, config));
        }
    }
    Ok(out)
}

pub fn run(args: SweepArgs) -> CmdResult {
    let settings = settings(&args)?;
    let mut rows = Vec::new();
    for (i, (name, config)) in settings.into_iter().enumerate() {
        let (lr, epochs) = (config.lr, config.epochs);
        // The first run is checked (config, data) before the sweep folder is made.
        let mut run = Run::new(config, Some(args.out.join(&name)), args.force)?;
        if i == 0 {
            create_dir(&args.out)?;
        }
        eprintln!("== {name}");
        let outcome = progress::drive(&mut run, args.options.monitor, None)?;
        if let Some(msg) = &outcome.diverged {
            eprintln!("{name}: {msg}");
        }
        let h = &outcome.history;
        rows.push(Row {
            name,
            lr,
            epochs,
            final_loss: h.last().map(|m| m.loss).filter(|l| l.is_finite()),
            // A run with a validation split and no test set is scored on the split, as before.
            test_accuracy: outcome.test.or(outcome.validation).map(|t| t.accuracy),
            seconds: outcome.seconds(),
            diverged: outcome.diverged.is_some(),
            points: h.iter().map(|m| (m.epoch as f64, m.loss)).collect(),
        });
    }
    let series: Vec<Series> = rows
        .iter()
        .map(|r| Series {
            name: if args.epochs.len() > 1 {
                r.name.clone()
            } else {
                format!("lr {}", r.lr)
            },
            // A diverged run ends in a non-finite loss: the plot marks its last finite point.
            points: if r.diverged {
                let mut p = r.points.clone();
                p.push((p.len() as f64 + 1.0, f64::NAN));
                p
            } else {
                r.points.clone()
            },
            diverged: r.diverged,
        })
        .collect();
    for ext in ["png", "svg"] {
        line_chart(
            &args.out.join(format!("loss.{ext}")),
            "Training loss per epoch",
            "epoch",
            "cross-entropy loss",
            &series,
        )
        .map_err(Failure::from)?;
    }
    let mut csv = String::from("run,lr,epochs,final_loss,test_accuracy,seconds,status\n");
    let mut md = String::from(
        "# Sweep\n\n![loss per epoch](loss.png)\n\n\
         | run | learning rate | epochs | final training loss | test accuracy (%) | seconds | status |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    println!(
        "{:<24} {:>8} {:>7} {:>11} {:>10} {:>9}  status",
        "run", "lr", "epochs", "final loss", "test acc", "seconds"
    );
    for r in &rows {
        let status = if r.diverged { "diverged" } else { "ok" };
        let loss = r.final_loss.map_or("-".into(), |l| format!("{l:.4}"));
        let acc = r
            .test_accuracy
            .map_or("-".into(), |a| format!("{:.2}", a * 100.0));
        println!(
            "{:<24} {:>8} {:>7} {:>11} {:>10} {:>9.2}  {status}",
            r.name, r.lr, r.epochs, loss, acc, r.seconds
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.6},{status}",
            r.name,
            r.lr,
            r.epochs,
            r.final_loss.map_or(String::new(), |l| format!("{l:.6}")),
            r.test_accuracy.map_or(String::new(), |a| format!("{a:.6}")),
            r.seconds
        );
        let _ = writeln!(
            md,
            "| [{0}]({0}/report.md) | {1} | {2} | {loss} | {acc} | {3:.2} | {status} |",
            r.name, r.lr, r.epochs, r.seconds
        );
    }
    md += "\nSeconds are the program's own clock over the training steps (evaluation excluded).\n";
    write_atomic(&args.out.join("sweep.csv"), csv.as_bytes())?;
    write_atomic(&args.out.join("report.md"), md.as_bytes())?;
    println!("sweep folder: {}", args.out.display());
    Ok(())
}
