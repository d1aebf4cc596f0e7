//! `cnn predict MODEL INPUT...`: the top classes of each image, with probabilities.

use std::path::PathBuf;

use clap::Args;
use cnn::data::{self, Normalization};
use cnn::model::Model;
use cnn::model_file;
use cnn::tensor::Tensor;
use cnn::Error;
use serde::Serialize;

use super::CmdResult;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn predict runs/report1-10/model.safetensors shoe.png --top 1\n  \
    cnn predict runs/report1-10/model.safetensors photos/ --json   (every image under photos/)")]
pub struct PredictArgs {
    /// A model file written by `cnn train` (a checkpoint works too).
    model: PathBuf,
    /// Image files (PNG, JPEG, BMP), IDX image files (every image in them), or folders (every
    /// image file in them and their sub-folders, sorted by path).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// How many classes to show per input (at least 1).
    #[arg(long, default_value_t = 3, allow_negative_numbers = true,
          value_parser = super::arg_values::at_least_one)]
    top: usize,
    /// One JSON object per line: input, class, probabilities.
    #[arg(long)]
    json: bool,
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
    let [c, h, w] = model.input_shape();
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for path in &args.inputs {
        if path.is_dir() {
            for file in data::image_files_under(path)? {
                let img = data::load_image(&file, [c, h, w], args.resize)?;
                inputs.push((file.display().to_string(), img));
            }
        } else if data::is_idx_file(path)? {
            let (images, shape) = data::load_idx_images(path)?;
            if shape != [c, h, w] {
                return Err(Error::Data {
                    file: path.clone(),
                    msg: format!(
                        "images are {shape:?} (C, H, W), the model expects {:?}",
                        [c, h, w]
                    ),
                }
                .into());
            }
            let len = c * h * w;
            for (i, img) in images.chunks(len).enumerate() {
                inputs.push((format!("{}#{i}", path.display()), img.to_vec()));
            }
        } else {
            let img = data::load_image(path, [c, h, w], args.resize)?;
            inputs.push((path.display().to_string(), img));
        }
    }
    let k = args.top.min(model.classes());
    for (name, bytes) in &inputs {
        let p = probabilities(&mut model, &meta.normalization, bytes)?;
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let class_name = |i: usize| meta.classes.get(i).map_or("?", String::as_str);
        if args.json {
            let pred = Prediction {
                input: name.clone(),
                class: class_name(order[0]),
                index: order[0],
                probabilities: order[..k].iter().map(|&i| (class_name(i), p[i])).collect(),
            };
            println!(
                "{}",
                serde_json::to_string(&pred).expect("prediction serialises")
            );
        } else {
            let tops: Vec<String> = order[..k]
                .iter()
                .map(|&i| format!("{} {:.1}%", class_name(i), p[i] * 100.0))
                .collect();
            println!("{name}: {}", tops.join(", "));
        }
    }
    Ok(())
}
