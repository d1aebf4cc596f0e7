//! Early stopping through the `cnn` command: it stops where Keras's
//! `EarlyStopping` rule says, given the validation figures of the same run trained without
//! it; `--restore-best` ends with the best epoch's weights; resume is bit-exact; and every
//! misuse is a one-line error.
//!
//! The data is the bars set of `tests/common/bars.rs` (60 training images 8x8, 3 classes);
//! `--val-split 0.2` holds 12 of them out, leaving 6 steps of 8 images per epoch.

use crate::bars::{bars_setup, bars_train};
use crate::command::Train;
use crate::runs::metrics_column;

use std::path::Path;

/// What every `cnn train` of this file passes unless a test gives it.
const DEFAULTS: [[&str; 2]; 3] = [
    ["--batch-size", "8"],
    ["--lr", "0.1"],
    ["--val-split", "0.2"],
];

fn file(dir: &Path, name: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(name).join(file)).unwrap()
}

/// Keras's EarlyStopping rule, written out here independently of `cnn::early_stop`: over
/// the per-epoch `values` (lower is better when `lower`), the 1-based (stop epoch, best
/// epoch), or `None` if it never stops.
fn keras_stop(
    values: &[f64],
    lower: bool,
    patience: usize,
    min_delta: f64,
) -> Option<(usize, usize)> {
    let mut best = if lower {
        f64::INFINITY
    } else {
        f64::NEG_INFINITY
    };
    let (mut best_epoch, mut wait) = (0, 0);
    for (i, &v) in values.iter().enumerate() {
        let better = if lower {
            v < best - min_delta
        } else {
            v > best + min_delta
        };
        if better {
            (best, best_epoch, wait) = (v, i + 1, 0);
        } else {
            wait += 1;
            if wait >= patience {
                return Some((i + 1, best_epoch));
            }
        }
    }
    None
}

const EPOCHS: &str = "30";

/// Early stopping on val_loss with patience 1 and min_delta 0.05, for EPOCHS at most.
const PATIENCE_1: [&str; 8] = [
    "--epochs",
    EPOCHS,
    "--early-stop",
    "val_loss",
    "--patience",
    "1",
    "--min-delta",
    "0.05",
];

/// Trains `net.cfg` in `d` for EPOCHS without early stopping (run "full") and returns its
/// validation losses with the (stop, best) epochs that Keras's rule gives for
/// [`PATIENCE_1`]. On the bars the validation loss falls smoothly towards 0, so the steps
/// shrink below min_delta 0.05 after a few epochs: the run must stop.
fn full_run_and_keras_stop(d: &Path) -> (Vec<f64>, usize, usize) {
    bars_train(d, "full")
        .defaults(&DEFAULTS)
        .args(&["--epochs", EPOCHS])
        .ok();
    let full = metrics_column(&d.join("full"), "val_loss");
    let (stop, best) = keras_stop(&full, true, 1, 0.05)
        .unwrap_or_else(|| panic!("the case must stop early: val losses {full:?}"));
    (full, stop, best)
}

#[test]
fn patience_1_stops_at_the_first_epoch_that_improves_by_less_than_min_delta_and_keeps_the_right_weights(
) {
    let (dir, _) = bars_setup();
    let d = dir.path();
    let (full, stop, best) = full_run_and_keras_stop(d);
    let es = PATIENCE_1;
    let stdout = bars_train(d, "es").defaults(&DEFAULTS).args(&es).ok();
    // Early stopping changes nothing before it stops.
    assert_eq!(metrics_column(&d.join("es"), "val_loss"), full[..stop]);
    assert!(
        stdout.contains(&format!(
            "stopped early after epoch {stop} of {EPOCHS}: val_loss has not improved on {:.4} \
             (epoch {best}) for 1 epoch; the model has the last epoch's weights",
            full[best - 1]
        )),
        "{stdout}"
    );
    let report = String::from_utf8(file(d, "es", "report.md")).unwrap();
    assert!(
        report.contains(&format!("stopped early after epoch {stop}")),
        "{report}"
    );
    // Without --restore-best the model is the last epoch's: that of a run of `stop` epochs.
    bars_train(d, "upto_stop")
        .defaults(&DEFAULTS)
        .args(&["--epochs", &stop.to_string()])
        .ok();
    assert_eq!(
        file(d, "es", "model.safetensors"),
        file(d, "upto_stop", "model.safetensors")
    );
    assert!(!d.join("es").join("best.safetensors").exists());

    // With --restore-best it is the best epoch's: that of a run of `best` epochs.
    let mut restore = es.to_vec();
    restore.push("--restore-best");
    let stdout = bars_train(d, "restore")
        .defaults(&DEFAULTS)
        .args(&restore)
        .ok();
    assert!(
        stdout.contains(&format!("the model has epoch {best}'s weights, the best")),
        "{stdout}"
    );
    bars_train(d, "upto_best")
        .defaults(&DEFAULTS)
        .args(&["--epochs", &best.to_string()])
        .ok();
    let want = file(d, "upto_best", "model.safetensors");
    assert_eq!(file(d, "restore", "model.safetensors"), want);
    assert_eq!(file(d, "restore", "best.safetensors"), want);
    // The final validation figures are the restored model's.
    assert!(
        stdout.contains(&format!("validation loss {:.4}", full[best - 1])),
        "{stdout}"
    );
}

#[test]
fn val_accuracy_with_a_min_delta_from_the_train_line_stops_where_keras_would() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    bars_train(d, "full")
        .defaults(&DEFAULTS)
        .args(&["--epochs", EPOCHS])
        .ok();
    let full = metrics_column(&d.join("full"), "val_accuracy");
    // 12 validation images: one more right is +0.083, so min_delta 0.05 needs one image.
    let (stop, _) = keras_stop(&full, false, 2, 0.05)
        .unwrap_or_else(|| panic!("the case must stop early: val accuracies {full:?}"));
    let cfg = std::fs::read_to_string(d.join("net.cfg")).unwrap();
    let (count, rest) = cfg.split_once('\n').unwrap();
    std::fs::write(
        d.join("net.cfg"),
        format!("{count}\nTrain early_stop=val_accuracy patience=2 min_delta=0.05\n{rest}"),
    )
    .unwrap();
    let stdout = bars_train(d, "es")
        .defaults(&DEFAULTS)
        .args(&["--epochs", EPOCHS])
        .ok();
    assert_eq!(
        metrics_column(&d.join("es"), "val_accuracy").len(),
        stop,
        "{stdout}"
    );
    assert!(stdout.contains(&format!(
        "stopped early after epoch {stop} of {EPOCHS}: val_accuracy"
    )));
}

#[test]
fn a_run_with_early_stopping_stopped_anywhere_and_resumed_equals_the_straight_run() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    let es = [
        "--epochs",
        EPOCHS,
        "--early-stop",
        "val_loss",
        "--patience",
        "2",
        "--min-delta",
        "0.05",
        "--restore-best",
    ];
    bars_train(d, "straight").defaults(&DEFAULTS).args(&es).ok();
    let epochs = metrics_column(&d.join("straight"), "val_loss").len();
    assert!(epochs < 30, "the case must stop early");
    // Mid-epoch in the first epoch, at an epoch's end, and mid-epoch in the last epoch (6
    // steps an epoch).
    for steps in [3, 12, 6 * epochs - 2] {
        let name = format!("split{steps}");
        let mut split = es.to_vec();
        let s = steps.to_string();
        split.extend(["--stop-after-steps", &s]);
        bars_train(d, &name).defaults(&DEFAULTS).args(&split).ok();
        let (code, _, stderr) = Train::resume(d.join(&name)).run();
        assert_eq!(code, 0, "{steps}: {stderr}");
        for f in ["model.safetensors", "best.safetensors"] {
            assert_eq!(file(d, &name, f), file(d, "straight", f), "{steps}: {f}");
        }
        assert_eq!(
            metrics_column(&d.join(&name), "val_loss"),
            metrics_column(&d.join("straight"), "val_loss")
        );
    }
}

#[test]
fn early_stopping_options_out_of_place_or_out_of_range_are_refused_with_exit_2() {
    let (dir, _) = bars_setup();
    let out = dir.path().join("run");
    for (opts, why) in [
        (
            &["--early-stop", "val_loss"][..],
            "--early-stop val_loss watches a validation split, and this run has none: add \
             --val-split 0.1 (early stopping never looks at the test set)",
        ),
        (
            &["--val-split", "0.2", "--patience", "3"][..],
            "--patience applies to early stopping",
        ),
        (
            &["--val-split", "0.2", "--restore-best"][..],
            "--restore-best applies to early stopping",
        ),
        (
            &[
                "--val-split",
                "0.2",
                "--early-stop",
                "val_loss",
                "--min-delta",
                "-1",
            ][..],
            "--min-delta must be 0 or positive, got -1",
        ),
        (
            &[
                "--val-split",
                "0.2",
                "--early-stop",
                "val_loss",
                "--patience",
                "0",
            ][..],
            "--patience",
        ),
        (
            &["--val-split", "0.2", "--early-stop", "loss"][..],
            "invalid value 'loss'",
        ),
    ] {
        let (code, _, stderr) = bars_train(dir.path(), "run").args(opts).run();
        assert_eq!(code, 2, "{opts:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{opts:?}: {stderr}");
        assert!(stderr.contains(why), "{opts:?}: {stderr}");
        assert!(!out.exists(), "{opts:?}: nothing is written");
    }
}

#[test]
fn resuming_with_another_patience_is_refused() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    let es = [
        "--epochs",
        "3",
        "--early-stop",
        "val_loss",
        "--stop-after-steps",
        "4",
    ];
    bars_train(d, "r").defaults(&DEFAULTS).args(&es).ok();
    // Its own settings again are fine (the validation split comes from run.json).
    Train::resume(d.join("r"))
        .args(&["--early-stop", "val_loss", "--stop-after-steps", "5"])
        .ok();
    let (code, _, stderr) = Train::resume(d.join("r")).args(&["--patience", "9"]).run();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot resume with --patience 9: the run has 5"),
        "{stderr}"
    );
}

/// With BatchNorm, the restored weights include the running statistics of the best epoch:
/// `model.safetensors` equals, byte for byte, a plain run of the best epoch's length.
#[test]
fn restore_best_brings_back_batchnorm_s_running_statistics_too() {
    let (dir, _) = bars_setup();
    let d = dir.path();
    std::fs::write(
        d.join("net.cfg"),
        "5\nInput shape=1x8x8\nConv2D filters=4 kernel=3x3 padding=same\n\
         BatchNorm2D activation=relu\nMaxPool2D pool=2x2\nDense units=16\n\
         Dense units=3 activation=softmax\n",
    )
    .unwrap();
    let (_, _, best) = full_run_and_keras_stop(d);
    let mut es = PATIENCE_1.to_vec();
    es.push("--restore-best");
    bars_train(d, "restore").defaults(&DEFAULTS).args(&es).ok();
    bars_train(d, "upto_best")
        .defaults(&DEFAULTS)
        .args(&["--epochs", &best.to_string()])
        .ok();
    let want = file(d, "upto_best", "model.safetensors");
    assert_eq!(file(d, "restore", "model.safetensors"), want);
    let (model, _) = cnn::model_file::load(&d.join("restore/model.safetensors")).unwrap();
    let tracked = model
        .named_buffers()
        .into_iter()
        .find(|(n, _)| n == "layers.1.num_batches_tracked")
        .map(|(_, b)| b);
    // 48 training images in batches of 8: 6 steps an epoch.
    assert_eq!(
        tracked,
        Some(cnn::layers::Buffer::I64(6 * best as i64)),
        "best epoch {best}"
    );
}
