//! `--shift`, `--flip` and `--erase` through the command line: they change training, never
//! the test set, and give the same bytes for any thread count and across resume.

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
        bars_train(d, &format!("erased-{name}"))
            .defaults(&DEFAULTS)
            .args(&["--erase", "0.5", "--threads", threads])
            .ok();
    }
    assert_ne!(
        model_bytes(&d.join("plain")),
        model_bytes(&d.join("one")),
        "augmentation must change training"
    );
    assert_eq!(model_bytes(&d.join("one")), model_bytes(&d.join("two")));
    assert_ne!(
        model_bytes(&d.join("plain")),
        model_bytes(&d.join("erased-one")),
        "erasing must change training"
    );
    assert_eq!(
        model_bytes(&d.join("erased-one")),
        model_bytes(&d.join("erased-two"))
    );
}

#[test]
fn erase_is_a_probability_on_the_command_line_and_on_the_augment_line() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    let (code, _, stderr) = bars_train(d, "run").args(&["--erase", "1.5"]).run();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--erase must be at least 0 and at most 1, got 1.5"),
        "{stderr}"
    );
    let text = crate::bars::BARS_CONFIG.replacen("4\n", "4\nAugment erase=2\n", 1);
    let (code, _, stderr) = bars_train(d, "run").config(&text).run();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("net.cfg:2:"), "{stderr}");
    assert!(stderr.contains("a number from 0 to 1"), "{stderr}");
    // The line's value is the run's.
    let text = crate::bars::BARS_CONFIG.replacen("4\n", "4\nAugment erase=0.25\n", 1);
    bars_train(d, "lined")
        .config(&text)
        .defaults(&DEFAULTS)
        .ok();
    assert_eq!(crate::runs::run_json(&d.join("lined"))["erase"], 0.25);
}

#[test]
fn an_augmented_run_stopped_mid_epoch_and_resumed_equals_the_straight_run() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    let augmented = ["--shift", "2", "--flip", "--erase", "0.5"];
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

#[test]
fn the_test_views_of_the_augment_line_score_the_final_test_set_as_evaluate_does() {
    // The epochs' figures stay one view; the run's final score is `cnn evaluate`'s with the
    // same views.
    let (dir, data) = bars_setup();
    let d = dir.path();
    let text =
        crate::bars::BARS_CONFIG.replacen("4\n", "4\nAugment test_flip=true test_shift=1\n", 1);
    let cfg = d.join("views.cfg");
    std::fs::write(&cfg, text).unwrap();
    let (code, stdout, stderr) = run(&[
        &"train",
        &cfg,
        &"--data",
        &data,
        &"--out",
        &d.join("run"),
        &"--epochs",
        &"2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json = crate::runs::run_json(&d.join("run"));
    assert_eq!(
        (json["test_flip"].clone(), json["test_shift"].clone()),
        (true.into(), 1.into())
    );
    let model = d.join("run").join("model.safetensors");
    let accuracy = |views: &[&str]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"evaluate", &model, &"--data", &data, &"--json"];
        args.extend(views.iter().map(|v| v as &dyn AsRef<std::ffi::OsStr>));
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        (
            report["accuracy"].as_f64().unwrap(),
            report["loss"].as_f64().unwrap(),
        )
    };
    let (plain, viewed) = (
        accuracy(&[]),
        accuracy(&["--test-flip", "--test-shift", "1"]),
    );
    assert!(
        (plain.1 - viewed.1).abs() > 1e-6,
        "the views changed nothing: {viewed:?}"
    );
    let last = metrics(&d.join("run")).pop().unwrap();
    assert!(
        (last["test_loss"].as_f64().unwrap() - plain.1).abs() < 1e-9,
        "{last}"
    );
    let line = format!("test accuracy {:.2}% (", viewed.0 * 100.0);
    assert!(
        stdout.contains(", 18 views of each), test loss"),
        "{stdout}"
    );
    let loss = format!("test loss {:.4}", viewed.1);
    assert!(stdout.contains(&loss), "want `{loss}` in:\n{stdout}");
    assert!(stdout.contains(&line), "want `{line}` in:\n{stdout}");
}
