//! End-to-end tests of the `cnn` command: every subcommand run as a process, checking its
//! output, the files it writes and its exit code (0 ok, 1 error, 2 bad usage, 3 diverged).
//!
//! Each test makes its own tiny data (8x8 IDX files, PNG folders) and configs in a temporary
//! folder, so that it runs in well under a second in release mode.

use std::path::{Path, PathBuf};

use crate::command::{cnn, Train};
use crate::common::run;
use crate::files::write_text as write;
use crate::stripes::{write_stripes_idx, write_stripes_png as write_png};
use predicates::prelude::*;
use tempfile::TempDir;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// A temp dir with `idx/` holding 30 training and 12 test images (classes 0-2 of "0".."9").
fn idx_dataset() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    std::fs::create_dir(&idx).unwrap();
    write_stripes_idx(&idx, "train", 30);
    write_stripes_idx(&idx, "t10k", 12);
    (tmp, idx)
}

/// A 1x8x8 network with 3 outputs, one per class of the test data (labels 0 to 2).
const TINY: &str = "3
Input shape=1x8x8
Conv2D filters=2 kernel=3x3 activation=relu
MaxPool2D pool=2
Dense units=3 activation=softmax
";

/// Trains [`TINY`] for 2 epochs on [`idx_dataset`]; returns (tmp, idx folder, run folder).
fn trained() -> (TempDir, PathBuf, PathBuf) {
    let (tmp, idx) = idx_dataset();
    let cfg = write(tmp.path(), "tiny.cfg", TINY);
    let out = tmp.path().join("run");
    Train::new(&cfg, &out)
        .data(&idx)
        .args(&["--epochs", "2", "--batch-size", "5", "--lr", "0.1"])
        .ok();
    (tmp, idx, out)
}

// ---------------------------------------------------------------------------------------
// summary

#[test]
fn summary_of_report1_shows_its_shapes_and_401954_parameters() {
    let (code, stdout, stderr) = run(&[&"summary", &example("report1.cfg")]);
    assert_eq!(code, 0, "{stderr}");
    for s in ["(16, 28, 28)", "(16, 14, 14)", "(3136)", "(128)", "(2)"] {
        assert!(stdout.contains(s), "missing {s} in\n{stdout}");
    }
    assert!(stdout.contains("Total params: 401,954"), "{stdout}");
    // The implied Flatten is shown between the pool and the first Dense.
    assert!(stdout.contains("Flatten (implicit)"), "{stdout}");
    assert!(!stdout.contains("H' ="), "no arithmetic without --explain");
}

#[test]
fn summary_explain_shows_the_arithmetic_of_each_shape_and_parameter_count() {
    let (code, stdout, _) = run(&[&"summary", &example("report1.cfg"), &"--explain"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("H' = floor((28 - 3 + 2*1)/1) + 1 = 28"),
        "{stdout}"
    );
    assert!(stdout.contains("params = 3*3*1*16 + 16 = 160"), "{stdout}");
    assert!(
        stdout.contains("params = 3136*128 + 128 = 401,536"),
        "{stdout}"
    );
    assert!(stdout.contains("Total params: 401,954"), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// config errors, through `cnn summary`

/// Writes `text` as `bad.cfg`, runs `cnn summary` on it and checks that it fails with exit
/// code 1 and exactly one line `error: PATH:LINE:COL: ...` containing `fragment`.
fn assert_config_error(text: &str, line: usize, col: usize, fragment: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "bad.cfg", text);
    let (code, stdout, stderr) = run(&[&"summary", &cfg]);
    assert_eq!(code, 1, "exit code for {text:?}; stderr: {stderr}");
    assert_eq!(stdout, "", "nothing on stdout for {text:?}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    let prefix = format!("error: {}:{line}:{col}: ", cfg.display());
    assert!(
        stderr.starts_with(&prefix),
        "stderr {stderr:?} should start with {prefix:?}"
    );
    assert!(
        stderr.contains(fragment),
        "stderr {stderr:?} should contain {fragment:?}"
    );
}

/// Report 1's network (lines 1 to 6) with line `n` replaced.
fn report1_with_line(n: usize, replacement: &str) -> String {
    let lines = [
        "5",
        "Input shape=1x28x28",
        "Conv2D filters=16 kernel=3x3 stride=1 padding=same activation=relu",
        "MaxPool2D pool=2x2 stride=2",
        "Dense units=128 activation=relu",
        "Dense units=2 activation=softmax",
    ];
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| if i + 1 == n { replacement } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn unknown_layer_is_reported_at_its_name_with_did_you_mean() {
    assert_config_error(
        &report1_with_line(3, "Conv3D filters=16 kernel=3x3"),
        3,
        1,
        "unknown layer `Conv3D`; did you mean `Conv2D`?",
    );
}

#[test]
fn unknown_key_is_reported_at_the_key_with_a_suggestion() {
    assert_config_error(
        &report1_with_line(3, "Conv2D filter=16 kernel=3x3"),
        3,
        8,
        "unknown key `filter` for Conv2D; did you mean `filters`?",
    );
}

#[test]
fn missing_required_key_is_reported_at_the_layer_name() {
    assert_config_error(
        &report1_with_line(5, "Dense activation=relu"),
        5,
        1,
        "Dense is missing the required key `units`",
    );
}

#[test]
fn malformed_kernel_3y3_is_reported_at_its_value() {
    assert_config_error(
        &report1_with_line(3, "Conv2D filters=16 kernel=3y3"),
        3,
        26,
        "`kernel` must be a size like `3x3` or `3`",
    );
}

#[test]
fn negative_filters_is_reported_at_its_value() {
    assert_config_error(
        &report1_with_line(3, "Conv2D filters=-1 kernel=3"),
        3,
        16,
        "`filters` must be a whole number from 1 to 1,000,000, found `-1`",
    );
}

#[test]
fn stride_zero_is_reported_at_its_value() {
    assert_config_error(
        &report1_with_line(3, "Conv2D filters=1 kernel=3 stride=0"),
        3,
        34,
        "`stride` must be",
    );
}

#[test]
fn kernel_larger_than_its_input_is_reported_at_the_kernel() {
    assert_config_error(
        "1\nInput shape=1x4x4\nConv2D filters=2 kernel=5\n",
        3,
        25,
        "kernel 5 is larger than its (padded) input 4: this layer's input is (1, 4, 4)",
    );
}

#[test]
fn shape_shrinking_to_zero_is_reported_at_the_pool_that_no_longer_fits() {
    assert_config_error(
        "4\nInput shape=1x4x4\nMaxPool2D pool=2\nMaxPool2D pool=2\nMaxPool2D pool=2\n\
         Dense units=2\n",
        5,
        16,
        "this layer's input is (1, 1, 1)",
    );
}

#[test]
fn layer_count_mismatch_says_what_was_counted() {
    assert_config_error(
        &report1_with_line(1, "7"),
        1,
        1,
        "says 7, but there are 4 layer lines after `Input` (Conv2D, MaxPool2D, Dense, Dense) \
         and 1 implied Flatten (before the Dense on line 5)",
    );
}

#[test]
fn missing_input_line_is_reported_where_it_should_be() {
    assert_config_error(
        "1\nDense units=2\n",
        2,
        1,
        "missing Input line: expected `Input shape=CxHxW`",
    );
}

#[test]
fn empty_config_file_says_the_layer_count_is_missing() {
    assert_config_error("", 1, 1, "missing layer count");
}

#[test]
fn train_with_two_outputs_on_three_class_data_points_at_the_last_dense_units() {
    // A labels.txt folder with three classes.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut labels = String::new();
    for i in 0..9 {
        let name = format!("img{i}.png");
        write_png(&data.join(&name), i % 3, i);
        labels += &format!("{name} {}\n", i % 3);
    }
    write(&data, "labels.txt", &labels);
    let cfg = write(
        tmp.path(),
        "two.cfg",
        "2\nInput shape=1x8x8\nDense units=4 activation=relu\nDense units=2 activation=softmax\n",
    );
    let (code, _, stderr) = Train::new(&cfg, tmp.path().join("run"))
        .data(&data)
        .args(&["--epochs", "1"])
        .run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let want = format!(
        "error: {}:4:13: the output layer has units=2 but the dataset has 3 classes; set units=3",
        cfg.display()
    );
    assert_eq!(stderr.trim_end(), want);
    assert!(!tmp.path().join("run").exists(), "no run folder on error");
}

// ---------------------------------------------------------------------------------------
// train

#[test]
fn train_on_idx_folder_prints_one_line_per_epoch_and_fills_the_run_folder() {
    let (tmp, idx) = idx_dataset();
    let cfg = write(tmp.path(), "tiny.cfg", TINY);
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = Train::new(&cfg, &out)
        .data(&idx)
        .args(&["--epochs", "2"])
        .run();
    assert_eq!(code, 0, "{stderr}");
    let epoch_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch")).collect();
    assert_eq!(epoch_lines.len(), 2, "{stdout}");
    assert!(epoch_lines[0].starts_with("epoch   1/2  loss "), "{stdout}");
    assert!(epoch_lines[1].starts_with("epoch   2/2  loss "), "{stdout}");
    // The t10k files are the test set: each epoch line has a test score.
    assert!(
        epoch_lines.iter().all(|l| l.contains("test acc")),
        "{stdout}"
    );
    assert!(
        stdout.contains("test accuracy ") && stdout.contains("of 12)"),
        "{stdout}"
    );
    assert!(stderr.contains("(30 images)"), "{stderr}");
    for f in [
        "config.cfg",
        "metrics.csv",
        "metrics.jsonl",
        "model.safetensors",
        "checkpoint.safetensors",
        "loss.png",
    ] {
        assert!(out.join(f).is_file(), "{f} is missing from the run folder");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("config.cfg")).unwrap(),
        TINY
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    // The t10k files are the test set, and its columns say so (as the epoch lines do).
    assert_eq!(
        rows[0],
        "epoch,loss,accuracy,test_loss,test_accuracy,lr,seconds,images_per_second"
    );
    let jsonl = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert!(
        last["test_accuracy"].is_f64() && last.get("val_accuracy").is_none(),
        "{last}"
    );
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(
        rows[1].starts_with("1,") && rows[2].starts_with("2,"),
        "{csv}"
    );
    assert!(rows[1..].iter().all(|r| r.split(',').count() == 8), "{csv}");
    let jsonl = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 2);
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["loss"].as_f64().unwrap().is_finite(), "{line}");
    }
    let png = std::fs::read(out.join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn train_without_data_says_it_uses_the_built_in_demo_set() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "demo.cfg",
        "2\nInput shape=1x28x28\nConv2D filters=2 kernel=3x3 stride=2 activation=relu\n\
         Dense units=10 activation=softmax\n",
    );
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = Train::new(&cfg, &out).args(&["--epochs", "1"]).run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no --data given: training on the built-in demo set"),
        "{stderr}"
    );
    assert!(stdout.contains("epoch   1/1"), "{stdout}");
    assert!(stdout.contains("of 500)"), "{stdout}");
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn train_with_a_huge_learning_rate_diverges_with_exit_code_3() {
    let (tmp, idx) = idx_dataset();
    let cfg = write(tmp.path(), "tiny.cfg", TINY);
    let (code, _, stderr) = Train::new(&cfg, tmp.path().join("run"))
        .data(&idx)
        .args(&["--epochs", "3", "--batch-size", "1", "--lr", "1e30"])
        .run();
    assert_eq!(code, 3, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("error: training diverged"), "{stderr}");
    assert!(last.contains("learning rate"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// evaluate

#[test]
fn evaluate_prints_accuracy_confusion_matrix_and_per_class_report() {
    let (_tmp, idx, run_dir) = trained();
    let (code, stdout, stderr) = run(&[
        &"evaluate",
        &run_dir.join("model.safetensors"),
        &"--data",
        &idx,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(12 images)"), "{stdout}");
    assert!(stdout.contains("accuracy: "), "{stdout}");
    assert!(
        stdout.contains("confusion matrix (rows: true class, columns: predicted)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("precision    recall  f1-score   support"),
        "{stdout}"
    );
    assert!(stdout.contains("macro avg"), "{stdout}");
    // Rows of the matrix add up to the 4 test images of each of the classes 0, 1, 2.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("true \\ pred"))
        .skip(1)
        .take(3)
        .collect();
    for row in table {
        let counts: Vec<u64> = row
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 3, "{row}");
        assert_eq!(counts.iter().sum::<u64>(), 4, "{row}");
    }
}

#[test]
fn evaluate_json_has_accuracy_loss_confusion_matrix_and_per_class() {
    let (_tmp, idx, run_dir) = trained();
    let (code, stdout, stderr) = run(&[
        &"evaluate",
        &run_dir.join("model.safetensors"),
        &"--data",
        &idx,
        &"--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON value");
    let acc = v["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert!(v["loss"].as_f64().unwrap() > 0.0);
    assert!(v["confusion_matrix"].is_object() || v["confusion_matrix"].is_array());
    assert_eq!(v["per_class"].as_array().unwrap().len(), 3, "{stdout}");
    assert_eq!(v["images"].as_u64(), Some(12));
}

#[test]
fn evaluate_out_writes_confusion_matrix_csv_png_and_svg() {
    let (tmp, idx, run_dir) = trained();
    let out = tmp.path().join("eval");
    let (code, _, stderr) = run(&[
        &"evaluate",
        &run_dir.join("model.safetensors"),
        &"--data",
        &idx,
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let csv = std::fs::read_to_string(out.join("confusion_matrix.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header and 3 rows:\n{csv}");
    let png = std::fs::read(out.join("confusion_matrix.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(out.join("confusion_matrix.svg")).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
}

// ---------------------------------------------------------------------------------------
// predict

#[test]
fn predict_png_with_top_2_shows_two_classes_with_percentages() {
    let (tmp, _idx, run_dir) = trained();
    let img = tmp.path().join("img.png");
    write_png(&img, 0, 99);
    let (code, stdout, stderr) = run(&[
        &"predict",
        &run_dir.join("model.safetensors"),
        &img,
        &"--top",
        &"2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let prefix = format!("{}: ", img.display());
    assert!(lines[0].starts_with(&prefix), "{stdout}");
    let tops: Vec<&str> = lines[0][prefix.len()..].split(", ").collect();
    assert_eq!(tops.len(), 2, "{stdout}");
    assert!(tops.iter().all(|t| t.ends_with('%')), "{stdout}");
}

#[test]
fn predict_json_prints_one_object_per_line_with_input_class_and_probabilities() {
    let (tmp, _idx, run_dir) = trained();
    let a = tmp.path().join("a.png");
    let b = tmp.path().join("b.png");
    write_png(&a, 0, 98);
    write_png(&b, 1, 97);
    let (code, stdout, stderr) = run(&[
        &"predict",
        &run_dir.join("model.safetensors"),
        &a,
        &b,
        &"--top",
        &"2",
        &"--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, path) in lines.iter().zip([&a, &b]) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["input"].as_str(), Some(path.to_str().unwrap()));
        let probs = v["probabilities"].as_array().unwrap();
        assert_eq!(probs.len(), 2, "{line}");
        assert_eq!(v["class"], probs[0][0], "the class is the most probable");
        let (p0, p1) = (probs[0][1].as_f64().unwrap(), probs[1][1].as_f64().unwrap());
        assert!(p0 >= p1 && p1 >= 0.0 && p0 + p1 <= 1.0 + 1e-6, "{line}");
    }
}

#[test]
fn predict_on_an_idx_images_file_gives_one_line_per_image() {
    let (_tmp, idx, run_dir) = trained();
    let (code, stdout, stderr) = run(&[
        &"predict",
        &run_dir.join("model.safetensors"),
        &idx.join("t10k-images-idx3-ubyte"),
        &"--top",
        &"1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{stdout}");
    assert!(lines[0].contains("t10k-images-idx3-ubyte#0: "), "{stdout}");
    assert!(
        lines[11].contains("t10k-images-idx3-ubyte#11: "),
        "{stdout}"
    );
}

#[test]
fn predict_into_a_closed_pipe_stops_quietly_without_a_panic() {
    let (_tmp, idx, run_dir) = trained();
    // The reading end is closed before cnn starts, so its first line already fails, as with
    // `cnn predict ... | head -0`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(crate::common::BIN)
        .arg("predict")
        .arg(run_dir.join("model.safetensors"))
        .arg(idx.join("t10k-images-idx3-ubyte"))
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked at"), "{stderr}");
    assert_eq!(stderr, "", "nothing on stderr");
    // Ended by SIGPIPE (no exit code), as `head` expects of a producer.
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    }
}

// ---------------------------------------------------------------------------------------
// gradcheck

#[test]
fn gradcheck_of_a_smooth_network_passes_every_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "smooth.cfg",
        "3\nInput shape=1x6x6\nConv2D filters=2 kernel=3x3 activation=tanh\nAvgPool2D pool=2\n\
         Dense units=3 activation=softmax\n",
    );
    let (code, stdout, stderr) = run(&[&"gradcheck", &cfg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("layers."))
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.2.weight",
            "layers.2.bias"
        ]
    );
    assert!(rows.iter().all(|r| r.ends_with("  ok")), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// data info / export

#[test]
fn data_info_lists_a_missing_file_with_its_line_and_an_unlabelled_image() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_png(&data.join("a.png"), 0, 1);
    write_png(&data.join("b.png"), 1, 2);
    write_png(&data.join("stray.png"), 2, 3);
    write(
        &data,
        "labels.txt",
        "# classes: x, y\na.png 0\nmissing.png 1\nb.png 1\n",
    );
    let (code, stdout, stderr) = run(&[&"data", &"info", &data]);
    // Problems found make the exit code 1, so that a script sees them; the report is
    // printed all the same.
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: {}: 2 problems found, listed in the report above\n",
            data.display()
        )
    );
    assert!(stdout.contains("(labels.txt)"), "{stdout}");
    assert!(stdout.contains("2 problems:"), "{stdout}");
    let lt = data.join("labels.txt");
    assert!(
        stdout.contains(&format!(
            "{}:3: image file \"missing.png\" does not exist",
            lt.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}: image has no label",
            data.join("stray.png").display()
        )),
        "{stdout}"
    );
}

/// Every file in `dir` except labels.txt, as bytes.
fn exported_images(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn data_export_writes_per_class_pngs_and_an_offset_gives_disjoint_images() {
    let (tmp, idx) = idx_dataset();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    let export = |out: &Path, offset: &str| {
        run(&[
            &"data",
            &"export",
            &idx,
            &"--out",
            &out,
            &"--classes",
            &"0,1",
            &"--per-class",
            &"5",
            &"--offset",
            &offset,
        ])
    };
    let (code, stdout, stderr) = export(&first, "0");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote 10 images"), "{stdout}");
    let a = exported_images(&first);
    assert_eq!(a.len(), 10);
    let labels = std::fs::read_to_string(first.join("labels.txt")).unwrap();
    let entries: Vec<&str> = labels.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(entries.len(), 10, "{labels}");
    let ones = entries.iter().filter(|l| l.ends_with(" 1")).count();
    let zeros = entries.iter().filter(|l| l.ends_with(" 0")).count();
    assert_eq!((zeros, ones), (5, 5), "{labels}");
    // The export reads back as a dataset of 10 images.
    let (code, stdout, _) = run(&[&"data", &"info", &first]);
    assert_eq!(code, 0);
    assert!(stdout.contains("[all] 10 images, 1x8x8"), "{stdout}");

    let (code, _, stderr) = export(&second, "5");
    assert_eq!(code, 0, "{stderr}");
    let b = exported_images(&second);
    assert_eq!(b.len(), 10);
    for img in &b {
        assert!(
            !a.contains(img),
            "an image of the offset export is in the first one"
        );
    }
}

// ---------------------------------------------------------------------------------------
// usage and run-time errors

#[test]
fn unknown_subcommand_is_a_usage_error_with_exit_code_2() {
    cnn()
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unrecognized subcommand 'frobnicate'",
        ))
        .stderr(predicate::str::contains("panicked at").not());
}

#[test]
fn missing_argument_is_a_usage_error_with_exit_code_2() {
    cnn()
        .arg("summary")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("<CONFIG>"))
        .stderr(predicate::str::contains("panicked at").not());
    cnn()
        .arg("train")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("required"))
        .stderr(predicate::str::contains("panicked at").not());
}

#[test]
fn missing_config_file_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.cfg");
    let (code, stdout, stderr) = run(&[&"summary", &missing]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {}: ", missing.display())),
        "{stderr}"
    );
}

#[test]
fn data_pointing_to_a_missing_folder_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "tiny.cfg", TINY);
    let missing = tmp.path().join("no-such-data");
    let out = tmp.path().join("run");
    let (code, _, stderr) = Train::new(&cfg, &out).data(&missing).run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {}: ", missing.display())),
        "{stderr}"
    );
    assert!(!out.exists(), "no run folder on error");
}

#[test]
fn idx_file_with_a_wrong_magic_number_is_an_error_naming_the_file() {
    let (tmp, idx) = idx_dataset();
    let images = idx.join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&images).unwrap();
    bytes[..4].copy_from_slice(&[0x12, 0x34, 0x08, 0x03]);
    std::fs::write(&images, bytes).unwrap();
    let cfg = write(tmp.path(), "tiny.cfg", TINY);
    let (code, _, stderr) = Train::new(&cfg, tmp.path().join("run")).data(&idx).run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {}: not an IDX file", images.display())),
        "{stderr}"
    );
    assert!(stderr.contains("12 34 08 03"), "{stderr}");
}

#[test]
fn download_of_an_unknown_dataset_is_an_error() {
    let (code, _, err) = run(&[&"download", &"cifar100"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("expected mnist, fashion-mnist or cifar10"),
        "{err}"
    );
}

/// Offline: with CIFAR-10's files unpacked in the folder before (each of its size: sparse
/// files here), the command fetches nothing and says how to look at them.
#[test]
fn download_of_cifar10_already_unpacked_fetches_nothing() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("cifar10");
    std::fs::create_dir(&dir).unwrap();
    for i in 1..=6 {
        let name = match i {
            6 => "test_batch.bin".to_string(),
            i => format!("data_batch_{i}.bin"),
        };
        let f = std::fs::File::create(dir.join(name)).unwrap();
        f.set_len(30_730_000).unwrap();
    }
    write(&dir, "batches.meta.txt", "airplane\n");
    let (code, out, err) = run(&[&"download", &"cifar10", &"--dir", &dir]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("7 files of cifar10 in") && out.contains("already there, unpacked before"),
        "{out}"
    );
    assert!(
        out.contains(&format!("cnn data info {}", dir.display())),
        "{out}"
    );
    assert!(!err.contains("fetching"), "{err}");
}

/// Offline: with Fashion-MNIST already in the folder (Debian's copy in shared/data), the
/// command only checks the hashes, fetches nothing and says how to train.
#[test]
fn download_skips_files_already_in_place() {
    let Some(shared) = crate::shared::shared_data("fashion-mnist") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("fm");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&shared).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let (code, out, err) = run(&[&"download", &"fashion-mnist", &"--dir", &dir]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 already there"), "{out}");
    assert!(out.contains(&format!("--data {}", dir.display())), "{out}");
    assert!(!err.contains("fetching"), "{err}");
}
