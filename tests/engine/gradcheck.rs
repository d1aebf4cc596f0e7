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
        let spec = LayerSpec::Conv2D(Conv2dSpec {
            filters: k,
            kernel: (kh, kw),
            stride: s,
            padding: p,
            activation: Activation::None,
            groups: 1,
            bias: true,
        });
        let mut layer = Layer::new(&spec, &[c, h, w]).unwrap();
        with_random_params(&mut layer, &mut rng);
        let x = random_tensor(&[n, c, h, w], &mut rng);
        check_layer(
            &format!("Conv2D {spec:?} on {:?}", x.shape()),
            &mut layer,
            &x,
            &mut rng,
        );
    }
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
        let spec = LayerSpec::Conv2D(Conv2dSpec {
            filters: k,
            kernel: (kh, kw),
            stride: s,
            padding: p,
            activation: Activation::None,
            groups,
            bias,
        });
        let mut layer = Layer::new(&spec, &[c, h, w]).unwrap();
        assert_eq!(layer.params().len(), if bias { 2 } else { 1 });
        with_random_params(&mut layer, &mut rng);
        let x = random_tensor(&[n, c, h, w], &mut rng);
        check_layer(
            &format!("Conv2D {spec:?} on {:?}", x.shape()),
            &mut layer,
            &x,
            &mut rng,
        );
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
