//! BatchNorm2D and BatchNorm1D: against PyTorch (tests/fixtures/batchnorm{2,1}d.json, written
//! by scripts/make-pytorch-fixtures.py with torch 2.15 in float64), in model files (running
//! statistics and the I64 `num_batches_tracked`), in evaluation mode, and through `cnn train`
//! (same bytes for any thread count and across resume; a batch it cannot normalise refused).

use std::path::Path;

use crate::command::Train;
use crate::common::run;
use crate::fixtures::{assert_close, fixture, tensor};
use crate::runs::model_bytes;
use cnn::layers::batchnorm::Dims;
use cnn::layers::{Activation, BatchNormSpec, Layer, LayerSpec, Op, Pass};
use cnn::tensor::Tensor;

/// A BatchNorm layer of `dims` on inputs of `shape`, with the fixture's momentum, eps,
/// parameters and running statistics before its step.
fn layer_from_fixture(dims: Dims, f: &serde_json::Value, shape: &[usize]) -> Layer {
    let spec = LayerSpec::BatchNorm(BatchNormSpec {
        dims,
        momentum: f["momentum"].as_f64().unwrap() as f32,
        eps: f["eps"].as_f64().unwrap() as f32,
        activation: Activation::None,
    });
    let mut layer = Layer::new(&spec, shape).unwrap();
    let Op::BatchNorm(bn) = &mut layer.op else {
        panic!("a BatchNorm layer")
    };
    bn.weight.value = tensor(&f["weight"]);
    bn.bias.value = tensor(&f["bias"]);
    bn.running_mean = tensor(&f["running_mean_before"]);
    bn.running_var = tensor(&f["running_var_before"]);
    layer
}

fn pytorch_case(file: &str, dims: Dims) {
    let f = fixture(file);
    let x = tensor(&f["x"]);
    let mut layer = layer_from_fixture(dims, &f, &x.shape()[1..]);
    layer.op.prepare(Pass {
        training: true,
        stream: 0,
        ..Default::default()
    });
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    assert_close("y", y.data(), tensor(&f["y"]).data(), 1e-5);
    let mut dy = tensor(&f["dy"]);
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    assert_close("dx", dx.data(), tensor(&f["dx"]).data(), 1e-5);
    let Op::BatchNorm(bn) = &layer.op else {
        unreachable!()
    };
    assert_close(
        "dweight",
        bn.weight.grad.data(),
        tensor(&f["dweight"]).data(),
        1e-5,
    );
    assert_close(
        "dbias",
        bn.bias.grad.data(),
        tensor(&f["dbias"]).data(),
        1e-5,
    );
    assert_close(
        "running_mean",
        bn.running_mean.data(),
        tensor(&f["running_mean"]).data(),
        1e-6,
    );
    assert_close(
        "running_var",
        bn.running_var.data(),
        tensor(&f["running_var"]).data(),
        1e-6,
    );
    assert_eq!(
        bn.num_batches_tracked,
        f["num_batches_tracked"].as_i64().unwrap()
    );
    // Evaluation: the updated running statistics, not the batch's.
    layer.op.prepare(Pass::default());
    let x_eval = tensor(&f["x_eval"]);
    let mut y_eval = Tensor::default();
    layer.forward(&x_eval, &mut y_eval);
    assert_close("y_eval", y_eval.data(), tensor(&f["y_eval"]).data(), 1e-5);
}

#[test]
fn batchnorm2d_matches_pytorch_forward_backward_and_running_statistics() {
    pytorch_case("batchnorm2d.json", Dims::Two);
}

#[test]
fn batchnorm1d_matches_pytorch_forward_backward_and_running_statistics() {
    pytorch_case("batchnorm1d.json", Dims::One);
}

/// A small network with both kinds, for the built-in demo set.
const NET: &str = "7
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=2
BatchNorm2D
ReLU
MaxPool2D pool=2x2
Dense units=16
BatchNorm1D momentum=0.2 activation=relu
Dense units=10 activation=softmax
";

/// `BatchNorm2D activation=relu` computes what `BatchNorm2D` then `ReLU` computes, forward
/// and backward, bit for bit: the same numbers after three training steps.
#[test]
fn a_fused_activation_equals_the_separate_layer() {
    use cnn::optim::{Optimizer, OptimizerKind};
    let separate = "7\nInput shape=2x6x6\nConv2D filters=3 kernel=3x3\nBatchNorm2D\nReLU\n\
                    Dense units=5\nBatchNorm1D\nTanh\nDense units=3 activation=softmax\n";
    let fused = "5\nInput shape=2x6x6\nConv2D filters=3 kernel=3x3\n\
                 BatchNorm2D activation=relu\nDense units=5\nBatchNorm1D activation=tanh\n\
                 Dense units=3 activation=softmax\n";
    let spec_s = cnn::config::parse(separate, "separate").unwrap().spec;
    let spec_f = cnn::config::parse(fused, "fused").unwrap().spec;
    let mut a = cnn::model::Model::new(&spec_s, cnn::init::Init::He, 4).unwrap();
    let mut b = cnn::model::Model::new(&spec_f, cnn::init::Init::He, 4).unwrap();
    let (x, labels) = cnn::bench::synthetic_batch(&spec_s, 6, 2).unwrap();
    let mut opt_a = Optimizer::new(OptimizerKind::Sgd, 0.1, 0.0);
    let mut opt_b = Optimizer::new(OptimizerKind::Sgd, 0.1, 0.0);
    for _ in 0..3 {
        let la = a.train_step(&x, &labels, &mut opt_a).unwrap();
        let lb = b.train_step(&x, &labels, &mut opt_b).unwrap();
        assert_eq!(la.0.to_bits(), lb.0.to_bits());
    }
    let values = |m: &cnn::model::Model| -> Vec<Vec<f32>> {
        m.named_params()
            .iter()
            .map(|(_, p)| p.value.data().to_vec())
            .collect()
    };
    assert_eq!(values(&a), values(&b));
    assert_eq!(a.infer(&x).unwrap(), b.infer(&x).unwrap());
}

/// What every `cnn train` of this file passes ([`NET`] on the demo set) unless a test gives it.
const DEFAULTS: [[&str; 2]; 3] = [["--epochs", "2"], ["--batch-size", "64"], ["--seed", "5"]];

#[test]
fn a_run_with_batchnorm_gives_the_same_bytes_on_1_and_2_threads_and_across_resume() {
    let tmp = tempfile::tempdir().unwrap();
    for (out, extra) in [
        ("one", &["--threads", "1"][..]),
        ("two", &["--threads", "2"][..]),
        ("split", &["--stop-after-steps", "40"][..]),
    ] {
        Train::new(tmp.path().join("net.cfg"), tmp.path().join(out))
            .config(NET)
            .defaults(&DEFAULTS)
            .args(extra)
            .ok();
    }
    let split = tmp.path().join("split");
    Train::resume(&split).ok();
    let one = model_bytes(&tmp.path().join("one"));
    assert_eq!(one, model_bytes(&tmp.path().join("two")));
    assert_eq!(one, model_bytes(&split));

    // The running statistics were trained and saved: 2 epochs of 2,000 / 64 = 32 batches.
    let (model, _) = cnn::model_file::load(&tmp.path().join("one/model.safetensors")).unwrap();
    let buffers = model.named_buffers();
    let names: Vec<&str> = buffers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "layers.1.running_mean",
            "layers.1.running_var",
            "layers.1.num_batches_tracked",
            "layers.5.running_mean",
            "layers.5.running_var",
            "layers.5.num_batches_tracked",
        ]
    );
    for (name, b) in &buffers {
        match b {
            cnn::layers::Buffer::I64(n) => assert_eq!(*n, 64, "{name}"),
            cnn::layers::Buffer::F32(t) if name.ends_with("running_var") => {
                assert!(t.data().iter().all(|&v| v > 0.0 && v != 1.0), "{name}")
            }
            cnn::layers::Buffer::F32(t) => {
                assert!(t.data().iter().any(|&v| v != 0.0), "{name}")
            }
        }
    }
}

/// Evaluation uses the running statistics, so a sample's probabilities do not depend on the
/// other samples of its batch (in training mode they would).
#[test]
fn evaluation_mode_scores_each_image_alone() {
    let tmp = tempfile::tempdir().unwrap();
    Train::new(tmp.path().join("net.cfg"), tmp.path().join("run"))
        .config(NET)
        .defaults(&DEFAULTS)
        .ok();
    let (mut model, _) = cnn::model_file::load(&tmp.path().join("run/model.safetensors")).unwrap();
    let spec = model.spec().clone();
    let (batch, _) = cnn::bench::synthetic_batch(&spec, 6, 3).unwrap();
    let all = model.predict_proba(&batch).unwrap();
    let per = 28 * 28;
    for i in 0..6 {
        let one = Tensor::from_vec(
            &[1, 1, 28, 28],
            batch.data()[i * per..(i + 1) * per].to_vec(),
        )
        .unwrap();
        let p = model.predict_proba(&one).unwrap();
        assert_close(
            "alone vs in a batch",
            p.data(),
            &all.data()[i * 10..(i + 1) * 10],
            1e-6,
        );
    }
}

/// Rewrites the model file at `path` with the tensor `name` replaced by (or, with `None`,
/// without) `(dtype, shape, bytes)`, keeping the metadata.
fn rewrite(
    path: &Path,
    out: &Path,
    name: &str,
    with: Option<(safetensors::Dtype, Vec<usize>, Vec<u8>)>,
) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != name)
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    if let Some((dtype, shape, data)) = with {
        owned.push((name.to_string(), dtype, shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(out, safetensors::serialize(views, &meta).unwrap()).unwrap();
}

#[test]
fn a_model_file_loads_with_or_without_num_batches_tracked_and_refuses_bad_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    Train::new(tmp.path().join("net.cfg"), tmp.path().join("run"))
        .config(NET)
        .defaults(&DEFAULTS)
        .args(&["--epochs", "1"])
        .ok();
    let model = tmp.path().join("run/model.safetensors");
    let probs = |path: &Path| {
        let (mut m, _) = cnn::model_file::load(path).unwrap();
        let (x, _) = cnn::bench::synthetic_batch(&m.spec().clone(), 3, 1).unwrap();
        m.predict_proba(&x).unwrap()
    };
    let want = probs(&model);

    // Without num_batches_tracked (as a file that never had it): loads, same predictions.
    let without = tmp.path().join("without.safetensors");
    rewrite(&model, &without, "layers.1.num_batches_tracked", None);
    assert_eq!(probs(&without), want);

    let refuses = |name: &str, dtype, shape: Vec<usize>, data: Vec<u8>, says: &str| {
        let bad = tmp.path().join("bad.safetensors");
        rewrite(&model, &bad, name, Some((dtype, shape, data)));
        let (code, _, stderr) = run(&[&"summary", &bad]);
        assert_eq!(code, 0, "summary reads the config only: {stderr}");
        let img = tmp.path().join("img.png");
        crate::files::write_png(&img, 28, 28, |x, _| (x * 9) as u8);
        let (code, _, stderr) = run(&[&"predict", &bad, &img]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(stderr.contains("bad.safetensors"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    };
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    refuses(
        "layers.1.running_var",
        safetensors::Dtype::F32,
        vec![4],
        f32s(&[1.0, -0.5, 1.0, 1.0]),
        "negative variance",
    );
    refuses(
        "layers.1.num_batches_tracked",
        safetensors::Dtype::F32,
        vec![],
        f32s(&[3.0]),
        "expected an I64 scalar",
    );
    refuses(
        "layers.1.num_batches_tracked",
        safetensors::Dtype::I64,
        vec![],
        (-4i64).to_le_bytes().to_vec(),
        "cannot be negative",
    );
    refuses(
        "layers.5.running_mean",
        safetensors::Dtype::F32,
        vec![15],
        f32s(&[0.0; 15]),
        "the config needs [16]",
    );
}

#[test]
fn training_batchnorm1d_on_a_batch_of_one_is_refused_before_training_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let train = |out: &str, batch: &str| {
        Train::new(tmp.path().join("net.cfg"), tmp.path().join(out))
            .config(NET)
            .defaults(&DEFAULTS)
            .args(&["--batch-size", batch])
            .run()
    };
    let (code, _, stderr) = train("run", "1");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("BatchNorm1D cannot normalise a training batch of 1 sample"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // The demo set's 2,000 images in batches of 1,999 leave a last batch of 1.
    let (code, _, stderr) = train("run2", "1999");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the last batch of each epoch has 1"),
        "{stderr}"
    );
    assert!(!tmp.path().join("run2/model.safetensors").exists());
}

#[test]
fn a_batchnorm_line_with_a_bad_key_gets_the_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.cfg");
    std::fs::write(
        &cfg,
        "2\nInput shape=1x8x8\nBatchNorm2D momentum=1.5\nDense units=2\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&[&"summary", &cfg]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad.cfg:3:"), "{stderr}");
    assert!(
        stderr.contains("`momentum` must be a number above 0 and at most 1"),
        "{stderr}"
    );

    std::fs::write(&cfg, "2\nInput shape=1x8x8\nBatchNorm1D\nDense units=2\n").unwrap();
    let (code, _, stderr) = run(&[&"summary", &cfg]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("use BatchNorm2D"), "{stderr}");
}

#[test]
fn the_gradient_check_passes_through_both_batchnorm_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("net.cfg");
    std::fs::write(&cfg, NET).unwrap();
    let (code, stdout, stderr) = run(&[&"gradcheck", &cfg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for t in [
        "layers.1.weight",
        "layers.1.bias",
        "layers.5.weight",
        "layers.5.bias",
    ] {
        let line = stdout.lines().find(|l| l.starts_with(t)).unwrap();
        assert!(line.ends_with(" ok"), "{line}");
    }
}
