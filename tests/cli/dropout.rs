//! Dropout through the command line: the masks depend on the seed, the epoch, the step, the
//! layer and the sample, never on the thread count or on where a run was stopped and resumed.

use crate::command::Train;
use crate::common::run;
use crate::runs::{metrics, model_bytes};

/// A small network with Dropout after a hidden Dense layer, for the built-in demo set.
const NET: &str = "5
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=2 activation=relu
MaxPool2D pool=2x2
Dense units=32 activation=relu
Dropout rate=0.5
Dense units=10 activation=softmax
";

/// What every `cnn train` of this file passes ([`NET`] on the demo set).
const DEFAULTS: [[&str; 2]; 3] = [["--epochs", "2"], ["--batch-size", "64"], ["--seed", "5"]];

#[test]
fn a_run_with_dropout_gives_the_same_model_bytes_on_1_and_2_threads() {
    let tmp = tempfile::tempdir().unwrap();
    for (out, threads) in [("one", "1"), ("two", "2")] {
        Train::new(tmp.path().join("net.cfg"), tmp.path().join(out))
            .config(NET)
            .defaults(&DEFAULTS)
            .args(&["--threads", threads])
            .ok();
    }
    assert_eq!(
        model_bytes(&tmp.path().join("one")),
        model_bytes(&tmp.path().join("two"))
    );
}

#[test]
fn a_run_with_dropout_stopped_mid_epoch_and_resumed_equals_the_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    for (out, extra) in [
        ("straight", &[][..]),
        ("split", &["--stop-after-steps", "40"]),
    ] {
        Train::new(tmp.path().join("net.cfg"), tmp.path().join(out))
            .config(NET)
            .defaults(&DEFAULTS)
            .args(extra)
            .ok();
    }
    let split = tmp.path().join("split");
    Train::resume(&split).ok();
    assert_eq!(
        model_bytes(&tmp.path().join("straight")),
        model_bytes(&split)
    );
}

#[test]
fn dropout_changes_training_and_not_evaluation() {
    // The same weights evaluated twice give the same accuracy: evaluation never drops.
    let tmp = tempfile::tempdir().unwrap();
    Train::new(tmp.path().join("net.cfg"), tmp.path().join("run"))
        .config(NET)
        .defaults(&DEFAULTS)
        .ok();
    let model = tmp.path().join("run").join("model.safetensors");
    let eval = || {
        let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--json"]);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    assert_eq!(eval(), eval());
    // And the run's own test accuracy after its last epoch is evaluate's.
    let last = metrics(&tmp.path().join("run")).pop().unwrap();
    let report: serde_json::Value = serde_json::from_str(&eval()).unwrap();
    assert!(
        (last["test_accuracy"].as_f64().unwrap() - report["accuracy"].as_f64().unwrap()).abs()
            < 1e-9
    );
}
