//! Early stopping, as Keras's `EarlyStopping` callback: after each epoch, look at one figure
//! of the **validation split** (never the test set), and stop when it has not improved for
//! `patience` epochs.
//!
//! With `best` the best value so far (none before the first epoch), `d` the minimum change
//! and `wait` the epochs since the last improvement:
//!
//! ```text
//! val_loss:      improved  <=>  value < best - d
//! val_accuracy:  improved  <=>  value > best + d
//! improved:      best = value, best_epoch = this epoch, wait = 0
//! otherwise:     wait = wait + 1; stop when wait >= patience
//! ```
//!
//! The first epoch always improves. With `restore_best`, a run that stops early ends with
//! the weights of its best epoch (Keras's `restore_best_weights=True`); a run that goes
//! through all its epochs keeps its last weights, as in Keras.
//!
//! The state ([`EarlyStopState`]) changes only at an epoch's end, from the epoch's figures,
//! and is part of the checkpoint, so a resumed run decides exactly as an uninterrupted one.

use serde::{Deserialize, Serialize};

use crate::names::named_enum;
use crate::train::EpochMetrics;

named_enum! {
    /// The figure early stopping watches.
    pub enum Monitor {
        /// The validation loss (plain cross-entropy); lower is better: stop when it stops
        /// falling.
        ValLoss = "val_loss",
        /// The validation accuracy; higher is better: stop when it stops rising.
        ValAccuracy = "val_accuracy",
    }
}

impl Monitor {
    /// The watched figure of an epoch, if the epoch has a held-out set.
    pub fn value(self, m: &EpochMetrics) -> Option<f64> {
        match self {
            Monitor::ValLoss => m.val_loss,
            Monitor::ValAccuracy => m.val_accuracy,
        }
    }
}

/// When to stop: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStop {
    pub monitor: Monitor,
    /// Epochs without improvement after which training stops (at least 1).
    pub patience: usize,
    /// The least change that counts as an improvement (0 or more).
    pub min_delta: f64,
    /// End a run that stopped early with its best epoch's weights.
    pub restore_best: bool,
}

/// What early stopping has seen so far. Stored in the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopState {
    /// The best value of the watched figure so far; `None` before the first epoch.
    pub best: Option<f64>,
    /// The 1-based epoch that reached `best`.
    pub best_epoch: usize,
    /// Epochs since `best_epoch`.
    pub wait: usize,
    /// The 1-based epoch after which training stopped early, once it has.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopState {
    /// Takes in the figures of the epoch just finished; true when training must stop now.
    /// An epoch without the watched figure (no held-out set) changes nothing.
    pub fn update(&mut self, rule: &EarlyStop, m: &EpochMetrics) -> bool {
        let Some(value) = rule.monitor.value(m) else {
            return false;
        };
        let improved = match (self.best, rule.monitor) {
            (None, _) => true,
            (Some(best), Monitor::ValLoss) => value < best - rule.min_delta,
            (Some(best), Monitor::ValAccuracy) => value > best + rule.min_delta,
        };
        if improved {
            self.best = Some(value);
            self.best_epoch = m.epoch;
            self.wait = 0;
        } else {
            self.wait += 1;
            if self.wait >= rule.patience {
                self.stopped_epoch = Some(m.epoch);
            }
        }
        self.stopped_epoch.is_some()
    }

    /// True when the epoch just finished (1-based `epoch`) is the best so far.
    pub fn is_best(&self, epoch: usize) -> bool {
        self.best.is_some() && self.best_epoch == epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, val_loss: f64, val_accuracy: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            loss: 0.0,
            accuracy: 0.0,
            val_loss: Some(val_loss),
            val_accuracy: Some(val_accuracy),
            lr: 0.1,
            seconds: 1.0,
            images_per_second: 1.0,
        }
    }

    // Keras's EarlyStopping(monitor="val_loss", patience=2, min_delta=0.1) on the losses
    // 1.0, 0.5, 0.45, 0.7 stops after the 4th epoch: 0.45 is not below 0.5 - 0.1, and 0.7
    // is not either, so two epochs pass without improvement; the best stays epoch 2.
    #[test]
    fn val_loss_stops_after_patience_epochs_without_a_min_delta_improvement() {
        let rule = EarlyStop {
            monitor: Monitor::ValLoss,
            patience: 2,
            min_delta: 0.1,
            restore_best: true,
        };
        let mut s = EarlyStopState::default();
        let stops: Vec<bool> = [1.0, 0.5, 0.45, 0.7]
            .iter()
            .enumerate()
            .map(|(i, &l)| s.update(&rule, &epoch(i + 1, l, 0.0)))
            .collect();
        assert_eq!(stops, [false, false, false, true]);
        assert_eq!(
            (s.best, s.best_epoch, s.stopped_epoch),
            (Some(0.5), 2, Some(4))
        );
    }

    #[test]
    fn val_accuracy_counts_a_rise_as_improvement_and_resets_the_wait() {
        let rule = EarlyStop {
            monitor: Monitor::ValAccuracy,
            patience: 2,
            min_delta: 0.0,
            restore_best: false,
        };
        let mut s = EarlyStopState::default();
        for (i, a) in [0.5, 0.5, 0.6, 0.6].iter().enumerate() {
            assert!(!s.update(&rule, &epoch(i + 1, 0.0, *a)), "epoch {}", i + 1);
        }
        assert_eq!((s.best_epoch, s.wait), (3, 1));
        assert!(s.update(&rule, &epoch(5, 0.0, 0.55)));
        assert_eq!(s.stopped_epoch, Some(5));
    }
}
