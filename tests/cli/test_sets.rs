//! A run's held-out sets through the `cnn` command: with both `--val-split` and
//! `--test-data`, the validation split is watched after every epoch and the test set is
//! checked before training and evaluated once, after it.

use crate::bars::{bars_setup, bars_train};
use crate::runs::{metrics, run_json};

#[test]
fn val_split_with_test_data_watches_the_split_per_epoch_and_scores_the_test_set_at_the_end() {
    let (dir, data) = bars_setup();
    let test = data.join("t10k-images-idx3-ubyte");
    let test_arg = test.to_str().unwrap();
    let args = [
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--val-split",
        "0.2",
        "--test-data",
        test_arg,
        "--early-stop",
        "val_loss",
    ];
    let stdout = bars_train(dir.path(), "run").args(&args).ok();
    let run = dir.path().join("run");
    // Per epoch: the validation split's figures (12 of the 60 training images).
    assert!(stdout.contains("val loss"), "{stdout}");
    assert!(!stdout.contains("  test loss"), "{stdout}");
    for m in metrics(&run) {
        assert!(m["val_loss"].is_number(), "{m}");
    }
    // At the end: the validation split's line, then the test set's, over its 30 images.
    let lines: Vec<&str> = stdout.lines().collect();
    let val = lines
        .iter()
        .position(|l| l.starts_with("validation accuracy "));
    let test_line = lines.iter().position(|l| l.starts_with("test accuracy "));
    let (Some(val), Some(t)) = (val, test_line) else {
        panic!("no final validation and test lines in:\n{stdout}");
    };
    assert!(val < t, "{stdout}");
    assert!(lines[t].contains(" of 30), test loss "), "{stdout}");
    assert!(lines[val].contains(" of 12), validation loss "), "{stdout}");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("**Test accuracy "), "{report}");
    assert!(report.contains("Validation accuracy "), "{report}");
    assert_eq!(run_json(&run)["test_data"], test_arg);

    // The library's outcome has both.
    let config = cnn::run::RunConfig {
        config: dir.path().join("net.cfg"),
        data: Some(data.clone()),
        test_data: Some(test.clone()),
        val_split: Some(0.2),
        epochs: 1,
        ..cnn::run::RunConfig::default()
    };
    let mut lib = cnn::run::Run::new(config, Some(dir.path().join("lib")), false).unwrap();
    let outcome = lib.train(&mut |_| cnn::train::Control::Continue).unwrap();
    assert_eq!(outcome.test.map(|t| t.images), Some(30));
    assert_eq!(outcome.validation.map(|t| t.images), Some(12));
}

#[test]
fn val_split_with_test_data_of_classes_the_model_lacks_is_refused_before_training() {
    let (dir, _) = bars_setup();
    // 4 classes (bare indices) for a network of 3 outputs.
    let pixels = vec![7u8; 8 * 64];
    let labels: Vec<u8> = (0..8).map(|i| i % 4).collect();
    let four = crate::files::write_idx(&dir.path().join("four"), "t10k", 8, 8, &pixels, &labels);
    let (code, _, stderr) = bars_train(dir.path(), "run")
        .args(&["--val-split", "0.2", "--test-data", four.to_str().unwrap()])
        .run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Class names are matched as `cnn evaluate` matches them: "3" is none of the model's.
    assert!(
        stderr.contains("class \"3\" is not one of the model's classes (0, 1, 2)"),
        "{stderr}"
    );
    assert!(!dir.path().join("run").exists());
}

#[test]
fn eval_every_scores_the_test_set_after_every_nth_epoch_and_the_last_and_leaves_the_model_alone() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    let args = ["--epochs", "5", "--batch-size", "8", "--lr", "0.05"];
    bars_train(d, "every").args(&args).ok();
    let stdout = bars_train(d, "second")
        .args(&args)
        .args(&["--eval-every", "2"])
        .ok();
    // Epochs 2 and 4, and the last (5), have the test figures; 1 and 3 have none.
    let scored: Vec<bool> = metrics(&d.join("second"))
        .iter()
        .map(|m| m["test_accuracy"].is_number())
        .collect();
    assert_eq!(scored, [false, true, false, true, true], "{stdout}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        !lines[0].contains("test acc") && lines[1].contains("test acc"),
        "{stdout}"
    );
    // Evaluating less often changes nothing that training computes.
    let every = metrics(&d.join("every"));
    for (a, b) in every.iter().zip(metrics(&d.join("second"))) {
        assert_eq!(a["loss"], b["loss"]);
        if b["test_accuracy"].is_number() {
            assert_eq!(a["test_accuracy"], b["test_accuracy"]);
        }
    }
    assert_eq!(
        crate::runs::model_bytes(&d.join("every")),
        crate::runs::model_bytes(&d.join("second"))
    );
    assert_eq!(run_json(&d.join("second"))["eval_every"], 2);
}

#[test]
fn eval_every_is_refused_with_early_stopping_which_needs_every_epochs_figure() {
    let (dir, _) = bars_setup();
    let (code, _, stderr) = bars_train(dir.path(), "run")
        .args(&[
            "--eval-every",
            "3",
            "--val-split",
            "0.2",
            "--early-stop",
            "val_loss",
        ])
        .run();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "--eval-every 3 leaves early stopping (--early-stop val_loss) without a figure"
        ),
        "{stderr}"
    );
    let text = crate::bars::BARS_CONFIG.replacen(
        "4\n",
        "4\nTrain eval_every=3 val_split=0.2 early_stop=val_loss\n",
        1,
    );
    let (code, _, stderr) = bars_train(dir.path(), "run").config(&text).run();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("net.cfg:2:"), "{stderr}");
    assert!(
        stderr.contains("must be 1 with `early_stop=val_loss`"),
        "{stderr}"
    );
}
