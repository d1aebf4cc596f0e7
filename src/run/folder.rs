//! The run folder: what makes a folder a run, and the metrics files written after each epoch.

use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::optim::OptimizerKind;
use crate::train::EpochMetrics;

use super::plots::HeldOut;
use super::RunConfig;

/// The files that mark a folder as holding a run: any one of them.
pub const RUN_FILES: [&str; 3] = ["run.json", "checkpoint.safetensors", "model.safetensors"];

/// Every file a run writes into its folder, besides temporary files: [`RUN_FILES`], the
/// config, the metrics, the plots, `report.md`, and `best.safetensors` (`--restore-best`).
pub const RUN_OUTPUTS: [&str; 12] = [
    "run.json",
    "checkpoint.safetensors",
    "model.safetensors",
    "best.safetensors",
    "config.cfg",
    "metrics.csv",
    "metrics.jsonl",
    "loss.png",
    "loss.svg",
    "accuracy.png",
    "accuracy.svg",
    "report.md",
];

/// The folder of a run's evaluation, `cnn evaluate RUN/model.safetensors --out RUN/eval` (as
/// docs/GUIDE.md and scripts/make-doc-images.sh do): it describes the run's model, so it goes
/// with the run.
pub const EVAL_DIR: &str = "eval";

/// Whether `dir` holds a run (any of [`RUN_FILES`]).
pub fn is_run_folder(dir: &Path) -> bool {
    RUN_FILES.iter().any(|f| dir.join(f).exists())
}

/// Checks that a new run may use `dir`: a folder that holds a run is refused unless `force`.
///
/// # Errors
/// [`Error::Usage`] naming the folder, the run files in it and the ways on.
pub fn check_out_dir(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: exists and is not a folder; --out takes a folder for the run",
            dir.display()
        )));
    }
    if force || !is_run_folder(dir) {
        return Ok(());
    }
    let found: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| dir.join(f).exists())
        .collect();
    Err(Error::Usage(format!(
        "{} holds a run already ({}); continue it with --resume {0}, or pass --force to \
         train a new run over it",
        dir.display(),
        found.join(", ")
    )))
}

/// Checks that `dir` is a run folder that can be resumed: it holds `run.json` and
/// `checkpoint.safetensors`.
pub(super) fn check_resumable(dir: &Path) -> Result<()> {
    let what = "a run folder holds run.json and checkpoint.safetensors (written by cnn train)";
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such folder; --resume takes a run folder: {what}",
            dir.display()
        )));
    }
    let has = |f: &str| dir.join(f).is_file();
    match (has("run.json"), has("checkpoint.safetensors")) {
        (true, true) => Ok(()),
        (true, false) => Err(Error::Usage(format!(
            "{}: has no checkpoint.safetensors: the run stopped before its first checkpoint, \
             so there is nothing to resume; train it again with --out {0} --force",
            dir.display()
        ))),
        _ => Err(Error::Usage(format!(
            "{} is not a run folder: {what}",
            dir.display()
        ))),
    }
}

/// Checks that `run.json` and the checkpoint describe the same run (a folder where files of
/// two runs were mixed: by hand, or by a `--force` of a version that did not clear the old
/// run's files first, stopped before its first checkpoint).
pub(super) fn check_same_run(dir: &Path, stored: &RunConfig, ck: &Checkpoint) -> Result<()> {
    let kind = match ck.state.optimizer.kind {
        OptimizerKind::Sgd => "sgd",
        OptimizerKind::Momentum {
            nesterov: false, ..
        } => "momentum",
        OptimizerKind::Momentum { nesterov: true, .. } => "nesterov",
        OptimizerKind::Adam {
            decoupled: false, ..
        } => "adam",
        OptimizerKind::Adam {
            decoupled: true, ..
        } => "adamw",
    };
    let stored_kind = stored.optimizer.name();
    let pairs = [
        (
            "batch size",
            stored.batch_size.to_string(),
            ck.options.batch_size.to_string(),
        ),
        ("seed", stored.seed.to_string(), ck.options.seed.to_string()),
        (
            "shuffle",
            (!stored.no_shuffle).to_string(),
            ck.options.shuffle.to_string(),
        ),
        ("optimizer", stored_kind.to_string(), kind.to_string()),
    ];
    for (what, a, b) in pairs {
        if a != b {
            return Err(Error::Usage(format!(
                "{}: run.json and checkpoint.safetensors are of different runs (the {what} is \
                 {a} in one and {b} in the other); train a new run with --out {0} --force",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// `runs/<config name>`, or `runs/<config name>-2`, `-3`, ... if taken.
pub(super) fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let base = Path::new("runs").join(&stem);
    if !base.exists() {
        return base;
    }
    (2..)
        .map(|i| Path::new("runs").join(format!("{stem}-{i}")))
        .find(|p| !p.exists())
        .expect("an unused run folder name exists")
}

/// Removes the old run in `dir` that a new run replaces (`--force`), before the new run writes
/// anything, so that none of the old run's files is left beside the new run's: each of
/// [`RUN_OUTPUTS`] and the [`EVAL_DIR`] folder. Only those: any other file in `dir` is the
/// user's and stays, and so does a symbolic link among them (a new run writes through it).
///
/// # Errors
/// A file that is there and cannot be removed, named.
pub(super) fn clear_old_run(dir: &Path) -> Result<()> {
    let remove = |name: &str, folder: bool| -> Result<()> {
        let path = dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(());
        };
        let removed = match (meta.is_file(), meta.is_dir() && folder) {
            (true, _) => std::fs::remove_file(&path),
            (false, true) => std::fs::remove_dir_all(&path),
            (false, false) => return Ok(()),
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    };
    for name in RUN_OUTPUTS {
        remove(name, false)?;
    }
    remove(EVAL_DIR, true)
}

/// Removes the temporary files that a run killed while writing left in `dir` (see
/// [`crate::io::is_temp_name`]), so that they do not pile up run after run. Best effort, and
/// done before this run writes anything. They are never read: the files they were to replace
/// are whole.
pub(super) fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if crate::io::is_temp_name(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `metrics.csv`: one row per epoch, the learning rate of each. The held-out set's columns
/// are named for it: `test_loss` and `test_accuracy` for a test set, `val_loss` and
/// `val_accuracy` for a validation split (`--val-split`).
pub fn metrics_csv(history: &[EpochMetrics], held_out: HeldOut) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let p = held_out.column_prefix();
    let mut s = format!("epoch,loss,accuracy,{p}_loss,{p}_accuracy,lr,seconds,images_per_second\n");
    for m in history {
        s += &format!(
            "{},{:.6},{:.6},{},{},{},{:.6},{:.1}\n",
            m.epoch,
            m.loss,
            m.accuracy,
            opt(m.val_loss),
            opt(m.val_accuracy),
            m.lr,
            m.seconds,
            m.images_per_second
        );
    }
    s
}

/// `metrics.jsonl`: one JSON object per epoch, its held-out figures named as in
/// [`metrics_csv`] (run folders written before that name them `val_loss` and `val_accuracy`
/// whatever the set; [`EpochMetrics`] reads both).
fn metrics_jsonl(history: &[EpochMetrics], held_out: HeldOut) -> Result<String> {
    let encode = |e: serde_json::Error| Error::Invalid(format!("cannot encode the metrics: {e}"));
    let p = held_out.column_prefix();
    let mut s = String::new();
    for m in history {
        let mut object = serde_json::to_value(m).map_err(encode)?;
        if let Some(fields) = object.as_object_mut() {
            if p != "val" {
                for what in ["loss", "accuracy"] {
                    if let Some(v) = fields.remove(&format!("val_{what}")) {
                        fields.insert(format!("{p}_{what}"), v);
                    }
                }
            }
        }
        s += &serde_json::to_string(&object).map_err(encode)?;
        s.push('\n');
    }
    Ok(s)
}

/// Writes `metrics.csv`, `metrics.jsonl` and the loss and accuracy plots into `dir`.
pub(super) fn write_metrics(dir: &Path, history: &[EpochMetrics], held_out: HeldOut) -> Result<()> {
    write_atomic(
        &dir.join("metrics.csv"),
        metrics_csv(history, held_out).as_bytes(),
    )?;
    write_atomic(
        &dir.join("metrics.jsonl"),
        metrics_jsonl(history, held_out)?.as_bytes(),
    )?;
    super::plots::write_training_plots(dir, history, held_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(held_out: Option<f64>) -> EpochMetrics {
        EpochMetrics {
            epoch: 1,
            loss: 0.5,
            accuracy: 0.75,
            val_loss: held_out,
            val_accuracy: held_out,
            lr: 0.01,
            seconds: 1.0,
            images_per_second: 100.0,
        }
    }

    #[test]
    fn the_held_out_columns_are_named_for_the_set_they_are() {
        let history = [epoch(Some(0.25))];
        let header = |h| metrics_csv(&history, h).lines().next().unwrap().to_string();
        assert_eq!(
            header(HeldOut::Test),
            "epoch,loss,accuracy,test_loss,test_accuracy,lr,seconds,images_per_second"
        );
        assert_eq!(
            header(HeldOut::Validation),
            "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds,images_per_second"
        );
        let line = metrics_jsonl(&history, HeldOut::Test).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            (v["test_loss"].as_f64(), v.get("val_loss")),
            (Some(0.25), None)
        );
        let line = metrics_jsonl(&history, HeldOut::Validation).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            (v["val_loss"].as_f64(), v.get("test_loss")),
            (Some(0.25), None)
        );
    }

    #[test]
    fn metrics_jsonl_reads_back_whichever_way_it_names_the_held_out_set() {
        for held_out in [HeldOut::Test, HeldOut::Validation] {
            let text = metrics_jsonl(&[epoch(Some(0.25)), epoch(None)], held_out).unwrap();
            let back: Vec<EpochMetrics> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(back, [epoch(Some(0.25)), epoch(None)]);
        }
        // A run folder written before the names changed.
        let old = r#"{"epoch":1,"loss":0.5,"accuracy":0.75,"val_loss":0.25,"val_accuracy":0.25,"lr":0.01,"seconds":1.0,"images_per_second":100.0}"#;
        assert_eq!(
            serde_json::from_str::<EpochMetrics>(old).unwrap(),
            epoch(Some(0.25))
        );
    }
}
