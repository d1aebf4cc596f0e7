//! CIFAR-10's binary format through the command line: `cnn data info`, `cnn summary` of a
//! network for 3x32x32 images, `cnn train` for an epoch (its test set the folder's
//! `test_batch.bin`), `cnn evaluate` and `cnn predict` of a batch file, and the one-line
//! errors of a malformed file. The data is a tiny set the tests write (no download).

use crate::cifar::{cifar_records, write_cifar, RECORD};
use crate::command::Train;
use crate::common::run;
use crate::files::write_text;
use crate::runs::metrics;

/// A plain CNN for CIFAR-10's 3x32x32 images and 10 classes.
const CIFAR_NET: &str = "6
Input shape=3x32x32
Conv2D filters=4 kernel=3x3 padding=same activation=relu
MaxPool2D pool=2x2
Conv2D filters=8 kernel=3x3 padding=same activation=relu
MaxPool2D pool=2x2
Dense units=16 activation=relu
Dense units=10 activation=softmax
";

#[test]
fn data_info_reports_a_cifar_folder_split_by_split_with_its_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_cifar(&tmp.path().join("cifar10"), 40, 20);
    let (code, stdout, stderr) = run(&[&"data", &"info", &data]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for want in [
        "(CIFAR-10)",
        "classes: 10",
        "[train] 40 images, 3x32x32 (RGB)",
        "[test] 20 images, 3x32x32 (RGB)",
        "airplane",
        "truck",
        "no problems found",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
    // The class names of batches.meta.txt, when there is one.
    let names = "plane\ncar\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    write_text(&data, "batches.meta.txt", names);
    let (code, stdout, _) = run(&[&"data", &"info", &data]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(" plane ") && !stdout.contains("airplane"),
        "{stdout}"
    );
}

#[test]
fn a_plain_cnn_for_3x32x32_summarises_trains_an_epoch_evaluates_and_predicts_on_cifar_data() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let data = write_cifar(&d.join("cifar10"), 60, 20);
    let cfg = write_text(d, "cifar.cfg", CIFAR_NET);

    let (code, stdout, stderr) = run(&[&"summary", &cfg]);
    assert_eq!(code, 0, "{stderr}");
    for want in ["(4, 32, 32)", "(8, 16, 16)", "(8, 8, 8)", "(512)", "(10)"] {
        assert!(stdout.contains(want), "{want} in\n{stdout}");
    }

    let out = d.join("run");
    let stdout = Train::new(&cfg, &out)
        .data(&data)
        .args(&["--epochs", "1", "--batch-size", "8", "--lr", "0.05"])
        .args(&["--shift", "4", "--flip", "--erase", "0.5"])
        .ok();
    // The folder's test_batch.bin is the run's test set, as an IDX folder's t10k files are.
    assert!(stdout.contains("of 20), test loss"), "{stdout}");
    let epochs = metrics(&out);
    assert_eq!(epochs.len(), 1);
    assert!(epochs[0]["test_accuracy"].is_f64(), "{:?}", epochs[0]);

    let model = out.join("model.safetensors");
    let (code, stdout, stderr) = run(&[&"evaluate", &model, &"--data", &data, &"--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let accuracy = report["accuracy"].as_f64().unwrap();
    let last = epochs[0]["test_accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - last).abs() < 1e-9,
        "{accuracy} vs the run's {last}"
    );

    // Every image of a batch file, named FILE#i; the classes are CIFAR-10's.
    let batch = data.join("test_batch.bin");
    let (code, stdout, stderr) = run(&[&"predict", &model, &batch, &"--top", &"1"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 20, "{stdout}");
    assert!(
        lines[19].starts_with(&format!("{}#19: ", batch.display())),
        "{stdout}"
    );
    let names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    assert!(
        lines.iter().all(|l| names.iter().any(|n| l.contains(n))),
        "{stdout}"
    );
}

/// The built-in `cifar-resnet` example: its summary, and one epoch with its own `Train` and
/// `Augment` lines (the epoch count and the warm-up given on the command line) on a small
/// CIFAR-format set. (Its gradient check is `cnn gradcheck` on every shipped example, in
/// tests/cli/gradcheck_examples.rs.)
#[test]
fn the_cifar_resnet_example_summarises_and_trains_an_epoch_with_its_settings_on_cifar_data() {
    let (code, stdout, stderr) = run(&[&"summary", &"cifar-resnet"]);
    assert_eq!(code, 0, "{stderr}");
    for want in [
        "   Input 3x32x32",
        " 6 Shortcut from -5 relu                 5,1    (16, 32, 32)",
        "11 Route -5                              6      (16, 32, 32)",
        "12 Conv2D 32 1x1 stride 2 valid no bias  -      (32, 16, 16)",
        "14 Shortcut from -4 relu                 13,10  (32, 16, 16)",
        "22 Shortcut from -4 relu                 21,18  (64, 8, 8)",
        "23 GlobalAvgPool2D                       -      (64)",
        "24 Dense 10 softmax                      -      (10)",
        "Total params: 78,042",
        "Augment shift=4 flip=horizontal erase=0.5",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let data = write_cifar(&tmp.path().join("cifar10"), 48, 20);
    let out = tmp.path().join("run");
    let stdout = Train::new("cifar-resnet", &out)
        .data(&data)
        .args(&["--epochs", "1", "--warmup", "0", "--batch-size", "16"])
        .ok();
    assert!(stdout.contains("of 20), test loss"), "{stdout}");
    let epochs = metrics(&out);
    assert_eq!(epochs.len(), 1);
    assert!(
        epochs[0]["loss"].as_f64().unwrap().is_finite(),
        "{:?}",
        epochs[0]
    );
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    for (key, want) in [
        ("optimizer", serde_json::json!("nesterov")),
        ("lr", serde_json::json!(0.1)),
        ("weight_decay", serde_json::json!(5e-4)),
        ("schedule", serde_json::json!("cosine")),
        ("label_smoothing", serde_json::json!(0.1)),
        ("shift", serde_json::json!(4)),
        ("flip", serde_json::json!(true)),
        ("erase", serde_json::json!(0.5)),
    ] {
        assert_eq!(run[key], want, "{key} in {run}");
    }
}

#[test]
fn a_malformed_cifar_file_is_one_line_naming_the_file_and_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_cifar(&tmp.path().join("cifar10"), 20, 10);
    let cfg = write_text(tmp.path(), "cifar.cfg", CIFAR_NET);
    let batch = data.join("data_batch_1.bin");

    // Cut short in record 5.
    let bytes = std::fs::read(&batch).unwrap();
    std::fs::write(&batch, &bytes[..5 * RECORD + 1000]).unwrap();
    let (code, _, stderr) = Train::new(&cfg, tmp.path().join("run")).data(&data).run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let want = format!(
        "error: {}: 16,365 bytes is not a whole number of 3,073-byte records (a label byte \
         and 3,072 pixel bytes): record 5 (byte offset 15,365) is cut short after 1000 bytes",
        batch.display()
    );
    assert!(stderr.starts_with(&want), "{stderr}");

    // A label byte above 9: the data doctor lists it, with exit code 1.
    let mut labels: Vec<u8> = (0..20).map(|i| i % 10).collect();
    labels[3] = 10;
    std::fs::write(&batch, cifar_records(&labels, 1)).unwrap();
    let (code, stdout, _) = run(&[&"data", &"info", &data]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("data_batch_1.bin: record 3 (byte offset 9,219): label 10 is above 9"),
        "{stdout}"
    );
}
