//! The pictures a training run leaves behind: loss and accuracy curves.

use std::path::Path;

use crate::error::Error;
use crate::plot::{line_chart, Series};
use crate::train::EpochMetrics;

/// Writes `loss.png/.svg` and `accuracy.png/.svg` (train and test per epoch) into `dir`.
pub fn write_training_plots(dir: &Path, history: &[EpochMetrics]) -> Result<(), Error> {
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
        series("test", &|m| m.val_loss),
    ];
    let acc = [
        series("train", &|m| Some(m.accuracy * 100.0)),
        series("test", &|m| m.val_accuracy.map(|a| a * 100.0)),
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
