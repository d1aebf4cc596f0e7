//! Training options through the `cnn` command: bad ones are refused with exit code 2
//! before a run folder is made, an existing run is not overwritten without `--force`, and
//! `--resume` says what changes (the learning rate, the epochs, the data's path) and refuses
//! what would not continue the run, each in one line that says why. And a run folder
//! written before the run became a library type still resumes, bit for bit.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::Train;
use crate::common::{run_command, BIN};
use crate::files::write_sawtooth_idx;

/// 3 conv filters on 1x8x8 images, 3 classes.
const CONFIG: &str = "3\nInput shape=1x8x8\n\
Conv2D filters=3 kernel=3x3 stride=2 activation=relu\n\
Dense units=3 activation=softmax\n";

/// What every `cnn train` of [`Setup::train`] passes unless a test gives it.
const DEFAULTS: [[&str; 2]; 2] = [["--batch-size", "8"], ["--lr", "0.05"]];

/// A folder with `net.cfg` and `data/` (24 IDX images 1x8x8, labels 0, 1, 2, ...), where
/// `cnn` runs, given paths relative to it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.cfg"), CONFIG).unwrap();
        write_sawtooth_idx(&dir.path().join("data"), 0);
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `cnn ARGS` in the folder; see [`run_command`].
    fn cnn(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
        run_command(Command::new(BIN).current_dir(self.dir.path()).args(args))
    }

    /// `cnn train net.cfg --data data --out OUT` with [`DEFAULTS`], in the folder.
    fn train(&self, out: &str) -> Train {
        Train::new("net.cfg", out)
            .data("data")
            .defaults(&DEFAULTS)
            .current_dir(self.dir.path())
    }

    /// `cnn train --resume OUT`, in the folder.
    fn resume(&self, out: &str) -> Train {
        Train::resume(out).current_dir(self.dir.path())
    }

    /// A run stopped after its first epoch (3 steps), to resume.
    fn stopped_run(&self, out: &str) {
        self.train(out)
            .args(&["--epochs", "2", "--stop-after-steps", "3"])
            .ok();
        assert!(self.path(out).join("checkpoint.safetensors").is_file());
        assert!(!self.path(out).join("model.safetensors").exists());
    }
}

/// Asserts exit code 2 and one line `error: ...` that contains every one of `parts`.
fn assert_usage_error(code: i32, stderr: &str, parts: &[&str]) {
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for p in parts {
        assert!(stderr.contains(p), "no `{p}` in: {stderr}");
    }
}

/// The `lr` column of `metrics.csv`, one entry per epoch.
fn lr_column(run: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "lr").unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().to_string())
        .collect()
}

/// Every parameter of a model file, as bits.
fn weight_bits(path: &Path) -> Vec<Vec<u32>> {
    let (model, _) = cnn::model_file::load(path).unwrap();
    model
        .named_params()
        .iter()
        .map(|(_, p)| p.value.data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn epochs_0_is_refused_with_exit_2_before_a_run_folder_is_made() {
    let s = Setup::new();
    let (code, _, stderr) = s.train("run").args(&["--epochs", "0"]).run();
    assert_usage_error(code, &stderr, &["--epochs must be at least 1"]);
    assert!(!s.path("run").exists());
}

#[test]
fn batch_size_0_is_refused_with_exit_2_before_a_run_folder_is_made() {
    let s = Setup::new();
    let (code, _, stderr) = s.cnn(&[
        &"train",
        &"net.cfg",
        &"--data",
        &"data",
        &"--batch-size",
        &"0",
    ]);
    assert_usage_error(code, &stderr, &["--batch-size must be at least 1"]);
    assert!(!s.path("runs").exists());
}

#[test]
fn threads_0_is_refused_with_exit_2_before_a_run_folder_is_made() {
    let s = Setup::new();
    let (code, _, stderr) = s.train("run").args(&["--threads", "0"]).run();
    assert_usage_error(
        code,
        &stderr,
        &["'--threads <THREADS>': must be at least 1"],
    );
    assert!(!s.path("run").exists());
}

#[test]
fn a_negative_learning_rate_is_refused_as_must_be_positive_by_train_and_sweep() {
    let s = Setup::new();
    let (code, _, stderr) = s.cnn(&[&"train", &"net.cfg", &"--data", &"data", &"--lr", &"-1"]);
    assert_usage_error(code, &stderr, &["--lr must be positive, got -1"]);
    assert!(!s.path("runs").exists());

    let (code, _, stderr) = s.cnn(&[
        &"sweep", &"net.cfg", &"--data", &"data", &"--lr", &"-1", &"--out", &"sweep",
    ]);
    assert_usage_error(code, &stderr, &["--lr must be positive, got -1"]);
    assert!(!s.path("sweep").exists());
}

#[test]
fn sweep_refuses_0_epochs_and_a_0_batch_size_before_making_its_folder() {
    let s = Setup::new();
    for (flag, value, says) in [
        ("--epochs", "2,0", "--epochs must be at least 1"),
        ("--batch-size", "0", "--batch-size must be at least 1"),
    ] {
        let (code, _, stderr) = s.cnn(&[
            &"sweep", &"net.cfg", &"--data", &"data", &flag, &value, &"--out", &"sweep",
        ]);
        assert_usage_error(code, &stderr, &[says]);
        assert!(!s.path("sweep").exists());
    }
}

#[test]
fn out_on_a_folder_that_holds_a_run_is_refused_unless_force_is_given() {
    let s = Setup::new();
    s.train("run").args(&["--epochs", "1"]).ok();
    let model = std::fs::read(s.path("run/model.safetensors")).unwrap();

    let (code, _, stderr) = s.train("run").args(&["--epochs", "1", "--seed", "9"]).run();
    assert_usage_error(
        code,
        &stderr,
        &[
            "run holds a run already (run.json, checkpoint.safetensors, model.safetensors)",
            "--resume run",
            "--force",
        ],
    );
    assert_eq!(
        std::fs::read(s.path("run/model.safetensors")).unwrap(),
        model
    );

    s.train("run")
        .args(&["--epochs", "1", "--seed", "9", "--force"])
        .ok();
    assert_ne!(
        std::fs::read(s.path("run/model.safetensors")).unwrap(),
        model
    );
}

#[test]
fn resume_on_a_folder_that_is_not_a_run_says_what_a_run_folder_holds() {
    let s = Setup::new();
    let (code, _, stderr) = s.resume("data").run();
    assert_usage_error(
        code,
        &stderr,
        &["data is not a run folder: a run folder holds run.json and checkpoint.safetensors"],
    );
    let (code, _, stderr) = s.resume("nowhere").run();
    assert_usage_error(
        code,
        &stderr,
        &[
            "nowhere: no such folder",
            "run.json and checkpoint.safetensors",
        ],
    );
}

#[test]
fn resume_with_a_lower_learning_rate_says_so_and_metrics_csv_shows_it() {
    let s = Setup::new();
    s.stopped_run("run");
    let (code, _, stderr) = s.resume("run").args(&["--lr", "0.001"]).run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.lines().any(|l| l == "resume: lr 0.05 -> 0.001"),
        "{stderr}"
    );
    assert_eq!(lr_column(&s.path("run")), ["0.05", "0.001"]);
    let json = std::fs::read_to_string(s.path("run/run.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["lr"].as_f64().map(|x| x as f32), Some(0.001), "{json}");
}

#[test]
fn resume_with_more_epochs_says_so_and_trains_to_them() {
    let s = Setup::new();
    s.stopped_run("run");
    let (code, stdout, stderr) = s.resume("run").args(&["--epochs", "3"]).run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.lines().any(|l| l == "resume: epochs 2 -> 3"),
        "{stderr}"
    );
    assert!(stdout.contains("epoch   3/3"), "{stdout}");
    assert_eq!(lr_column(&s.path("run")).len(), 3);
}

#[test]
fn resume_with_fewer_epochs_than_begun_is_refused_saying_how_many() {
    let s = Setup::new();
    s.stopped_run("run");
    let (code, _, stderr) = s.resume("run").args(&["--epochs", "1"]).run();
    // One epoch done and the checkpoint at its end: reaching 1 is allowed (nothing to train).
    assert_eq!(code, 0, "{stderr}");
    s.train("mid")
        .args(&["--epochs", "3", "--stop-after-steps", "4"])
        .ok();
    let (code, _, stderr) = s.resume("mid").args(&["--epochs", "1"]).run();
    assert_usage_error(
        code,
        &stderr,
        &["cannot resume with --epochs 1: the run has begun 2 epochs; give at least 2"],
    );
}

#[test]
fn resume_with_another_config_is_refused_saying_why() {
    let s = Setup::new();
    s.stopped_run("run");
    std::fs::write(s.path("wide.cfg"), CONFIG.replace("filters=3", "filters=4")).unwrap();
    let (code, _, stderr) = s.cnn(&[&"train", &"--resume", &"run", &"wide.cfg"]);
    assert_usage_error(
        code,
        &stderr,
        &[
            "cannot resume with wide.cfg: it differs from the run's network",
            "a resumed run keeps its network",
        ],
    );
    // The run's own config is fine.
    let (code, _, stderr) = s.cnn(&[&"train", &"--resume", &"run", &"net.cfg"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn resume_with_different_data_is_refused_saying_why() {
    let s = Setup::new();
    s.stopped_run("run");
    write_sawtooth_idx(&s.path("other"), 5);
    let (code, _, stderr) = s.resume("run").args(&["--data", "other"]).run();
    assert_usage_error(
        code,
        &stderr,
        &[
            "is not the run's (its SHA-256 differs from the checkpoint's)",
            "needs the images and labels it was trained on",
        ],
    );
    assert!(!s.path("run/model.safetensors").exists());
}

#[test]
fn resume_with_the_same_data_at_another_path_goes_on_and_says_so() {
    let s = Setup::new();
    s.stopped_run("run");
    write_sawtooth_idx(&s.path("moved"), 0);
    std::fs::remove_dir_all(s.path("data")).unwrap();
    let (code, _, stderr) = s.resume("run").args(&["--data", "moved"]).run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.lines().any(|l| l == "resume: data data -> moved"),
        "{stderr}"
    );
    assert!(s.path("run/model.safetensors").is_file());
}

#[test]
fn resume_with_another_batch_size_or_optimizer_is_refused_saying_why() {
    let s = Setup::new();
    s.stopped_run("run");
    let (code, _, stderr) = s.resume("run").args(&["--batch-size", "4"]).run();
    assert_usage_error(
        code,
        &stderr,
        &[
            "cannot resume with --batch-size 4: the run has 8",
            "continues the stopped run exactly",
        ],
    );
    let (code, _, stderr) = s.resume("run").args(&["--optimizer", "adam"]).run();
    assert_usage_error(
        code,
        &stderr,
        &["cannot resume with --optimizer adam: the run has sgd"],
    );
    // Giving the stored value again is no change.
    let (code, _, stderr) = s.resume("run").args(&["--batch-size", "8"]).run();
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("resume: "), "{stderr}");
}

#[test]
fn a_run_folder_written_before_the_run_was_a_library_type_resumes_bit_for_bit() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v0");
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["data", "run"] {
        std::fs::create_dir(tmp.path().join(sub)).unwrap();
        for e in std::fs::read_dir(fixture.join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, tmp.path().join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    // Its run.json names the data relatively (`data`): run from the copy's folder.
    let (code, stdout, stderr) = Train::resume("run").current_dir(tmp.path()).run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("resuming run at epoch 2, step 2"),
        "{stderr}"
    );
    assert!(!stderr.contains("resume: "), "nothing changed: {stderr}");
    assert!(stdout.contains("epoch   3/3"), "{stdout}");
    assert_eq!(
        weight_bits(&tmp.path().join("run/model.safetensors")),
        weight_bits(&fixture.join("straight-model.safetensors")),
        "the resumed model differs from the uninterrupted run's"
    );
    let json = std::fs::read_to_string(tmp.path().join("run/run.json")).unwrap();
    assert!(json.contains("\"optimizer\": \"momentum\""), "{json}");
}

#[test]
fn sweep_accepts_the_training_options_of_train() {
    let s = Setup::new();
    let (code, _, stderr) = s.cnn(&[
        &"sweep",
        &"net.cfg",
        &"--data",
        &"data",
        &"--lr",
        &"0.05",
        &"--epochs",
        &"1",
        &"--optimizer",
        &"momentum",
        &"--momentum",
        &"0.5",
        &"--normalize",
        &"--val-split",
        &"0.25",
        &"--init-scheme",
        &"he",
        &"--batch-size",
        &"6",
        &"--seed",
        &"3",
        &"--out",
        &"sweep",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json = std::fs::read_to_string(s.path("sweep/lr0.05-epochs1/run.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["optimizer"], "momentum", "{json}");
    assert_eq!(v["momentum"], 0.5, "{json}");
    assert_eq!(v["normalize"], true, "{json}");
    assert_eq!(v["val_split"], 0.25, "{json}");
    assert_eq!(v["init_scheme"], "he", "{json}");
    assert_eq!(
        (v["batch_size"].as_u64(), v["seed"].as_u64()),
        (Some(6), Some(3))
    );
}

#[test]
fn train_and_sweep_help_give_examples_and_describe_every_option() {
    let s = Setup::new();
    let (code, stdout, stderr) = s.cnn(&[&"train", &"--help"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Examples:\n  cnn train report1-10"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cnn train --resume runs/lenet --epochs 10 --lr 0.01"),
        "{stdout}"
    );
    assert!(stdout.contains("--force"), "{stdout}");
    let (code, stdout, stderr) = s.cnn(&[&"sweep", &"--help"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Examples:\n  cnn sweep report1 "),
        "{stdout}"
    );
    for says in [
        "Images per gradient step. [default: 32]",
        "Seed of every random stream",
        "(each trains a fresh model). [default: 10]",
        "Normalise each input channel",
    ] {
        assert!(stdout.contains(says), "no `{says}` in:\n{stdout}");
    }
}

#[test]
fn the_library_run_writes_nothing_until_train_and_stops_when_its_observer_says_so() {
    use cnn::run::{Run, RunConfig, RunEvent, RunOptions};
    use cnn::train::Control;
    let s = Setup::new();
    let dir = s.path("lib-run");
    let config = RunConfig {
        config: s.path("net.cfg"),
        data: Some(s.path("data")),
        epochs: 2,
        batch_size: 8,
        ..RunConfig::default()
    };
    let mut run = Run::new(config, Some(dir.clone()), false).unwrap();
    assert!(!dir.exists(), "Run::new wrote something");
    let mut steps = Vec::new();
    let outcome = run
        .train(&mut |event| match event {
            RunEvent::Step {
                epoch, step, total, ..
            } => {
                steps.push((epoch, step, total));
                if total == 2 {
                    Control::Stop
                } else {
                    Control::Continue
                }
            }
            RunEvent::Epoch { .. } => Control::Continue,
        })
        .unwrap();
    assert_eq!(steps, [(1, 1, 1), (1, 2, 2)]);
    assert_eq!(outcome.stopped, Some((1, 2)));
    assert!(dir.join("checkpoint.safetensors").is_file());
    assert!(!dir.join("model.safetensors").exists());

    let mut run = Run::resume(&dir, &RunOptions::default()).unwrap();
    assert_eq!(run.resumed_at(), Some((1, 2)));
    assert!(run.changes().is_empty());
    let mut epochs = Vec::new();
    let outcome = run
        .train(&mut |event| {
            if let RunEvent::Epoch { metrics, .. } = event {
                epochs.push(metrics.epoch);
            }
            Control::Continue
        })
        .unwrap();
    assert_eq!(epochs, [1, 2]);
    assert_eq!((outcome.stopped, outcome.history.len()), (None, 2));
    assert!(dir.join("model.safetensors").is_file());
}

#[test]
fn force_clears_the_old_runs_files_and_only_them_once_the_new_run_is_checked() {
    let s = Setup::new();
    // An old run with every file a run leaves: best.safetensors (--restore-best) and an
    // evaluation in its eval/ folder too; and files of the user's beside them.
    s.train("run")
        .args(&[
            "--epochs",
            "2",
            "--val-split",
            "0.25",
            "--early-stop",
            "val_loss",
            "--restore-best",
        ])
        .ok();
    let (code, _, stderr) = s.cnn(&[
        &"evaluate",
        &"run/model.safetensors",
        &"--data",
        &"data/train-images-idx3-ubyte",
        &"--out",
        &"run/eval",
    ]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(s.path("run/notes.txt"), "mine").unwrap();
    std::fs::create_dir(s.path("run/plots")).unwrap();
    std::fs::write(s.path("run/plots/mine.png"), "mine").unwrap();
    std::fs::write(s.path("run/.model.safetensors.tmp-123-4"), "stale").unwrap();
    let old: Vec<String> = [
        "model.safetensors",
        "best.safetensors",
        "report.md",
        "metrics.csv",
        "metrics.jsonl",
        "loss.png",
        "loss.svg",
        "accuracy.png",
        "accuracy.svg",
        "eval",
    ]
    .iter()
    .map(|f| f.to_string())
    .collect();
    for f in &old {
        assert!(s.path("run").join(f).exists(), "the old run has no {f}");
    }

    // A --force run refused after the folder check (its data is missing) deletes nothing.
    let (code, _, stderr) = Train::new("net.cfg", "run")
        .data("missing")
        .args(&["--force"])
        .current_dir(s.dir.path())
        .run();
    assert_eq!(code, 1, "{stderr}");
    for f in &old {
        assert!(s.path("run").join(f).exists(), "a refused run deleted {f}");
    }

    // A new run stopped before its first epoch ends: none of the old run's files is left,
    // and the user's files are.
    s.train("run")
        .args(&["--force", "--epochs", "2", "--stop-after-steps", "1"])
        .ok();
    for f in &old {
        assert!(!s.path("run").join(f).exists(), "the old run's {f} is left");
    }
    assert!(!s.path("run/.model.safetensors.tmp-123-4").exists());
    for f in ["run.json", "config.cfg", "checkpoint.safetensors"] {
        assert!(s.path("run").join(f).is_file(), "the new run has no {f}");
    }
    assert_eq!(std::fs::read(s.path("run/notes.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(s.path("run/plots/mine.png")).unwrap(),
        b"mine"
    );
    // And the new run resumes as the run it is.
    s.resume("run").ok();
    assert!(s.path("run/model.safetensors").is_file());
}

#[test]
fn resume_with_more_epochs_of_a_cosine_run_says_what_the_schedule_does_and_no_lr_change() {
    let s = Setup::new();
    s.train("run")
        .args(&["--epochs", "3", "--lr", "0.1", "--schedule", "cosine"])
        .ok();
    let (code, _, stderr) = s.resume("run").args(&["--epochs", "6"]).run();
    assert_eq!(code, 0, "{stderr}");
    let resume_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("resume: "))
        .collect();
    assert_eq!(
        resume_lines,
        [
            "resume: epochs 3 -> 6",
            "resume: the cosine schedule now spans 6 epochs instead of 3: from epoch 4 on the \
             rate follows the longer curve (0.05 in epoch 4)"
        ],
        "{stderr}"
    );
    // (1 + cos(pi e / 6)) / 2 from epoch 4 (e = 3) on.
    let lrs: Vec<f64> = lr_column(&s.path("run"))
        .iter()
        .map(|x| x.parse().unwrap())
        .collect();
    let want = [0.1, 0.075, 0.025, 0.05, 0.025, 0.1 * 0.066_987_298];
    assert_eq!(lrs.len(), want.len(), "{lrs:?}");
    for (got, want) in lrs.iter().zip(want) {
        assert!((got - want).abs() < 1e-7, "{lrs:?}");
    }
    // A given --lr is still a change, said once.
    let (code, _, stderr) = s
        .resume("run")
        .args(&["--epochs", "7", "--lr", "0.05"])
        .run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("resume: lr "))
            .collect::<Vec<_>>(),
        ["resume: lr 0.1 -> 0.05"],
        "{stderr}"
    );
}

#[test]
fn resume_with_data_demo_on_a_run_of_the_demo_set_changes_nothing() {
    let s = Setup::new();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/report1-10.cfg");
    Train::new(&cfg, s.path("demo-run"))
        .args(&["--epochs", "1", "--stop-after-steps", "2"])
        .ok();
    let (code, _, stderr) = s.resume("demo-run").args(&["--data", "demo"]).run();
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("resume: "), "nothing changed: {stderr}");
}

#[test]
fn resume_on_data_with_another_class_count_is_refused_as_not_the_runs_data() {
    let s = Setup::new();
    s.stopped_run("run");
    // The same images in 4 classes instead of 3.
    let pixels: Vec<u8> = (0..24u32 * 64).map(|k| ((k * 37) % 251) as u8).collect();
    let labels: Vec<u8> = (0..24).map(|i| (i % 4) as u8).collect();
    crate::files::write_idx(&s.path("four"), "train", 8, 8, &pixels, &labels);
    let (code, _, stderr) = s.resume("run").args(&["--data", "four"]).run();
    assert_usage_error(
        code,
        &stderr,
        &[
            "the training data at four",
            "is not the run's",
            "needs the images and labels it was trained on",
        ],
    );
    assert!(!s.path("run/model.safetensors").exists());
}
