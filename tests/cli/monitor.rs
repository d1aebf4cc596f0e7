//! The training health monitor and divergence through the `cnn` command:
//! `--monitor` prints gradient norms and dead-ReLU shares per epoch, and a run that blows up
//! stops with exit code 3, says where and what to do, and leaves the last good checkpoint
//! untouched.

use std::path::{Path, PathBuf};

use crate::command::Train;
use crate::files::write_idx;

/// `x-images-idx3-ubyte` and its labels: `n` 6x6 images of 2 classes (bright top or bottom).
fn write_halves_idx(dir: &Path, n: u32) -> PathBuf {
    let mut pixels = Vec::with_capacity(n as usize * 36);
    for i in 0..n as usize {
        let class = i % 2;
        pixels.extend((0..36).map(|k| {
            let top = k / 6 < 3;
            if top == (class == 0) {
                200 + (i * 7 + k) as u8 % 50
            } else {
                (i * 3 + k) as u8 % 40
            }
        }));
    }
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    write_idx(dir, "x", 6, 6, &pixels, &labels)
}

const CFG: &str = "4\nInput shape=1x6x6\nConv2D filters=3 kernel=3x3 activation=relu\n\
MaxPool2D pool=2x2\nDense units=8 activation=relu\nDense units=2 activation=softmax\n";

/// The shares are those of each epoch's last training batch, for the convolution too (its
/// pooling takes its output block by block, and the evaluation after the epoch runs the
/// network again on the test set).
#[test]
fn train_with_monitor_prints_gradient_norms_and_dead_relu_shares_each_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_halves_idx(tmp.path(), 20);
    let test = data.to_str().unwrap();
    let stdout = Train::new(tmp.path().join("net.cfg"), tmp.path().join("run"))
        .config(CFG)
        .data(&data)
        .args(&["--epochs", "2", "--batch-size", "4", "--monitor"])
        .args(&["--test-data", test])
        .ok();
    let lines: Vec<&str> = stdout.lines().collect();
    for epoch in 1..=2 {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("epoch   {epoch}/2")))
            .unwrap_or_else(|| panic!("no epoch {epoch} line:\n{stdout}"));
        let conv = lines[at + 1];
        assert!(conv.starts_with("  layer 0 Conv2D"), "{stdout}");
        assert!(
            conv.contains("|grad weight| ") && conv.contains("|grad bias| "),
            "{stdout}"
        );
        assert!(
            conv.contains("dead ReLU ") && conv.ends_with('%'),
            "{stdout}"
        );
        assert!(lines[at + 2].starts_with("  layer 2 Dense"), "{stdout}");
        assert!(lines[at + 2].contains("dead ReLU "), "{stdout}");
        let out = lines[at + 3];
        assert!(out.starts_with("  layer 3 Dense"), "{stdout}");
        assert!(
            !out.contains("dead ReLU"),
            "softmax has no dead share: {stdout}"
        );
    }
}

#[test]
fn a_learning_rate_of_1000_stops_with_exit_3_naming_the_step_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_halves_idx(tmp.path(), 20);
    let run = tmp.path().join("run");
    // One good epoch at a sane rate writes a checkpoint.
    Train::new(tmp.path().join("net.cfg"), &run)
        .config(CFG)
        .data(&data)
        .args(&["--epochs", "1", "--batch-size", "2", "--lr", "0.01"])
        .ok();
    let ck = run.join("checkpoint.safetensors");
    let before = std::fs::read(&ck).unwrap();
    // Resume it with the learning rate raised to 1000.
    let json = std::fs::read_to_string(run.join("run.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["lr"] = serde_json::json!(1000.0);
    std::fs::write(run.join("run.json"), v.to_string()).unwrap();
    let (code, _, stderr) = Train::resume(&run).args(&["--epochs", "5"]).run();
    assert_eq!(code, 3, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: training diverged at epoch "),
        "{stderr}"
    );
    assert!(last.contains(", step "), "{stderr}");
    assert!(
        last.contains("try a lower learning rate (now 1000)"),
        "{stderr}"
    );
    assert!(
        last.ends_with(&format!("the last good checkpoint is {}", ck.display())),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        before,
        "the checkpoint was rewritten"
    );
}

/// Ctrl-C (SIGINT) during a long run: the step in progress finishes, a checkpoint of that
/// step is written, the command says how to continue and exits with 130 (128 + SIGINT, as
/// shells expect, so that `cnn train ... && next` does not go on); the checkpoint loads.
#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let data = write_halves_idx(tmp.path(), 40);
    let out = tmp.path().join("run");
    // Far more epochs than the test waits for: only the signal ends this run.
    let child = Train::new(tmp.path().join("net.cfg"), &out)
        .config(CFG)
        .data(&data)
        .args(&["--epochs", "1000000", "--batch-size", "4", "--threads", "1"])
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cnn starts");
    // Wait for the first epoch's checkpoint: by then the signal handler is in place.
    let ck = out.join("checkpoint.safetensors");
    let start = Instant::now();
    while !ck.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = std::fs::read(&ck).unwrap();
    // SAFETY: kill sends a signal to the child we started; it has no memory effects here.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let done = child.wait_with_output().expect("cnn exits");
    let stderr = String::from_utf8(done.stderr).unwrap();
    assert!(!stderr.contains("panicked at"), "{stderr}");
    assert_eq!(done.status.code(), Some(130), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("interrupted (Ctrl-C) at epoch ")
            && last.contains("checkpoint saved: continue with `cnn train --resume "),
        "{stderr}"
    );
    // The checkpoint written at the stop loads, and it is a later one than the first epoch's.
    let c = cnn::checkpoint::load(&ck).expect("the checkpoint loads");
    assert!(c.state.epoch >= 1, "epoch {}", c.state.epoch);
    assert_ne!(
        std::fs::read(&ck).unwrap(),
        before,
        "no checkpoint was written at the stop"
    );
}
