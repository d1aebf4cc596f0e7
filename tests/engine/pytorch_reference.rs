//! Our layers, loss, optimisers and learning-rate schedules against PyTorch 2.15 (float64)
//! reference values.
//! The numbers come from `tests/fixtures/*.json`, written by scripts/make-pytorch-fixtures.py
//! (each file names the PyTorch call that produced it and its version). f32 lands within
//! ~1e-5 relative for single layers and ~1e-4 after three training steps.

use crate::fixtures::{assert_close, fixture, tensor};
use cnn::init::Init;
use cnn::layers::*;
use cnn::model::Model;
use cnn::optim::{Optimizer, OptimizerKind};
use cnn::tensor::Tensor;

/// A convolution from a fixture: its groups (1 unless the file says) and whether it has a
/// bias (a file without `bias` is a `bias=False` convolution) come from the file.
fn conv_case(file: &str, stride: usize, padding: Padding) {
    let f = fixture(file);
    let (x, w) = (tensor(&f["x"]), tensor(&f["weight"]));
    let has_bias = !f["bias"].is_null();
    let ws = w.shape().to_vec();
    let spec = LayerSpec::Conv2D(Conv2dSpec {
        filters: ws[0],
        kernel: (ws[2], ws[3]),
        stride,
        padding,
        activation: Activation::None,
        groups: f["groups"].as_u64().unwrap_or(1) as usize,
        bias: has_bias,
    });
    let mut layer = Layer::new(&spec, &x.shape()[1..]).unwrap();
    let Op::Conv2D(conv) = &mut layer.op else {
        panic!("conv layer")
    };
    conv.weight.value = w;
    if has_bias {
        conv.bias.value = tensor(&f["bias"]);
    }
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    assert_eq!(y.shape(), tensor(&f["y"]).shape());
    assert_close("y", y.data(), tensor(&f["y"]).data(), 1e-5);
    let mut dy = tensor(&f["dy"]);
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    assert_close("dx", dx.data(), tensor(&f["dx"]).data(), 1e-5);
    let params = layer.params();
    assert_eq!(params.len(), if has_bias { 2 } else { 1 }, "{file}");
    assert_close(
        "dw",
        params[0].1.grad.data(),
        tensor(&f["dweight"]).data(),
        1e-5,
    );
    if has_bias {
        assert_close(
            "db",
            params[1].1.grad.data(),
            tensor(&f["dbias"]).data(),
            1e-5,
        );
    }
}

#[test]
fn conv2d_same_5x5_matches_pytorch() {
    conv_case("conv2d_same_5x5.json", 1, Padding::Same);
}

#[test]
fn conv2d_stride2_pad1_matches_pytorch() {
    conv_case("conv2d_stride2_pad1.json", 2, Padding::Explicit(1));
}

#[test]
fn conv2d_valid_2x3_matches_pytorch() {
    conv_case("conv2d_valid_2x3.json", 1, Padding::Valid);
}

#[test]
fn conv2d_in_two_groups_matches_pytorch() {
    conv_case("conv2d_groups2.json", 1, Padding::Explicit(1));
}

#[test]
fn depthwise_conv2d_matches_pytorch() {
    conv_case("conv2d_depthwise_s1.json", 1, Padding::Explicit(1));
}

#[test]
fn depthwise_conv2d_with_two_filters_per_channel_and_stride_2_matches_pytorch() {
    conv_case("conv2d_depthwise_s2.json", 2, Padding::Explicit(1));
}

#[test]
fn conv2d_without_a_bias_matches_pytorch() {
    conv_case("conv2d_nobias.json", 1, Padding::Explicit(1));
}

/// The depthwise-separable block of `separable_block.json` (depthwise 3x3, BatchNorm, ReLU,
/// pointwise 1x1, BatchNorm, ReLU, no biases), parsed from the config text in the file and run
/// layer by layer in training mode: the output, dx, every gradient and the running statistics
/// after the step equal PyTorch's.
#[test]
fn a_depthwise_separable_block_matches_pytorch_in_training() {
    let f = fixture("separable_block.json");
    let spec = cnn::config::parse(f["config"].as_str().unwrap(), "separable_block.json")
        .unwrap()
        .spec;
    let x = tensor(&f["x"]);
    let mut layers = Vec::new();
    let mut shape = x.shape()[1..].to_vec();
    let mut inputs = vec![x.clone()];
    for (i, s) in spec.layers.iter().enumerate() {
        let mut layer = Layer::new(s, &shape).unwrap();
        layer.op.prepare(Pass {
            training: true,
            stream: 0,
            ..Default::default()
        });
        let prefix = format!("layers.{i}.");
        for (name, p) in layer.params_mut() {
            p.value = tensor(&f["initial"][format!("{prefix}{name}")]);
        }
        if let Op::BatchNorm(bn) = &mut layer.op {
            bn.running_mean = tensor(&f["initial"][format!("{prefix}running_mean")]);
            bn.running_var = tensor(&f["initial"][format!("{prefix}running_var")]);
        }
        let mut y = Tensor::default();
        layer.forward(inputs.last().unwrap(), &mut y);
        shape = y.shape()[1..].to_vec();
        inputs.push(y);
        layers.push(layer);
    }
    assert_close(
        "y",
        inputs.last().unwrap().data(),
        tensor(&f["y"]).data(),
        1e-5,
    );
    let mut dy = tensor(&f["dy"]);
    for (i, layer) in layers.iter_mut().enumerate().rev() {
        let mut dx = Tensor::default();
        layer.backward(&inputs[i], &inputs[i + 1], &mut dy, Some(&mut dx));
        dy = dx;
    }
    assert_close("dx", dy.data(), tensor(&f["dx"]).data(), 1e-5);
    let grads = f["grads"].as_object().unwrap();
    let mut checked = 0;
    for (i, layer) in layers.iter().enumerate() {
        for (name, p) in layer.params() {
            let key = format!("layers.{i}.{name}");
            assert_close(&key, p.grad.data(), tensor(&grads[&key]).data(), 1e-5);
            checked += 1;
        }
        if let Op::BatchNorm(bn) = &layer.op {
            for (what, got) in [
                ("running_mean", &bn.running_mean),
                ("running_var", &bn.running_var),
            ] {
                let key = format!("layers.{i}.{what}");
                assert_close(
                    &key,
                    got.data(),
                    tensor(&f["buffers_after"][&key]).data(),
                    1e-6,
                );
            }
        }
    }
    // Two convolution weights, two BatchNorms' weight and bias: no bias on either convolution.
    assert_eq!(checked, grads.len());
    assert_eq!(checked, 6);
}

/// A layer without parameters (pooling, an activation): y and dx of the file's x and dy.
fn pool_case(file: &str, spec: LayerSpec) {
    let f = fixture(file);
    let x = tensor(&f["x"]);
    let mut layer = Layer::new(&spec, &x.shape()[1..]).unwrap();
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    assert_eq!(y.shape(), tensor(&f["y"]).shape());
    assert_close("y", y.data(), tensor(&f["y"]).data(), 1e-5);
    let mut dy = tensor(&f["dy"]);
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    assert_close("dx", dx.data(), tensor(&f["dx"]).data(), 1e-5);
}

#[test]
fn relu6_matches_pytorch_on_both_sides_of_both_kinks() {
    pool_case("relu6.json", LayerSpec::Activation(Activation::Relu6));
}

#[test]
fn maxpool_2x2_matches_pytorch() {
    let s = PoolSpec {
        pool: (2, 2),
        stride: 2,
    };
    pool_case("maxpool_2x2_s2.json", LayerSpec::MaxPool2D(s));
}

#[test]
fn maxpool_3x3_stride2_overlapping_matches_pytorch() {
    let s = PoolSpec {
        pool: (3, 3),
        stride: 2,
    };
    pool_case("maxpool_3x3_s2_odd.json", LayerSpec::MaxPool2D(s));
}

#[test]
fn avgpool_2x2_on_odd_input_matches_pytorch() {
    let s = PoolSpec {
        pool: (2, 2),
        stride: 2,
    };
    pool_case("avgpool_2x2_s2_odd.json", LayerSpec::AvgPool2D(s));
}

#[test]
fn global_avgpool_matches_pytorch_adaptive_avg_pool_then_flatten() {
    pool_case(
        "global_avgpool_2x3x4x5.json",
        LayerSpec::GlobalAvgPool2D(GlobalPoolSpec),
    );
}

#[test]
fn dense_matches_pytorch_linear() {
    let f = fixture("dense_7_to_4.json");
    let x = tensor(&f["x"]);
    let spec = LayerSpec::Dense(DenseSpec {
        units: 4,
        activation: Activation::None,
    });
    let mut layer = Layer::new(&spec, &x.shape()[1..]).unwrap();
    {
        let mut ps = layer.params_mut();
        ps[0].1.value = tensor(&f["weight"]);
        ps[1].1.value = tensor(&f["bias"]);
    }
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    assert_close("y", y.data(), tensor(&f["y"]).data(), 1e-5);
    let mut dy = tensor(&f["dy"]);
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    assert_close("dx", dx.data(), tensor(&f["dx"]).data(), 1e-5);
    let ps = layer.params();
    assert_close(
        "dw",
        ps[0].1.grad.data(),
        tensor(&f["dweight"]).data(),
        1e-5,
    );
    assert_close("db", ps[1].1.grad.data(), tensor(&f["dbias"]).data(), 1e-5);
}

/// A fixture's `labels` array.
fn fixture_labels(f: &serde_json::Value) -> Vec<usize> {
    f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn fused_softmax_cross_entropy_matches_pytorch() {
    let f = fixture("softmax_cross_entropy.json");
    let z = tensor(&f["z"]);
    let labels = fixture_labels(&f);
    let mut dz = vec![0.0; z.len()];
    let loss = cnn::loss::softmax_cross_entropy(z.data(), &labels, 5, &mut dz);
    let want = f["loss"].as_f64().unwrap() as f32;
    assert!((loss - want).abs() <= 1e-5 * want, "{loss} vs {want}");
    assert_close("dz", &dz, tensor(&f["dz"]).data(), 1e-5);
}

#[test]
fn label_smoothed_cross_entropy_matches_pytorch() {
    let f = fixture("softmax_cross_entropy_smoothed.json");
    let z = tensor(&f["z"]);
    let labels = fixture_labels(&f);
    let eps = f["label_smoothing"].as_f64().unwrap() as f32;
    let mut dz = vec![0.0; z.len()];
    let loss = cnn::loss::softmax_cross_entropy_smoothed(z.data(), &labels, 5, eps, &mut dz);
    let want = f["loss"].as_f64().unwrap() as f32;
    assert!((loss - want).abs() <= 1e-5 * want, "{loss} vs {want}");
    assert_close("dz", &dz, tensor(&f["dz"]).data(), 1e-5);
}

fn train_case(file: &str, kind: OptimizerKind, lr: f32, wd: f32) {
    let f = fixture(file);
    // Report 1's network in small (1x8x8, Conv2D 4, MaxPool, Dense 16, Dense 3), parsed from
    // the config text stored in the fixture: the parser and PyTorch agree on the network.
    let config = f["config"].as_str().unwrap();
    let spec = cnn::config::parse(config, file).unwrap().spec;
    let mut model = Model::new(&spec, Init::Normal, 0).unwrap();
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    for (name, p) in names.iter().zip(model.params_mut()) {
        p.value = tensor(&f["initial"][name]);
    }
    let x = tensor(&f["x"]);
    let labels = fixture_labels(&f);
    let mut opt = Optimizer::new(kind, lr, wd);
    for (step, want) in f["losses_before_each_step"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let (loss, _) = model.train_step(&x, &labels, &mut opt).unwrap();
        let want = want.as_f64().unwrap() as f32;
        assert!(
            (loss - want).abs() <= 1e-4 * want,
            "{file} step {step}: loss {loss}, PyTorch {want}"
        );
    }
    for (name, p) in model.named_params() {
        let want = tensor(&f["after_3_steps"][&name]);
        assert_close(&format!("{file} {name}"), p.value.data(), want.data(), 1e-4);
    }
}

#[test]
fn three_sgd_steps_match_pytorch() {
    train_case("train_steps_sgd.json", OptimizerKind::Sgd, 0.1, 0.0);
}

#[test]
fn three_momentum_steps_match_pytorch() {
    train_case(
        "train_steps_sgd_momentum.json",
        OptimizerKind::momentum(),
        0.1,
        0.0,
    );
}

#[test]
fn three_nesterov_steps_match_pytorch() {
    let kind = OptimizerKind::Momentum {
        mu: 0.9,
        nesterov: true,
    };
    train_case("train_steps_sgd_nesterov.json", kind, 0.1, 0.0);
}

#[test]
fn three_momentum_steps_with_weight_decay_match_pytorch() {
    train_case(
        "train_steps_sgd_weight_decay.json",
        OptimizerKind::momentum(),
        0.1,
        0.01,
    );
}

#[test]
fn three_adam_steps_match_pytorch() {
    train_case("train_steps_adam.json", OptimizerKind::adam(), 0.01, 0.0);
}

#[test]
fn three_adamw_steps_match_pytorch() {
    // AdamW with weight decay 0.1: the decay shrinks the weights, w <- w (1 - lr wd), and is
    // not added to the gradient, so Adam's moments never see it.
    train_case("train_steps_adamw.json", OptimizerKind::adamw(), 0.01, 0.1);
}

/// A dataset of `n` blank 1x4x4 images in 2 classes, for runs whose rates alone matter.
fn blank_dataset(n: usize) -> cnn::data::Dataset {
    cnn::data::Dataset {
        images: vec![0; n * 16],
        labels: (0..n).map(|i| (i % 2) as u16).collect(),
        shape: [1, 4, 4],
        classes: vec!["a".into(), "b".into()],
        source: "blank".into(),
    }
}

/// Trains a tiny network for `f`'s epochs of `f`'s steps with its schedule and warm-up, and
/// returns the learning rate of every step, as the optimiser had it for that step.
fn rates_of_run(f: &serde_json::Value) -> Vec<f32> {
    use cnn::schedule::Schedule;
    use cnn::train::{train, Control, Event, TrainOptions, TrainState};
    let get = |k: &str| f[k].as_f64().unwrap_or_default();
    let schedule = match f["schedule"].as_str().unwrap() {
        "constant" => Schedule::Constant,
        "step" => Schedule::Step {
            every: get("step_size") as usize,
            gamma: get("gamma") as f32,
        },
        "cosine" => Schedule::Cosine {
            min_lr: get("min_lr") as f32,
        },
        other => panic!("schedule {other}"),
    };
    let steps = get("steps") as usize;
    let opts = TrainOptions {
        epochs: get("epochs") as usize,
        batch_size: 2,
        schedule,
        warmup: get("warmup") as usize,
        base_lr: Some(get("lr") as f32),
        ..TrainOptions::default()
    };
    let spec = cnn::config::parse("1\nInput shape=1x4x4\nDense units=2\n", "t.cfg")
        .unwrap()
        .spec;
    let mut model = Model::new(&spec, Init::Normal, 0).unwrap();
    let mut state = TrainState::new(Optimizer::new(OptimizerKind::Sgd, 1.0, 0.0));
    let data = blank_dataset(2 * steps);
    let norm = cnn::data::Normalization::identity(1);
    let mut rates = Vec::new();
    let mut on_event = |e: &Event, st: &TrainState, _: &Model| {
        if let Event::Step { .. } = e {
            rates.push(st.optimizer.lr);
        }
        Control::Continue
    };
    train(
        &mut model,
        &data,
        None,
        &norm,
        &opts,
        &mut state,
        &mut on_event,
    )
    .unwrap();
    rates
}

#[test]
fn warm_up_per_step_then_the_schedule_per_epoch_matches_pytorchs_schedulers() {
    // PyTorch's LinearLR stepped after every step of the warm-up, then CosineAnnealingLR or
    // StepLR stepped after every epoch (the fixture's `pytorch` of each run).
    let f = fixture("lr_schedules.json");
    for run in f["runs"].as_array().unwrap() {
        let want: Vec<f32> = run["rates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap() as f32)
            .collect();
        let got = rates_of_run(run);
        assert_close(&format!("{}", run["pytorch"]), &got, &want, 1e-6);
    }
}

/// A network that is a graph (`residual_block_projection.json`, `concat_branches.json`),
/// parsed from the config text in the file, with the file's weights and running statistics,
/// through one training pass of the model itself (forward in config order, backward with a
/// value's gradients summed over its readers): the logits, the loss, dL/dx, every
/// parameter's gradient and the running statistics after the pass equal PyTorch's.
fn graph_case(file: &str) {
    let f = fixture(file);
    let spec = cnn::config::parse(f["config"].as_str().unwrap(), file)
        .unwrap()
        .spec;
    let mut model = Model::new(&spec, Init::He, 1).unwrap();
    let initial = &f["initial"];
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    for (name, p) in names.iter().zip(model.params_mut()) {
        p.value = tensor(&initial[name]);
    }
    let names: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
    for (name, b) in names.iter().zip(model.buffers_mut()) {
        if let BufferMut::F32(t) = b {
            *t = tensor(&initial[name]);
        }
    }
    let floats = model
        .named_buffers()
        .into_iter()
        .filter(|(_, b)| matches!(b, Buffer::F32(_)))
        .count();
    assert_eq!(
        initial.as_object().unwrap().len(),
        model.named_params().len() + floats,
        "{file}: every tensor of the file is set"
    );
    let x = tensor(&f["x"]);
    let labels: Vec<usize> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    model.set_input_gradient(true);
    let (loss, _) = model.compute_gradients(&x, &labels).unwrap();
    let last = model.layers().len() - 1;
    assert_close(
        "logits",
        model.activation(last).unwrap().data(),
        tensor(&f["logits"]).data(),
        1e-5,
    );
    let want = f["loss"].as_f64().unwrap() as f32;
    assert!(
        (loss - want).abs() <= 1e-5 * want.abs(),
        "loss {loss} vs {want}"
    );
    assert_close(
        "dx",
        model.input_gradient().unwrap().data(),
        tensor(&f["dx"]).data(),
        1e-4,
    );
    let grads = f["grads"].as_object().unwrap();
    assert_eq!(grads.len(), model.named_params().len(), "{file}");
    for (name, p) in model.named_params() {
        assert_close(&name, p.grad.data(), tensor(&grads[&name]).data(), 1e-4);
    }
    for (name, b) in model.named_buffers() {
        if let (Buffer::F32(t), Some(want)) = (b, f["buffers_after"].get(&name)) {
            assert_close(&name, t.data(), tensor(want).data(), 1e-5);
        }
    }
}

#[test]
fn a_residual_block_with_a_projection_shortcut_matches_pytorch_in_training() {
    graph_case("residual_block_projection.json");
}

#[test]
fn a_concatenation_of_two_branches_matches_pytorch() {
    graph_case("concat_branches.json");
}

#[test]
fn a_mobilenet_v2_inverted_residual_block_matches_pytorch_in_training() {
    graph_case("inverted_residual_block.json");
}
