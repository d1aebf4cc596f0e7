//! Model files, `--init` and resume through the `cnn` command: a model file works alone,
//! `--init` starts from given weights, a resumed run equals an uninterrupted one bit for
//! bit, the thread count does not change the result, and a run killed at any moment leaves
//! a checkpoint that loads.
//!
//! The data is a tiny IDX set written by the tests (60 images 1x8x8, labels 0 to 2, so three
//! classes), for a network with 3 outputs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::command::Train;
use crate::common::run;
use crate::files::{write_idx, write_png};
use crate::rng::Lcg;
use crate::runs::{metrics, model_bytes};
use sha2::{Digest, Sha256};

const CONFIG: &str = "4\nInput shape=1x8x8\n\
Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n\
MaxPool2D pool=2x2 stride=2\n\
Dense units=16 activation=relu\n\
Dense units=3 activation=softmax\n";

/// What every `cnn train` of [`Setup::train`] passes unless a test gives it.
const DEFAULTS: [[&str; 2]; 2] = [["--batch-size", "8"], ["--seed", "5"]];

/// Writes `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` with `n` images 8x8 in
/// `dir`: class k has a bright band at rows 2k..2k+3, plus noise.
fn write_bands_idx(dir: &Path, n: usize) {
    let mut rng = Lcg(42);
    let mut pixels = Vec::with_capacity(n * 64);
    for i in 0..n {
        let k = i % 3;
        for r in 0..8 {
            for _ in 0..8 {
                let base = if r >= 2 * k && r < 2 * k + 3 { 180 } else { 20 };
                pixels.push(base + (rng.bits(31) % 60) as u8);
            }
        }
    }
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    write_idx(dir, "train", 8, 8, &pixels, &labels);
}

/// A folder with `net.cfg` and the data in `data/`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(images: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.cfg"), CONFIG).unwrap();
        write_bands_idx(&dir.path().join("data"), images);
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cnn train net.cfg --data data --out OUT` with [`DEFAULTS`].
    fn train(&self, out: &str) -> Train {
        Train::new(self.path("net.cfg"), self.path(out))
            .data(self.path("data"))
            .defaults(&DEFAULTS)
    }

    /// metrics.jsonl without the timing fields, which differ from run to run.
    fn metrics(&self, out: &str) -> Vec<serde_json::Value> {
        metrics(&self.path(out))
            .into_iter()
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                o.remove("seconds");
                o.remove("images_per_second");
                v
            })
            .collect()
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Proves: a model file is all `cnn predict` needs: after the run folder and the data are
/// deleted, a copy of model.safetensors elsewhere predicts, and the same as before.
#[test]
fn model_file_alone_predicts() {
    let s = Setup::new(60);
    s.train("run").args(&["--epochs", "2"]).ok();
    let img = s.path("img.png");
    write_png(&img, 8, 8, |_, y| if y < 3 { 200 } else { 20 });
    let predict = |model: &Path| {
        let (code, stdout, stderr) = run(&[&"predict", &model, &img, &"--json"]);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let before = predict(&s.path("run/model.safetensors"));

    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("model.safetensors");
    std::fs::copy(s.path("run/model.safetensors"), &copy).unwrap();
    std::fs::remove_dir_all(s.path("run")).unwrap();
    std::fs::remove_dir_all(s.path("data")).unwrap();
    std::fs::remove_file(s.path("net.cfg")).unwrap();
    let after = predict(&copy);
    assert_eq!(before, after);
    assert!(after.contains("\"class\""), "{after}");
}

/// Proves: `--init MODEL` starts from the file's weights (with no epoch to train, the saved
/// model is the given one, bit for bit, also when the file is a checkpoint), and a file whose
/// shapes differ from the config is refused naming the tensor and both shapes.
#[test]
fn init_starts_from_given_weights_and_names_a_differing_tensor() {
    let s = Setup::new(60);
    s.train("a").args(&["--epochs", "2"]).ok();
    let a = cnn::model_file::load(&s.path("a/model.safetensors"))
        .unwrap()
        .0;

    let init = s.path("a/model.safetensors");
    let init_arg = init.to_str().unwrap();
    s.train("b")
        .args(&["--epochs", "0", "--init", init_arg])
        .ok();
    let b = cnn::model_file::load(&s.path("b/model.safetensors"))
        .unwrap()
        .0;
    let bits = |m: &cnn::model::Model| -> Vec<Vec<u32>> {
        m.named_params()
            .iter()
            .map(|(_, p)| p.value.data().iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));

    // From a checkpoint too: its optimiser tensors are skipped.
    let checkpoint = s.path("a/checkpoint.safetensors");
    s.train("c")
        .args(&["--epochs", "0", "--init", checkpoint.to_str().unwrap()])
        .ok();
    let c = cnn::model_file::load(&s.path("c/model.safetensors"))
        .unwrap()
        .0;
    assert_eq!(bits(&a), bits(&c));

    // One epoch from the given weights differs from one epoch from a fresh start.
    s.train("d")
        .args(&["--epochs", "1", "--init", init_arg])
        .ok();
    s.train("e").args(&["--epochs", "1"]).ok();
    assert_ne!(model_bytes(&s.path("d")), model_bytes(&s.path("e")));

    let wide = s.path("wide.cfg");
    std::fs::write(&wide, CONFIG.replace("units=16", "units=32")).unwrap();
    let (code, _, err) = Train::new(&wide, s.path("f"))
        .data(s.path("data"))
        .args(&["--init", init_arg])
        .run();
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&init.display().to_string()), "{err}");
    assert!(
        err.contains("tensor `layers.2.weight` has shape [16, 64], the config needs [32, 64]"),
        "{err}"
    );
}

/// Trains 4 epochs straight in `straight`, and in `split` stops after `stop` steps (8 steps
/// per epoch) and resumes; both model files must be the same bytes and the metrics the same
/// numbers.
fn assert_resume_is_exact(optimizer: &[&str], stop: u64) {
    let s = Setup::new(60);
    s.train("straight")
        .args(&["--epochs", "4"])
        .args(optimizer)
        .ok();
    let stop = stop.to_string();
    s.train("split")
        .args(&["--epochs", "4", "--stop-after-steps", &stop])
        .args(optimizer)
        .ok();
    assert!(!s.path("split/model.safetensors").exists());
    assert!(s.path("split/checkpoint.safetensors").exists());
    Train::resume(s.path("split")).ok();
    assert!(
        model_bytes(&s.path("straight")) == model_bytes(&s.path("split")),
        "resumed model differs from the uninterrupted one"
    );
    assert_eq!(s.metrics("straight"), s.metrics("split"));
    assert_eq!(s.metrics("split").len(), 4);
}

/// Proves: stopping at an epoch boundary (after 2 epochs of 8 steps) and resuming gives the
/// uninterrupted run's model bit for bit, with Adam (whose moments and step count must be
/// restored exactly).
#[test]
fn resume_at_epoch_boundary_is_bit_exact_with_adam() {
    assert_resume_is_exact(&["--optimizer", "adam"], 16);
}

/// Proves: resuming mid-epoch with AdamW (its moments, step count and decoupled weight decay
/// come back from the checkpoint, which names it `adamw`) gives the uninterrupted run's bytes.
#[test]
fn resume_mid_epoch_is_bit_exact_with_adamw_and_weight_decay() {
    assert_resume_is_exact(&["--optimizer", "adamw", "--weight-decay", "0.05"], 11);
}

/// Proves: stopping in the middle of an epoch (step 3 of epoch 2) and resuming gives the
/// uninterrupted run's model and metrics bit for bit, with momentum (whose velocity must be
/// restored, as must the epoch's shuffle and running sums).
#[test]
fn resume_mid_epoch_is_bit_exact_with_momentum() {
    assert_resume_is_exact(&["--optimizer", "momentum"], 11);
}

/// Proves: with gradient clipping (kept in run.json, so the resumed run clips again), resuming
/// mid-epoch gives the uninterrupted run's bytes.
#[test]
fn resume_mid_epoch_is_bit_exact_with_gradient_clipping() {
    assert_resume_is_exact(&["--optimizer", "momentum", "--clip-grad-norm", "0.05"], 11);
}

/// Proves: stopping twice (mid-epoch, then at the last step of an epoch) and resuming twice
/// still gives the same bytes, with normalisation on and weight decay.
#[test]
fn resume_twice_is_bit_exact() {
    let s = Setup::new(60);
    let opts = ["--epochs", "3", "--normalize", "--weight-decay", "0.001"];
    s.train("straight").args(&opts).ok();
    s.train("split")
        .args(&opts)
        .args(&["--stop-after-steps", "5"])
        .ok();
    Train::resume(s.path("split"))
        .args(&["--stop-after-steps", "16"])
        .ok();
    assert!(!s.path("split/model.safetensors").exists());
    Train::resume(s.path("split")).ok();
    assert!(model_bytes(&s.path("straight")) == model_bytes(&s.path("split")));
    assert_eq!(s.metrics("straight"), s.metrics("split"));
}

/// Proves: the trained model's SHA-256 is the same with 1, 2 and 3 worker threads.
#[test]
fn model_hash_is_independent_of_thread_count() {
    let s = Setup::new(60);
    let hashes: Vec<String> = ["1", "2", "3"]
        .iter()
        .map(|t| {
            let out = format!("t{t}");
            s.train(&out)
                .args(&["--epochs", "3", "--optimizer", "adam", "--threads", t])
                .ok();
            sha256(&model_bytes(&s.path(&out)))
        })
        .collect();
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[0], hashes[2]);
}

/// Proves: killing `cnn train` with SIGKILL at random moments while it writes checkpoints
/// (one step per epoch, so a checkpoint is written every few tens of milliseconds) never leaves a
/// damaged `checkpoint.safetensors`: after each kill it is absent or loads with
/// `cnn::checkpoint::load`. The unfinished temporary file a kill may leave has another name,
/// so it is never taken for the checkpoint, and the next run in the folder removes it; the
/// folder then resumes to the end.
#[test]
fn sigkill_during_checkpointing_never_leaves_a_damaged_checkpoint() {
    let started = Instant::now();
    let s = Setup::new(8);
    let run = s.path("run");
    let mut rng = Lcg::from_clock();
    let mut loaded = 0;
    let mut last_epoch = 0;
    for i in 0..20 {
        let ck = run.join("checkpoint.safetensors");
        let train = if ck.exists() {
            Train::resume(&run)
        } else {
            Train::new(s.path("net.cfg"), &run)
                .data(s.path("data"))
                .args(&["--epochs", "100000", "--batch-size", "8", "--threads", "1"])
        };
        let mut child = train
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if i == 0 {
            // Let the first run write its first checkpoint, however loaded the machine is,
            // so that every later run resumes and is killed while checkpointing.
            let t = Instant::now();
            while !ck.exists() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let delay = 10 + rng.bits(31) % 140;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "run {i} ended by itself: {status:?}");

        let temps: Vec<String> = std::fs::read_dir(&run)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".tmp"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            temps.len() <= 1,
            "run {i}: stale temporary files pile up: {temps:?}"
        );
        for t in &temps {
            assert_ne!(t, "checkpoint.safetensors");
        }
        if ck.exists() {
            let c = cnn::checkpoint::load(&ck)
                .unwrap_or_else(|e| panic!("run {i} (killed after {delay} ms): {e}"));
            assert!(c.state.epoch >= last_epoch, "the checkpoint went back");
            last_epoch = c.state.epoch;
            loaded += 1;
        }
    }
    assert_eq!(loaded, 20, "a checkpoint disappeared");
    // The folder a kill left behind resumes to the end, and no temporary file remains.
    let end = (last_epoch + 1).to_string();
    Train::resume(&run).args(&["--epochs", &end]).ok();
    assert!(run.join("model.safetensors").exists());
    let left: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files remain: {left:?}");
    assert!(
        last_epoch > 1,
        "training made little progress: {last_epoch}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
