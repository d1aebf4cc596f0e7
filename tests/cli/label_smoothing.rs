//! `--label-smoothing` through the command line: checked before anything is written, stored
//! in run.json, and kept on resume.

use crate::bars::{bars_setup, bars_train};
use crate::command::Train;
use crate::runs::{metrics_column, run_json};

#[test]
fn label_smoothing_outside_0_to_1_is_refused_with_exit_2_before_a_run_folder_is_made() {
    let (dir, _) = bars_setup();
    let out = dir.path().join("run");
    for bad in ["1", "-0.1", "1.5"] {
        let (code, _, stderr) = bars_train(dir.path(), "run")
            .args(&["--label-smoothing", bad])
            .run();
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("--label-smoothing must be at least 0 and below 1"),
            "{stderr}"
        );
        assert!(!out.exists());
    }
}

#[test]
fn a_run_with_label_smoothing_records_it_and_refuses_another_value_on_resume() {
    let (dir, _) = bars_setup();
    let out = dir.path().join("run");
    bars_train(dir.path(), "run")
        .args(&["--epochs", "2", "--label-smoothing", "0.1"])
        .ok();
    let stored = run_json(&out);
    assert!((stored["label_smoothing"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    let (code, _, stderr) = Train::resume(&out)
        .args(&["--epochs", "3", "--label-smoothing", "0.2"])
        .run();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot resume with --label-smoothing 0.2"),
        "{stderr}"
    );
}

#[test]
fn a_smoothed_training_loss_stays_above_the_entropy_of_its_targets() {
    // With K = 3 and eps = 0.3 the target of a sample of class 0 is q = (0.8, 0.1, 0.1), and
    // -sum q log p >= -sum q log q = H(q) = 0.639 whatever p is. A network that learns the
    // bars brings its plain training loss below that; with smoothing the loss cannot go there.
    let (dir, _) = bars_setup();
    let last_loss = |name: &str, extra: &[&str]| {
        bars_train(dir.path(), name)
            .args(&["--epochs", "15", "--lr", "0.1"])
            .args(extra)
            .ok();
        *metrics_column(&dir.path().join(name), "loss")
            .last()
            .unwrap()
    };
    let entropy = -(0.8f64 * 0.8f64.ln() + 2.0 * 0.1 * 0.1f64.ln());
    let plain = last_loss("plain", &[]);
    let smoothed = last_loss("smoothed", &["--label-smoothing", "0.3"]);
    assert!(
        plain < entropy,
        "plain {plain}: the network should learn the bars"
    );
    assert!(
        smoothed >= entropy - 1e-4,
        "smoothed {smoothed} below H(q) = {entropy}"
    );
}
