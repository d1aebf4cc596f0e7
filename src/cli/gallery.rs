//! The gallery of misclassified images that `cnn evaluate --out` writes.

use std::path::Path;

use cnn::plot::{titled_image_grid, GridImage};
use cnn::Error;

/// Most images a misclassified gallery shows.
const GALLERY_MAX: usize = 32;
/// Side, in pixels, that gallery images are enlarged to at least (28x28 digits become 112x112).
const GALLERY_SIDE: usize = 112;

/// Writes `misclassified.png` into `dir`: up to 32 images of `ds` that the model got wrong, in
/// dataset order, each captioned "true → predicted" with the model's probability for the
/// predicted class underneath, enlarged so small images are readable. Writes nothing when every
/// image was right.
pub fn write_misclassified(
    dir: &Path,
    model: &mut cnn::model::Model,
    ds: &cnn::data::Dataset,
    norm: &cnn::data::Normalization,
    eval: &cnn::train::Evaluation,
    class_name: &dyn Fn(usize) -> String,
) -> Result<(), Error> {
    let wrong: Vec<usize> = (0..eval.predictions.len())
        .filter(|&i| eval.predictions[i] != eval.labels[i])
        .take(GALLERY_MAX)
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    let mut x = cnn::tensor::Tensor::default();
    let mut labels = Vec::new();
    ds.batch(&wrong, norm, &mut x, &mut labels);
    let probs = model.predict_proba(&x)?;
    let k = model.classes();
    let [c, h, w] = ds.shape;
    let shown = if c == 3 { 3 } else { 1 };
    let images: Vec<GridImage> = wrong
        .iter()
        .zip(probs.data().chunks(k))
        .map(|(&i, p)| {
            let (y, guess) = (eval.labels[i], eval.predictions[i]);
            GridImage {
                width: w,
                height: h,
                channels: shown,
                pixels: ds.image(i)[..shown * h * w]
                    .iter()
                    .map(|&b| f32::from(b))
                    .collect(),
                caption: Some(format!(
                    "{} → {}\n{} sure",
                    class_name(y),
                    class_name(guess),
                    cnn::plot::percent(p[guess])
                )),
            }
        })
        .collect();
    let scale = GALLERY_SIDE.div_ceil(h.max(w)).max(1);
    let all_wrong = eval
        .predictions
        .iter()
        .zip(&eval.labels)
        .filter(|(p, y)| p != y)
        .count();
    let which = if all_wrong > images.len() {
        format!(
            "{} of {}",
            images.len(),
            cnn::text::thousands(all_wrong as u128)
        )
    } else {
        cnn::text::thousands(all_wrong as u128)
    };
    let title = format!("{which} misclassified: true → predicted, with the model's confidence");
    titled_image_grid(
        &dir.join("misclassified.png"),
        Some(&title),
        &images,
        8,
        scale,
    )
}
