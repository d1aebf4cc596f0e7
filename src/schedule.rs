//! Learning-rate schedules: the rate of each epoch from the run's base rate.
//!
//! With base rate L, epoch e counted from 0, E epochs in all and W warm-up epochs:
//!
//! ```text
//! warm-up (e < W):  lr = L (e + 1) / W                       (linear, reaching L at epoch W)
//! then, with e' = e - W and E' = E - W:
//! constant:         lr = L
//! step:             lr = L gamma^floor(e' / N)                (PyTorch's StepLR, per epoch)
//! cosine:           lr = m + (L - m) (1 + cos(pi e' / E')) / 2 (CosineAnnealingLR, T_max = E',
//!                                                             to the floor m)
//! ```
//!
//! The rate depends on the epoch alone, so a resumed run sets the same rate as the run it
//! continues, and `metrics.csv`'s `lr` column shows the rate in force in each epoch.

use serde::{Deserialize, Serialize};

/// How the learning rate changes from epoch to epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// The rate times `gamma` every `every` epochs.
    Step { every: usize, gamma: f32 },
    /// Half a cosine from the base rate down to `min_lr` over the epochs after warm-up.
    Cosine { min_lr: f32 },
}

/// The rate of epoch `epoch` (from 0) of `epochs`, for base rate `lr`, with `warmup` epochs
/// of linear warm-up first.
pub fn lr_at(schedule: Schedule, lr: f32, epoch: usize, epochs: usize, warmup: usize) -> f32 {
    if epoch < warmup {
        return lr * (epoch + 1) as f32 / warmup as f32;
    }
    let e = epoch - warmup;
    match schedule {
        Schedule::Constant => lr,
        Schedule::Step { every, gamma } => lr * gamma.powi((e / every.max(1)) as i32),
        Schedule::Cosine { min_lr } => {
            let span = epochs.saturating_sub(warmup).max(1) as f64;
            let c = (1.0 + (std::f64::consts::PI * e as f64 / span).cos()) / 2.0;
            (f64::from(min_lr) + (f64::from(lr) - f64::from(min_lr)) * c) as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_the_base_rate_after_a_linear_warm_up() {
        let at = |e| lr_at(Schedule::Constant, 0.1, e, 10, 4);
        assert_eq!(
            [at(0), at(1), at(3), at(4), at(9)],
            [0.025, 0.05, 0.1, 0.1, 0.1]
        );
        assert_eq!(lr_at(Schedule::Constant, 0.1, 0, 10, 0), 0.1);
    }

    #[test]
    fn step_multiplies_by_gamma_every_n_epochs() {
        let s = Schedule::Step {
            every: 3,
            gamma: 0.5,
        };
        let lrs: Vec<f32> = (0..7).map(|e| lr_at(s, 0.8, e, 7, 0)).collect();
        assert_eq!(lrs, [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]);
    }

    #[test]
    fn cosine_falls_from_the_base_rate_to_half_way_to_the_floor_at_mid_run() {
        // E' = 8 after 2 warm-up epochs: epoch 2 is the top, epoch 6 (e' = 4) half way.
        let s = Schedule::Cosine { min_lr: 0.0 };
        assert_eq!(lr_at(s, 0.1, 2, 10, 2), 0.1);
        assert!((lr_at(s, 0.1, 6, 10, 2) - 0.05).abs() < 1e-7);
        let last = lr_at(s, 0.1, 9, 10, 2);
        // e' = 7 of 8: (1 + cos(7 pi / 8)) / 2 = (1 - 0.9238795) / 2 = 0.0380602
        assert!((last - 0.1 * 0.038_060_23).abs() < 1e-7, "{last}");
        let floor = Schedule::Cosine { min_lr: 0.01 };
        assert!((lr_at(floor, 0.1, 6, 10, 2) - 0.055).abs() < 1e-7);
    }
}
