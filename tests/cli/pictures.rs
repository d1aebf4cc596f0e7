//! What the pictures show, through the CLI: whole-epoch ticks, the held-out curve named for
//! what it is, a diverged sweep run drawn on the plot, the misclassified gallery's title and
//! size, the output layer of `cnn visualize` as one bar per class and its input picture as
//! the image is.

use std::path::Path;

use crate::bars::{bars_setup as setup, bars_sweep_with_a_divergence, bars_train};
use crate::command::cnn;

/// What every `cnn train` of this file passes unless a test gives it.
const DEFAULTS: [[&str; 2]; 1] = [["--batch-size", "8"]];

/// The texts of an SVG file, in order.
fn svg_texts(path: &Path) -> Vec<(String, String)> {
    let svg = std::fs::read_to_string(path).unwrap();
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let (attrs, rest) = t.split_once('>').unwrap();
            let body = rest.split("</text>").next().unwrap().trim().to_string();
            (attrs.to_string(), body)
        })
        .collect()
}

/// The x-axis tick labels of a chart written by `cnn`: the numbers centred under the plot
/// (plotters writes them centred, hanging from their top, as it does the title only).
fn x_tick_labels(svg: &Path) -> Vec<String> {
    svg_texts(svg)
        .into_iter()
        .filter(|(attrs, body)| {
            attrs.contains(r#"text-anchor="middle""#)
                && attrs.contains(r#"dy="0.76em""#)
                && body.parse::<f64>().is_ok()
        })
        .map(|(_, body)| body)
        .collect()
}

#[test]
fn a_one_epoch_run_labels_its_x_axis_with_that_epoch_only() {
    let (dir, _) = setup();
    let run = dir.path().join("run");
    bars_train(dir.path(), "run")
        .defaults(&DEFAULTS)
        .args(&["--epochs", "1"])
        .ok();
    for chart in ["loss.svg", "accuracy.svg"] {
        assert_eq!(x_tick_labels(&run.join(chart)), ["1"], "{chart}");
    }
}

#[test]
fn a_three_epoch_run_labels_its_x_axis_with_whole_epochs() {
    let (dir, _) = setup();
    let run = dir.path().join("run");
    bars_train(dir.path(), "run")
        .defaults(&DEFAULTS)
        .args(&["--epochs", "3"])
        .ok();
    assert_eq!(x_tick_labels(&run.join("loss.svg")), ["1", "2", "3"]);
}

#[test]
fn a_val_split_run_calls_its_held_out_curve_validation() {
    let (dir, _) = setup();
    let run = dir.path().join("run");
    bars_train(dir.path(), "run")
        .defaults(&DEFAULTS)
        .args(&["--epochs", "1", "--val-split", "0.2"])
        .ok();
    for chart in ["loss.svg", "accuracy.svg"] {
        let names: Vec<String> = svg_texts(&run.join(chart))
            .into_iter()
            .map(|(_, body)| body)
            .collect();
        assert!(
            names.iter().any(|n| n == "validation"),
            "{chart}: {names:?}"
        );
        assert!(!names.iter().any(|n| n == "test"), "{chart}: {names:?}");
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("| validation loss | validation accuracy (%) |"),
        "{report}"
    );
    assert!(!report.contains("test loss"), "{report}");
}

#[test]
fn a_run_with_a_test_set_calls_its_held_out_curve_test() {
    let (dir, _) = setup();
    let run = dir.path().join("run");
    // An IDX folder brings its own test split (t10k-*).
    bars_train(dir.path(), "run")
        .defaults(&DEFAULTS)
        .args(&["--epochs", "1"])
        .ok();
    let names: Vec<String> = svg_texts(&run.join("loss.svg"))
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    assert!(names.iter().any(|n| n == "test"), "{names:?}");
    assert!(!names.iter().any(|n| n == "validation"), "{names:?}");
}

#[test]
fn a_sweep_draws_the_diverged_run_where_it_diverged() {
    let (dir, _) = setup();
    let out = dir.path().join("sweep");
    bars_sweep_with_a_divergence(dir.path(), "sweep");
    let texts: Vec<String> = svg_texts(&out.join("loss.svg"))
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    // On the plot, beside its cross, and in the legend.
    assert!(
        texts.iter().any(|t| t == "lr 1000: diverged in epoch 1"),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t == "lr 1000 (diverged)"), "{texts:?}");
    assert_eq!(x_tick_labels(&out.join("loss.svg")), ["1", "2"]);
}

#[test]
fn evaluate_out_writes_a_titled_gallery_of_enlarged_misclassified_images() {
    let (dir, data) = setup();
    let run = dir.path().join("run");
    // Barely trained: many test images are wrong.
    bars_train(dir.path(), "run")
        .defaults(&DEFAULTS)
        .args(&["--epochs", "1", "--lr", "0.0001"])
        .ok();
    let out = dir.path().join("eval");
    cnn()
        .arg("evaluate")
        .arg(run.join("model.safetensors"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let img = image::open(out.join("misclassified.png"))
        .unwrap()
        .to_rgb8();
    // 8x8 images are enlarged to 112x112, each in a grey frame, under a title line.
    assert!(img.height() >= 112 + 40, "{}x{}", img.width(), img.height());
    let grey_run = (0..img.width())
        .map(|x| {
            (0..img.height())
                .filter(|&y| img.get_pixel(x, y).0 == [170, 170, 170])
                .count()
        })
        .max()
        .unwrap();
    assert!(
        grey_run >= 114,
        "a frame side at least 114 px high (112 + 2), got {grey_run}"
    );
    // The images start below 40 px: the dark pixels above are the title's.
    let title_ink = (0..40)
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
        .count();
    assert!(title_ink > 200, "a title line: {title_ink} dark pixels");
}

#[test]
fn visualize_draws_the_output_layer_as_one_bar_per_class() {
    let (dir, _) = setup();
    let run = dir.path().join("run");
    bars_train(dir.path(), "run")
        .defaults(&DEFAULTS)
        .args(&["--epochs", "3"])
        .ok();
    let img = dir.path().join("x.png");
    image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x == 5 { 220 } else { 0 }]))
        .save(&img)
        .unwrap();
    let out = dir.path().join("vis");
    let result = cnn()
        .arg("visualize")
        .arg(run.join("model.safetensors"))
        .arg(&img)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&result.get_output().stdout).to_string();
    // "x.png: predicted 1 (87.3%)"
    let percent: f64 = stdout
        .split('(')
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let bars = image::open(out.join("layer3-dense.png")).unwrap().to_rgb8();
    // The predicted class's bar is the one blue bar; 100% is 420 pixels long.
    let blue = [31, 119, 180];
    let longest = (0..bars.height())
        .map(|y| {
            (0..bars.width())
                .filter(|&x| bars.get_pixel(x, y).0 == blue)
                .count()
        })
        .max()
        .unwrap();
    let want = percent / 100.0 * 420.0;
    assert!(
        (longest as f64 - want).abs() <= 3.0,
        "bar of {longest} px for {percent}% (want {want:.0})"
    );
    // The hidden Dense layer is a bar chart too, not a one-pixel strip.
    let hidden = image::open(out.join("layer2-dense.png")).unwrap();
    assert!(hidden.height() >= 300, "{}", hidden.height());
}

#[test]
fn visualize_draws_the_input_as_it_is_whatever_the_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    // Three classes of 8x8 colour images, trained with --normalize: each channel gets its own
    // mean and spread, which the input picture must not show.
    let data = dir.path().join("colours");
    for (c, base) in [[200u8, 60, 60], [60, 200, 60], [60, 60, 200]]
        .iter()
        .enumerate()
    {
        let class = data.join(format!("c{c}"));
        std::fs::create_dir_all(&class).unwrap();
        for i in 0..6u8 {
            image::RgbImage::from_fn(8, 8, |x, y| {
                let d = ((x + y) as u8 * 3).wrapping_add(i * 5);
                image::Rgb([base[0] ^ d, base[1] ^ d, base[2] ^ d])
            })
            .save(class.join(format!("{i}.png")))
            .unwrap();
        }
    }
    let cfg = dir.path().join("rgb.cfg");
    std::fs::write(
        &cfg,
        "3\nInput shape=3x8x8\nConv2D filters=2 kernel=3x3 padding=same activation=relu\n\
         MaxPool2D pool=2\nDense units=3 activation=softmax\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    cnn()
        .args([
            "train".as_ref(),
            cfg.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
        ])
        .args(["--epochs", "1", "--batch-size", "6", "--normalize", "--out"])
        .arg(&run)
        .assert()
        .success();
    let img = dir.path().join("probe.png");
    image::RgbImage::from_pixel(8, 8, image::Rgb([135, 127, 156]))
        .save(&img)
        .unwrap();
    let out = dir.path().join("vis");
    cnn()
        .arg("visualize")
        .arg(run.join("model.safetensors"))
        .arg(&img)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let drawn = image::open(out.join("input.png")).unwrap().to_rgb8();
    let (w, h) = drawn.dimensions();
    // The middle of the picture's top half is inside the image (the caption is below it).
    assert_eq!(drawn.get_pixel(w / 2, h / 3).0, [135, 127, 156]);
}
