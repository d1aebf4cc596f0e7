//! `cnn gradcheck` on real networks: every shipped example (the larger ones at seeds 1 to 4)
//! and our own RGB networks pass at every seed from 1 to 20; entries on a kink and entries that cannot be
//! checked are reported, not failed; and a wrong derivative fails the check.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use cnn::gradcheck::{check_gradients, check_network, Verdict, STEP};
use cnn::init::Init;
use cnn::model::Model;
use cnn::rng::Rng;
use cnn::tensor::Tensor;

use crate::common::{run_command, BIN};

/// A small RGB network like the one a user checked: two convolutions with max pooling.
const RGB_3X16X16: &str = "\
Input shape=3x16x16
Conv2D filters=8 kernel=3x3 padding=same activation=relu
MaxPool2D pool=2x2
Conv2D filters=16 kernel=3x3 padding=same activation=relu
MaxPool2D pool=2x2
Dense units=32 activation=relu
Dense units=4 activation=softmax
";

/// Every layer kind and option: stride 2, explicit and valid padding, non-square kernels,
/// LeakyReLU, overlapping 3x3 max-pool windows, average pooling, stand-alone activations,
/// sigmoid and tanh, and Dropout (checked in training mode, its mask frozen like a ReLU's).
const EVERY_LAYER_KIND: &str = "\
Input shape=3x16x16
Conv2D filters=6 kernel=3x3 stride=2 padding=1 activation=leaky_relu alpha=0.1
MaxPool2D pool=3x3 stride=2
Conv2D filters=5 kernel=2x3 padding=same activation=tanh
ReLU
AvgPool2D pool=2x2 stride=1
Conv2D filters=4 kernel=1x1 activation=sigmoid
Flatten
Dense units=12
ReLU
Dropout rate=0.3
Dense units=3 activation=softmax
";

/// Runs `cnn gradcheck` with `args`; returns (exit code, stdout, stderr).
fn gradcheck(args: &[&str]) -> (i32, String, String) {
    run_command(Command::new(BIN).arg("gradcheck").args(args))
}

/// Asserts that one run passed: exit 0, nothing on stderr, every tensor row "ok".
fn assert_passes(what: &str, (code, stdout, stderr): (i32, String, String)) {
    assert_eq!(code, 0, "{what}: {stdout}{stderr}");
    assert_eq!(stderr, "", "{what}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("layers."))
        .collect();
    assert!(!rows.is_empty(), "{what}: {stdout}");
    assert!(rows.iter().all(|r| r.ends_with("  ok")), "{what}: {stdout}");
    assert!(stdout.contains("forward pass: "), "{what}: {stdout}");
}

/// Runs `cnn gradcheck CONFIG --seed S` for every seed in `seeds` (and once without
/// `--seed`), two processes at a time, and asserts that every run passes.
fn passes_at_seeds(config: &Path, seeds: std::ops::RangeInclusive<u64>, extra: &[&str]) {
    let jobs: Vec<Option<u64>> = std::iter::once(None).chain(seeds.map(Some)).collect();
    let jobs = Mutex::new(jobs);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some(seed) = jobs.lock().unwrap().pop() else {
                    return;
                };
                let cfg = config.to_string_lossy();
                let seed_text = seed.map(|s| s.to_string());
                let mut args = vec![cfg.as_ref()];
                if let Some(t) = &seed_text {
                    args.extend(["--seed", t]);
                }
                args.extend(extra);
                assert_passes(&format!("{args:?}"), gradcheck(&args));
            });
        }
    });
}

fn example_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut cfgs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    cfgs.sort();
    cfgs
}

/// Forward FLOPs of gradcheck's batch above which an example is checked at seeds 1 to 4
/// rather than 1 to 20: each checked entry costs two forward passes of that batch, so a
/// network with BatchNorm (a batch of 8) of 8 MFLOP per sample takes seconds a seed; the many
/// seeds are for the small networks, whose few ReLUs and pooling windows put an entry near a
/// kink more often.
const MANY_SEEDS_BELOW_FLOPS: u64 = 30_000_000;

#[test]
fn every_shipped_example_passes_gradcheck_at_its_default_seed_and_seeds_1_to_20_or_1_to_4() {
    let cfgs = example_configs();
    assert!(cfgs.len() >= 3, "{cfgs:?}");
    for cfg in cfgs {
        let text = std::fs::read_to_string(&cfg).unwrap();
        let spec = cnn::config::parse(&text, &cfg.to_string_lossy())
            .unwrap()
            .spec;
        let batch = cnn::gradcheck::default_batch(&spec) as u64;
        let flops = batch * spec.forward_flops_per_sample().unwrap();
        let last = if flops < MANY_SEEDS_BELOW_FLOPS {
            20
        } else {
            4
        };
        passes_at_seeds(&cfg, 1..=last, &[]);
    }
}

#[test]
fn a_3x16x16_rgb_network_passes_gradcheck_at_seeds_1_to_20() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("rgb.cfg");
    std::fs::write(&cfg, format!("6\n{RGB_3X16X16}")).unwrap();
    passes_at_seeds(&cfg, 1..=20, &[]);
}

#[test]
fn every_layer_kind_passes_gradcheck_with_a_batch_that_spans_two_gradient_blocks() {
    // 5 samples: the Conv2D weight gradient is summed over blocks of 4 samples.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("all.cfg");
    std::fs::write(&cfg, format!("11\n{EVERY_LAYER_KIND}")).unwrap();
    passes_at_seeds(&cfg, 1..=5, &["--batch", "5"]);
}

/// `text`'s network with weights from `seed`, random biases, a random batch of `n` and labels.
fn setup(text: &str, n: usize, seed: u64) -> (Model, Tensor, Vec<usize>) {
    let spec = cnn::config::parse(text, "test.cfg").unwrap().spec;
    let mut model = Model::new(&spec, Init::Normal, seed).unwrap();
    let mut rng = Rng::new(seed);
    for p in model.params_mut() {
        if p.value.shape().len() == 1 {
            p.value
                .data_mut()
                .iter_mut()
                .for_each(|v| *v = 0.1 * rng.normal() as f32);
        }
    }
    let [c, h, w] = spec.input;
    let data = (0..n * c * h * w).map(|_| rng.uniform() as f32).collect();
    let x = Tensor::from_vec(&[n, c, h, w], data).unwrap();
    let labels = (0..n).map(|_| rng.below(model.classes())).collect();
    (model, x, labels)
}

#[test]
fn a_gradient_that_is_one_percent_off_fails_the_check_in_its_tensor_only() {
    let text = format!("6\n{RGB_3X16X16}");
    let (mut model, x, labels) = setup(&text, 2, 7);
    model.compute_gradients(&x, &labels).unwrap();
    let right: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|(_, p)| p.grad.data().to_vec())
        .collect();
    let report = check_gradients(&mut model, &x, &labels, &right, 10, STEP, 1).unwrap();
    assert_eq!(report.failure(), None, "{report:?}");
    for t in 0..right.len() {
        let mut wrong = right.clone();
        wrong[t].iter_mut().for_each(|g| *g *= 1.01);
        let report = check_gradients(&mut model, &x, &labels, &wrong, 10, STEP, 1).unwrap();
        let verdicts: Vec<Verdict> = report.tensors.iter().map(|c| c.verdict()).collect();
        for (i, v) in verdicts.iter().enumerate() {
            let want = if i == t {
                Verdict::Mismatch
            } else {
                Verdict::Ok
            };
            assert_eq!(*v, want, "tensor {t} scaled: {report:?}");
        }
        let why = report.failure().unwrap();
        assert!(
            why.contains(&report.tensors[t].name),
            "{why} should name {}",
            report.tensors[t].name
        );
    }
}

#[test]
fn one_wrong_entry_with_the_wrong_sign_fails_the_check() {
    let text = "2\nInput shape=1x5x5\nConv2D filters=2 kernel=3x3 activation=relu\n\
                Dense units=3 activation=softmax\n";
    let (mut model, x, labels) = setup(text, 2, 3);
    model.compute_gradients(&x, &labels).unwrap();
    let mut grads: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|(_, p)| p.grad.data().to_vec())
        .collect();
    // The largest entry of the first weight, negated; every entry is checked (<= 1000).
    let big = (0..grads[0].len())
        .max_by(|&a, &b| grads[0][a].abs().total_cmp(&grads[0][b].abs()))
        .unwrap();
    grads[0][big] = -grads[0][big];
    let report = check_gradients(&mut model, &x, &labels, &grads, 1000, STEP, 1).unwrap();
    assert_eq!(report.tensors[0].verdict(), Verdict::Mismatch, "{report:?}");
    assert!(report.failure().is_some());
}

/// A network whose first Dense unit has zero weights and bias: its pre-activation is
/// exactly 0, the ReLU's kink, where the loss has only one-sided derivatives.
fn with_a_dead_unit(text: &str) -> (Model, Tensor, Vec<usize>) {
    let (mut model, x, labels) = setup(text, 2, 5);
    let inputs = model.layers()[0].shapes.input.iter().product::<usize>();
    let mut params = model.params_mut();
    params[0].value.data_mut()[..inputs].fill(0.0);
    params[1].value.data_mut()[0] = 0.0;
    (model, x, labels)
}

#[test]
fn entries_that_move_a_unit_on_its_kink_are_checked_on_the_chosen_side_and_reported() {
    let text = "2\nInput shape=1x2x2\nDense units=3 activation=relu\n\
                Dense units=2 activation=softmax\n";
    let (mut model, x, labels) = with_a_dead_unit(text);
    let report = check_network(&mut model, &x, &labels, 1000, STEP, 1).unwrap();
    assert_eq!(report.failure(), None, "{report:?}");
    assert!(report.forward.near_kinks >= 1, "{report:?}");
    let counts: Vec<(usize, usize, usize)> = report
        .tensors
        .iter()
        .map(|t| (t.checked, t.on_kink, t.unchecked))
        .collect();
    // Unit 0's 4 weights and its bias move it across its kink; the second layer's weights
    // only read its output (0), which they do not move.
    assert_eq!(
        counts,
        [(12, 4, 0), (3, 1, 0), (6, 0, 0), (2, 0, 0)],
        "{report:?}"
    );
}

#[test]
fn an_entry_that_cannot_be_stepped_is_reported_and_the_rest_is_checked() {
    let text = "2\nInput shape=1x2x2\nDense units=3 activation=relu\n\
                Dense units=2 activation=softmax\n";
    let (mut model, x, labels) = setup(text, 2, 5);
    // Unit 0's pre-activation is -inf (the inputs are positive), so its ReLU gives 0; its
    // infinite weight has no finite neighbours to difference.
    model.params_mut()[0].value.data_mut()[0] = f32::NEG_INFINITY;
    let report = check_network(&mut model, &x, &labels, 1000, STEP, 1).unwrap();
    assert_eq!(report.failure(), None, "{report:?}");
    let t = &report.tensors[0];
    assert_eq!((t.checked, t.unchecked), (11, 1), "{report:?}");
    assert!(report.tensors.iter().all(|t| t.verdict() == Verdict::Ok));
}

#[test]
fn a_check_of_no_entry_at_all_fails_and_says_why() {
    let text = "1\nInput shape=1x2x2\nDense units=2 activation=relu\n";
    let (mut model, x, labels) = setup(text, 2, 5);
    let report = check_network(&mut model, &x, &labels, 0, STEP, 1).unwrap();
    assert!(
        report
            .tensors
            .iter()
            .all(|t| t.verdict() == Verdict::Unverified),
        "{report:?}"
    );
    let why = report.failure().unwrap();
    assert!(why.contains("no parameter entry could be checked"), "{why}");
}

#[test]
fn a_forward_pass_that_produces_nan_fails_the_forward_check() {
    let text = format!("6\n{RGB_3X16X16}");
    let (mut model, x, labels) = setup(&text, 1, 2);
    // In the last layer's bias: a NaN before a ReLU could be clipped to 0 (f32::max).
    let mut params = model.params_mut();
    params.last_mut().unwrap().value.data_mut()[0] = f32::NAN;
    let report = check_network(&mut model, &x, &labels, 2, STEP, 1).unwrap();
    let why = report.failure().unwrap();
    assert!(why.contains("forward pass differs"), "{why}");
}
