//! The pictures a training run leaves behind (loss and accuracy curves), and the gallery of
//! misclassified images that `cnn evaluate --out` writes.

use std::path::Path;

use cnn::plot::{line_chart, titled_image_grid, GridImage, Series};
use cnn::train::EpochMetrics;
use cnn::Error;

/// What a run's held-out set is, so its curves and tables are named for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOut {
    /// `--test-data`, an IDX folder's t10k files, or the demo set's test images.
    Test,
    /// Part of the training data, held out with `--val-split` (recorded in the run's
    /// `run.json`, so a resumed run names it the same way).
    Validation,
}

impl HeldOut {
    /// The held-out set of a run started with `--val-split val_split`.
    pub fn of_run(val_split: Option<f64>) -> Self {
        if val_split.is_some() {
            Self::Validation
        } else {
            Self::Test
        }
    }

    /// "test" or "validation".
    pub fn name(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Validation => "validation",
        }
    }
}

/// Writes `loss.png/.svg` and `accuracy.png/.svg` (training and held-out set per epoch) into
/// `dir`.
pub fn write_training_plots(
    dir: &Path,
    history: &[EpochMetrics],
    held_out: HeldOut,
) -> Result<(), Error> {
    let series = |name: &str, f: &dyn Fn(&EpochMetrics) -> Option<f64>| Series {
        name: name.to_string(),
        points: history
            .iter()
            .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
            .collect(),
        diverged: false,
    };
    let loss = [
        series("train", &|m| Some(m.loss)),
        series(held_out.name(), &|m| m.val_loss),
    ];
    let acc = [
        series("train", &|m| Some(m.accuracy * 100.0)),
        series(held_out.name(), &|m| m.val_accuracy.map(|a| a * 100.0)),
    ];
    let keep = |s: &[Series; 2]| -> Vec<Series> {
        s.iter().filter(|s| !s.points.is_empty()).cloned().collect()
    };
    for ext in ["png", "svg"] {
        line_chart(
            &dir.join(format!("loss.{ext}")),
            "Loss per epoch",
            "epoch",
            "cross-entropy loss",
            &keep(&loss),
        )?;
        line_chart(
            &dir.join(format!("accuracy.{ext}")),
            "Accuracy per epoch",
            "epoch",
            "accuracy (%)",
            &keep(&acc),
        )?;
    }
    Ok(())
}

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
        format!("{} of {}", images.len(), thousands(all_wrong))
    } else {
        thousands(all_wrong)
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

/// `n` with a comma every three digits: 1483 is "1,483".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1483), "1,483");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_held_out_set_is_validation_exactly_with_val_split() {
        assert_eq!(HeldOut::of_run(Some(0.1)).name(), "validation");
        assert_eq!(HeldOut::of_run(None).name(), "test");
    }
}
