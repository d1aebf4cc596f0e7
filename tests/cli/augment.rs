//! `--shift` and `--flip` through the command line: they change training, never the test
//! set, and give the same bytes for any thread count and across resume.

use crate::bars::{bars_setup, bars_train};
use crate::command::Train;
use crate::common::run;
use crate::runs::{metrics, model_bytes};

/// What every run of this file passes unless a test gives it.
const DEFAULTS: [[&str; 2]; 2] = [["--epochs", "3"], ["--batch-size", "8"]];

#[test]
fn augmentation_changes_training_and_gives_the_same_bytes_on_1_and_2_threads() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    bars_train(d, "plain").defaults(&DEFAULTS).ok();
    for (name, threads) in [("one", "1"), ("two", "2")] {
        bars_train(d, name)
            .defaults(&DEFAULTS)
            .args(&["--shift", "1", "--flip", "--threads", threads])
            .ok();
    }
    assert_ne!(
        model_bytes(&d.join("plain")),
        model_bytes(&d.join("one")),
        "augmentation must change training"
    );
    assert_eq!(model_bytes(&d.join("one")), model_bytes(&d.join("two")));
}

#[test]
fn an_augmented_run_stopped_mid_epoch_and_resumed_equals_the_straight_run() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    let augmented = ["--shift", "2", "--flip"];
    bars_train(d, "straight")
        .defaults(&DEFAULTS)
        .args(&augmented)
        .ok();
    bars_train(d, "split")
        .defaults(&DEFAULTS)
        .args(&augmented)
        .args(&["--stop-after-steps", "11"])
        .ok();
    let split = d.join("split");
    Train::resume(&split).ok();
    assert_eq!(model_bytes(&d.join("straight")), model_bytes(&split));
    // And a resume may not switch augmentation off.
    let (code, _, stderr) = Train::resume(&split).args(&["--shift", "0"]).run();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot resume with --shift 0"), "{stderr}");
}

#[test]
fn the_test_set_is_never_augmented() {
    // The run's own test accuracy after the last epoch is evaluate's on the same data.
    let (dir, data) = bars_setup();
    let d = dir.path();
    bars_train(d, "run")
        .defaults(&DEFAULTS)
        .args(&["--shift", "2", "--flip"])
        .ok();
    let last = metrics(&d.join("run")).pop().unwrap();
    let model = d.join("run").join("model.safetensors");
    let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--data", &data, &"--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let (a, b) = (
        last["test_accuracy"].as_f64().unwrap(),
        report["accuracy"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-9, "train's {a} vs evaluate's {b}");
}
