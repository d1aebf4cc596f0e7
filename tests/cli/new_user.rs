//! Problems found by trying the tool as a new user would, each reproduced through
//! the `cnn` command, checking stderr and the exit code (0 ok, 1 error, 2 bad usage).
//!
//! Models are trained here, in well under a second each: a tiny 1x28x28 network on the
//! built-in Fashion-MNIST demo set, and a tiny 1x8x8 network on class folders of synthetic
//! images whose classes are easy to tell apart.

use std::path::{Path, PathBuf};

use crate::command::Train;
use crate::common::run;
use crate::files::{write_idx, write_text as write};
use crate::stripes::{stripes_image, write_stripes_png as write_png};

use serde_json::Value;
use tempfile::TempDir;

/// Asserts that `stderr` is exactly one line, `error: ...`.
fn one_error_line(stderr: &str) {
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("Usage:"), "{stderr}");
}

// ------------------------------------------------------------------------ a Fashion model

/// A tiny network for 1x28x28 Fashion-MNIST images.
const FASHION_CFG: &str = "3
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=2 activation=relu
MaxPool2D pool=2x2
Dense units=10 activation=softmax
";

/// Trains [`FASHION_CFG`] on the built-in demo set; returns (tmp, model file).
fn fashion_model() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    Train::new(tmp.path().join("fashion.cfg"), &out)
        .config(FASHION_CFG)
        .args(&["--epochs", "8", "--lr", "0.05"])
        .ok();
    (tmp, out.join("model.safetensors"))
}

/// Fashion-MNIST from `../shared/data` when it is there (the data the problem was found on),
/// else the built-in demo set, which is a subset of it.
fn fashion_data() -> PathBuf {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fashion-mnist");
    if shared.is_dir() {
        shared
    } else {
        PathBuf::from("demo")
    }
}

/// `evaluate --json` of `model` on `data`.
fn evaluate_json(model: &Path, data: &Path) -> Value {
    let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--data", &data, &"--json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("evaluate --json prints JSON")
}

/// `predict --json --top 1` of `model` on `inputs`: (input, predicted class) per line.
fn predictions(model: &Path, inputs: &Path) -> Vec<(String, String)> {
    let (code, stdout, stderr) = run(&[&"predict", &model, &inputs, &"--json", &"--top", &"1"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["input"].as_str().unwrap().to_string(),
                v["class"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Row sums of the JSON confusion matrix, by class name.
fn row_sums(report: &Value) -> Vec<(String, u64)> {
    let cm = &report["confusion_matrix"];
    let classes: Vec<String> = cm["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let counts: Vec<u64> = cm["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let n = classes.len();
    classes
        .into_iter()
        .enumerate()
        .map(|(t, c)| (c, counts[t * n..(t + 1) * n].iter().sum()))
        .collect()
}

#[test]
fn evaluating_a_fashion_model_on_an_export_of_bags_and_ankle_boots_scores_it_by_class_name() {
    let (tmp, model) = fashion_model();
    let sub = tmp.path().join("sub");
    let (code, _, stderr) = run(&[
        &"data",
        &"export",
        &fashion_data(),
        &"--split",
        &"test",
        &"--classes",
        &"8,9",
        &"--per-class",
        &"50",
        &"--out",
        &sub,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report = evaluate_json(&model, &sub);

    // The true classes are Bag and Ankle boot, 50 each, not the model's classes 0 and 1.
    let rows = row_sums(&report);
    for (class, n) in &rows {
        let want = if class == "Bag" || class == "Ankle boot" {
            50
        } else {
            0
        };
        assert_eq!(*n, want, "row {class}: {rows:?}");
    }
    // The accuracy is predict's, image by image: labels.txt says 0 = Bag, 1 = Ankle boot.
    let listing = std::fs::read_to_string(sub.join("labels.txt")).unwrap();
    assert!(
        listing.starts_with("# classes: Bag, Ankle boot\n"),
        "{listing}"
    );
    let truth: std::collections::HashMap<String, &str> = listing
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (file, label) = l.split_once(' ').unwrap();
            let name = if label == "0" { "Bag" } else { "Ankle boot" };
            (sub.join(file).display().to_string(), name)
        })
        .collect();
    let predicted = predictions(&model, &sub);
    assert_eq!(predicted.len(), 100);
    let right = predicted
        .iter()
        .filter(|(input, class)| truth[input] == class)
        .count();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert_eq!(accuracy, right as f64 / 100.0, "evaluate against predict");
    // Bags and ankle boots are easy: a trained model gets most, where matching by position
    // scored 0%.
    assert!(accuracy > 0.5, "accuracy {accuracy}");
}

// -------------------------------------------------------------- class folders of 8x8 images

/// A 1x8x8 network with one output per class.
const TINY_CFG: &str = "3
Input shape=1x8x8
Conv2D filters=2 kernel=3x3 activation=relu
MaxPool2D pool=2
Dense units=3 activation=softmax
";

/// Class folders under `root`, one per `(folder name, pattern)`, `n` images each, numbered
/// from `first`.
fn class_folders(root: &Path, classes: &[(&str, usize)], n: usize, first: usize) {
    for (name, pattern) in classes {
        for i in first..first + n {
            write_png(&root.join(name).join(format!("{i:03}.png")), *pattern, i);
        }
    }
}

/// Trains [`TINY_CFG`] on class folders `a`, `b`, `c`; returns (tmp, model file).
fn folder_model() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train");
    class_folders(&data, &[("a", 0), ("b", 1), ("c", 2)], 12, 0);
    let out = tmp.path().join("run");
    Train::new(tmp.path().join("tiny.cfg"), &out)
        .config(TINY_CFG)
        .data(&data)
        .args(&["--epochs", "15", "--batch-size", "4", "--lr", "0.1"])
        .ok();
    (tmp, out.join("model.safetensors"))
}

#[test]
fn class_folders_with_one_class_missing_are_scored_by_class_name() {
    let (tmp, model) = folder_model();
    let data = tmp.path().join("no-a");
    class_folders(&data, &[("b", 1), ("c", 2)], 6, 100);
    let report = evaluate_json(&model, &data);
    assert_eq!(
        row_sums(&report),
        [
            ("a".to_string(), 0),
            ("b".to_string(), 6),
            ("c".to_string(), 6)
        ]
    );
    let predicted = predictions(&model, &data);
    let right = predicted
        .iter()
        .filter(|(input, class)| Path::new(input).parent().unwrap().ends_with(class))
        .count();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert_eq!(accuracy, right as f64 / 12.0, "evaluate against predict");
    assert!(accuracy > 0.5, "accuracy {accuracy}: the classes are easy");
}

#[test]
fn train_test_data_with_one_class_missing_is_scored_by_class_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train");
    class_folders(&data, &[("a", 0), ("b", 1), ("c", 2)], 12, 0);
    let test = tmp.path().join("no-a");
    class_folders(&test, &[("b", 1), ("c", 2)], 6, 100);
    let out = tmp.path().join("run");
    Train::new(tmp.path().join("tiny.cfg"), &out)
        .config(TINY_CFG)
        .data(&data)
        .args(&["--test-data", test.to_str().unwrap()])
        .args(&["--epochs", "15", "--batch-size", "4", "--lr", "0.1"])
        .ok();
    // The run's last test accuracy equals evaluate's on the same data, which matches labels
    // by name; matched by position, b and c would be scored as a and b.
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    let report = evaluate_json(&out.join("model.safetensors"), &test);
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.5, "accuracy {accuracy}: the classes are easy");
    assert!(
        (last["test_accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-9,
        "train's test accuracy {} against evaluate's {accuracy}",
        last["test_accuracy"]
    );
}

#[test]
fn a_class_the_model_does_not_know_is_a_one_line_error_naming_it_and_the_data() {
    let (tmp, model) = folder_model();
    let data = tmp.path().join("zebra");
    class_folders(&data, &[("b", 1), ("zebra", 2)], 2, 100);
    let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--data", &data]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "");
    // b matches; zebra could be a or c: which one, the names cannot say.
    assert_eq!(
        stderr,
        format!(
            "error: {}: class \"zebra\" is not one of the model's classes (a, b, c); the \
             model's classes that no name matched (\"a\", \"c\") cannot be paired with it one to \
             one\n",
            data.display()
        )
    );
}

// -------------------------------------------------------------------------- bad arguments

#[test]
fn predict_top_0_is_refused_with_exit_2_before_anything_is_read() {
    // The model does not exist: the argument is refused first.
    let (code, stdout, stderr) = run(&[
        &"predict",
        &"no-model.safetensors",
        &"x.png",
        &"--top",
        &"0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "error: invalid value '0' for '--top <TOP>': must be at least 1 (see cnn predict --help)\n"
    );
}

#[test]
fn bench_runs_0_is_refused_with_exit_2_before_anything_is_read() {
    let (code, stdout, stderr) = run(&[&"bench", &"no-such.cfg", &"--runs", &"0"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "error: invalid value '0' for '--runs <RUNS>': must be at least 1 (see cnn bench --help)\n"
    );
}

#[test]
fn a_negative_count_parses_and_is_refused_as_not_positive() {
    for (args, option) in [
        (vec!["predict", "m", "x.png", "--top", "-1"], "--top <TOP>"),
        (
            vec!["bench", "c.cfg", "--batch-size", "-32"],
            "--batch-size <BATCH_SIZE>",
        ),
        (
            vec!["evaluate", "m", "--threads", "-2"],
            "--threads <THREADS>",
        ),
    ] {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{stderr}");
        one_error_line(&stderr);
        assert!(
            stderr.contains(&format!("for '{option}': must be positive")),
            "{stderr}"
        );
        assert!(!stderr.contains("-- -"), "no tip to use `--`: {stderr}");
    }
    let (code, _, stderr) = run(&[
        &"data",
        &"export",
        &"demo",
        &"--out",
        &"x",
        &"--offset",
        &"-3",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("must not be negative"), "{stderr}");
}

#[test]
fn threads_0_is_refused_with_exit_2_for_every_command_that_has_threads() {
    for cmd in ["train", "evaluate", "bench"] {
        let (code, stdout, stderr) = run(&[&cmd, &"no-such-file", &"--threads", &"0"]);
        assert_eq!(code, 2, "{cmd}: {stderr}");
        assert_eq!(stdout, "");
        one_error_line(&stderr);
        assert!(
            stderr.contains("'--threads <THREADS>': must be at least 1"),
            "{stderr}"
        );
    }
}

#[test]
fn usage_errors_are_one_line_that_points_to_the_subcommand_help() {
    let (code, _, stderr) = run(&[&"evaluate"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: the following required arguments were not provided: <MODEL> (see cnn evaluate \
         --help)\n"
    );
    let (code, _, stderr) = run(&[
        &"data",
        &"export",
        &"demo",
        &"--out",
        &"x",
        &"--clases",
        &"1",
    ]);
    assert_eq!(code, 2);
    one_error_line(&stderr);
    assert!(
        stderr.starts_with(
            "error: unexpected argument '--clases' found; a similar argument exists: '--classes'"
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(" (see cnn data export --help)\n"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[&"frobnicate"]);
    assert_eq!(code, 2);
    one_error_line(&stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{stderr}"
    );
}

#[test]
fn help_and_version_are_printed_as_clap_writes_them() {
    let (code, stdout, _) = run(&[&"--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("cnn {}\n", env!("CARGO_PKG_VERSION")));
    let (code, stdout, _) = run(&[&"evaluate", &"--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Usage: cnn evaluate [OPTIONS] <MODEL>"),
        "{stdout}"
    );
}

#[test]
fn every_subcommand_s_help_ends_with_examples_of_it() {
    for cmd in [
        "evaluate",
        "predict",
        "summary",
        "data info",
        "data export",
        "download",
        "bench",
        "visualize",
        "gradcheck",
        "examples",
    ] {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--help");
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        let examples = stdout
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("`cnn {cmd} --help` has no examples:\n{stdout}"));
        assert!(
            examples.starts_with(&format!("  cnn {cmd} ")),
            "cnn {cmd} --help:\n{stdout}"
        );
    }
}

// ----------------------------------------------------------- messages that say what to do

#[test]
fn an_image_of_the_wrong_size_is_refused_naming_resize() {
    let (tmp, model) = folder_model();
    let big = tmp.path().join("big.png");
    image::GrayImage::new(10, 10).save(&big).unwrap();
    let (code, _, stderr) = run(&[&"predict", &model, &big]);
    assert_eq!(code, 1);
    one_error_line(&stderr);
    assert!(
        stderr.contains("image is 10x10 (height x width), expected 8x8")
            && stderr.contains("pass --resize"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[&"predict", &model, &big, &"--resize"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn evaluate_without_data_on_a_model_that_is_not_for_the_demo_set_says_to_pass_data() {
    let (_tmp, model) = folder_model();
    let (code, _, stderr) = run(&[&"evaluate", &model]);
    assert_eq!(code, 1);
    one_error_line(&stderr);
    assert_eq!(
        stderr,
        "error: no --data given, and the built-in demo set (Fashion-MNIST, 1x28x28) does not fit \
         this model: its images are 1x28x28 and the model's input is 1x8x8; pass --data with the \
         data the model is for\n"
    );
}

#[test]
fn a_checkpoint_passed_as_a_model_is_used_for_its_weights() {
    let (_tmp, model) = folder_model();
    let checkpoint = model.with_file_name("checkpoint.safetensors");
    let (code, _, stderr) = run(&[&"evaluate", &checkpoint, &"--data", &"demo"]);
    // The 8x8 model and the 28x28 demo set: the checkpoint loaded, then the data was refused.
    assert_eq!(code, 1);
    assert!(stderr.contains("expected 8x8"), "{stderr}");
    assert!(!stderr.contains("optimizer"), "{stderr}");
    let img = model.with_file_name("one.png");
    write_png(&img, 1, 200);
    let from_model = run(&[&"predict", &model, &img]);
    let from_checkpoint = run(&[&"predict", &checkpoint, &img]);
    assert_eq!(from_checkpoint.0, 0, "{}", from_checkpoint.2);
    // The last checkpoint holds the final weights: the same prediction.
    assert_eq!(from_checkpoint.1, from_model.1);
}

#[test]
fn summary_of_a_model_file_summarises_its_embedded_config_and_lists_its_classes() {
    let (tmp, model) = folder_model();
    let cfg = tmp.path().join("tiny.cfg");
    let (code, of_config, stderr) = run(&[&"summary", &cfg]);
    assert_eq!(code, 0, "{stderr}");
    let (code, of_model, stderr) = run(&[&"summary", &model]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(of_model, format!("{of_config}Classes (3): a, b, c\n"));
    // Also when the file is not named .safetensors: told by its content.
    let renamed = tmp.path().join("model.bin");
    std::fs::copy(&model, &renamed).unwrap();
    assert_eq!(run(&[&"summary", &renamed]).1, of_model);
}

#[test]
fn a_truncated_model_file_is_said_to_be_truncated() {
    let (tmp, model) = folder_model();
    let bytes = std::fs::read(&model).unwrap();
    let cut = tmp.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    for cmd in ["predict", "summary"] {
        let (code, _, stderr) = if cmd == "predict" {
            run(&[&cmd, &cut, &"x.png"])
        } else {
            run(&[&cmd, &cut])
        };
        assert_eq!(code, 1, "{stderr}");
        one_error_line(&stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: {}: truncated or not a safetensors file: ",
                cut.display()
            )),
            "{stderr}"
        );
    }
}

#[test]
fn demo_is_a_dataset_name_for_data_info_train_test_data_and_evaluate() {
    let (code, stdout, stderr) = run(&[&"data", &"info", &"demo"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("[train] 2000 images, 1x28x28"), "{stdout}");
    assert!(stdout.contains("[test] 500 images, 1x28x28"), "{stdout}");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let stdout = Train::new(tmp.path().join("fashion.cfg"), &out)
        .config(FASHION_CFG)
        .data("demo")
        .args(&["--test-data", "demo", "--epochs", "1"])
        .ok();
    assert!(stdout.contains(" of 500)"), "{stdout}");
    let (code, stdout, stderr) = run(&[
        &"evaluate",
        &out.join("model.safetensors"),
        &"--data",
        &"demo",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(500 images)"), "{stdout}");
}

/// An IDX folder with only the test files (`t10k-*`), like ../shared/data/mnist: 4 images
/// of classes 0 and 1 in turn.
fn test_only_idx(dir: &Path) {
    let pixels: Vec<u8> = (0..4).flat_map(|i| stripes_image(i % 2, i)).collect();
    write_idx(dir, "t10k", 8, 8, &pixels, &[0, 1, 0, 1]);
}

#[test]
fn data_export_of_a_test_only_idx_folder_says_to_pass_split_test() {
    let tmp = tempfile::tempdir().unwrap();
    let mnist = tmp.path().join("mnist");
    test_only_idx(&mnist);
    let out = tmp.path().join("out");
    let (code, _, stderr) = run(&[&"data", &"export", &mnist, &"--out", &out]);
    assert_eq!(code, 1);
    one_error_line(&stderr);
    assert!(
        stderr
            .contains("only holds the test set (t10k-*), not the training set; pass --split test"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
    let (code, stdout, stderr) = run(&[
        &"data", &"export", &mnist, &"--split", &"test", &"--out", &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("wrote 4 images"), "{stdout}");
}

#[test]
fn a_labels_txt_mixing_indices_and_names_is_a_problem_and_data_info_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for i in 0..4 {
        write_png(&data.join(format!("{i}.png")), i % 2, i);
    }
    write(
        &data,
        "labels.txt",
        "0.png cat\n1.png dog\n2.png 1\n3.png dog\n",
    );
    let (code, stdout, stderr) = run(&[&"data", &"info", &data]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: {}: 1 problem found, listed in the report above\n",
            data.display()
        )
    );
    assert!(stdout.contains("classes: 2\n"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{}:3: label \"1\" is a class index, but most lines use class names (line 1: \"cat\")",
            data.join("labels.txt").display()
        )),
        "{stdout}"
    );
    // Fixed, the same folder is clean: exit 0.
    write(
        &data,
        "labels.txt",
        "0.png cat\n1.png dog\n2.png dog\n3.png dog\n",
    );
    let (code, stdout, stderr) = run(&[&"data", &"info", &data]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with("no problems found\n"), "{stdout}");
}

#[test]
fn predict_on_a_folder_predicts_every_image_in_it_recursively_in_sorted_order() {
    let (tmp, model) = folder_model();
    let photos = tmp.path().join("photos");
    write_png(&photos.join("b.png"), 1, 1);
    write_png(&photos.join("a/2.png"), 0, 2);
    write_png(&photos.join("a/1.png"), 2, 3);
    write_png(&photos.join("a/deeper/x.png"), 1, 4);
    write(&photos, "notes.txt", "not an image");
    let got: Vec<String> = predictions(&model, &photos)
        .into_iter()
        .map(|(input, _)| input)
        .collect();
    let want: Vec<String> = ["a/1.png", "a/2.png", "a/deeper/x.png", "b.png"]
        .iter()
        .map(|f| photos.join(f).display().to_string())
        .collect();
    assert_eq!(got, want);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, stderr) = run(&[&"predict", &model, &empty]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "error: {}: holds no .png, .jpg, .jpeg or .bmp image (sub-folders included)\n",
            empty.display()
        )
    );
}

#[test]
fn gradcheck_entries_0_and_a_negative_batch_are_refused_with_exit_2() {
    for (flag, value, why) in [
        ("--entries", "0", "must be at least 1"),
        ("--batch", "-3", "must be positive"),
    ] {
        let (code, stdout, stderr) = run(&[&"gradcheck", &"examples/lenet.cfg", &flag, &value]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stdout, "");
        one_error_line(&stderr);
        assert!(stderr.contains(why), "{stderr}");
    }
}

#[test]
fn a_model_file_given_to_train_as_its_config_is_said_to_be_one_with_the_ways_on() {
    let (tmp, model) = folder_model();
    let (code, stdout, stderr) = run(&[&"train", &model]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "");
    one_error_line(&stderr);
    assert_eq!(
        stderr,
        format!(
            "error: {0}: is a model file (safetensors), not a network config; to train from \
             its weights, give its network and --init: `cnn train CONFIG --init {0}` (`cnn \
             summary {0}` shows the network stored in it)\n",
            model.display()
        )
    );
    // Any other file that is not text is said not to be.
    let binary = tmp.path().join("weights.bin");
    std::fs::write(&binary, [0x80, 0xff, 0, 1]).unwrap();
    let (code, _, stderr) = run(&[&"summary", &binary]);
    assert_eq!(code, 1, "{stderr}");
    one_error_line(&stderr);
    assert!(
        stderr.contains("is not a network config: not UTF-8 text (invalid byte at offset 0)"),
        "{stderr}"
    );
}

#[test]
fn predict_reads_every_readable_image_and_says_which_is_not_in_one_plain_line() {
    let (tmp, model) = folder_model();
    let photos = tmp.path().join("photos");
    write_png(&photos.join("a.png"), 0, 1);
    write_png(&photos.join("c.png"), 2, 2);
    // b.png: its IDAT chunk's length made wrong, so that its checksum does not match (the
    // decoder's own message printed `ChunkType { type: IDAT, critical: true, ... }`).
    let mut bad = std::fs::read(photos.join("a.png")).unwrap();
    let idat = bad.windows(4).position(|w| w == b"IDAT").unwrap();
    bad[idat - 4..idat].copy_from_slice(&5u32.to_be_bytes());
    std::fs::write(photos.join("b.png"), &bad).unwrap();
    let (code, stdout, stderr) = run(&[&"predict", &model, &photos, &"--top", &"1"]);
    assert_eq!(code, 1, "{stderr}");
    let inputs: Vec<&str> = stdout
        .lines()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    let name = |f: &str| photos.join(f).display().to_string();
    assert_eq!(inputs, [name("a.png"), name("c.png")], "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "error: {}: not a readable PNG (a checksum does not match: the file is damaged)\n",
            name("b.png")
        )
    );
    // A missing file among the inputs: the same.
    let (code, stdout, stderr) = run(&[
        &"predict",
        &model,
        &photos.join("nope.png"),
        &photos.join("a.png"),
    ]);
    assert_eq!(code, 1);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    one_error_line(&stderr);
    assert!(
        stderr.starts_with(&format!("error: {}: ", name("nope.png"))),
        "{stderr}"
    );
}

#[test]
fn predict_csv_has_a_header_and_a_row_per_class_shown() {
    let (tmp, model) = folder_model();
    let photos = tmp.path().join("my, photos");
    write_png(&photos.join("a.png"), 0, 1);
    write_png(&photos.join("b.png"), 1, 2);
    let (code, stdout, stderr) = run(&[&"predict", &model, &photos, &"--top", &"2", &"--csv"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "path,class,probability");
    assert_eq!(lines.len(), 1 + 2 * 2, "{stdout}");
    let quoted = |f: &str| format!("\"{}\"", photos.join(f).display());
    let json: Vec<Value> = run(&[&"predict", &model, &photos, &"--top", &"2", &"--json"])
        .1
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, (file, pred)) in [("a.png", &json[0]), ("b.png", &json[1])]
        .into_iter()
        .enumerate()
    {
        for rank in 0..2 {
            let row = lines[1 + 2 * i + rank];
            let (path, rest) = row
                .rsplit_once(',')
                .map(|(a, p)| (a.rsplit_once(',').unwrap(), p))
                .unwrap();
            assert_eq!(path.0, quoted(file), "{row}");
            assert_eq!(
                path.1,
                pred["probabilities"][rank][0].as_str().unwrap(),
                "{row}"
            );
            let p: f64 = rest.parse().unwrap();
            assert!(
                (p - pred["probabilities"][rank][1].as_f64().unwrap()).abs() < 1e-6,
                "{row}"
            );
        }
    }
    let (code, _, stderr) = run(&[&"predict", &model, &photos, &"--csv", &"--json"]);
    assert_eq!(code, 2, "{stderr}");
}

// --------------------------------------------------------- what loading and export skip

#[test]
fn images_no_label_reaches_are_counted_by_train_and_evaluate_naming_labels_txt() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("listed");
    class_folders(&data, &[("a", 0), ("b", 1), ("c", 2)], 4, 0);
    // labels.txt lists three of each class's four images; ./ in a path is the same file.
    let mut listing = String::new();
    for class in ["a", "b", "c"] {
        for i in 0..3 {
            listing += &format!("./{class}/{i:03}.png {class}\n");
        }
    }
    write(&data, "labels.txt", &listing);
    let labels = data.join("labels.txt");
    let out = tmp.path().join("run");
    let (code, _, stderr) = Train::new(tmp.path().join("tiny.cfg"), &out)
        .config(TINY_CFG)
        .data(&data)
        .args(&["--epochs", "1", "--batch-size", "3"])
        .run();
    assert_eq!(code, 0, "{stderr}");
    let said = format!(
        "3 images under {} are not listed in {}: skipped (cnn data info {0} lists them)",
        data.display(),
        labels.display()
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("training on "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        line,
        format!("training on {} (9 images); {said}", data.display())
    );
    let model = out.join("model.safetensors");
    let (code, _, stderr) = run(&[&"evaluate", &model, &"--data", &data]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, format!("note: {said}\n"));
    // data info reports the same three.
    let (_, stdout, _) = run(&[&"data", &"info", &data]);
    assert_eq!(stdout.matches("image has no label").count(), 3, "{stdout}");

    // Class folders with an image beside them.
    let folders = tmp.path().join("folders");
    class_folders(&folders, &[("a", 0), ("b", 1), ("c", 2)], 2, 0);
    write_png(&folders.join("stray.png"), 0, 9);
    let (code, _, stderr) = run(&[&"evaluate", &model, &"--data", &folders]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "note: 1 image under {} is outside the class folders (in no class): skipped (cnn \
             data info {0} lists it)\n",
            folders.display()
        )
    );
    // Nothing skipped, nothing said.
    std::fs::remove_file(folders.join("stray.png")).unwrap();
    let (code, _, stderr) = run(&[&"evaluate", &model, &"--data", &folders]);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn data_export_refuses_a_folder_that_is_not_empty_and_force_replaces_only_an_export() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let export = |extra: &[&str]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"data",
            &"export",
            &"demo",
            &"--classes",
            &"0,1",
            &"--out",
            &out,
        ];
        args.extend(extra.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        run(&args)
    };
    let (code, _, stderr) = export(&["--per-class", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let first = file_names(&out);
    assert_eq!(first.len(), 7, "{first:?}");
    // Again into the same folder: old and new would mix (3 + 2 per class, one labels.txt).
    let (code, stdout, stderr) = export(&["--per-class", "2", "--offset", "3"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    one_error_line(&stderr);
    assert_eq!(
        stderr,
        format!(
            "error: {}: is not empty, and new files would mix with the old: it holds a previous \
             export (its PNGs and labels.txt); pass --force to replace it\n",
            out.display()
        )
    );
    assert_eq!(file_names(&out), first);
    let (code, _, stderr) = export(&["--per-class", "2", "--offset", "3", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    let second = file_names(&out);
    assert_eq!(second.len(), 5, "only the new export: {second:?}");
    assert!(second
        .iter()
        .all(|f| !first.contains(f) || f == "labels.txt"));
    // A file an export does not write: refused, with --force too, and left alone.
    write(&out, "notes.md", "mine");
    for force in [false, true] {
        let (code, _, stderr) = export(if force { &["--force"] } else { &[] });
        assert_eq!(code, 2, "{stderr}");
        one_error_line(&stderr);
        assert!(stderr.contains("notes.md"), "{stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("notes.md")).unwrap(),
        "mine"
    );
    assert_eq!(file_names(&out).len(), 6);
}

#[test]
fn data_export_says_how_many_it_wrote_per_class_when_fewer_than_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (code, stdout, stderr) = run(&[
        &"data",
        &"export",
        &"demo",
        &"--classes",
        &"3,5",
        &"--per-class",
        &"2000",
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "wrote 400 images and labels.txt to {}\nfewer than --per-class 2000: 200 per class, \
             all the data has\n",
            out.display()
        )
    );
    let out = tmp.path().join("out2");
    let (code, stdout, _) = run(&[
        &"data",
        &"export",
        &"demo",
        &"--classes",
        &"3",
        &"--per-class",
        &"150",
        &"--offset",
        &"100",
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.ends_with(
            "fewer than --per-class 150: 100 per class, all the data has past --offset 100\n"
        ),
        "{stdout}"
    );
}

// ------------------------------------------------------------ labels matched by index

#[test]
fn a_fashion_model_on_digit_names_says_labels_were_taken_by_index() {
    let (tmp, model) = fashion_model();
    // Digits: IDX files at a path without "fashion", so their classes are "0" to "9".
    let digits = tmp.path().join("digits");
    let labels: Vec<u8> = (0..20).map(|i| i % 10).collect();
    let pixels: Vec<u8> = (0..20 * 784).map(|i| (i * 7 % 251) as u8).collect();
    write_idx(&digits, "t10k", 28, 28, &pixels, &labels);
    let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--data", &digits]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("data: "), "{stdout}");
    assert_eq!(
        stderr,
        "note: the data's class names (0, 1, 2, 3, 4, 5, 6, 7, 8, 9) match none of the model's \
         (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot): \
         labels were taken as the model's class indices (0 = T-shirt/top, 1 = Trouser, 2 = \
         Pullover, 3 = Dress, 4 = Coat, 5 = Sandal, 6 = Shirt, 7 = Sneaker, 8 = Bag, 9 = Ankle \
         boot)\n"
    );
    // The same note when train's --test-data is matched that way.
    let out = tmp.path().join("again");
    let (code, _, stderr) = Train::new(tmp.path().join("fashion.cfg"), &out)
        .args(&["--epochs", "1", "--test-data", digits.to_str().unwrap()])
        .run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("; test data: the data's class names (0, 1, 2, "),
        "{stderr}"
    );
}

#[test]
fn classes_some_of_which_match_and_the_rest_cannot_be_paired_are_refused() {
    let (tmp, model) = folder_model();
    let data = tmp.path().join("axy");
    class_folders(&data, &[("a", 0), ("x", 1), ("y", 2)], 2, 100);
    let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--data", &data]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "error: {}: classes \"x\", \"y\" are not among the model's classes (a, b, c); the \
             model's classes that no name matched (\"b\", \"c\") cannot be paired with them one \
             to one\n",
            data.display()
        )
    );
    // One class left on each side: paired, and said.
    let data = tmp.path().join("abz");
    class_folders(&data, &[("a", 0), ("b", 1), ("z", 2)], 2, 100);
    let (code, _, stderr) = run(&[&"evaluate", &model, &"--data", &data]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "note: class \"z\" is not one of the model's classes (a, b, c): its images were taken \
         as \"c\", the one class of the model that no other name matched\n"
    );
}

#[test]
fn one_epoch_is_one_epoch_and_one_image_one_image() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = Train::new(tmp.path().join("fashion.cfg"), &out)
        .config(FASHION_CFG)
        .args(&["--epochs", "1"])
        .run();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\ntrained 1 epoch in "), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains(", after 1 epoch in "), "{report}");
    // One image in a folder: evaluate's data line.
    let data = tmp.path().join("one");
    let pixels = vec![7u8; 784];
    write_idx(&data, "t10k", 28, 28, &pixels, &[3]);
    let (code, stdout, stderr) = run(&[
        &"evaluate",
        &out.join("model.safetensors"),
        &"--data",
        &data,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .ends_with(" (1 image; 1 of the model's 10 classes)"),
        "{stdout}"
    );
}
