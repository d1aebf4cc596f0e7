//! Learning-rate schedules: the rate of every step from the run's base rate.
//!
//! With base rate L, epoch e counted from 0, E epochs in all, W warm-up epochs and S steps
//! an epoch (step s of epoch e is step t = e S + s of the run):
//!
//! ```text
//! warm-up (e < W):  lr = L (t + 1) / T,  T = W S            (linear per step, from L / T at
//!                                                           the first step to L at the last)
//! then, per epoch, with e' = e - W and E' = E - W:
//! constant:         lr = L
//! step:             lr = L gamma^floor(e' / N)                (PyTorch's StepLR, per epoch)
//! cosine:           lr = m + (L - m) (1 + cos(pi e' / E')) / 2 (CosineAnnealingLR, T_max = E',
//!                                                             to the floor m)
//! ```
//!
//! This is PyTorch's `LinearLR(optimizer, start_factor=1/T, end_factor=1, total_iters=T-1)`
//! stepped after every step of the warm-up, then `StepLR` or `CosineAnnealingLR(T_max=E')`
//! stepped after every epoch (made when the warm-up ends), the common recipe: the warm-up
//! climbs step by step (a rate per epoch would jump from L / W straight to the base in one
//! step), and the schedule after it spans the epochs left, so a cosine reaches its floor m at
//! the end of the last epoch. `tests/fixtures/lr_schedules.json` holds PyTorch's rates of
//! every step of small runs, and a test compares them.
//!
//! The rate is a function of (epoch, step) alone, so a run resumed mid-epoch sets the same
//! rate as the run it continues. `metrics.csv`'s `lr` column shows the rate of each epoch's
//! last step (a warm-up epoch e ends at L (e + 1) / W).

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

/// The rate of step `step` (from 0) of epoch `epoch` (from 0), in a run of `epochs` epochs
/// of `steps` steps at base rate `lr`, with `warmup` epochs of warm-up first (see the module
/// documentation).
pub fn lr_at(
    schedule: Schedule,
    lr: f32,
    epoch: usize,
    step: usize,
    steps: usize,
    epochs: usize,
    warmup: usize,
) -> f32 {
    if epoch < warmup {
        let steps = steps.max(1);
        let t = (epoch * steps + step.min(steps - 1) + 1) as f64;
        return (f64::from(lr) * t / (warmup * steps) as f64) as f32;
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
    fn warm_up_climbs_linearly_step_by_step_to_the_base_rate_at_its_last_step() {
        // W = 2 epochs of S = 4 steps: T = 8, step t at 0.1 (t + 1) / 8.
        let at = |e, s| lr_at(Schedule::Constant, 0.1, e, s, 4, 10, 2);
        let warm: Vec<f32> = (0..2).flat_map(|e| (0..4).map(move |s| at(e, s))).collect();
        let want = [0.0125, 0.025, 0.0375, 0.05, 0.0625, 0.075, 0.0875, 0.1];
        for (g, w) in warm.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{warm:?}");
        }
        assert_eq!([at(2, 0), at(9, 3)], [0.1, 0.1]);
        assert_eq!(lr_at(Schedule::Constant, 0.1, 0, 0, 4, 10, 0), 0.1);
    }

    #[test]
    fn after_warm_up_the_rate_depends_on_the_epoch_alone() {
        let s = Schedule::Cosine { min_lr: 0.0 };
        for e in 1..5 {
            let first = lr_at(s, 0.1, e, 0, 7, 5, 1);
            assert!((1..7).all(|step| lr_at(s, 0.1, e, step, 7, 5, 1) == first));
        }
    }

    #[test]
    fn step_multiplies_by_gamma_every_n_epochs() {
        let s = Schedule::Step {
            every: 3,
            gamma: 0.5,
        };
        let lrs: Vec<f32> = (0..7).map(|e| lr_at(s, 0.8, e, 0, 1, 7, 0)).collect();
        assert_eq!(lrs, [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]);
    }

    #[test]
    fn cosine_falls_from_the_base_rate_to_half_way_to_the_floor_at_mid_run() {
        // E' = 8 after 2 warm-up epochs: epoch 2 is the top, epoch 6 (e' = 4) half way.
        let s = Schedule::Cosine { min_lr: 0.0 };
        let at = |s, e| lr_at(s, 0.1, e, 0, 1, 10, 2);
        assert_eq!(at(s, 2), 0.1);
        assert!((at(s, 6) - 0.05).abs() < 1e-7);
        let last = at(s, 9);
        // e' = 7 of 8: (1 + cos(7 pi / 8)) / 2 = (1 - 0.9238795) / 2 = 0.0380602
        assert!((last - 0.1 * 0.038_060_23).abs() < 1e-7, "{last}");
        let floor = Schedule::Cosine { min_lr: 0.01 };
        assert!((at(floor, 6) - 0.055).abs() < 1e-7);
    }
}
