//! The reports' experiments and the pictures every run leaves behind: sweep, report.md,
//! evaluate's files and JSON (checked against a confusion matrix computed here), visualize.

use std::path::Path;

use crate::bars::{bars_setup as setup, bars_sweep_with_a_divergence, bars_train};
use crate::command::cnn;

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn a_learning_rate_sweep_overlays_the_runs_and_marks_the_diverged_one() {
    let (dir, _) = setup();
    let out = dir.path().join("sweep");
    let stdout = bars_sweep_with_a_divergence(dir.path(), "sweep");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(row("lr0.05-epochs2").ends_with("ok"), "{stdout}");
    assert!(row("lr1000-epochs2").ends_with("diverged"), "{stdout}");
    assert_eq!(png_size(&out.join("loss.png")), (800, 500));
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("(diverged)"));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv
        .lines()
        .any(|l| l.starts_with("lr1000-epochs2,1000,2,") && l.ends_with(",diverged")));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("![loss per epoch](loss.png)") && report.contains("diverged"));
    // Each run has its own folder with its own report.
    let run_report = std::fs::read_to_string(out.join("lr0.05-epochs2/report.md")).unwrap();
    assert!(run_report.contains("Test accuracy") && run_report.contains("| 2 |"));
}

#[test]
fn an_epoch_sweep_times_each_epoch_count_by_the_programs_clock() {
    let (dir, data) = setup();
    let out = dir.path().join("sweep");
    let result = cnn()
        .arg("sweep")
        .arg(dir.path().join("net.cfg"))
        .arg("--data")
        .arg(&data)
        .args([
            "--lr",
            "0.05",
            "--epochs",
            "1,3",
            "--batch-size",
            "8",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8(result.get_output().stdout.clone()).unwrap();
    assert!(
        stdout.lines().any(|l| l.starts_with("lr0.05-epochs1 ")),
        "{stdout}"
    );
    // The table's seconds are the sum of the run's own per-epoch clock readings.
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    for (run, epochs) in [("lr0.05-epochs1", 1), ("lr0.05-epochs3", 3)] {
        let row = csv.lines().find(|l| l.starts_with(run)).unwrap();
        let table_seconds: f64 = row.split(',').nth(5).unwrap().parse().unwrap();
        let metrics = std::fs::read_to_string(out.join(run).join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), epochs + 1);
        let summed: f64 = metrics
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(6).unwrap().parse::<f64>().unwrap())
            .sum();
        assert!(summed > 0.0, "{metrics}");
        assert!(
            (table_seconds - summed).abs() < 1e-3 * epochs as f64,
            "{table_seconds} vs {summed}"
        );
    }
}

#[test]
fn evaluate_json_agrees_with_a_confusion_matrix_computed_here() {
    let (dir, data) = setup();
    let run = dir.path().join("run");
    bars_train(dir.path(), "run")
        .args(&["--epochs", "2", "--lr", "0.05", "--batch-size", "8"])
        .ok();
    let model = run.join("model.safetensors");
    for name in [
        "loss.png",
        "accuracy.png",
        "loss.svg",
        "accuracy.svg",
        "report.md",
    ] {
        assert!(run.join(name).is_file(), "{name} missing");
    }
    assert_eq!(png_size(&run.join("loss.png")), (800, 500));

    // Independently: load the model and the test split with the library, predict each image
    // one at a time, and count.
    let (mut m, meta) = cnn::model_file::load(&model).unwrap();
    let ds = cnn::data::load(
        &data,
        &cnn::data::LoadOptions::split(cnn::data::Split::Test),
    )
    .unwrap();
    let mut counts = vec![vec![0u64; 3]; 3];
    for i in 0..ds.len() {
        let mut x = cnn::Tensor::default();
        let mut labels = Vec::new();
        ds.batch(&[i], &meta.normalization, &mut x, &mut labels);
        let p = m.predict_proba(&x).unwrap();
        counts[labels[0]][cnn::model::argmax(p.data())] += 1;
    }
    let correct: u64 = (0..3).map(|k| counts[k][k]).sum();

    let out = dir.path().join("eval");
    let result = cnn()
        .arg("evaluate")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--json")
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&result.get_output().stdout).unwrap();
    let flat: Vec<u64> = json["confusion_matrix"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(flat, counts.concat());
    let acc = json["accuracy"].as_f64().unwrap();
    assert!((acc - correct as f64 / 30.0).abs() < 1e-12);
    for (k, row) in json["per_class"].as_array().unwrap().iter().enumerate() {
        let tp = counts[k][k] as f64;
        let predicted: u64 = (0..3).map(|t| counts[t][k]).sum();
        let support: u64 = counts[k].iter().sum();
        let precision = if predicted == 0 {
            0.0
        } else {
            tp / predicted as f64
        };
        let recall = tp / support as f64;
        assert!((row["precision"].as_f64().unwrap() - precision).abs() < 1e-12);
        assert!((row["recall"].as_f64().unwrap() - recall).abs() < 1e-12);
        assert_eq!(row["support"].as_u64().unwrap(), support);
    }
    let csv = std::fs::read_to_string(out.join("confusion_matrix.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    let (w, h) = png_size(&out.join("confusion_matrix.png"));
    assert!(w >= 180 && h >= 180, "{w}x{h}");
    assert!(std::fs::read_to_string(out.join("confusion_matrix.svg"))
        .unwrap()
        .contains("<svg"));
}

#[test]
fn visualize_writes_the_filters_and_every_layers_activations() {
    let (dir, _) = setup();
    let run = dir.path().join("run");
    bars_train(dir.path(), "run")
        .args(&["--epochs", "1", "--batch-size", "8"])
        .ok();
    let img = dir.path().join("x.png");
    crate::files::write_png(&img, 8, 8, |x, _| if x == 5 { 220 } else { 0 });
    let out = dir.path().join("vis");
    cnn()
        .arg("visualize")
        .arg(run.join("model.safetensors"))
        .arg(&img)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("predicted"));
    for name in [
        "input.png",
        "filters.png",
        "layer0-conv2d.png",
        "layer1-maxpool2d.png",
        "layer2-dense.png",
        "layer3-dense.png",
    ] {
        let (w, h) = png_size(&out.join(name));
        assert!(w > 8 && h > 8, "{name}: {w}x{h}");
    }
}
