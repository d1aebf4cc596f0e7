//! Finite-difference gradient checks of every layer and of the loss.
//!
//! For a layer y = f(x; w) we take the scalar L = sum_i r_i y_i with a fixed random r, so
//! dL/dy = r, and compare backprop's dL/dx, dL/dw, dL/db with central differences
//! (L(v + h) - L(v - h)) / 2h, h = 1e-2, L accumulated in f64. Conv2D, Dense and pooling
//! are piecewise linear, so the difference is exact up to f32 rounding; inputs are kept
//! away from ReLU kinks (|x| >= 0.1 > h) and max-pool ties (values at least 0.05 apart).
//! Tolerance: relative error 1e-2 with a floor of 1e-2 on the denominator.

use cnn::gradcheck::rel_error;
use cnn::layers::*;
use cnn::rng::Rng;
use cnn::tensor::Tensor;

const H: f32 = 1e-2;
const TOL: f64 = 1e-2;

fn random_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.normal() as f32).collect()).unwrap()
}

/// L = sum r * layer(x) in f64.
fn loss(layer: &mut Layer, x: &Tensor, r: &[f32]) -> f64 {
    let mut y = Tensor::default();
    layer.forward(x, &mut y);
    y.data()
        .iter()
        .zip(r)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

/// Checks dx and every parameter gradient of `layer` at `x`.
fn check_layer(what: &str, layer: &mut Layer, x: &Tensor, rng: &mut Rng) {
    let mut y = Tensor::default();
    layer.forward(x, &mut y);
    let r: Vec<f32> = (0..y.len()).map(|_| rng.normal() as f32).collect();
    let mut dy = Tensor::from_vec(y.shape(), r.clone()).unwrap();
    let mut dx = Tensor::default();
    layer.backward(x, &y, &mut dy, Some(&mut dx));
    let analytic_params: Vec<Vec<f32>> = layer
        .params()
        .iter()
        .map(|(_, p)| p.grad.data().to_vec())
        .collect();

    let mut xp = x.clone();
    for i in 0..x.len() {
        let v = x.data()[i];
        xp.data_mut()[i] = v + H;
        let plus = loss(layer, &xp, &r);
        xp.data_mut()[i] = v - H;
        let minus = loss(layer, &xp, &r);
        xp.data_mut()[i] = v;
        let numeric = (plus - minus) / (2.0 * f64::from(H));
        let e = rel_error(numeric, f64::from(dx.data()[i]), 1e-2);
        assert!(
            e < TOL,
            "{what}: dx[{i}] backprop {} vs numeric {numeric}",
            dx.data()[i]
        );
    }
    for (t, analytic) in analytic_params.iter().enumerate() {
        for (i, &backprop) in analytic.iter().enumerate() {
            let v = layer.params()[t].1.value.data()[i];
            layer.params_mut()[t].1.value.data_mut()[i] = v + H;
            let plus = loss(layer, x, &r);
            layer.params_mut()[t].1.value.data_mut()[i] = v - H;
            let minus = loss(layer, x, &r);
            layer.params_mut()[t].1.value.data_mut()[i] = v;
            let numeric = (plus - minus) / (2.0 * f64::from(H));
            let e = rel_error(numeric, f64::from(backprop), 1e-2);
            let name = layer.params()[t].0;
            assert!(
                e < TOL,
                "{what}: d{name}[{i}] backprop {backprop} vs numeric {numeric}"
            );
        }
    }
}

fn with_random_params(layer: &mut Layer, rng: &mut Rng) {
    for (_, p) in layer.params_mut() {
        p.value
            .data_mut()
            .iter_mut()
            .for_each(|v| *v = rng.normal() as f32);
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let mut rng = Rng::new(11);
    // (N, C, H, W, K, kh, kw, stride, padding): stride 2, odd sizes, same/valid/explicit,
    // several channels, batch > 1, non-square kernels.
    let cases = [
        (2, 3, 7, 6, 4, 3, 3, 2, Padding::Explicit(1)),
        (3, 1, 5, 5, 2, 3, 3, 1, Padding::Same),
        (2, 2, 6, 7, 3, 2, 3, 1, Padding::Valid),
        (2, 2, 7, 7, 2, 3, 3, 2, Padding::Same),
        (1, 3, 9, 8, 2, 4, 2, 3, Padding::Same),
        (2, 2, 5, 6, 3, 5, 5, 1, Padding::Explicit(2)),
    ];
    for (n, c, h, w, k, kh, kw, s, p) in cases {
        let spec = Conv2dSpec {
            filters: k,
            kernel: (kh, kw),
            stride: s,
            padding: p,
            activation: Activation::None,
            groups: 1,
            bias: true,
        };
        check_conv(spec, [n, c, h, w], &mut rng);
    }
}

/// A Conv2D layer of `spec` with random parameters, on a random input of `shape` (N, C, H,
/// W), against finite differences; it has a bias tensor only when `spec.bias`.
fn check_conv(spec: Conv2dSpec, shape: [usize; 4], rng: &mut Rng) {
    let [n, c, h, w] = shape;
    let bias = spec.bias;
    let spec = LayerSpec::Conv2D(spec);
    let mut layer = Layer::new(&spec, &[c, h, w]).unwrap();
    assert_eq!(layer.params().len(), if bias { 2 } else { 1 });
    with_random_params(&mut layer, rng);
    let x = random_tensor(&[n, c, h, w], rng);
    check_layer(
        &format!("Conv2D {spec:?} on {:?}", x.shape()),
        &mut layer,
        &x,
        rng,
    );
}

#[test]
fn grouped_and_depthwise_conv_gradients_match_finite_differences() {
    let mut rng = Rng::new(13);
    // (N, C, H, W, K, kh, kw, stride, padding, G, bias): two groups, depthwise at stride
    // 1 and 2 with one and two filters per channel, convolutions without a bias.
    let cases = [
        (2, 4, 6, 7, 6, 3, 3, 1, Padding::Same, 2, true),
        (2, 3, 7, 6, 3, 3, 3, 1, Padding::Explicit(1), 3, true),
        (3, 3, 7, 8, 6, 3, 3, 2, Padding::Explicit(1), 3, true),
        (2, 4, 5, 5, 4, 3, 3, 1, Padding::Same, 1, false),
        (2, 4, 9, 7, 4, 3, 3, 2, Padding::Same, 4, false),
        (1, 6, 5, 6, 6, 2, 3, 1, Padding::Valid, 3, true),
    ];
    for (n, c, h, w, k, kh, kw, s, p, groups, bias) in cases {
        let spec = Conv2dSpec {
            filters: k,
            kernel: (kh, kw),
            stride: s,
            padding: p,
            activation: Activation::None,
            groups,
            bias,
        };
        check_conv(spec, [n, c, h, w], &mut rng);
    }
}

#[test]
fn a_depthwise_separable_network_passes_the_frozen_gradient_check() {
    // Depthwise 3x3 (stride 1, then 2) + BatchNorm + ReLU + pointwise 1x1 in two groups +
    // BatchNorm + ReLU, convolutions without a bias: the f32 forward pass agrees with the
    // f64 definition and every gradient with the frozen network's finite differences.
    use cnn::init::Init;
    use cnn::model::Model;
    let spec = cnn::config::parse(
        "10\nInput shape=4x8x7\n\
         Conv2D filters=8 kernel=3x3 padding=1 groups=4 bias=false\n\
         BatchNorm2D\nReLU\n\
         Conv2D filters=8 kernel=1x1 groups=2 bias=false\n\
         BatchNorm2D\nReLU\n\
         Conv2D filters=8 kernel=3x3 stride=2 padding=1 groups=8 activation=tanh\n\
         Conv2D filters=6 kernel=1x1\n\
         GlobalAvgPool2D\n\
         Dense units=3\n",
        "separable",
    )
    .unwrap()
    .spec;
    let mut model = Model::new(&spec, Init::He, 3).unwrap();
    let mut rng = Rng::new(8);
    let x = random_tensor(&[8, 4, 8, 7], &mut rng);
    let labels: Vec<usize> = (0..8).map(|i| i % 3).collect();
    let report = cnn::gradcheck::check_network(&mut model, &x, &labels, 200, 1e-3, 5).unwrap();
    assert!(report.forward.max_rel_error < 1e-5, "{:?}", report.forward);
    assert_eq!(report.forward.wrong_choices, 0, "{:?}", report.forward);
    let names: Vec<&str> = report.tensors.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"layers.0.weight") && !names.contains(&"layers.0.bias"));
    for c in &report.tensors {
        assert!(c.checked > 0 && c.max_rel_error < 1e-4, "{c:?}");
    }
}

#[test]
fn dense_gradients_match_finite_differences() {
    let mut rng = Rng::new(12);
    for (n, shape, units) in [(3, vec![7], 4), (2, vec![2, 3, 3], 5), (1, vec![1], 1)] {
        let spec = LayerSpec::Dense(DenseSpec {
            units,
            activation: Activation::None,
        });
        let mut layer = Layer::new(&spec, &shape).unwrap();
        with_random_params(&mut layer, &mut rng);
        let mut full = vec![n];
        full.extend_from_slice(&shape);
        let x = random_tensor(&full, &mut rng);
        check_layer("Dense", &mut layer, &x, &mut rng);
    }
}

/// Distinct values at least 0.05 apart in random order, so no max-pool window has a tie
/// that a step of h = 0.01 could flip.
fn tie_free_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - n as f32 * 0.025).collect();
    rng.shuffle(&mut v);
    Tensor::from_vec(shape, v).unwrap()
}

#[test]
fn pooling_gradients_match_finite_differences() {
    let mut rng = Rng::new(13);
    for (shape, pool, stride) in [
        ([2, 3, 6, 6], (2, 2), 2),
        ([1, 2, 7, 7], (3, 3), 2),
        ([2, 2, 5, 5], (2, 2), 2),
        ([2, 1, 7, 6], (3, 2), 1),
    ] {
        let s = PoolSpec { pool, stride };
        for spec in [
            LayerSpec::MaxPool2D(s.clone()),
            LayerSpec::AvgPool2D(s.clone()),
        ] {
            let mut layer = Layer::new(&spec, &shape[1..]).unwrap();
            let x = tie_free_tensor(&shape, &mut rng);
            check_layer(&format!("{spec:?}"), &mut layer, &x, &mut rng);
        }
    }
}

#[test]
fn global_average_pooling_gradients_match_finite_differences() {
    let mut rng = Rng::new(17);
    for shape in [[2, 3, 4, 5], [1, 2, 1, 1], [3, 1, 7, 6]] {
        let spec = LayerSpec::GlobalAvgPool2D(GlobalPoolSpec);
        let mut layer = Layer::new(&spec, &shape[1..]).unwrap();
        let x = random_tensor(&shape, &mut rng);
        check_layer(
            &format!("GlobalAvgPool2D on {shape:?}"),
            &mut layer,
            &x,
            &mut rng,
        );
    }
}

#[test]
fn activation_gradients_match_finite_differences() {
    let mut rng = Rng::new(14);
    for act in [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
    ] {
        let spec = LayerSpec::Activation(act);
        let mut layer = Layer::new(&spec, &[2, 3, 3]).unwrap();
        let mut x = random_tensor(&[3, 2, 3, 3], &mut rng);
        // Away from the kink at 0: |x| >= 0.1.
        x.data_mut()
            .iter_mut()
            .for_each(|v| *v = v.signum() * (v.abs() + 0.1));
        check_layer(&format!("{act:?}"), &mut layer, &x, &mut rng);
    }
    // ReLU6 on both sides of both kinks: x = 3 + 4 N(0, 1), kept 0.1 away from 0 and 6.
    let mut layer = Layer::new(&LayerSpec::Activation(Activation::Relu6), &[2, 3, 3]).unwrap();
    let mut x = random_tensor(&[4, 2, 3, 3], &mut rng);
    x.data_mut().iter_mut().for_each(|v| {
        *v = 3.0 + 4.0 * *v;
        for kink in [0.0, 6.0] {
            if (*v - kink).abs() < 0.1 {
                *v = kink + 0.1f32.copysign(*v - kink);
            }
        }
    });
    assert!(x.data().iter().any(|&v| v > 6.0) && x.data().iter().any(|&v| v < 0.0));
    check_layer("ReLU6", &mut layer, &x, &mut rng);
}

#[test]
fn an_inverted_residual_network_with_relu6_passes_the_gradient_check() {
    // MobileNetV2's blocks: expand 1x1 + BatchNorm + ReLU6, depthwise 3x3 + BatchNorm +
    // ReLU6, project 1x1 + BatchNorm, with the residual add when the shapes are equal, after
    // a stem with ReLU6 that inputs from 0 to 1 drive past 6 in places.
    let text = "16\nInput shape=2x6x6\n\
         Conv2D filters=4 kernel=3x3 padding=same activation=relu6\n\
         Conv2D filters=8 kernel=1x1 bias=false\n\
         BatchNorm2D activation=relu6\n\
         Conv2D filters=8 kernel=3x3 padding=1 groups=8 bias=false\n\
         BatchNorm2D activation=relu6\n\
         Conv2D filters=4 kernel=1x1 bias=false\n\
         BatchNorm2D\n\
         Shortcut from=-7\n\
         Conv2D filters=8 kernel=1x1 bias=false\n\
         BatchNorm2D activation=relu6\n\
         Conv2D filters=8 kernel=3x3 stride=2 padding=1 groups=8 bias=false\n\
         BatchNorm2D activation=relu6\n\
         Conv2D filters=6 kernel=1x1 bias=false\n\
         BatchNorm2D\n\
         GlobalAvgPool2D\n\
         Dense units=3\n";
    // Scaled so that the stem's ReLU6 is capped at 6 for some units.
    let (mut model, mut x, _) = graph_setup(text, 8, 1);
    x.data_mut().iter_mut().for_each(|v| *v *= 6.0);
    model.forward(&x).unwrap();
    assert!(model.activation(0).unwrap().data().contains(&6.0));
    for seed in 1..=4 {
        let (mut model, mut x, labels) = graph_setup(text, 8, seed);
        x.data_mut().iter_mut().for_each(|v| *v *= 6.0);
        let report =
            cnn::gradcheck::check_network(&mut model, &x, &labels, 40, cnn::gradcheck::STEP, seed)
                .unwrap();
        assert_eq!(report.failure(), None, "seed {seed}: {report:?}");
        assert_eq!(report.forward.wrong_choices, 0, "seed {seed}: {report:?}");
        assert!(report.tensors.iter().all(|t| t.checked > 0), "{report:?}");
    }
}

#[test]
fn flatten_passes_gradients_through() {
    let mut rng = Rng::new(15);
    let mut layer = Layer::new(&LayerSpec::Flatten(Flatten), &[2, 3, 4]).unwrap();
    let x = random_tensor(&[2, 2, 3, 4], &mut rng);
    check_layer("Flatten", &mut layer, &x, &mut rng);
}

#[test]
fn loss_gradient_matches_finite_differences() {
    let mut rng = Rng::new(16);
    let (n, k) = (4, 5);
    let z: Vec<f32> = (0..n * k).map(|_| 3.0 * rng.normal() as f32).collect();
    let labels = [0, 3, 4, 1];
    let mut g = vec![0.0; n * k];
    cnn::loss::softmax_cross_entropy(&z, &labels, k, &mut g);
    let mut zp = z.clone();
    for i in 0..z.len() {
        zp[i] = z[i] + H;
        let plus = f64::from(cnn::loss::cross_entropy_only(&zp, &labels, k));
        zp[i] = z[i] - H;
        let minus = f64::from(cnn::loss::cross_entropy_only(&zp, &labels, k));
        zp[i] = z[i];
        let numeric = (plus - minus) / (2.0 * f64::from(H));
        // The loss is a mean of ~1-sized terms in f32: rounding 1e-7 / 2h = 5e-6 absolute.
        assert!(
            (numeric - f64::from(g[i])).abs() < 1e-3,
            "dz[{i}] {} vs {numeric}",
            g[i]
        );
    }
}

#[test]
fn whole_network_gradients_match_finite_differences() {
    // A smooth network (tanh) so that no kink can spoil the check: every parameter tensor.
    use cnn::init::Init;
    use cnn::model::Model;
    let spec = NetworkSpec {
        input: [2, 7, 6],
        layers: vec![
            LayerSpec::Conv2D(Conv2dSpec {
                filters: 3,
                kernel: (3, 3),
                stride: 2,
                padding: Padding::Same,
                activation: Activation::Tanh,
                groups: 1,
                bias: true,
            }),
            LayerSpec::AvgPool2D(PoolSpec {
                pool: (2, 2),
                stride: 1,
            }),
            LayerSpec::Dense(DenseSpec {
                units: 6,
                activation: Activation::Sigmoid,
            }),
            LayerSpec::Dense(DenseSpec {
                units: 4,
                activation: Activation::Softmax,
            }),
        ],
    };
    let mut model = Model::new(&spec, Init::Glorot, 3).unwrap();
    let mut rng = Rng::new(4);
    let x = random_tensor(&[3, 2, 7, 6], &mut rng);
    let checks = cnn::gradcheck::check_model(&mut model, &x, &[0, 3, 1], 1000, H, 5).unwrap();
    assert_eq!(checks.len(), 6);
    for c in checks {
        assert!(c.max_rel_error < TOL, "{c:?}");
    }
}

/// L = sum r * layer(xs) in f64 for a layer that reads several values.
fn loss_many(layer: &mut Layer, xs: &[Tensor], r: &[f32]) -> f64 {
    let mut y = Tensor::default();
    let refs: Vec<&Tensor> = xs.iter().collect();
    layer.forward_many(&refs, &mut y);
    y.data()
        .iter()
        .zip(r)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

/// Checks dL/dx_k for every value a layer that reads several values reads.
fn check_layer_many(what: &str, layer: &mut Layer, xs: &[Tensor], rng: &mut Rng) {
    let refs: Vec<&Tensor> = xs.iter().collect();
    let mut y = Tensor::default();
    layer.forward_many(&refs, &mut y);
    let r: Vec<f32> = (0..y.len()).map(|_| rng.normal() as f32).collect();
    let mut dy = Tensor::from_vec(y.shape(), r.clone()).unwrap();
    let mut dxs: Vec<Tensor> = vec![Tensor::default(); xs.len()];
    let mut targets: Vec<Option<&mut Tensor>> = dxs.iter_mut().map(Some).collect();
    layer.backward_many(&refs, &y, &mut dy, &mut targets);
    let mut xp = xs.to_vec();
    for (k, dx) in dxs.iter().enumerate() {
        assert_eq!(dx.shape(), xs[k].shape(), "{what}: dx{k}");
        for i in 0..xs[k].len() {
            let v = xs[k].data()[i];
            xp[k].data_mut()[i] = v + H;
            let plus = loss_many(layer, &xp, &r);
            xp[k].data_mut()[i] = v - H;
            let minus = loss_many(layer, &xp, &r);
            xp[k].data_mut()[i] = v;
            let numeric = (plus - minus) / (2.0 * f64::from(H));
            let e = rel_error(numeric, f64::from(dx.data()[i]), 1e-2);
            assert!(
                e < TOL,
                "{what}: dx{k}[{i}] backprop {} vs numeric {numeric}",
                dx.data()[i]
            );
        }
    }
}

/// A layer of `text`'s network (`index`), built for the values it reads there.
fn graph_layer(text: &str, index: usize) -> Layer {
    let spec = cnn::config::parse(text, "t").unwrap().spec;
    let shapes = spec.shapes().unwrap();
    Layer::of(&spec.layers[index], shapes[index].clone()).unwrap()
}

#[test]
fn shortcut_and_route_gradients_match_finite_differences() {
    let mut rng = Rng::new(18);
    let net = "5\nInput shape=2x3x4\nConv2D filters=3 kernel=1\nConv2D filters=3 kernel=1\n\
               Shortcut from=-2 activation=tanh\nRoute layers=0,2,1\nDense units=2\n";
    // Shortcut: tanh(a + b), both (3, 3, 4), batch 2.
    let mut shortcut = graph_layer(net, 2);
    let xs = [
        random_tensor(&[2, 3, 3, 4], &mut rng),
        random_tensor(&[2, 3, 3, 4], &mut rng),
    ];
    check_layer_many("Shortcut tanh", &mut shortcut, &xs, &mut rng);
    // With ReLU: away from the kink, a + b at least 0.1 from 0.
    let relu = net.replace("activation=tanh", "activation=relu");
    let mut shortcut = graph_layer(&relu, 2);
    let mut xs = xs.clone();
    let b: Vec<f32> = xs[0]
        .data()
        .iter()
        .zip(xs[1].data())
        .map(|(a, b)| {
            let s = a + b;
            b + s.signum() * 0.1
        })
        .collect();
    xs[1] = Tensor::from_vec(xs[1].shape(), b).unwrap();
    check_layer_many("Shortcut relu", &mut shortcut, &xs, &mut rng);
    // Route of three values, batch 3.
    let mut route = graph_layer(net, 3);
    let xs: Vec<Tensor> = (0..3)
        .map(|_| random_tensor(&[3, 3, 3, 4], &mut rng))
        .collect();
    check_layer_many("Route 0,2,1", &mut route, &xs, &mut rng);
}

/// `text`'s network (He weights from `seed`, biases of 0.1 N(0, 1) so that a forward pass
/// that ignored one could not agree by accident), a batch of `n` random images in [0, 1)
/// and labels.
fn graph_setup(text: &str, n: usize, seed: u64) -> (cnn::model::Model, Tensor, Vec<usize>) {
    let spec = cnn::config::parse(text, "t").unwrap().spec;
    let mut model = cnn::model::Model::new(&spec, cnn::init::Init::He, seed).unwrap();
    let mut rng = Rng::new(seed);
    for p in model.params_mut() {
        if p.value.shape().len() == 1 {
            p.value
                .data_mut()
                .iter_mut()
                .for_each(|v| *v += 0.1 * rng.normal() as f32);
        }
    }
    let [c, h, w] = spec.input;
    let data = (0..n * c * h * w).map(|_| rng.uniform() as f32).collect();
    let x = Tensor::from_vec(&[n, c, h, w], data).unwrap();
    let labels = (0..n).map(|_| rng.below(model.classes())).collect();
    (model, x, labels)
}

/// `cnn gradcheck`'s check of a graph network (the frozen f64 network walks the graph as
/// the model does) at several seeds: every parameter tensor of every layer agrees.
fn graph_passes(what: &str, text: &str, n: usize) {
    for seed in 1..=4 {
        let (mut model, x, labels) = graph_setup(text, n, seed);
        let report =
            cnn::gradcheck::check_network(&mut model, &x, &labels, 40, cnn::gradcheck::STEP, seed)
                .unwrap();
        assert_eq!(report.failure(), None, "{what}, seed {seed}: {report:?}");
        assert!(
            report.tensors.iter().all(|t| t.checked > 0),
            "{what}: {report:?}"
        );
    }
}

#[test]
fn a_residual_block_with_an_identity_shortcut_passes_the_gradient_check() {
    graph_passes(
        "identity block",
        "5\nInput shape=2x6x6\n\
         Conv2D filters=4 kernel=3x3 padding=same activation=relu\n\
         Conv2D filters=4 kernel=3x3 padding=same activation=relu\n\
         Conv2D filters=4 kernel=3x3 padding=same\n\
         Shortcut from=-3 activation=relu\n\
         Dense units=3\n",
        2,
    );
}

#[test]
fn a_residual_block_with_a_projection_shortcut_through_a_route_passes_the_gradient_check() {
    graph_passes(
        "projection block",
        "12\nInput shape=2x6x6\n\
         Conv2D filters=3 kernel=3x3 padding=same\n\
         BatchNorm2D activation=relu\n\
         Conv2D filters=5 kernel=3x3 stride=2 padding=same\n\
         BatchNorm2D activation=relu\n\
         Conv2D filters=5 kernel=3x3 padding=same\n\
         BatchNorm2D\n\
         Route layers=-5\n\
         Conv2D filters=5 kernel=1x1 stride=2\n\
         BatchNorm2D\n\
         Shortcut from=-4 activation=relu\n\
         GlobalAvgPool2D\n\
         Dense units=3\n",
        8,
    );
}

#[test]
fn a_concatenation_of_two_branches_passes_the_gradient_check() {
    graph_passes(
        "concatenation",
        "7\nInput shape=2x6x6\n\
         Conv2D filters=3 kernel=3x3 padding=same activation=relu\n\
         Conv2D filters=2 kernel=1x1 activation=tanh\n\
         Route layers=0\n\
         Conv2D filters=4 kernel=3x3 padding=same activation=leaky_relu\n\
         Route layers=1,3\n\
         MaxPool2D pool=2\n\
         Dense units=3\n",
        2,
    );
}

#[test]
fn a_value_read_by_three_layers_and_twice_by_one_passes_the_gradient_check() {
    // Layer 0 is read by the convolution after it, by the Shortcut and twice by the Route:
    // its gradient is the sum of four contributions.
    graph_passes(
        "three readers",
        "6\nInput shape=1x5x5\n\
         Conv2D filters=3 kernel=3x3 padding=same activation=relu\n\
         Conv2D filters=3 kernel=3x3 padding=same\n\
         Shortcut from=-2 activation=tanh\n\
         Route layers=0,2,0\n\
         Conv2D filters=2 kernel=1x1\n\
         Dense units=3\n",
        2,
    );
    // The same with flat values: Dense layers, a flat Shortcut and a flat Route.
    graph_passes(
        "three readers, flat",
        "6\nInput shape=1x3x3\n\
         Dense units=5 activation=relu\n\
         Dense units=5 activation=sigmoid\n\
         Shortcut from=0 activation=leaky_relu\n\
         Route layers=-3,-1,0\n\
         Dense units=4 activation=tanh\n\
         Dense units=3\n",
        3,
    );
}

/// A value's gradient is the sum of its readers' contributions in a fixed order, so one
/// training step gives the same bits on one thread and on two.
#[test]
fn a_graph_networks_gradients_have_the_same_bits_on_one_and_two_threads() {
    let text = include_str!("../../examples/resnet-small.cfg");
    let (model, x, labels) = graph_setup(text, 9, 3);
    let grads = |threads: usize| -> Vec<Vec<u32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut m = model.clone();
        pool.install(|| m.compute_gradients(&x, &labels).unwrap());
        m.named_params()
            .iter()
            .map(|(_, p)| p.grad.data().iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    let one = grads(1);
    assert_eq!(one, grads(2));
    assert!(one[0].iter().any(|&b| f32::from_bits(b) != 0.0));
}
