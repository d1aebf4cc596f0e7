//! `cnn data info DATA` and `cnn data export DATA --out DIR`.

use std::path::PathBuf;

use clap::Subcommand;
use cnn::data::{self, LoadOptions, Split};

use super::CmdResult;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// A doctor for a dataset: counts per class, image size, pixel range, and every problem
    /// found, with its file and line.
    Info {
        /// IDX folder or file, labels.txt folder, or class folders.
        data: PathBuf,
    },
    /// Write images as PNG files with a labels.txt (report 1's layout).
    Export {
        /// IDX folder or file, labels.txt folder, or class folders. `demo` for the built-in set.
        data: PathBuf,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Only these classes (indices, comma-separated), e.g. 0,1.
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<usize>>,
        /// At most this many images per selected class.
        #[arg(long)]
        per_class: Option<usize>,
        /// Skip the first K images of each selected class (a second export with a larger
        /// offset gives disjoint images).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// For IDX folders: which files, train-* or t10k-*.
        #[arg(long, default_value = "train")]
        split: String,
    },
}

pub fn run(cmd: DataCommand) -> CmdResult {
    match cmd {
        DataCommand::Info { data } => {
            let report = data::inspect(&data)?;
            print!("{report}");
            Ok(())
        }
        DataCommand::Export {
            data,
            out,
            classes,
            per_class,
            offset,
            split,
        } => {
            let split = match split.as_str() {
                "train" => Split::Train,
                "test" | "t10k" => Split::Test,
                other => {
                    return Err(cnn::Error::Invalid(format!(
                        "--split must be train or test, got `{other}`"
                    ))
                    .into())
                }
            };
            let ds = if data.as_os_str() == "demo" {
                data::demo(split)?
            } else {
                data::load(&data, &LoadOptions::split(split))?
            };
            let n = data::export(&ds, &out, classes.as_deref(), per_class, offset)?;
            println!("wrote {n} images and labels.txt to {}", out.display());
            Ok(())
        }
    }
}
