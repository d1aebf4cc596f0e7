//! `--shift` and `--flip` through the command line: they change training, never the test
//! set, and give the same bytes for any thread count and across resume.

use crate::bars::bars_setup;
use crate::common::run;

use std::ffi::OsStr;
use std::path::Path;

fn train(dir: &Path, data: &Path, name: &str, extra: &[&str]) {
    let cfg = dir.join("net.cfg");
    let out = dir.join(name);
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![
        &"train",
        &cfg,
        &"--data",
        &data,
        &"--epochs",
        &"3",
        &"--batch-size",
        &"8",
        &"--out",
        &out,
    ];
    args.extend(extra.iter().map(|a| a as &dyn AsRef<OsStr>));
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
}

fn model(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name).join("model.safetensors")).unwrap()
}

#[test]
fn augmentation_changes_training_and_gives_the_same_bytes_on_1_and_2_threads() {
    let (dir, data) = bars_setup();
    let d = dir.path();
    train(d, &data, "plain", &[]);
    train(
        d,
        &data,
        "one",
        &["--shift", "1", "--flip", "--threads", "1"],
    );
    train(
        d,
        &data,
        "two",
        &["--shift", "1", "--flip", "--threads", "2"],
    );
    assert_ne!(
        model(d, "plain"),
        model(d, "one"),
        "augmentation must change training"
    );
    assert_eq!(model(d, "one"), model(d, "two"));
}

#[test]
fn an_augmented_run_stopped_mid_epoch_and_resumed_equals_the_straight_run() {
    let (dir, data) = bars_setup();
    let d = dir.path();
    train(d, &data, "straight", &["--shift", "2", "--flip"]);
    train(
        d,
        &data,
        "split",
        &["--shift", "2", "--flip", "--stop-after-steps", "11"],
    );
    let split = d.join("split");
    let (code, _, stderr) = run(&[&"train", &"--resume", &split]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(model(d, "straight"), model(d, "split"));
    // And a resume may not switch augmentation off.
    let (code, _, stderr) = run(&[&"train", &"--resume", &split, &"--shift", &"0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot resume with --shift 0"), "{stderr}");
}

#[test]
fn the_test_set_is_never_augmented() {
    // The run's own test accuracy after the last epoch is evaluate's on the same data.
    let (dir, data) = bars_setup();
    let d = dir.path();
    train(d, &data, "run", &["--shift", "2", "--flip"]);
    let m = std::fs::read_to_string(d.join("run").join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(m.lines().last().unwrap()).unwrap();
    let model = d.join("run").join("model.safetensors");
    let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--data", &data, &"--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let (a, b) = (
        last["val_accuracy"].as_f64().unwrap(),
        report["accuracy"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-9, "train's {a} vs evaluate's {b}");
}
