//! Learning-rate schedules through the command line: the `lr` column shows the rate in force
//! each epoch, options that need a schedule are refused without it, and resume is exact.

use crate::bars::{bars_setup, bars_train};
use crate::command::Train;
use crate::runs::{metrics_column, model_bytes};

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-7, "{got:?} vs {want:?}");
    }
}

#[test]
fn a_step_schedule_halves_the_rate_every_epoch_in_the_lr_column() {
    let (dir, _) = bars_setup();
    let opts = [
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--schedule",
        "step",
        "--step-size",
        "1",
        "--gamma",
        "0.5",
    ];
    bars_train(dir.path(), "run").args(&opts).ok();
    assert_close(
        &metrics_column(&dir.path().join("run"), "lr"),
        &[0.1, 0.05, 0.025],
    );
}

#[test]
fn a_cosine_schedule_after_one_warm_up_epoch_falls_along_half_a_cosine() {
    // The warm-up epoch's last step is at the base rate (the column shows each epoch's last
    // step); then E' = 3 epochs: (1 + cos(pi e'/3)) / 2 = 1, 0.75, 0.25 of the rate.
    let (dir, _) = bars_setup();
    let opts = [
        "--epochs",
        "4",
        "--lr",
        "0.1",
        "--schedule",
        "cosine",
        "--warmup",
        "1",
    ];
    bars_train(dir.path(), "run").args(&opts).ok();
    assert_close(
        &metrics_column(&dir.path().join("run"), "lr"),
        &[0.1, 0.1, 0.075, 0.025],
    );
}

#[test]
fn schedule_options_without_their_schedule_or_out_of_range_are_refused_with_exit_2() {
    let (dir, _) = bars_setup();
    for (opts, why) in [
        (
            &["--gamma", "0.5"][..],
            "--gamma applies to --schedule step",
        ),
        (
            &["--min-lr", "0.001"][..],
            "--min-lr applies to --schedule cosine",
        ),
        (
            &["--schedule", "step", "--gamma", "0"][..],
            "--gamma must be above 0",
        ),
        (
            &["--epochs", "3", "--warmup", "3"][..],
            "--warmup must be fewer epochs",
        ),
        (
            &["--schedule", "cosine", "--min-lr", "1"][..],
            "--min-lr must be from 0 to --lr",
        ),
    ] {
        let (code, _, stderr) = bars_train(dir.path(), "run").args(opts).run();
        assert_eq!(code, 2, "{opts:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(why), "{opts:?}: {stderr}");
        assert!(!dir.path().join("run").exists());
    }
}

#[test]
fn a_run_with_a_schedule_stopped_mid_epoch_and_resumed_equals_the_straight_run() {
    let (dir, _) = bars_setup();
    let opts = [
        "--epochs",
        "4",
        "--lr",
        "0.1",
        "--batch-size",
        "8",
        "--schedule",
        "step",
        "--step-size",
        "1",
        "--gamma",
        "0.5",
        "--warmup",
        "1",
    ];
    bars_train(dir.path(), "straight").args(&opts).ok();
    let mut split: Vec<&str> = opts.to_vec();
    split.extend(["--stop-after-steps", "13"]);
    bars_train(dir.path(), "split").args(&split).ok();
    let dir_split = dir.path().join("split");
    Train::resume(&dir_split).ok();
    assert_eq!(
        model_bytes(&dir.path().join("straight")),
        model_bytes(&dir_split)
    );
    assert_close(
        &metrics_column(&dir.path().join("split"), "lr"),
        &[0.1, 0.1, 0.05, 0.025],
    );
}

#[test]
fn a_run_stopped_inside_its_warm_up_and_resumed_equals_the_straight_run() {
    // 60 images in batches of 8: 8 steps an epoch, so step 5 is inside the first of the two
    // warm-up epochs, where the rate changes every step.
    let (dir, _) = bars_setup();
    let opts = [
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--batch-size",
        "8",
        "--schedule",
        "cosine",
        "--warmup",
        "2",
    ];
    bars_train(dir.path(), "straight").args(&opts).ok();
    let mut split: Vec<&str> = opts.to_vec();
    split.extend(["--stop-after-steps", "5"]);
    bars_train(dir.path(), "split").args(&split).ok();
    let dir_split = dir.path().join("split");
    Train::resume(&dir_split).ok();
    assert!(model_bytes(&dir.path().join("straight")) == model_bytes(&dir_split));
    // Each epoch's last step: 0.1 x 8/16, 0.1 x 16/16, then the cosine's first epoch.
    assert_close(&metrics_column(&dir_split, "lr"), &[0.05, 0.1, 0.1]);
}
