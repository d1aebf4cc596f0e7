//! `cnn data info DATA` and `cnn data export DATA --out DIR`.

use std::path::PathBuf;

use clap::Subcommand;
use cnn::data::{self, LoadOptions, Split};

use super::CmdResult;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// A doctor for a dataset: counts per class, image size, pixel range, and every problem
    /// found, with its file and line.
    ///
    /// The exit code is 1 when a problem was found (the report is printed all the same).
    #[command(after_help = "Examples:\n  \
        cnn data info demo\n  \
        cnn data info ../shared/data/mnist")]
    Info {
        /// IDX folder or file, CIFAR-10 folder or .bin file, labels.txt folder, class
        /// folders, or `demo` (the built-in set).
        data: PathBuf,
    },
    /// Write images as PNG files with a labels.txt (report 1's layout).
    #[command(after_help = "Examples:\n  \
        cnn data export ../shared/data/mnist --split test --classes 0,1 --per-class 100 --out mnist01/train\n  \
        cnn data export demo --classes 8,9 --out bags-and-boots\n\n\
        The folder must be empty (or not exist): old and new files would mix. --force replaces a \
        previous export's PNGs and labels.txt.")]
    Export {
        /// IDX folder or file, CIFAR-10 folder or .bin file, labels.txt folder, class
        /// folders, or `demo` (the built-in set).
        data: PathBuf,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Only these classes (indices, comma-separated), e.g. 0,1.
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true,
              value_parser = super::arg_values::whole_number)]
        classes: Option<Vec<usize>>,
        /// At most this many images per selected class.
        #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::at_least_one)]
        per_class: Option<usize>,
        /// Skip the first K images of each selected class (a second export with a larger
        /// offset gives disjoint images).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true,
              value_parser = super::arg_values::whole_number)]
        offset: usize,
        /// For IDX and CIFAR-10 folders and `demo`: which files, train-* or t10k-* (`test`);
        /// data_batch_*.bin or test_batch.bin.
        #[arg(long, default_value = "train", value_parser = ["train", "test", "t10k"])]
        split: String,
        /// Export into a folder that holds a previous export: its PNGs and labels.txt are
        /// removed first (nothing else is; a folder holding other files is refused).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: DataCommand) -> CmdResult {
    match cmd {
        DataCommand::Info { data } => {
            let report = data::inspect(&data)?;
            print!("{report}");
            // The report is the output; the exit code tells scripts whether it is clean.
            match report.problems.len() {
                0 => Ok(()),
                n => Err(cnn::Error::Invalid(format!(
                    "{}: {} found, listed in the report above",
                    data.display(),
                    cnn::text::count(n, "problem")
                ))
                .into()),
            }
        }
        DataCommand::Export {
            data,
            out,
            classes,
            per_class,
            offset,
            split,
            force,
        } => {
            // clap accepts only these three values.
            let split = if split == "train" {
                Split::Train
            } else {
                Split::Test
            };
            // Refused (or cleared, with --force) before any data is read.
            data::prepare_export_folder(&out, force)?;
            let ds = data::load(&data, &LoadOptions::split(split))?;
            let done = data::export(&ds, &out, classes.as_deref(), per_class, offset)?;
            println!(
                "wrote {} image{} and labels.txt to {}",
                done.images,
                if done.images == 1 { "" } else { "s" },
                out.display()
            );
            if let Some(asked) = per_class {
                if let Some(line) = fewer_than_asked(&done, asked, offset) {
                    println!("{line}");
                }
            }
            Ok(())
        }
    }
}

/// The line saying how many images each class got, when some got fewer than `--per-class`.
fn fewer_than_asked(done: &data::Exported, asked: usize, offset: usize) -> Option<String> {
    let short: Vec<&(String, usize)> = done.per_class.iter().filter(|(_, n)| *n < asked).collect();
    if short.is_empty() {
        return None;
    }
    let past = if offset > 0 {
        format!(" past --offset {offset}")
    } else {
        String::new()
    };
    let counts: Vec<usize> = done.per_class.iter().map(|(_, n)| *n).collect();
    if counts.iter().all(|&n| n == counts[0]) {
        return Some(format!(
            "fewer than --per-class {asked}: {} per class, all the data has{past}",
            counts[0]
        ));
    }
    let listed: Vec<String> = short.iter().map(|(c, n)| format!("{c} {n}")).collect();
    Some(format!(
        "fewer than --per-class {asked} for {} of {} classes, all the data has{past}: {}",
        short.len(),
        done.per_class.len(),
        listed.join(", ")
    ))
}
