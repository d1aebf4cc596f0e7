//! The pictures a training run leaves behind (loss and accuracy curves), and the gallery of
//! misclassified images that `cnn evaluate --out` writes.

use std::path::Path;

use crate::error::Error;
use crate::plot::{line_chart, Series};
use crate::train::EpochMetrics;

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

    /// The prefix of its columns in `metrics.csv` and keys in `metrics.jsonl`: `test`
    /// (`test_loss`) or `val` (`val_loss`).
    pub fn column_prefix(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Validation => "val",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_out_set_is_validation_exactly_with_val_split() {
        assert_eq!(HeldOut::of_run(Some(0.1)).name(), "validation");
        assert_eq!(HeldOut::of_run(None).name(), "test");
    }
}
