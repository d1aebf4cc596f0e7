//! What a network learned and what it sees, as pictures (`cnn visualize`).
//!
//! [`draw`] runs the model on one image and writes into a folder:
//! - `input.png`: the image as it is, one 0-255 scale for every channel (not the normalised
//!   values, whose channels have each their own mean and spread), up to 3 channels;
//! - `filters.png`: the filters of the first layer that has any
//!   ([`LayerOp::filters`](crate::layers::LayerOp::filters)), one tile each, in colour when
//!   they read 3 channels;
//! - `layer{i}-{name}.png` for each layer: its output for the image. A spatial output gets
//!   one tile per channel; the output layer one labelled bar per class with its
//!   probability; another flat output one bar per value, or past [`MAX_BARS`] values a
//!   near-square grid of grey levels.
//!
//! Each tile is stretched from its minimum (black) to its maximum (white), and its caption
//! gives them. A spatial layer's picture is titled with its index and label, and, when the
//! network is a graph, with the layers it reads wherever that is not just the line above: a
//! Shortcut's two, a Route's list (a one-layer Route's picture is that earlier output
//! again), so that the pictures of a residual block can be read side by side.

use std::path::{Path, PathBuf};

use crate::data::Normalization;
use crate::error::Result;
use crate::layers::{Filters, Layer, Value};
use crate::model::Model;
use crate::plot::{
    image_grid, image_grid_on_scale, probability_bars, range_caption, titled_image_grid,
    value_bars, GridImage,
};
use crate::tensor::Tensor;

/// Flat layers with up to this many values are drawn as one bar per value; larger ones as a
/// grid of grey levels.
pub const MAX_BARS: usize = 1024;

/// What [`draw`] computed and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Pictures {
    /// The class probabilities of the image.
    pub probabilities: Vec<f32>,
    /// The files written, in order.
    pub written: Vec<PathBuf>,
}

/// Runs `model` on one image, `bytes` in CHW order at the model's input size, normalised by
/// `norm`, and writes its pictures (see the module doc) into the folder `out`, created if
/// need be. `classes` names the outputs (the output layer is drawn as bars only when it
/// names them all); `image_name` goes into the titles.
///
/// # Errors
/// If `bytes` is not one image of the model's input size, or a file cannot be written.
pub fn draw(
    model: &mut Model,
    classes: &[String],
    norm: &Normalization,
    bytes: &[u8],
    image_name: &str,
    out: &Path,
) -> Result<Pictures> {
    let [c, h, w] = model.input_shape();
    let pixels = norm.image(bytes);
    let x = Tensor::from_vec(&[1, c, h, w], pixels.clone())?;
    let probs = model.keeping_outputs(|m| m.predict_proba(&x))?.into_vec();
    crate::io::create_dir(out)?;
    let mut written = Vec::new();

    let path = out.join("input.png");
    image_grid_on_scale(
        &path,
        &[input_tile(bytes, [c, h, w])],
        1,
        scale_for(h.max(w)),
        (0.0, 255.0),
    )?;
    written.push(path);

    if let Some(f) = model.layers().iter().find_map(|l| l.op.filters()) {
        let path = out.join("filters.png");
        image_grid(
            &path,
            &filter_tiles(&f),
            8,
            scale_for(f.height.max(f.width)).max(8),
        )?;
        written.push(path);
    }

    let last = model.layers().len().saturating_sub(1);
    for (i, layer) in model.layers().iter().enumerate() {
        let Some(act) = model.activation(i) else {
            continue;
        };
        let path = out.join(format!("layer{i}-{}.png", layer.spec.name().to_lowercase()));
        let output = (i == last && classes.len() == probs.len()).then_some((classes, &probs[..]));
        draw_layer(&path, i, layer, act.data(), output, image_name)?;
        written.push(path);
    }
    Ok(Pictures {
        probabilities: probs,
        written,
    })
}

/// Pixels enlarged per side so that small maps stay visible.
fn scale_for(side: usize) -> usize {
    (96 / side.max(1)).clamp(1, 16)
}

/// The image's pixels `bytes` of shape `[c, h, w]`, its first 3 channels at most, as they
/// are (0-255).
fn input_tile(bytes: &[u8], [c, h, w]: [usize; 3]) -> GridImage {
    let shown = c.min(3);
    GridImage {
        width: w,
        height: h,
        channels: shown,
        pixels: bytes[..shown * h * w]
            .iter()
            .map(|&b| f32::from(b))
            .collect(),
        caption: Some(format!("input ({c}x{h}x{w})")),
    }
}

/// One tile per filter, in RGB when it reads 3 channels, else its first channel.
fn filter_tiles(f: &Filters) -> Vec<GridImage> {
    let shown = if f.channels == 3 { 3 } else { 1 };
    let (kh, kw) = (f.height, f.width);
    f.values
        .chunks(f.channels * kh * kw)
        .enumerate()
        .map(|(k, v)| GridImage {
            width: kw,
            height: kh,
            channels: shown,
            pixels: v[..shown * kh * kw].to_vec(),
            caption: Some(format!(
                "filter {k}\n{}",
                range_caption(&v[..shown * kh * kw])
            )),
        })
        .collect()
}

/// Draws the output `act` of layer `i` into `path`; `output` gives the class names and
/// probabilities when it is the output layer and they name every output.
fn draw_layer(
    path: &Path,
    i: usize,
    layer: &Layer,
    act: &[f32],
    output: Option<(&[String], &[f32])>,
    image_name: &str,
) -> Result<()> {
    let name = layer.spec.name();
    match (layer.shapes.output.as_slice(), output) {
        (&[ch, oh, ow], _) => {
            let title = format!(
                "Layer {i}: {}{} -> ({ch}, {oh}, {ow}), for {image_name}",
                layer.spec.describe(),
                reads_note(i, layer)
            );
            let tiles: Vec<GridImage> = act
                .chunks(oh * ow)
                .take(ch)
                .enumerate()
                .map(|(k, m)| GridImage {
                    width: ow,
                    height: oh,
                    channels: 1,
                    pixels: m.to_vec(),
                    caption: Some(format!("channel {k}\n{}", range_caption(m))),
                })
                .collect();
            titled_image_grid(path, Some(&title), &tiles, 8, scale_for(oh.max(ow)))
        }
        (_, Some((classes, probs))) => {
            let title = format!("Layer {i} ({name}, output): class probabilities for {image_name}");
            probability_bars(path, &title, classes, probs)
        }
        _ if act.len() <= MAX_BARS => {
            let title = format!(
                "Layer {i} ({name}, {} units): activations for {image_name}",
                act.len()
            );
            value_bars(path, &title, "activation", act)
        }
        _ => {
            let tile = grey_grid(act);
            let scale = scale_for(tile.height.max(tile.width)).max(2);
            image_grid(path, &[tile], 1, scale)
        }
    }
}

/// `, of layers 6 and 2` when layer `i` reads anything but the line above (the first line:
/// the input), else nothing.
fn reads_note(i: usize, layer: &Layer) -> String {
    let above = match i {
        0 => Value::Input,
        _ => Value::Output(i - 1),
    };
    if layer.shapes.reads == [above] {
        return String::new();
    }
    let names: Vec<String> = layer.shapes.reads.iter().map(Value::to_string).collect();
    match names.as_slice() {
        [one] => format!(", of {one}"),
        [rest @ .., last] => format!(", of {} and {last}", rest.join(", ")),
        [] => String::new(),
    }
}

/// Too many values for bars: a near-square grid of grey levels, row by row, the cells past
/// the last value at the smallest finite value.
fn grey_grid(act: &[f32]) -> GridImage {
    let n = act.len();
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let mut pixels = act.to_vec();
    let lo = pixels
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::INFINITY, f32::min);
    pixels.resize(rows * cols, lo);
    GridImage {
        width: cols,
        height: rows,
        channels: 1,
        pixels,
        caption: Some(format!("{n} values, {cols} a row\n{}", range_caption(act))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Init;

    /// A file per picture, in order: the input, the filters, then every layer, drawn as
    /// channel tiles, a grey grid (2,000 units), bars (10 units) and class bars.
    #[test]
    fn draws_the_input_the_filters_and_every_layer() {
        let spec = crate::config::parse(
            "4\nInput shape=1x6x6\nConv2D filters=2 kernel=3x3 padding=same\n\
             Dense units=2000 activation=relu\nDense units=10\nDense units=3 activation=softmax\n",
            "visualize test",
        )
        .unwrap()
        .spec;
        let mut model = Model::new(&spec, Init::He, 2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let bytes: Vec<u8> = (0..36).map(|i| (i * 7) as u8).collect();
        let norm = Normalization::identity(1);
        let pictures = draw(&mut model, &classes, &norm, &bytes, "x.png", dir.path()).unwrap();
        let names: Vec<String> = pictures
            .written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "input.png",
                "filters.png",
                "layer0-conv2d.png",
                "layer1-dense.png",
                "layer2-dense.png",
                "layer3-dense.png"
            ]
        );
        assert!(pictures.written.iter().all(|p| p.is_file()));
        assert_eq!(pictures.probabilities.len(), 3);
        let sum: f32 = pictures.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        // The grid of 2,000 values: 45 a row, 45 rows, the 25 spare cells at the minimum.
        let grid = grey_grid(&vec![1.0; 2000]);
        assert_eq!((grid.width, grid.height, grid.pixels.len()), (45, 45, 2025));
    }

    /// A graph: the Shortcut's picture is drawn, and titled with the two layers it adds; a
    /// layer that reads the line above gets no such note.
    #[test]
    fn titles_a_shortcut_with_the_layers_it_reads() {
        let spec = crate::config::parse(
            "4\nInput shape=1x6x6\nConv2D filters=2 kernel=3x3 padding=same\n\
             Conv2D filters=2 kernel=3x3 padding=same\nShortcut from=-2 activation=relu\n\
             Dense units=3 activation=softmax\n",
            "visualize test",
        )
        .unwrap()
        .spec;
        let mut model = Model::new(&spec, Init::He, 2).unwrap();
        let notes: Vec<String> = model
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| reads_note(i, l))
            .collect();
        assert_eq!(notes, ["", "", ", of layer 1 and layer 0", ""]);
        let dir = tempfile::tempdir().unwrap();
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let bytes: Vec<u8> = (0..36).map(|i| (i * 7) as u8).collect();
        let norm = Normalization::identity(1);
        let pictures = draw(&mut model, &classes, &norm, &bytes, "x.png", dir.path()).unwrap();
        assert!(dir.path().join("layer2-shortcut.png").is_file());
        assert_eq!(pictures.written.len(), 6);
    }
}
