//! `cnn download mnist|fashion-mnist [--dir DIR]`.

use std::path::{Path, PathBuf};

use clap::Args;
use cnn::data::download::{self, Event, Known, DEBIAN_FASHION_MNIST_DIR};
use indicatif::{ProgressBar, ProgressStyle};

use super::CmdResult;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn download fashion-mnist\n  \
    cnn download mnist --dir ~/datasets/mnist")]
pub struct DownloadArgs {
    /// The dataset: mnist or fashion-mnist.
    pub dataset: String,
    /// The folder to put the files in [default: data/<dataset>].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(args: DownloadArgs) -> CmdResult {
    let known = Known::parse(&args.dataset).ok_or_else(|| {
        cnn::Error::Invalid(format!(
            "unknown dataset \"{}\": expected mnist or fashion-mnist",
            args.dataset.escape_debug()
        ))
    })?;
    let dir = args
        .dir
        .unwrap_or_else(|| Path::new("data").join(known.name()));
    let plan = known.plan(Some(Path::new(DEBIAN_FASHION_MNIST_DIR)));

    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:28} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let outcome = download::download(&plan, &dir, &mut |event| match event {
        Event::Skipped { name } => eprintln!("{name}: already there, checked"),
        Event::Copying { name, from, size } => {
            eprintln!("{name}: copying from {}", from.display());
            start(&bar, name, size);
        }
        Event::LocalMismatch { name, from } => {
            bar.finish_and_clear();
            eprintln!(
                "{name}: {} has an unexpected hash; fetching instead",
                from.display()
            );
        }
        Event::Fetching { name, url, size } => {
            eprintln!("{name}: fetching {url}");
            start(&bar, name, size);
        }
        Event::Progress { bytes } => bar.set_position(bytes),
        Event::Done { .. } => bar.finish_and_clear(),
    })?;
    bar.finish_and_clear();

    let mut how = Vec::new();
    for (n, what) in [
        (outcome.fetched.len(), "fetched"),
        (
            outcome.copied.len(),
            "copied from Debian's dataset-fashion-mnist",
        ),
        (outcome.skipped.len(), "already there"),
    ] {
        if n > 0 {
            how.push(format!("{n} {what}"));
        }
    }
    println!(
        "{} files of {} in {} ({}), all checked against their SHA-256",
        plan.files.len(),
        known.name(),
        dir.display(),
        how.join(", ")
    );
    println!(
        "train on them with: cnn train report1-10 --data {}",
        dir.display()
    );
    Ok(())
}

/// Shows the bar on stderr for a new file of `size` bytes.
fn start(bar: &ProgressBar, name: &str, size: u64) {
    bar.reset();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_length(size);
    bar.set_message(name.to_string());
}
