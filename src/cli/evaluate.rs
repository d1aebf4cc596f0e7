//! `cnn evaluate MODEL --data DATA`: accuracy, loss, confusion matrix, per-class metrics.

use std::path::PathBuf;

use clap::Args;
use cnn::data::{self, Dataset, LoadOptions, Split};
use cnn::metrics::ConfusionMatrix;
use cnn::{model_file, train, Error};
use serde::Serialize;

use super::CmdResult;

#[derive(Debug, Args)]
#[command(
    after_help = "Labels are matched to the model's classes by name, so a subset of the \
    classes (an export with --classes, a folder with a class missing) is scored right. When no \
    name matches and one side's classes are bare indices (0, 1, ...), labels are taken as class \
    indices, and a note says so.\n\n\
    Examples:\n  \
    cnn evaluate runs/report1-10/model.safetensors\n  \
    cnn evaluate runs/fashion/model.safetensors --data ../shared/data/fashion-mnist --out runs/fashion/eval"
)]
pub struct EvaluateArgs {
    /// A model file written by `cnn train` (a checkpoint works too).
    model: PathBuf,
    /// The data: IDX folder (its t10k-* files) or file, CIFAR-10 folder (its test_batch.bin)
    /// or .bin file, labels.txt folder, class folders, or `demo`. Default: the built-in demo
    /// set's test images (for 1x28x28 Fashion-MNIST models).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print everything as one JSON object instead.
    #[arg(long)]
    json: bool,
    /// Also write confusion_matrix.csv, confusion_matrix.png/.svg and misclassified.png (a
    /// gallery of up to 32 misclassified images with their true and predicted classes) into
    /// this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Resize images whose size differs from the model's input.
    #[arg(long)]
    resize: bool,
    /// Classify each image also mirrored left to right and average the views' probabilities
    /// (test-time augmentation; right for clothes, wrong for digits).
    #[arg(long)]
    test_flip: bool,
    /// Classify each image moved by every offset of up to this many pixels along each axis
    /// ((2S+1)^2 views, twice that with --test-flip) and average the views' probabilities.
    #[arg(long, default_value_t = 0, value_name = "S")]
    test_shift: usize,
    /// Worker threads [default: all cores; at most 4 per core].
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::thread_count)]
    pub(super) threads: Option<usize>,
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    data: String,
    images: usize,
    accuracy: f64,
    loss: f64,
    confusion_matrix: &'a ConfusionMatrix,
    per_class: Vec<cnn::metrics::ClassMetrics>,
    macro_avg: cnn::metrics::ClassMetrics,
    weighted_avg: cnn::metrics::ClassMetrics,
    most_confused: Vec<(String, String, u64)>,
}

/// The data to evaluate on, its labels matched to the model's classes by name.
fn load_data(args: &EvaluateArgs, shape: [usize; 3], classes: &[String]) -> Result<Dataset, Error> {
    let Some(path) = &args.data else {
        // The built-in demo set fits only a model made for it; anything else needs --data.
        let ds = data::demo(Split::Test)?;
        let fitted = if ds.shape == shape {
            ds.match_classes(classes)
                .map(noted)
                .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "its images are {}x{}x{} and the model's input is {}x{}x{}",
                ds.shape[0], ds.shape[1], ds.shape[2], shape[0], shape[1], shape[2]
            ))
        };
        return fitted.map_err(|why| {
            Error::Invalid(format!(
                "no --data given, and the built-in demo set (Fashion-MNIST, 1x28x28) does not \
                 fit this model: {why}; pass --data with the data the model is for"
            ))
        });
    };
    let [c, h, w] = shape;
    let ds = data::load(
        path,
        &LoadOptions {
            split: Split::Test,
            channels: Some(c),
            size: Some((h, w)),
            resize: args.resize,
        },
    )?;
    // Images no label reaches are skipped by loading: said, not silent.
    if let Some(skipped) = data::skipped_images(path) {
        eprintln!("note: {skipped}");
    }
    // load() has converted the images to the model's channels and size, or refused them.
    ds.match_classes(classes).map(noted)
}

/// The data, its note on how its labels were mapped (when not all by name) printed.
fn noted((ds, note): (Dataset, Option<String>)) -> Dataset {
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    ds
}

pub fn run(args: EvaluateArgs) -> CmdResult {
    let (mut model, meta) = model_file::load(&args.model)?;
    let [c, h, w] = model.input_shape();
    let ds = load_data(&args, [c, h, w], &meta.classes)?;
    let views = train::TestViews {
        flip: args.test_flip,
        shift: args.test_shift,
    };
    let e = train::evaluate(&mut model, &ds, &meta.normalization, 256, views)?;
    let mut cm = ConfusionMatrix::new(meta.classes.clone());
    for (&y, &p) in e.labels.iter().zip(&e.predictions) {
        cm.add(y, p);
    }
    let name = |i: usize| {
        meta.classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    };
    if let Some(dir) = &args.out {
        cnn::io::create_dir(dir)?;
        cnn::io::write_atomic(&dir.join("confusion_matrix.csv"), cm.to_csv().as_bytes())?;
        for ext in ["png", "svg"] {
            cnn::plot::confusion_heatmap(
                &dir.join(format!("confusion_matrix.{ext}")),
                &cm,
                "Confusion matrix",
            )?;
        }
        super::gallery::write_misclassified(dir, &mut model, &ds, &meta.normalization, &e, &name)?;
    }
    let name = |i: usize| {
        meta.classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    };
    let confused: Vec<(String, String, u64)> = cm
        .most_confused(5)
        .into_iter()
        .map(|(t, p, n)| (name(t), name(p), n))
        .collect();
    if args.json {
        let report = Report {
            model: args.model.display().to_string(),
            data: ds.source.clone(),
            images: ds.len(),
            accuracy: e.accuracy,
            loss: e.loss,
            confusion_matrix: &cm,
            per_class: cm.per_class(),
            macro_avg: cm.macro_avg(),
            weighted_avg: cm.weighted_avg(),
            most_confused: confused,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
        return Ok(());
    }
    let present = ds.class_counts().iter().filter(|&&n| n > 0).count();
    if present < meta.classes.len() {
        println!(
            "data: {} ({}; {present} of the model's {})",
            ds.source,
            cnn::text::count(ds.len(), "image"),
            cnn::text::count(meta.classes.len(), "class")
        );
    } else {
        println!(
            "data: {} ({})",
            ds.source,
            cnn::text::count(ds.len(), "image")
        );
    }
    println!(
        "accuracy: {:.2}%  loss: {:.4}\n",
        e.accuracy * 100.0,
        e.loss
    );
    println!("confusion matrix (rows: true class, columns: predicted)");
    println!("{}", cm.render_table());
    println!("{}", cm.render_report());
    if !confused.is_empty() {
        println!("most confused:");
        for (t, p, n) in confused {
            println!("  {n:>6}  {t} predicted as {p}");
        }
    }
    Ok(())
}
