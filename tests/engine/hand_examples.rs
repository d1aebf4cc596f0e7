//! Forward passes on inputs small enough to check by hand. Integer inputs make every
//! expected value exact in f32.

use cnn::layers::*;
use cnn::tensor::Tensor;
use cnn::train::TestViews;

fn run(spec: LayerSpec, x: Tensor, params: &[Vec<f32>]) -> Tensor {
    let mut layer = Layer::new(&spec, &x.shape()[1..]).unwrap();
    for ((_, p), v) in layer.params_mut().into_iter().zip(params) {
        p.value.data_mut().copy_from_slice(v);
    }
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    y
}

fn conv(filters: usize, k: usize, stride: usize, padding: Padding) -> LayerSpec {
    LayerSpec::Conv2D(Conv2dSpec {
        filters,
        kernel: (k, k),
        stride,
        padding,
        activation: Activation::None,
        groups: 1,
        bias: true,
    })
}

#[test]
fn conv_valid_3x3_on_4x4_by_hand() {
    // x = 1..16 in a 4x4 grid, kernel all ones, bias 1: each output is the sum of a 3x3
    // window plus 1. Top-left window 1+2+3+5+6+7+9+10+11 = 54.
    let x = Tensor::from_vec(&[1, 1, 4, 4], (1..=16).map(|v| v as f32).collect()).unwrap();
    let y = run(conv(1, 3, 1, Padding::Valid), x, &[vec![1.0; 9], vec![1.0]]);
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[55.0, 64.0, 91.0, 100.0]);
}

#[test]
fn conv_same_padding_keeps_the_size_and_sees_zeros_at_the_border() {
    // 3x3 input of ones, 3x3 kernel of ones, same padding: each output counts the
    // in-bounds neighbours: corners 4, edges 6, centre 9.
    let x = Tensor::from_vec(&[1, 1, 3, 3], vec![1.0; 9]).unwrap();
    let y = run(conv(1, 3, 1, Padding::Same), x, &[vec![1.0; 9], vec![0.0]]);
    assert_eq!(y.data(), &[4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
}

#[test]
fn conv_sums_over_input_channels_and_strides() {
    // Two channels (1s and 2s), a 1x1 kernel with weights (1, 10), stride 2 on 3x3:
    // every output is 1*1 + 10*2 = 21, on the 2x2 grid of even positions.
    let mut data = vec![1.0; 9];
    data.extend(vec![2.0; 9]);
    let x = Tensor::from_vec(&[1, 2, 3, 3], data).unwrap();
    let y = run(
        conv(1, 1, 2, Padding::Valid),
        x,
        &[vec![1.0, 10.0], vec![0.0]],
    );
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[21.0; 4]);
}

/// A 1x1 or 3x3 convolution of `filters` in `groups` groups, with or without a bias.
fn grouped(
    filters: usize,
    k: usize,
    stride: usize,
    padding: Padding,
    groups: usize,
    bias: bool,
) -> LayerSpec {
    LayerSpec::Conv2D(Conv2dSpec {
        filters,
        kernel: (k, k),
        stride,
        padding,
        activation: Activation::None,
        groups,
        bias,
    })
}

#[test]
fn a_grouped_conv_reads_only_its_group_s_channels() {
    // Four channels of 2x2 holding 1, 2, 3, 4; two groups, one 1x1 filter each: filter 0
    // reads channels 0 and 1 (weights 1, 10), filter 1 channels 2 and 3 (weights 100,
    // 1000). Filter 0: 1 + 1*1 + 10*2 = 22; filter 1: 2 + 100*3 + 1000*4 = 4302.
    let data: Vec<f32> = (1..=4).flat_map(|c| [c as f32; 4]).collect();
    let x = Tensor::from_vec(&[1, 4, 2, 2], data).unwrap();
    let y = run(
        grouped(2, 1, 1, Padding::Valid, 2, true),
        x,
        &[vec![1.0, 10.0, 100.0, 1000.0], vec![1.0, 2.0]],
    );
    assert_eq!(y.shape(), &[1, 2, 2, 2]);
    assert_eq!(
        y.data(),
        &[22.0, 22.0, 22.0, 22.0, 4302.0, 4302.0, 4302.0, 4302.0]
    );
}

#[test]
fn a_depthwise_conv_with_stride_2_and_padding_1_by_hand() {
    // Channel 0 = [[1 2 3] [4 5 6] [7 8 9]] under a 3x3 of ones, channel 1 = ones under a
    // 3x3 with 5 in the middle; no bias; stride 2, padding 1: a 2x2 output whose windows
    // are centred on the corners. Channel 0: 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24,
    // 5+6+8+9 = 28; channel 1: 5 at every corner.
    let mut data: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    data.extend([1.0; 9]);
    let x = Tensor::from_vec(&[1, 2, 3, 3], data).unwrap();
    let spec = grouped(2, 3, 2, Padding::Explicit(1), 2, false);
    let mut layer = Layer::new(&spec, &[2, 3, 3]).unwrap();
    let mut middle = vec![0.0; 9];
    middle[4] = 5.0;
    let w = [vec![1.0; 9], middle].concat();
    layer.params_mut()[0].1.value.data_mut().copy_from_slice(&w);
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    assert_eq!(y.data(), &[12.0, 16.0, 24.0, 28.0, 5.0, 5.0, 5.0, 5.0]);
    // Backward with dy = 1 everywhere: dw[0][i][j] sums the inputs window position (i, j)
    // meets over the four outputs: rows 1 (i = 0, 2) or 0 and 2 (i = 1), columns likewise,
    // so the corners 5, the edges 4+6 = 2+8 = 10, the middle 1+3+7+9 = 20. dx[1] is 5 at
    // the corners (the only inputs under the middle weight), 0 elsewhere.
    let mut dy = Tensor::from_vec(&[1, 2, 2, 2], vec![1.0; 8]).unwrap();
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    let dw = layer.params()[0].1.grad.data().to_vec();
    assert_eq!(dw[..9], [5.0, 10.0, 5.0, 10.0, 20.0, 10.0, 5.0, 10.0, 5.0]);
    assert_eq!(
        dx.data()[9..],
        [5.0, 0.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 5.0]
    );
}

#[test]
fn max_and_average_pooling_by_hand() {
    // [[1 2 3 4] [5 6 7 8] [9 10 11 12] [13 14 15 16]], 2x2 windows, stride 2.
    let x = Tensor::from_vec(&[1, 1, 4, 4], (1..=16).map(|v| v as f32).collect()).unwrap();
    let s = PoolSpec {
        pool: (2, 2),
        stride: 2,
    };
    let max = run(LayerSpec::MaxPool2D(s.clone()), x.clone(), &[]);
    assert_eq!(max.data(), &[6.0, 8.0, 14.0, 16.0]);
    let avg = run(LayerSpec::AvgPool2D(s), x, &[]);
    // (1+2+5+6)/4 = 3.5, (3+4+7+8)/4 = 5.5, ...
    assert_eq!(avg.data(), &[3.5, 5.5, 11.5, 13.5]);
}

#[test]
fn global_average_pooling_by_hand() {
    // Two channels of 2x2: [[1 2] [3 4]] and [[5 6] [7 8]], two samples (the second
    // negated): each output is its channel's mean, (1+2+3+4)/4 = 2.5, (5+6+7+8)/4 = 6.5.
    let mut data: Vec<f32> = (1..=8).map(|v| v as f32).collect();
    data.extend((1..=8).map(|v| -(v as f32)));
    let x = Tensor::from_vec(&[2, 2, 2, 2], data).unwrap();
    let spec = LayerSpec::GlobalAvgPool2D(GlobalPoolSpec);
    let mut layer = Layer::new(&spec, &[2, 2, 2]).unwrap();
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(y.data(), &[2.5, 6.5, -2.5, -6.5]);
    // Backward spreads each dy evenly over its plane: dy / 4.
    let mut dy = Tensor::from_vec(&[2, 2], vec![4.0, 8.0, -2.0, 0.0]).unwrap();
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    assert_eq!(
        dx.data(),
        &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, -0.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn max_pool_backward_routes_the_gradient_to_the_maximum() {
    let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0, 4.0, 3.0, 2.0]).unwrap();
    let spec = LayerSpec::MaxPool2D(PoolSpec {
        pool: (2, 2),
        stride: 2,
    });
    let mut layer = Layer::new(&spec, &[1, 2, 2]).unwrap();
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    let mut dy = Tensor::from_vec(&[1, 1, 1, 1], vec![5.0]).unwrap();
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    assert_eq!(dx.data(), &[0.0, 5.0, 0.0, 0.0]);
}

#[test]
fn dense_is_w_x_plus_b_by_hand() {
    // W = [[1 2 3] [4 5 6]], x = (1, 0, -1), b = (10, 20): Wx + b = (1 - 3 + 10, 4 - 6 + 20).
    let x = Tensor::from_vec(&[1, 3], vec![1.0, 0.0, -1.0]).unwrap();
    let spec = LayerSpec::Dense(DenseSpec {
        units: 2,
        activation: Activation::Relu,
    });
    let y = run(
        spec,
        x,
        &[vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![10.0, 20.0]],
    );
    assert_eq!(y.data(), &[8.0, 18.0]);
}

#[test]
fn relu6_clamps_to_0_and_6_and_passes_gradients_only_between() {
    // y = min(max(x, 0), 6); dy = 1 everywhere gives dx = [0 < x < 6].
    let x = Tensor::from_vec(&[1, 6], vec![-2.0, 0.0, 3.0, 5.5, 6.0, 7.5]).unwrap();
    let spec = LayerSpec::Activation(Activation::Relu6);
    let mut layer = Layer::new(&spec, &[6]).unwrap();
    let mut y = Tensor::default();
    layer.forward(&x, &mut y);
    assert_eq!(y.data(), &[0.0, 0.0, 3.0, 5.5, 6.0, 6.0]);
    let mut dy = Tensor::from_vec(&[1, 6], vec![1.0; 6]).unwrap();
    let mut dx = Tensor::default();
    layer.backward(&x, &y, &mut dy, Some(&mut dx));
    assert_eq!(dx.data(), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
}

#[test]
fn relu_zeroes_negatives_and_softmax_of_equal_values_is_uniform() {
    let x = Tensor::from_vec(&[1, 4], vec![-2.0, 0.0, 3.0, -0.5]).unwrap();
    let y = run(LayerSpec::Activation(Activation::Relu), x, &[]);
    assert_eq!(y.data(), &[0.0, 0.0, 3.0, 0.0]);
    let x = Tensor::from_vec(&[2, 4], vec![7.0; 8]).unwrap();
    let y = run(LayerSpec::Activation(Activation::Softmax), x, &[]);
    assert_eq!(y.data(), &[0.25; 8]);
}

#[test]
fn shortcut_adds_then_applies_its_activation_and_route_concatenates_by_hand() {
    // a = [[1 -2] [3 -4]], b = [[-2 1] [1 1]]: relu(a + b) = [[0 0] [4 0]].
    let net = "4\nInput shape=1x2x2\nConv2D filters=1 kernel=1\nConv2D filters=1 kernel=1\n\
               Shortcut from=-2 activation=relu\nRoute layers=-1,0\n";
    let spec = cnn::config::parse(net, "t").unwrap().spec;
    let shapes = spec.shapes().unwrap();
    let layer = |i: usize| Layer::of(&spec.layers[i], shapes[i].clone()).unwrap();
    let a = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0, -2.0, 3.0, -4.0]).unwrap();
    let b = Tensor::from_vec(&[1, 1, 2, 2], vec![-2.0, 1.0, 1.0, 1.0]).unwrap();
    let mut shortcut = layer(2);
    let mut y = Tensor::default();
    shortcut.forward_many(&[&b, &a], &mut y);
    assert_eq!(y.data(), &[0.0, 0.0, 4.0, 0.0]);
    // Backward: dL/dz = dy where y > 0, copied to both values.
    let mut dy = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let (mut db, mut da) = (Tensor::default(), Tensor::default());
    shortcut.backward_many(&[&b, &a], &y, &mut dy, &mut [Some(&mut db), Some(&mut da)]);
    assert_eq!(da.data(), &[0.0, 0.0, 3.0, 0.0]);
    assert_eq!(db.data(), da.data());
    // Route: the Shortcut's channel, then layer 0's: (2, 2, 2).
    let mut route = layer(3);
    assert_eq!(route.shapes.output, [2, 2, 2]);
    let mut cat = Tensor::default();
    route.forward_many(&[&y, &a], &mut cat);
    assert_eq!(cat.data(), &[0.0, 0.0, 4.0, 0.0, 1.0, -2.0, 3.0, -4.0]);
}

/// A whole network whose first layer's output is read by three layers, by hand: the
/// gradient that reaches it is the sum of the three paths.
#[test]
fn the_gradient_of_a_value_read_by_three_layers_is_the_sum_of_the_paths_by_hand() {
    // a = W0 x + b0          (layer 0; W0 = I, b0 = 0: a = x)
    // c = W1 a               (layer 1; W1 = diag(2, 3))
    // s = c + a              (layer 2, Shortcut from=-2)
    // r = [a, s]             (layer 3, Route layers=0,2)
    // z = W4 r + b4          (layer 4)
    let text = "5\nInput shape=1x1x2\nDense units=2\nDense units=2\nShortcut from=-2\n\
                Route layers=0,2\nDense units=2\n";
    let spec = cnn::config::parse(text, "t").unwrap().spec;
    let mut model = cnn::model::Model::new(&spec, cnn::init::Init::He, 1).unwrap();
    let values: [&[f32]; 6] = [
        &[1.0, 0.0, 0.0, 1.0],
        &[0.0, 0.0],
        &[2.0, 0.0, 0.0, 3.0],
        &[0.0, 0.0],
        &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0],
        &[-1.0, -5.0],
    ];
    for (p, v) in model.params_mut().into_iter().zip(values) {
        p.value.data_mut().copy_from_slice(v);
    }
    // x = (1, 2): a = (1, 2), c = (2, 6), s = (3, 8), r = (1, 2, 3, 8),
    // z = (1 - 1, 2 + 3 - 5) = (0, 0): softmax (1/2, 1/2), loss ln 2.
    let x = Tensor::from_vec(&[1, 1, 1, 2], vec![1.0, 2.0]).unwrap();
    model.set_input_gradient(true);
    let (loss, _) = model.compute_gradients(&x, &[0]).unwrap();
    assert!((loss - std::f32::consts::LN_2).abs() < 1e-7, "{loss}");
    // dL/dz = (1/2 - 1, 1/2); dL/dr = W4^T dL/dz = (-1/2, 1/2, 1/2, 0);
    // dL/ds = (1/2, 0), dL/dc = (1/2, 0);
    // dL/da = (-1/2, 1/2) [Route] + (1/2, 0) [Shortcut] + W1^T (1/2, 0) = (1, 0) [Dense]
    //       = (1, 1/2).
    let grads: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|(_, p)| p.grad.data().to_vec())
        .collect();
    assert_eq!(grads[0], [1.0, 2.0, 0.5, 1.0], "dL/dW0 = dL/da x^T");
    assert_eq!(grads[1], [1.0, 0.5], "dL/db0 = dL/da");
    assert_eq!(grads[2], [0.5, 1.0, 0.0, 0.0], "dL/dW1 = dL/dc a^T");
    assert_eq!(
        grads[4],
        [-0.5, -1.0, -1.5, -4.0, 0.5, 1.0, 1.5, 4.0],
        "dL/dW4 = dL/dz r^T"
    );
    // dL/dx = W0^T dL/da.
    assert_eq!(model.input_gradient().unwrap().data(), &[1.0, 0.5]);
}

/// `evaluate` over several views of each test image (test-time augmentation) averages the
/// views' softmax outputs.
#[test]
fn test_time_views_average_the_probabilities_of_the_shifted_and_mirrored_images_by_hand() {
    // Two 1x1x2 images, both of class 1, through z = diag(2, 1) x (no bias); with mean 0
    // and std 1, a shifted-in pixel is 0. softmax(u, v)_1 = 1 / (1 + e^(u - v)).
    //   image a = (1, 0.2):  z = (2, 0.2),  mirrored (0.2, 1): z = (0.4, 1)
    //   image b = (0, 1):    z = (0, 1),    mirrored (1, 0):   z = (2, 0)
    let text = "1\nInput shape=1x1x2\nDense units=2 activation=softmax\n";
    let spec = cnn::config::parse(text, "t").unwrap().spec;
    let mut model = cnn::model::Model::new(&spec, cnn::init::Init::He, 1).unwrap();
    let values: [&[f32]; 2] = [&[2.0, 0.0, 0.0, 1.0], &[0.0, 0.0]];
    for (p, v) in model.params_mut().into_iter().zip(values) {
        p.value.data_mut().copy_from_slice(v);
    }
    let ds = cnn::data::Dataset {
        images: vec![255, 51, 0, 255],
        labels: vec![1, 1],
        shape: [1, 1, 2],
        classes: vec!["a".into(), "b".into()],
        source: "two".into(),
    };
    let norm = cnn::data::Normalization {
        mean: vec![0.0],
        std: vec![1.0],
    };
    let p1 = |u: f64, v: f64| 1.0 / (1.0 + (u - v).exp());
    let loss = |a: f64, b: f64| -(a.ln() + b.ln()) / 2.0;
    let views = |flip, shift| TestViews { flip, shift };
    let check = |model: &mut cnn::model::Model, v: TestViews, want: [usize; 2], loss: f64| {
        for batch in [1, 2] {
            let e = cnn::train::evaluate(model, &ds, &norm, batch, v).unwrap();
            assert_eq!(e.predictions, want, "{v:?}, batch {batch}");
            assert!((e.loss - loss).abs() < 1e-6, "{v:?}: {} vs {loss}", e.loss);
        }
    };
    // One view: a's p_1 = 0.142 (predicted 0), b's 0.731 (predicted 1).
    let (a, b) = (p1(2.0, 0.2), p1(0.0, 1.0));
    check(&mut model, views(false, 0), [0, 1], loss(a, b));
    // Mirrored too: a's p_1 = (0.142 + 0.646) / 2 = 0.394, b's (0.731 + 0.119) / 2 = 0.425.
    let (a, b) = (
        (p1(2.0, 0.2) + p1(0.4, 1.0)) / 2.0,
        (p1(0.0, 1.0) + p1(2.0, 0.0)) / 2.0,
    );
    check(&mut model, views(true, 0), [0, 0], loss(a, b));
    // Shifted by up to 1 pixel: 9 offsets. The 6 with dy != 0 move the one row out (all 0:
    // p_1 = 1/2); dx = -1, 0, 1 give a: (0.2, 0), (1, 0.2), (0, 1) and b: (1, 0), (0, 1),
    // (0, 0).
    let (a, b) = (
        (3.0 + p1(0.4, 0.0) + p1(2.0, 0.2) + p1(0.0, 1.0)) / 9.0,
        (3.0 + p1(2.0, 0.0) + p1(0.0, 1.0) + p1(0.0, 0.0)) / 9.0,
    );
    check(&mut model, views(false, 1), [0, 0], loss(a, b));
}
