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
        /// IDX folder or file, labels.txt folder, class folders, or `demo` (the built-in set).
        data: PathBuf,
    },
    /// Write images as PNG files with a labels.txt (report 1's layout).
    #[command(after_help = "Examples:\n  \
        cnn data export ../shared/data/mnist --split test --classes 0,1 --per-class 100 --out mnist01/train\n  \
        cnn data export demo --classes 8,9 --out bags-and-boots")]
    Export {
        /// IDX folder or file, labels.txt folder, class folders, or `demo` (the built-in set).
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
        /// For IDX folders and `demo`: which files, train-* or t10k-* (`test`).
        #[arg(long, default_value = "train", value_parser = ["train", "test", "t10k"])]
        split: String,
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
                    "{}: {n} problem(s) found, listed in the report above",
                    data.display()
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
        } => {
            // clap accepts only these three values.
            let split = if split == "train" {
                Split::Train
            } else {
                Split::Test
            };
            let ds = data::load(&data, &LoadOptions::split(split))?;
            let n = data::export(&ds, &out, classes.as_deref(), per_class, offset)?;
            println!("wrote {n} images and labels.txt to {}", out.display());
            Ok(())
        }
    }
}
