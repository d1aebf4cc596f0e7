//! Dropout through the command line: the masks depend on the seed, the epoch, the step, the
//! layer and the sample, never on the thread count or on where a run was stopped and resumed.

use std::path::Path;

use crate::common::run;

/// A small network with Dropout after a hidden Dense layer, for the built-in demo set.
const NET: &str = "5
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=2 activation=relu
MaxPool2D pool=2x2
Dense units=32 activation=relu
Dropout rate=0.5
Dense units=10 activation=softmax
";

fn train(dir: &Path, out: &str, extra: &[&str]) {
    let cfg = dir.join("net.cfg");
    std::fs::write(&cfg, NET).unwrap();
    let out = dir.join(out);
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"train", &cfg, &"--out", &out];
    let base = ["--epochs", "2", "--batch-size", "64", "--seed", "5"];
    args.extend(base.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
    args.extend(extra.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
}

fn model_bytes(dir: &Path, out: &str) -> Vec<u8> {
    std::fs::read(dir.join(out).join("model.safetensors")).unwrap()
}

#[test]
fn a_run_with_dropout_gives_the_same_model_bytes_on_1_and_2_threads() {
    let tmp = tempfile::tempdir().unwrap();
    train(tmp.path(), "one", &["--threads", "1"]);
    train(tmp.path(), "two", &["--threads", "2"]);
    assert_eq!(
        model_bytes(tmp.path(), "one"),
        model_bytes(tmp.path(), "two")
    );
}

#[test]
fn a_run_with_dropout_stopped_mid_epoch_and_resumed_equals_the_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    train(tmp.path(), "straight", &[]);
    train(tmp.path(), "split", &["--stop-after-steps", "40"]);
    let split = tmp.path().join("split");
    let (code, _, stderr) = run(&[&"train", &"--resume", &split]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        model_bytes(tmp.path(), "straight"),
        model_bytes(tmp.path(), "split")
    );
}

#[test]
fn dropout_changes_training_and_not_evaluation() {
    // The same weights evaluated twice give the same accuracy: evaluation never drops.
    let tmp = tempfile::tempdir().unwrap();
    train(tmp.path(), "run", &[]);
    let model = tmp.path().join("run").join("model.safetensors");
    let eval = || {
        let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--json"]);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    assert_eq!(eval(), eval());
    // And the run's own test accuracy after its last epoch is evaluate's.
    let metrics = std::fs::read_to_string(tmp.path().join("run").join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    let report: serde_json::Value = serde_json::from_str(&eval()).unwrap();
    assert!(
        (last["val_accuracy"].as_f64().unwrap() - report["accuracy"].as_f64().unwrap()).abs()
            < 1e-9
    );
}
