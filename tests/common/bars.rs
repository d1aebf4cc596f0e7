//! A small dataset that a tiny network learns in a few epochs: 8x8 images of 3 classes, each
//! class a bright bar in its own place, with per-image noise, as IDX files; and a folder with
//! a network for it (`net.cfg`) and the data (`data/`), for tests of the run's files.

use std::path::{Path, PathBuf};

use crate::command::Train;
use crate::common::run;
use crate::rng::Lcg;

/// Writes an IDX images file and its labels: `n` 8x8 images of 3 classes, each class a bright
/// bar in its own place (learnable in a few epochs), with per-image noise.
pub fn write_bars_idx(dir: &Path, prefix: &str, n: usize, seed: u64) {
    let mut rng = Lcg(seed);
    let mut pixels = Vec::with_capacity(n * 64);
    for i in 0..n {
        let class = i % 3;
        for y in 0..8 {
            for x in 0..8 {
                let noise = rng.bits(6) as u8;
                let on = match class {
                    0 => y == 2,
                    1 => x == 5,
                    _ => (3..5).contains(&x) && (3..5).contains(&y),
                };
                pixels.push(if on { 220 } else { noise });
            }
        }
    }
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    crate::files::write_idx(dir, prefix, 8, 8, &pixels, &labels);
}

/// A tiny network for the bars: one convolution, pooling, two Dense layers.
pub const BARS_CONFIG: &str = "4\nInput shape=1x8x8\n\
    Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n\
    MaxPool2D pool=2x2 stride=2\n\
    Dense units=16 activation=relu\n\
    Dense units=3 activation=softmax\n";

/// A temporary folder with `net.cfg` ([`BARS_CONFIG`]) and `data/`: 60 training and 30 test
/// images of the bars; returns the folder and the data's path.
pub fn bars_setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_bars_idx(&data, "train", 60, 1);
    write_bars_idx(&data, "t10k", 30, 2);
    std::fs::write(dir.path().join("net.cfg"), BARS_CONFIG).unwrap();
    (dir, data)
}

/// `cnn train DIR/net.cfg --data DIR/data --out DIR/NAME` in a folder of [`bars_setup`].
pub fn bars_train(dir: &Path, name: &str) -> Train {
    Train::new(dir.join("net.cfg"), dir.join(name)).data(dir.join("data"))
}

/// `cnn sweep` of the bars network in a folder of [`bars_setup`] at learning rates 0.05 and
/// 1000 (which diverges), 2 epochs in batches of 8, into `DIR/NAME`; asserts that it
/// succeeds and returns its stdout.
pub fn bars_sweep_with_a_divergence(dir: &Path, name: &str) -> String {
    let (cfg, data, out) = (dir.join("net.cfg"), dir.join("data"), dir.join(name));
    let (code, stdout, stderr) = run(&[
        &"sweep",
        &cfg,
        &"--data",
        &data,
        &"--lr",
        &"0.05,1000",
        &"--epochs",
        &"2",
        &"--batch-size",
        &"8",
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}
