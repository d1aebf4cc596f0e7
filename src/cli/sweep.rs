//! `cnn sweep`: the reports' experiments as one command. One model is trained per
//! learning rate and epoch count; their loss curves are overlaid in one plot (report 1,
//! Figures 4 to 6) and a table gives each run's final loss, accuracy and seconds (report 1,
//! Table I). A run that diverges is marked as such and the sweep goes on.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use cnn::io::{create_dir, write_atomic};
use cnn::plot::{line_chart, Series};

use super::train::{train_run, OptimizerArg, TrainArgs};
use super::{CmdResult, Failure};

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The network config file.
    config: PathBuf,
    /// Training data (default: the built-in demo set).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Test data.
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Learning rates to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.01")]
    lr: Vec<f32>,
    /// Epoch counts to try, comma-separated (each trains a fresh model).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    epochs: Vec<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    optimizer: OptimizerArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// The sweep folder: one run folder per setting, plus loss.png/.svg, sweep.csv and
    /// report.md.
    #[arg(long)]
    out: PathBuf,
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

pub fn run(args: SweepArgs) -> CmdResult {
    create_dir(&args.out)?;
    let mut rows = Vec::new();
    for &epochs in &args.epochs {
        for &lr in &args.lr {
            let name = format!("lr{lr}-epochs{epochs}");
            eprintln!("== {name}");
            let run = TrainArgs {
                config: Some(args.config.clone()),
                data: args.data.clone(),
                test_data: args.test_data.clone(),
                val_split: None,
                epochs: Some(epochs),
                lr,
                batch_size: args.batch_size,
                optimizer: args.optimizer,
                momentum: 0.9,
                weight_decay: 0.0,
                init_scheme: super::train::InitArg::Normal,
                init: None,
                seed: args.seed,
                threads: None,
                out: Some(args.out.join(&name)),
                no_shuffle: false,
                normalize: false,
                resize: false,
                resume: None,
                monitor: false,
                stop_after_steps: None,
            };
            let outcome = train_run(run)?;
            if let Some(msg) = &outcome.diverged {
                eprintln!("{name}: {msg}");
            }
            let h = &outcome.history;
            rows.push(Row {
                name,
                lr,
                epochs,
                final_loss: h.last().map(|m| m.loss).filter(|l| l.is_finite()),
                test_accuracy: outcome.test.map(|(a, _)| a),
                seconds: h.iter().map(|m| m.seconds).fold(0.0, |a, b| a + b),
                diverged: outcome.diverged.is_some(),
                points: h.iter().map(|m| (m.epoch as f64, m.loss)).collect(),
            });
        }
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
