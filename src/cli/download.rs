//! `cnn download mnist|fashion-mnist|cifar10 [--dir DIR]`.

use std::path::{Path, PathBuf};

use clap::Args;
use cnn::data::download::{self, Event, Known, DEBIAN_FASHION_MNIST_DIR};
use indicatif::{ProgressBar, ProgressStyle};

use super::CmdResult;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn download fashion-mnist\n  \
    cnn download mnist --dir ~/datasets/mnist\n  \
    cnn download cifar10   (the binary version, 170 MB, unpacked into data/cifar10)")]
pub struct DownloadArgs {
    /// The dataset: mnist, fashion-mnist or cifar10.
    pub dataset: String,
    /// The folder to put the files in [default: data/<dataset>].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(args: DownloadArgs) -> CmdResult {
    let known = Known::parse(&args.dataset).ok_or_else(|| {
        cnn::Error::Invalid(format!(
            "unknown dataset \"{}\": expected mnist, fashion-mnist or cifar10",
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
        Event::Skipped { name } if plan.files.iter().any(|f| f.name == name) => {
            eprintln!("{name}: already there, checked")
        }
        Event::Skipped { name } => eprintln!("{name}: already there, unpacked before"),
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
        Event::Unpacking { name, from, size } => {
            bar.finish_and_clear();
            eprintln!("{name}: unpacking from {}", from.display());
            start(&bar, name, size);
        }
        Event::Progress { bytes } => bar.set_position(bytes),
        Event::Done { .. } => bar.finish_and_clear(),
    })?;
    bar.finish_and_clear();

    if let Some(u) = &plan.unpack {
        let how = if outcome.unpacked.is_empty() {
            "already there, unpacked before".to_string()
        } else {
            let got = if outcome.fetched.is_empty() {
                "found in place"
            } else {
                "fetched"
            };
            format!(
                "{} {got}, checked against its SHA-256, unpacked and removed",
                u.archive
            )
        };
        println!(
            "{} files of {} in {} ({how})",
            u.members.len(),
            known.name(),
            dir.display()
        );
        println!("look at them with: cnn data info {}", dir.display());
        println!(
            "train a network with `Input shape=3x32x32` on them with: cnn train NET.cfg --data {}",
            dir.display()
        );
        return Ok(());
    }
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
