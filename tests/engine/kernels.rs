//! The fast kernels against the naive references, on random shapes.

use cnn::layers::conv2d::{conv2d_backward_naive, conv2d_forward_naive};
use cnn::layers::*;
use cnn::rng::Rng;
use cnn::tensor::Tensor;
use proptest::prelude::*;

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn close(what: &str, got: &[f32], want: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "{}[{}]: {} vs {}",
            what,
            i,
            g,
            w
        );
    }
    Ok(())
}

/// `f` run on a pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn im2col_conv_equals_the_naive_definition(
        n in 1usize..5, c in 1usize..4, h in 1usize..12, w in 1usize..40, k in 1usize..5,
        kh in 1usize..5, kw in 1usize..5, stride in 1usize..4, pad in 0usize..4, seed in any::<u64>(),
    ) {
        let padding = match pad { 0 => Padding::Valid, 1 => Padding::Same, p => Padding::Explicit(p - 1) };
        let spec = Conv2dSpec { filters: k, kernel: (kh, kw), stride, padding, activation: Activation::None, groups: 1, bias: true };
        let Ok(g) = spec.geom([c, h, w]) else { return Ok(()) };
        let mut rng = Rng::new(seed);
        let x = random(n * c * h * w, &mut rng);
        let mut layer = Conv2D::new(g);
        layer.weight.value.data_mut().copy_from_slice(&random(k * c * kh * kw, &mut rng));
        layer.bias.value.data_mut().copy_from_slice(&random(k, &mut rng));
        let mut y = vec![0.0; n * k * g.out_h * g.out_w];
        layer.forward_act(&x, &mut y, n, Activation::None);
        let want = conv2d_forward_naive(&g, &x, layer.weight.value.data(), layer.bias.value.data(), n);
        close("y", &y, &want)?;
        let dy = random(y.len(), &mut rng);
        let mut dx = vec![0.0; x.len()];
        layer.backward_act(&x, &y, &mut dy.clone(), Some(&mut dx), n, Activation::None);
        let (wdx, wdw, wdb) = conv2d_backward_naive(&g, &x, layer.weight.value.data(), &dy, n);
        close("dx", &dx, &wdx)?;
        close("dw", layer.weight.grad.data(), &wdw)?;
        close("db", layer.bias.grad.data(), &wdb)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Winograd F(2x2, 3x3) (3x3, stride 1, 8+ input channels): odd and even sizes, every
    /// padding, batches that end in a partial block, against the definition.
    #[test]
    fn winograd_conv_equals_the_naive_definition(
        n in 1usize..7, c in 8usize..20, h in 1usize..13, w in 1usize..13, k in 1usize..20,
        pad in 0usize..5, seed in any::<u64>(),
    ) {
        let padding = match pad { 0 => Padding::Valid, 1 => Padding::Same, p => Padding::Explicit(p - 2) };
        let spec = Conv2dSpec { filters: k, kernel: (3, 3), stride: 1, padding, activation: Activation::None, groups: 1, bias: true };
        let Ok(g) = spec.geom([c, h, w]) else { return Ok(()) };
        let mut rng = Rng::new(seed);
        let x = random(n * c * h * w, &mut rng);
        let mut layer = Conv2D::new(g);
        prop_assert!(layer.set_winograd(true));
        layer.weight.value.data_mut().copy_from_slice(&random(k * c * 9, &mut rng));
        layer.bias.value.data_mut().copy_from_slice(&random(k, &mut rng));
        let mut y = vec![f32::NAN; n * k * g.out_h * g.out_w];
        layer.forward_act(&x, &mut y, n, Activation::None);
        let want = conv2d_forward_naive(&g, &x, layer.weight.value.data(), layer.bias.value.data(), n);
        close("y", &y, &want)?;
        let dy = random(y.len(), &mut rng);
        let mut dx = vec![f32::NAN; x.len()];
        layer.backward_act(&x, &y, &mut dy.clone(), Some(&mut dx), n, Activation::None);
        let (wdx, wdw, wdb) = conv2d_backward_naive(&g, &x, layer.weight.value.data(), &dy, n);
        close("dx", &dx, &wdx)?;
        close("dw", layer.weight.grad.data(), &wdw)?;
        close("db", layer.bias.grad.data(), &wdb)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// im2col's fast paths (AVX-512 and AVX2 at stride 1, where the CPU has them) write
    /// exactly what the portable loops write, padding zeros included.
    #[test]
    fn im2col_equals_its_portable_loops(
        c in 1usize..4, h in 1usize..20, w in 1usize..40, kh in 1usize..6, kw in 1usize..6,
        stride in 1usize..3, pad in 0usize..4, seed in any::<u64>(),
    ) {
        use cnn::kernels::im2col::{im2col, im2col_on, im2col_portable};
        let padding = match pad { 0 => Padding::Valid, 1 => Padding::Same, p => Padding::Explicit(p - 1) };
        let spec = Conv2dSpec { filters: 1, kernel: (kh, kw), stride, padding, activation: Activation::None, groups: 1, bias: true };
        let Ok(g) = spec.geom([c, h, w]) else { return Ok(()) };
        let x = random(c * h * w, &mut Rng::new(seed));
        let len = g.patch_len() * g.out_h * g.out_w;
        let (mut fast, mut portable) = (vec![f32::NAN; len], vec![f32::NAN; len]);
        im2col(&x, &g, &mut fast);
        im2col_portable(&x, &g, &mut portable);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&fast), bits(&portable));
        for simd in cnn::kernels::Simd::all_supported() {
            let mut got = vec![f32::NAN; len];
            im2col_on(simd, &x, &g, &mut got);
            prop_assert_eq!(bits(&got), bits(&portable), "{:?}", simd);
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // The same training steps on pools of 1, 2 and 3 threads give bit-identical weights.
    use cnn::init::Init;
    use cnn::model::Model;
    use cnn::optim::{Optimizer, OptimizerKind};
    let spec = cnn::config::parse(
        "4\nInput shape=1x12x12\n\
         Conv2D filters=8 kernel=3x3 stride=1 padding=same activation=relu\n\
         MaxPool2D pool=2x2 stride=2\n\
         Dense units=40 activation=relu\n\
         Dense units=10 activation=softmax\n",
        "thread-count test",
    )
    .unwrap()
    .spec;
    let run = |threads: usize| -> Vec<f32> {
        on_threads(threads, || {
            let mut model = Model::new(&spec, Init::He, 9).unwrap();
            let mut opt = Optimizer::new(OptimizerKind::adam(), 0.01, 0.0);
            let mut rng = Rng::new(1);
            for _ in 0..3 {
                let x = Tensor::from_vec(&[37, 1, 12, 12], random(37 * 144, &mut rng)).unwrap();
                let labels: Vec<usize> = (0..37).map(|_| rng.below(10)).collect();
                model.train_step(&x, &labels, &mut opt).unwrap();
            }
            model
                .named_params()
                .iter()
                .flat_map(|(_, p)| p.value.data().to_vec())
                .collect()
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn winograd_results_do_not_depend_on_the_thread_count() {
    // A Winograd convolution's output and gradients over 9 samples (two full blocks of 4
    // and one of 1) on pools of 1 and 3 threads are the same bits.
    let spec = Conv2dSpec {
        filters: 12,
        kernel: (3, 3),
        stride: 1,
        padding: Padding::Same,
        activation: Activation::Relu,
        groups: 1,
        bias: true,
    };
    let g = spec.geom([10, 9, 7]).unwrap();
    let n = 9;
    let mut rng = Rng::new(5);
    let x = random(n * 10 * 9 * 7, &mut rng);
    let w = random(12 * 10 * 9, &mut rng);
    let dy = random(n * 12 * g.out_h * g.out_w, &mut rng);
    let run = |threads: usize| -> Vec<u32> {
        on_threads(threads, || {
            let mut layer = Conv2D::new(g);
            assert!(layer.set_winograd(true));
            layer.weight.value.data_mut().copy_from_slice(&w);
            let mut y = vec![0.0; dy.len()];
            layer.forward_act(&x, &mut y, n, Activation::Relu);
            let mut dx = vec![0.0; x.len()];
            layer.backward_act(&x, &y, &mut dy.clone(), Some(&mut dx), n, Activation::Relu);
            [
                &y[..],
                &dx,
                layer.weight.grad.data(),
                layer.bias.grad.data(),
            ]
            .concat()
            .iter()
            .map(|v| v.to_bits())
            .collect()
        })
    };
    assert_eq!(run(1), run(3));
}

/// A Winograd layer keeps its transformed weights from pass to pass while the weights stay
/// the same, and transforms them again when they change, however they are written (here
/// through the public field, between two passes): each pass gives the bits of a new layer
/// built with that pass's weights.
#[test]
fn winograd_transforms_the_weights_again_when_they_change() {
    let spec = Conv2dSpec {
        filters: 6,
        kernel: (3, 3),
        stride: 1,
        padding: Padding::Same,
        activation: Activation::Relu,
        groups: 1,
        bias: true,
    };
    let g = spec.geom([9, 8, 8]).unwrap();
    let mut rng = Rng::new(21);
    let x = random(2 * 9 * 64, &mut rng);
    let weights = [random(6 * 9 * 9, &mut rng), random(6 * 9 * 9, &mut rng)];
    let pass = |layer: &mut Conv2D| -> Vec<u32> {
        let mut y = vec![0.0; 2 * 6 * 64];
        layer.forward_act(&x, &mut y, 2, Activation::Relu);
        y.iter().map(|v| v.to_bits()).collect()
    };
    let fresh = |w: &[f32]| {
        let mut layer = Conv2D::new(g);
        assert!(layer.set_winograd(true));
        layer.weight.value.data_mut().copy_from_slice(w);
        pass(&mut layer)
    };
    let mut kept = Conv2D::new(g);
    assert!(kept.set_winograd(true));
    for w in [&weights[0], &weights[0], &weights[1], &weights[0]] {
        kept.weight.value.data_mut().copy_from_slice(w);
        assert_eq!(pass(&mut kept), fresh(w));
    }
    // One weight changed in its last bit is a change too.
    let mut w = weights[0].clone();
    w[100] = f32::from_bits(w[100].to_bits() ^ 1);
    kept.weight.value.data_mut().copy_from_slice(&w);
    assert_eq!(pass(&mut kept), fresh(&w));
    assert_ne!(
        fresh(&w),
        fresh(&weights[0]),
        "the changed weight shows in the output"
    );
}

#[test]
fn a_one_sample_dense_pass_equals_the_definition_and_its_bits_ignore_the_thread_count() {
    // Dense at batch 1 sums the two halves of the inputs on two threads when the layer is
    // large (3000 -> 40 here, split at 1488) and on one thread when it is small (300 -> 7).
    // Both must give y = W x + b (f64 reference), and the same bits on 1, 2 and 3 threads.
    for (inputs, units) in [(3000, 40), (300, 7)] {
        let mut rng = Rng::new(inputs as u64);
        let x = random(inputs, &mut rng);
        let w = random(units * inputs, &mut rng);
        let b = random(units, &mut rng);
        let want: Vec<f32> = (0..units)
            .map(|u| {
                let dot: f64 = (0..inputs)
                    .map(|k| f64::from(w[u * inputs + k]) * f64::from(x[k]))
                    .sum();
                (dot + f64::from(b[u])) as f32
            })
            .collect();
        let run = |threads: usize| -> Vec<f32> {
            on_threads(threads, || {
                let mut layer = Dense::new(inputs, units);
                layer.weight.value.data_mut().copy_from_slice(&w);
                layer.bias.value.data_mut().copy_from_slice(&b);
                let mut y = vec![f32::NAN; units];
                layer.forward(&x, &mut y, 1);
                y
            })
        };
        let one = run(1);
        for (u, (g, r)) in one.iter().zip(&want).enumerate() {
            assert!(
                (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                "{inputs} -> {units}, unit {u}: {g} vs {r}"
            );
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&run(2)), "{inputs} -> {units}, 2 threads");
        assert_eq!(bits(&one), bits(&run(3)), "{inputs} -> {units}, 3 threads");
    }
}

#[test]
fn a_one_image_convolution_split_over_two_threads_gives_the_bits_of_the_batch_path() {
    // At batch 1 a direct one-channel convolution computes its filters in two halves on
    // two threads; each image's output must be the bits of the same image in a batch of 3
    // (the per-sample path), for odd and even filter counts, one filter (an empty first
    // half) and activations fused (ReLU) or applied after (none, tanh).
    for (k, act) in [
        (16, Activation::Relu),
        (5, Activation::None),
        (1, Activation::Relu),
        (6, Activation::Tanh),
    ] {
        let spec = Conv2dSpec {
            filters: k,
            kernel: (3, 3),
            stride: 1,
            padding: Padding::Same,
            activation: act,
            groups: 1,
            bias: true,
        };
        let g = spec.geom([1, 11, 13]).unwrap();
        let (in_len, out_len) = (11 * 13, k * g.out_h * g.out_w);
        let mut rng = Rng::new(k as u64);
        let x = random(3 * in_len, &mut rng);
        let w = random(k * 9, &mut rng);
        let b = random(k, &mut rng);
        on_threads(2, || {
            let mut layer = Conv2D::new(g);
            layer.weight.value.data_mut().copy_from_slice(&w);
            layer.bias.value.data_mut().copy_from_slice(&b);
            let mut batch = vec![f32::NAN; 3 * out_len];
            layer.forward_act(&x, &mut batch, 3, act);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for s in 0..3 {
                let mut one = vec![f32::NAN; out_len];
                layer.forward_act(&x[s * in_len..(s + 1) * in_len], &mut one, 1, act);
                let want = &batch[s * out_len..(s + 1) * out_len];
                assert_eq!(bits(&one), bits(want), "{k} filters, {act:?}, image {s}");
            }
            // The outputs vary, so equal bits mean something.
            assert!(batch.iter().any(|&v| v != batch[0]));
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// The direct one-channel 3x3 kernels write the same bits as im2col and the broadcast
    /// GEMM kernel (the path they replace), with and without ReLU, for every padding, on
    /// AVX-512 and AVX2: read in place with "same" padding across (any width), row by row
    /// otherwise (AVX-512 only, output widths from 1 to 32: one and two vectors, masked).
    #[test]
    fn direct_one_channel_conv_equals_im2col_and_gemm_bit_for_bit(
        h in 1usize..40, w in 1usize..45, k in 1usize..20, pad in 0usize..4, relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        use cnn::kernels::{direct, gemm, im2col::im2col, Simd};
        let padding = match pad { 0 => Padding::Valid, 1 => Padding::Same, p => Padding::Explicit(p - 1) };
        let spec = Conv2dSpec { filters: k, kernel: (3, 3), stride: 1, padding, activation: Activation::None, groups: 1, bias: true };
        let Ok(g) = spec.geom([1, h, w]) else { return Ok(()) };
        let mut rng = Rng::new(seed);
        let (x, wt, b) = (random(h * w, &mut rng), random(k * 9, &mut rng), random(k, &mut rng));
        let ohw = g.out_h * g.out_w;
        let mut cols = vec![0.0; 9 * ohw];
        im2col(&x, &g, &mut cols);
        let mut want = vec![f32::NAN; k * ohw];
        gemm::gemm_bias_relu_on(
            Simd::Avx512,
            gemm::MatRef::new(&wt, k, 9),
            gemm::MatRef::new(&cols, 9, ohw),
            &b,
            relu,
            gemm::MatMut::new(&mut want, k, ohw),
        );
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for simd in Simd::all_supported() {
            if !direct::applies_on(simd, &g) {
                // AVX-512 takes outputs up to 32 across or as wide as the input; AVX2 only
                // the latter; the portable path none: the GEMM path runs.
                let in_place = g.out_w == w;
                let expected = match simd {
                    Simd::Avx512 => g.out_w > 32 && !in_place,
                    Simd::Avx2 => !in_place,
                    Simd::Portable => true,
                };
                prop_assert!(expected, "no direct kernel on {:?} for {:?}", simd, g);
                continue;
            }
            let mut scratch = direct::Scratch::default();
            let mut got = vec![f32::NAN; k * ohw];
            direct::conv3x3_on(simd, &g, &x, &wt, &b, relu, &mut scratch, &mut got);
            prop_assert_eq!(bits(&got), bits(&want), "{:?}", simd);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// The one-pass weight gradient of a nine-weight convolution gives the bits of the
    /// three passes it replaces (ReLU's backward over dy, `gemm::sum` of each plane for the
    /// bias, the dot kernel on im2col's matrix, accumulated over two samples), both where
    /// it reads the input in place (stride 1, "same" padding across) and where it goes
    /// through im2col (other paddings, strides), with outputs that are not whole vectors,
    /// filters beyond one group of 16, and NaN and zero outputs under ReLU.
    #[test]
    fn one_pass_conv_weight_gradient_equals_the_three_passes_bit_for_bit(
        h in 1usize..34, w in 1usize..34, k in 1usize..36, pad in 0usize..4,
        stride in 1usize..3, relu in any::<bool>(), seed in any::<u64>(),
    ) {
        use cnn::kernels::{direct, gemm, im2col::im2col, Simd};
        let padding = match pad { 0 => Padding::Valid, 1 => Padding::Same, p => Padding::Explicit(p - 1) };
        let spec = Conv2dSpec { filters: k, kernel: (3, 3), stride, padding, activation: Activation::None, groups: 1, bias: true };
        let Ok(g) = spec.geom([1, h, w]) else { return Ok(()) };
        if !direct::weight_grad9_applies(&g) {
            // Only where the kernels in use are not AVX-512's (this CPU's or the
            // environment's choice, as with CNN_NO_AVX512=1).
            prop_assert!(cnn::kernels::simd() != Simd::Avx512);
            return Ok(());
        }
        let ohw = g.out_h * g.out_w;
        let mut rng = Rng::new(seed);
        let x = random(2 * h * w, &mut rng);
        let dy = random(2 * k * ohw, &mut rng);
        let mut y = random(2 * k * ohw, &mut rng);
        for (i, v) in y.iter_mut().enumerate() {
            match i % 11 {
                0 => *v = f32::NAN,
                1 => *v = 0.0,
                2 => *v = -0.0,
                _ => {}
            }
        }
        let mut sc = direct::Scratch::default();
        let (mut dw, mut db) = (vec![f32::NAN; k * 9], vec![0.5; k]);
        let (mut want_dw, mut want_db) = (vec![f32::NAN; k * 9], vec![0.5; k]);
        let mut cols = vec![0.0; 9 * ohw];
        for s in 0..2 {
            let (x_s, plane) = (&x[s * h * w..(s + 1) * h * w], s * k * ohw..(s + 1) * k * ohw);
            let (dy_s, y_s) = (&dy[plane.clone()], &y[plane]);
            let mask = relu.then_some(y_s);
            direct::weight_grad9(&g, x_s, dy_s, mask, s > 0, &mut sc, &mut dw, &mut db);
            let mut d = dy_s.to_vec();
            let act = if relu { Activation::Relu } else { Activation::None };
            let len = d.len();
            cnn::layers::activation::backward(act, y_s, &mut d, len);
            for (b, plane) in want_db.iter_mut().zip(d.chunks(ohw)) {
                *b += gemm::sum(plane);
            }
            im2col(x_s, &g, &mut cols);
            gemm::gemm_on(
                Simd::Avx512,
                gemm::MatRef::new(&d, k, ohw),
                gemm::MatRef::new(&cols, 9, ohw).t(),
                if s > 0 { 1.0 } else { 0.0 },
                gemm::MatMut::new(&mut want_dw, k, 9),
            );
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&dw), bits(&want_dw));
        prop_assert_eq!(bits(&db), bits(&want_db));
        // The gradients vary, so equal bits mean something.
        prop_assert!(k * 9 == 1 || dw.iter().any(|&v| v != dw[0]));
    }
}
