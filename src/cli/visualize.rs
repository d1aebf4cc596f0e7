//! `cnn visualize MODEL IMAGE --out DIR`: what the network learned and what it sees.
//!
//! The pictures are the library's ([`cnn::visualize`]): `input.png`, `filters.png` and one
//! `layer{i}-{name}.png` per layer. This reads the model and the image, and reports the
//! prediction and the files written.

use std::path::PathBuf;

use clap::Args;
use cnn::data;
use cnn::model_file;

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

pub fn run(args: VisualizeArgs) -> CmdResult {
    let (mut model, meta) = model_file::load(&args.model)?;
    let bytes = data::load_image(&args.image, model.input_shape(), args.resize)?;
    let image_name = args.image.file_name().map_or_else(
        || args.image.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let pictures = cnn::visualize::draw(
        &mut model,
        &meta.classes,
        &meta.normalization,
        &bytes,
        &image_name,
        &args.out,
    )?;
    let p = &pictures.probabilities;
    let best = cnn::model::argmax(p);
    println!(
        "{}: predicted {} ({:.1}%)",
        args.image.display(),
        meta.classes.get(best).map_or("?", String::as_str),
        p[best] * 100.0
    );
    for path in pictures.written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
