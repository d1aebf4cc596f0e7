//! `cnn predict MODEL INPUT...`: the top classes of each image, with probabilities.

use std::path::{Path, PathBuf};

use clap::Args;
use cnn::data::{self, Normalization};
use cnn::model::Model;
use cnn::model_file;
use cnn::tensor::Tensor;
use cnn::Error;
use serde::Serialize;

use super::{CmdResult, Failure};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn predict runs/report1-10/model.safetensors shoe.png --top 1\n  \
    cnn predict runs/report1-10/model.safetensors photos/ --json   (every image under photos/)\n  \
    cnn predict runs/report1-10/model.safetensors photos/ --top 1 --csv > predictions.csv\n\n\
    An input that cannot be read is said on its own line (error: FILE: why); the others are \
    predicted, and the exit code is then 1.")]
pub struct PredictArgs {
    /// A model file written by `cnn train` (a checkpoint works too).
    model: PathBuf,
    /// Image files (PNG, JPEG, BMP), IDX image files and CIFAR-10 batch files (.bin; every
    /// image in them), or folders (every image file in them and their sub-folders, sorted by
    /// path).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// How many classes to show per input (at least 1).
    #[arg(long, default_value_t = 3, allow_negative_numbers = true,
          value_parser = super::arg_values::at_least_one)]
    top: usize,
    /// One JSON object per line: input, class, probabilities.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV: a header line, then one `path,class,probability` row per class shown (--top of
    /// them per input, most probable first).
    #[arg(long)]
    csv: bool,
    /// Resize images whose size differs from the model's input.
    #[arg(long)]
    resize: bool,
}

#[derive(Serialize)]
struct Prediction<'a> {
    input: String,
    class: &'a str,
    index: usize,
    probabilities: Vec<(&'a str, f32)>,
}

/// Probabilities of one image given as CHW bytes.
fn probabilities(model: &mut Model, norm: &Normalization, bytes: &[u8]) -> Result<Vec<f32>, Error> {
    let [c, h, w] = model.input_shape();
    let x = Tensor::from_vec(&[1, c, h, w], norm.image(bytes))?;
    Ok(model.predict_proba(&x)?.into_vec())
}

pub fn run(args: PredictArgs) -> CmdResult {
    let (mut model, meta) = model_file::load(&args.model)?;
    let shape = model.input_shape();
    let k = args.top.min(model.classes());
    let class_name = |i: usize| meta.classes.get(i).map_or("?", String::as_str);
    if args.csv {
        println!("path,class,probability");
    }
    // Each input is predicted as it is read; one that cannot be read is said on its own
    // line, and the others are predicted all the same.
    let mut unreadable = 0usize;
    let mut predict = |name: &str, bytes: &[u8]| -> Result<(), Error> {
        let p = probabilities(&mut model, &meta.normalization, bytes)?;
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        if args.json {
            let pred = Prediction {
                input: name.to_string(),
                class: class_name(order[0]),
                index: order[0],
                probabilities: order[..k].iter().map(|&i| (class_name(i), p[i])).collect(),
            };
            println!(
                "{}",
                serde_json::to_string(&pred).expect("prediction serialises")
            );
        } else if args.csv {
            for &i in &order[..k] {
                println!("{},{},{}", csv_field(name), csv_field(class_name(i)), p[i]);
            }
        } else {
            let tops: Vec<String> = order[..k]
                .iter()
                .map(|&i| format!("{} {:.1}%", class_name(i), p[i] * 100.0))
                .collect();
            println!("{name}: {}", tops.join(", "));
        }
        Ok(())
    };
    let mut report = |e: Error| {
        eprintln!("error: {e}");
        unreadable += 1;
    };
    for path in &args.inputs {
        if path.is_dir() {
            match data::image_files_under(path) {
                Ok(files) => {
                    for file in files {
                        match data::load_image(&file, shape, args.resize) {
                            Ok(img) => predict(&file.display().to_string(), &img)?,
                            Err(e) => report(e),
                        }
                    }
                }
                Err(e) => report(e),
            }
            continue;
        }
        let many = match data::is_idx_file(path) {
            Ok(true) => Some(data::load_idx_images as Loader),
            Ok(false) if data::is_cifar_file(path) => Some(data::load_cifar_images as Loader),
            Ok(false) => None,
            Err(e) => {
                report(e);
                continue;
            }
        };
        match many {
            Some(load) => match images_of(path, load, shape) {
                Ok(images) => {
                    for (i, img) in images.chunks(shape.iter().product()).enumerate() {
                        predict(&format!("{}#{i}", path.display()), img)?;
                    }
                }
                Err(e) => report(e),
            },
            None => match data::load_image(path, shape, args.resize) {
                Ok(img) => predict(&path.display().to_string(), &img)?,
                Err(e) => report(e),
            },
        }
    }
    if unreadable > 0 {
        return Err(Failure::Reported);
    }
    Ok(())
}

/// Reads the images of a file holding many (IDX, CIFAR-10) and their shape.
type Loader = fn(&Path) -> cnn::Result<(Vec<u8>, [usize; 3])>;

/// The images of the IDX or CIFAR-10 file `path`, read by `load`, checked to be of the
/// model's `shape`.
fn images_of(path: &Path, load: Loader, shape: [usize; 3]) -> Result<Vec<u8>, Error> {
    let (images, found) = load(path)?;
    if found != shape {
        return Err(Error::Data {
            file: path.to_path_buf(),
            msg: format!(
                "images are {}, the model expects {} (C x H x W)",
                dims(&found),
                dims(&shape)
            ),
        });
    }
    Ok(images)
}

/// `1x28x28`.
fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
