//! Forward passes on inputs small enough to check by hand. Integer inputs make every
//! expected value exact in f32.

use cnn::layers::*;
use cnn::tensor::Tensor;

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
fn relu_zeroes_negatives_and_softmax_of_equal_values_is_uniform() {
    let x = Tensor::from_vec(&[1, 4], vec![-2.0, 0.0, 3.0, -0.5]).unwrap();
    let y = run(LayerSpec::Activation(Activation::Relu), x, &[]);
    assert_eq!(y.data(), &[0.0, 0.0, 3.0, 0.0]);
    let x = Tensor::from_vec(&[2, 4], vec![7.0; 8]).unwrap();
    let y = run(LayerSpec::Activation(Activation::Softmax), x, &[]);
    assert_eq!(y.data(), &[0.25; 8]);
}
