//! Kernel benchmarks at report 1's shapes (batch 32): `cargo bench --bench kernels`.
//! Small sample sizes keep a run short; CI only compiles this file (clippy --all-targets).

use std::time::Duration;

use cnn::data::{Dataset, Normalization};
use cnn::kernels::gemm::{gemm, gemm_on, par_gemm, par_gemm_on, MatMut, MatRef, Simd};
use cnn::layers::{Activation, Conv2D, Conv2dSpec, LayerOp, MaxPool2D, Padding, Pass, PoolSpec};
use cnn::rng::Rng;
use cnn::tensor::Tensor;
use criterion::{criterion_group, criterion_main, Criterion};

const N: usize = 32;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.normal() as f32).collect()
}

fn conv(c: &mut Criterion) {
    let spec = Conv2dSpec {
        filters: 16,
        kernel: (3, 3),
        stride: 1,
        padding: Padding::Same,
        activation: Activation::Relu,
        groups: 1,
        bias: true,
    };
    let g = spec.geom([1, 28, 28]).unwrap();
    let mut layer = Conv2D::new(g);
    layer
        .weight
        .value
        .data_mut()
        .copy_from_slice(&random(16 * 9, 1));
    let x = random(N * 28 * 28, 2);
    let mut y = vec![0.0; N * 16 * 28 * 28];
    let dy = random(y.len(), 3);
    let mut dx = vec![0.0; x.len()];
    c.bench_function("conv 1x28x28->16 3x3 forward b32", |b| {
        b.iter(|| layer.forward_act(&x, &mut y, N, Activation::None))
    });
    layer.forward_act(&x, &mut y, N, Activation::None);
    c.bench_function("conv 1x28x28->16 3x3 backward (dW, db) b32", |b| {
        b.iter(|| layer.backward_act(&x, &y, &mut dy.clone(), None, N, Activation::None))
    });
    c.bench_function("conv 1x28x28->16 3x3 backward (dW, db, dx) b32", |b| {
        b.iter(|| layer.backward_act(&x, &y, &mut dy.clone(), Some(&mut dx), N, Activation::None))
    });
}

fn pool(c: &mut Criterion) {
    let spec = PoolSpec {
        pool: (2, 2),
        stride: 2,
    };
    let g = spec.geom("MaxPool2D", [16, 28, 28]).unwrap();
    let mut layer = MaxPool2D::new(g);
    let x = random(N * 16 * 28 * 28, 4);
    let mut y = vec![0.0; N * 16 * 14 * 14];
    let dy = random(y.len(), 5);
    let mut dx = vec![0.0; x.len()];
    c.bench_function("maxpool 16x28x28 2x2/2 forward b32", |b| {
        b.iter(|| layer.forward(&x, &mut y, N))
    });
    c.bench_function("maxpool 16x28x28 2x2/2 backward b32", |b| {
        b.iter(|| layer.backward_input(&dy, &mut dx, N))
    });
    // Inference: the winners' indices are not recorded.
    LayerOp::prepare(
        &mut layer,
        Pass {
            training: false,
            stream: 0,
        },
    );
    c.bench_function("maxpool 16x28x28 2x2/2 forward b32, inference", |b| {
        b.iter(|| layer.forward(&x, &mut y, N))
    });
}

fn dense_gemm(c: &mut Criterion) {
    // Dense 3136 -> 128 at batch 32: Y = X W^T, dW = dY^T X, dX = dY W.
    let (n, i, o) = (N, 3136, 128);
    let x = random(n * i, 6);
    let w = random(o * i, 7);
    let dy = random(n * o, 8);
    let mut y = vec![0.0; n * o];
    let mut dw = vec![0.0; o * i];
    let mut dx = vec![0.0; n * i];
    let (xm, wm, dym) = (
        MatRef::new(&x, n, i),
        MatRef::new(&w, o, i),
        MatRef::new(&dy, n, o),
    );
    let (w_t, dy_t) = (wm.t(), dym.t());
    c.bench_function("gemm dense fwd 32x128x3136 (1 thread)", |b| {
        b.iter(|| gemm(xm, w_t, 0.0, MatMut::new(&mut y, n, o)))
    });
    c.bench_function("par_gemm dense fwd 32x128x3136", |b| {
        b.iter(|| par_gemm(xm, w_t, 0.0, MatMut::new(&mut y, n, o)))
    });
    c.bench_function("par_gemm dense dW 128x3136x32", |b| {
        b.iter(|| par_gemm(dy_t, xm, 0.0, MatMut::new(&mut dw, o, i)))
    });
    c.bench_function("par_gemm dense dX 32x3136x128", |b| {
        b.iter(|| par_gemm(dym, wm, 0.0, MatMut::new(&mut dx, n, i)))
    });
    // The same products on each kernel family this CPU has, to compare them in one run
    // (the `cnn bench` figures depend on CNN_NO_AVX512 and CNN_NO_SIMD instead).
    for simd in Simd::all_supported() {
        c.bench_function(&format!("par_gemm dense dW 128x3136x32 ({simd:?})"), |b| {
            b.iter(|| par_gemm_on(simd, dy_t, xm, 0.0, MatMut::new(&mut dw, o, i)))
        });
        c.bench_function(&format!("gemm conv dW 16x9x784 ({simd:?})"), |b| {
            // A convolution's weight gradient per sample, dy [16 x 784] times cols^T:
            // the dot kernel.
            let cols = &x[..9 * 784];
            let (dyc, colsm) = (
                MatRef::new(&w[..16 * 784], 16, 784),
                MatRef::new(cols, 9, 784),
            );
            b.iter(|| {
                gemm_on(
                    simd,
                    dyc,
                    colsm.t(),
                    0.0,
                    MatMut::new(&mut dw[..144], 16, 9),
                )
            })
        });
    }
}

fn gather(c: &mut Criterion) {
    // A training batch drawn from a Fashion-MNIST-sized set (60,000 images of 784 bytes,
    // 47 MB, so mostly out of cache): 32 images at random positions, normalised to f32.
    let n = 60_000;
    let ds = Dataset {
        images: (0..n * 784).map(|i| (i * 31 % 251) as u8).collect(),
        labels: vec![0; n],
        shape: [1, 28, 28],
        classes: vec!["0".into()],
        source: "bench".into(),
    };
    let norm = Normalization {
        mean: vec![0.286],
        std: vec![0.353],
    };
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    let mut rng = Rng::new(7);
    c.bench_function(
        "batch of 32 random images from 60000 (Dataset::batch)",
        |b| {
            b.iter(|| {
                let idx: Vec<usize> = (0..N).map(|_| rng.below(n)).collect();
                ds.batch(&idx, &norm, &mut x, &mut labels);
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    targets = conv, pool, dense_gemm, gather
}
criterion_main!(benches);
