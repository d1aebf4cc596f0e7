//! `--label-smoothing` through the command line: checked before anything is written, stored
//! in run.json, and kept on resume.

use crate::bars::bars_setup;
use crate::common::run;

#[test]
fn label_smoothing_outside_0_to_1_is_refused_with_exit_2_before_a_run_folder_is_made() {
    let (dir, data) = bars_setup();
    let cfg = dir.path().join("net.cfg");
    let out = dir.path().join("run");
    for bad in ["1", "-0.1", "1.5"] {
        let (code, _, stderr) = run(&[
            &"train",
            &cfg,
            &"--data",
            &data,
            &"--label-smoothing",
            &bad,
            &"--out",
            &out,
        ]);
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
    let (dir, data) = bars_setup();
    let cfg = dir.path().join("net.cfg");
    let out = dir.path().join("run");
    let (code, _, stderr) = run(&[
        &"train",
        &cfg,
        &"--data",
        &data,
        &"--epochs",
        &"2",
        &"--label-smoothing",
        &"0.1",
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert!((stored["label_smoothing"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    let (code, _, stderr) = run(&[
        &"train",
        &"--resume",
        &out,
        &"--epochs",
        &"3",
        &"--label-smoothing",
        &"0.2",
    ]);
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
    let (dir, data) = bars_setup();
    let cfg = dir.path().join("net.cfg");
    let last_loss = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"train",
            &cfg,
            &"--data",
            &data,
            &"--epochs",
            &"15",
            &"--lr",
            &"0.1",
            &"--out",
            &out,
        ];
        args.extend(extra.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        let m = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(m.lines().last().unwrap()).unwrap();
        v["loss"].as_f64().unwrap()
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
