//! `cnn visualize MODEL IMAGE --out DIR`: what the network learned and what it sees.
//!
//! Writes `filters.png` (the filters of the first layer that has any, one tile each) and, for
//! each layer, `layer{i}-{name}.png`: its activations for the image. Spatial outputs get one
//! tile per channel; the output layer gets one labelled bar per class with its probability;
//! other flat layers get one bar per unit (or, past 1,024 units, a grid of grey levels).
//! Plus `input.png`.

use std::path::PathBuf;

use clap::Args;
use cnn::data;
use cnn::model_file;
use cnn::plot::{image_grid, probability_bars, value_bars, GridImage};
use cnn::tensor::Tensor;

use super::CmdResult;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn visualize runs/report1-10/model.safetensors boot.png --out runs/report1-10/vis\n  \
    cnn visualize runs/photos/model.safetensors cat.jpg --resize --out vis")]
pub struct VisualizeArgs {
    /// A model file written by `cnn train`.
    model: PathBuf,
    /// An image file (PNG, JPEG, BMP) of the model's input size.
    image: PathBuf,
    /// Folder for the PNG grids.
    #[arg(long)]
    out: PathBuf,
    /// Resize the image to the model's input size.
    #[arg(long)]
    resize: bool,
}

/// Flat layers with up to this many values are drawn as one bar per value; larger ones as a
/// grid of grey levels.
const MAX_BARS: usize = 1024;

/// Pixels enlarged per side so that small maps stay visible.
fn scale_for(side: usize) -> usize {
    (96 / side.max(1)).clamp(1, 16)
}

pub fn run(args: VisualizeArgs) -> CmdResult {
    let (mut model, meta) = model_file::load(&args.model)?;
    let [c, h, w] = model.input_shape();
    let bytes = data::load_image(&args.image, [c, h, w], args.resize)?;
    let plane = h * w;
    let pixels = meta.normalization.image(&bytes);
    let x = Tensor::from_vec(&[1, c, h, w], pixels.clone())?;
    let probs = model.predict_proba(&x)?;
    cnn::io::create_dir(&args.out)?;
    let mut written = Vec::new();

    let input = GridImage {
        width: w,
        height: h,
        channels: c.min(3),
        pixels: pixels[..c.min(3) * plane].to_vec(),
        caption: Some(format!("input ({c}x{h}x{w})")),
    };
    let path = args.out.join("input.png");
    image_grid(&path, &[input], 1, scale_for(h.max(w)))?;
    written.push(path);

    // The first layer's filters that has them: one tile per filter, RGB when it reads 3
    // channels.
    if let Some(f) = model.layers().iter().find_map(|l| l.op.filters()) {
        let show_c = if f.channels == 3 { 3 } else { 1 };
        let (kh, kw) = (f.height, f.width);
        let per_filter = f.channels * kh * kw;
        let tiles: Vec<GridImage> = f
            .values
            .chunks(per_filter)
            .enumerate()
            .map(|(k, v)| GridImage {
                width: kw,
                height: kh,
                channels: show_c,
                pixels: v[..show_c * kh * kw].to_vec(),
                caption: Some(format!("filter {k}")),
            })
            .collect();
        let path = args.out.join("filters.png");
        image_grid(&path, &tiles, 8, scale_for(kh.max(kw)).max(8))?;
        written.push(path);
    }

    let image_name = args.image.file_name().map_or_else(
        || args.image.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let last = model.layers().len().saturating_sub(1);
    for (i, layer) in model.layers().iter().enumerate() {
        let Some(act) = model.activation(i) else {
            continue;
        };
        let name = layer.spec.name();
        let path = args
            .out
            .join(format!("layer{i}-{}.png", name.to_lowercase()));
        match layer.output.as_slice() {
            [ch, oh, ow] => {
                let tiles: Vec<GridImage> = act
                    .data()
                    .chunks(oh * ow)
                    .take(*ch)
                    .enumerate()
                    .map(|(k, m)| GridImage {
                        width: *ow,
                        height: *oh,
                        channels: 1,
                        pixels: m.to_vec(),
                        caption: Some(format!("channel {k}")),
                    })
                    .collect();
                image_grid(&path, &tiles, 8, scale_for(*oh.max(ow)))?;
            }
            _ if i == last && meta.classes.len() == probs.len() => {
                let title =
                    format!("Layer {i} ({name}, output): class probabilities for {image_name}");
                probability_bars(&path, &title, &meta.classes, probs.data())?;
            }
            _ if act.len() <= MAX_BARS => {
                let title = format!(
                    "Layer {i} ({name}, {} units): activations for {image_name}",
                    act.len()
                );
                value_bars(&path, &title, "activation", act.data())?;
            }
            _ => {
                // Too many units for bars: a near-square grid, row by row.
                let n = act.len();
                let cols = (n as f64).sqrt().ceil() as usize;
                let rows = n.div_ceil(cols);
                let mut pixels = act.data().to_vec();
                let lo = pixels
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .fold(f32::INFINITY, f32::min);
                pixels.resize(rows * cols, lo);
                let tile = GridImage {
                    width: cols,
                    height: rows,
                    channels: 1,
                    pixels,
                    caption: Some(format!("{n} values, {cols} a row")),
                };
                image_grid(&path, &[tile], 1, scale_for(rows.max(cols)).max(2))?;
            }
        }
        written.push(path);
    }
    let p = probs.data();
    let best = cnn::model::argmax(p);
    println!(
        "{}: predicted {} ({:.1}%)",
        args.image.display(),
        meta.classes.get(best).map_or("?", String::as_str),
        p[best] * 100.0
    );
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
