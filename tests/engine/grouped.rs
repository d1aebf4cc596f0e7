//! Grouped and depthwise convolutions: the layer's paths (G im2col products, the depthwise
//! kernels) and the depthwise kernels themselves against the naive definitions, on random
//! shapes; their bits across SIMD families and thread counts.

use cnn::kernels::depthwise;
use cnn::kernels::geom::ConvGeom;
use cnn::kernels::Simd;
use cnn::layers::conv2d::{grouped_conv2d_backward_naive, grouped_conv2d_forward_naive};
use cnn::layers::*;
use cnn::rng::Rng;
use proptest::prelude::*;

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn close(what: &str, got: &[f32], want: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{} length", what);
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

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// `f` run on a pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn padding(p: usize) -> Padding {
    match p {
        0 => Padding::Valid,
        1 => Padding::Same,
        p => Padding::Explicit(p - 2),
    }
}

fn spec(k: usize, kernel: (usize, usize), stride: usize, pad: usize, groups: usize) -> Conv2dSpec {
    Conv2dSpec {
        filters: k,
        kernel,
        stride,
        padding: padding(pad),
        activation: Activation::None,
        groups,
        bias: true,
    }
}

/// The layer's forward and backward on `n` samples of input `x`, with weight `w`, bias `b`
/// and upstream gradient `dy` (in that order in `data`), and `depthwise` its kernels on or
/// off: (y, dx, dw, db).
fn run_layer(
    g: ConvGeom,
    groups: usize,
    depthwise: bool,
    data: [&[f32]; 4],
    n: usize,
) -> [Vec<f32>; 4] {
    let [x, w, b, dy] = data;
    let mut layer = Conv2D::grouped(g, groups, true);
    layer.set_depthwise(depthwise);
    layer.weight.value.data_mut().copy_from_slice(w);
    layer.bias.value.data_mut().copy_from_slice(b);
    let mut y = vec![f32::NAN; dy.len()];
    layer.forward_act(x, &mut y, n, Activation::None);
    let mut dx = vec![f32::NAN; x.len()];
    layer.backward_act(x, &y, &mut dy.to_vec(), Some(&mut dx), n, Activation::None);
    [
        y,
        dx,
        layer.weight.grad.data().to_vec(),
        layer.bias.grad.data().to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    /// Groups of 2-4 channels (G from 2 to C / 2, or G = C with the depthwise kernels off),
    /// run as G im2col products, against the definition.
    #[test]
    fn grouped_conv_equals_the_naive_definition(
        n in 1usize..6, cg in 1usize..4, groups in 2usize..5, kg in 1usize..4,
        h in 1usize..10, w in 1usize..12, kh in 1usize..4, kw in 1usize..4,
        stride in 1usize..3, pad in 0usize..4, seed in any::<u64>(),
    ) {
        let (c, k) = (cg * groups, kg * groups);
        let Ok(g) = spec(k, (kh, kw), stride, pad, groups).geom([c, h, w]) else { return Ok(()) };
        let mut rng = Rng::new(seed);
        let x = random(n * c * h * w, &mut rng);
        let wt = random(k * cg * kh * kw, &mut rng);
        let b = random(k, &mut rng);
        let dy = random(n * k * g.out_h * g.out_w, &mut rng);
        let [y, dx, dw, db] = run_layer(g, groups, false, [&x, &wt, &b, &dy], n);
        close("y", &y, &grouped_conv2d_forward_naive(&g, groups, &x, &wt, &b, n))?;
        let (wdx, wdw, wdb) = grouped_conv2d_backward_naive(&g, groups, &x, &wt, &dy, n);
        close("dx", &dx, &wdx)?;
        close("dw", &dw, &wdw)?;
        close("db", &db, &wdb)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// The depthwise kernels on every SIMD family this CPU has, against the naive kernel:
    /// multipliers 1-3, strides 1-3, every padding, windows 1x1 to 4x5, batches that end in
    /// a partial block, rows shorter and longer than 16 outputs.
    #[test]
    fn depthwise_kernels_equal_the_naive_kernel(
        n in 1usize..6, c in 1usize..5, m in 1usize..4, h in 1usize..12, w in 1usize..40,
        kh in 1usize..5, kw in 1usize..6, stride in 1usize..4, pad in 0usize..5,
        seed in any::<u64>(),
    ) {
        let k = m * c;
        let Ok(g) = spec(k, (kh, kw), stride, pad, c).geom([c, h, w]) else { return Ok(()) };
        let mut rng = Rng::new(seed);
        let x = random(n * c * h * w, &mut rng);
        let wt = random(k * kh * kw, &mut rng);
        let b = random(k, &mut rng);
        let (ohw, in_len) = (g.out_h * g.out_w, c * h * w);
        let dy = random(n * k * ohw, &mut rng);
        let want_y = depthwise::forward_naive(&g, &x, &wt, &b, n);
        let (want_dx, want_dw, want_db) = depthwise::backward_naive(&g, &x, &wt, &dy, n);
        // The naive kernel is the definition: the grouped one of the layer says the same.
        close("naive y", &want_y, &grouped_conv2d_forward_naive(&g, c, &x, &wt, &b, n))?;
        let mut family_bits = Vec::new();
        for simd in Simd::all_supported() {
            let mut sc = depthwise::Scratch::default();
            let mut y = vec![f32::NAN; n * k * ohw];
            for s in 0..n {
                depthwise::forward_on(
                    simd, &g, &x[s * in_len..], &wt, &b, false, &mut sc,
                    &mut y[s * k * ohw..(s + 1) * k * ohw],
                );
            }
            close(&format!("{simd:?} y"), &y, &want_y)?;
            let mut relu = vec![f32::NAN; k * ohw];
            depthwise::forward_on(simd, &g, &x, &wt, &b, true, &mut sc, &mut relu);
            let want_relu: Vec<f32> = y[..k * ohw].iter().map(|v| v.max(0.0)).collect();
            prop_assert_eq!(bits(&relu), bits(&want_relu), "{:?} relu", simd);
            let (mut dw, mut db, mut dx) =
                (vec![f32::NAN; k * kh * kw], vec![0.0; k], vec![f32::NAN; x.len()]);
            depthwise::backward_on(simd, &g, &x, &dy, &wt, n, &mut sc, &mut dw, &mut db, Some(&mut dx));
            close(&format!("{simd:?} dx"), &dx, &want_dx)?;
            close(&format!("{simd:?} dw"), &dw, &want_dw)?;
            close(&format!("{simd:?} db"), &db, &want_db)?;
            // Without dx: the same weight and bias gradients.
            let (mut dw2, mut db2) = (vec![f32::NAN; k * kh * kw], vec![0.0; k]);
            depthwise::backward_on(simd, &g, &x, &dy, &wt, n, &mut sc, &mut dw2, &mut db2, None);
            prop_assert_eq!(bits(&dw2), bits(&dw), "{:?} dw without dx", simd);
            prop_assert_eq!(bits(&db2), bits(&db), "{:?} db without dx", simd);
            if simd != Simd::Portable {
                family_bits.push((simd, [bits(&y), bits(&dx), bits(&dw), bits(&db)]));
            }
        }
        // AVX-512 and AVX2 compute the same lane values: the same bits.
        if let [(_, first), rest @ ..] = family_bits.as_slice() {
            for (simd, other) in rest {
                prop_assert_eq!(first, other, "{:?} against the first family", simd);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The layer on its depthwise kernels against the naive definition and, forward, the
    /// bits of its G im2col products (the same chain of fused multiply-adds) on the SIMD
    /// families.
    #[test]
    fn a_depthwise_layer_equals_the_definition_and_its_im2col_path(
        n in 1usize..10, c in 2usize..6, m in 1usize..3, h in 2usize..16, w in 2usize..16,
        stride in 1usize..3, pad in 0usize..4, seed in any::<u64>(),
    ) {
        let k = m * c;
        let Ok(g) = spec(k, (3, 3), stride, pad, c).geom([c, h, w]) else { return Ok(()) };
        let mut rng = Rng::new(seed);
        let x = random(n * c * h * w, &mut rng);
        let wt = random(k * 9, &mut rng);
        let b = random(k, &mut rng);
        let dy = random(n * k * g.out_h * g.out_w, &mut rng);
        let fast = run_layer(g, c, true, [&x, &wt, &b, &dy], n);
        let im2col = run_layer(g, c, false, [&x, &wt, &b, &dy], n);
        close("y", &fast[0], &grouped_conv2d_forward_naive(&g, c, &x, &wt, &b, n))?;
        let (wdx, wdw, wdb) = grouped_conv2d_backward_naive(&g, c, &x, &wt, &dy, n);
        close("dx", &fast[1], &wdx)?;
        close("dw", &fast[2], &wdw)?;
        close("db", &fast[3], &wdb)?;
        close("im2col dx", &im2col[1], &wdx)?;
        if cnn::kernels::simd() != Simd::Portable {
            prop_assert_eq!(bits(&fast[0]), bits(&im2col[0]));
        }
    }
}

#[test]
fn depthwise_results_do_not_depend_on_the_thread_count() {
    // A depthwise layer's output and gradients over 9 samples (two full blocks of 4 and
    // one of 1), ReLU fused, with a multiplier of 2 and stride 2, on 1, 2 and 3 threads.
    let s = Conv2dSpec {
        activation: Activation::Relu,
        ..spec(12, (3, 3), 2, 3, 6)
    };
    let g = s.geom([6, 11, 9]).unwrap();
    let n = 9;
    let mut rng = Rng::new(5);
    let x = random(n * 6 * 11 * 9, &mut rng);
    let w = random(12 * 9, &mut rng);
    let dy = random(n * 12 * g.out_h * g.out_w, &mut rng);
    let run = |threads: usize| -> Vec<u32> {
        on_threads(threads, || {
            let mut layer = Conv2D::grouped(g, 6, true);
            assert!(layer.uses_depthwise());
            layer.weight.value.data_mut().copy_from_slice(&w);
            let mut y = vec![0.0; dy.len()];
            layer.forward_act(&x, &mut y, n, Activation::Relu);
            let mut dx = vec![0.0; x.len()];
            layer.backward_act(&x, &y, &mut dy.clone(), Some(&mut dx), n, Activation::Relu);
            bits(
                &[
                    &y[..],
                    &dx,
                    layer.weight.grad.data(),
                    layer.bias.grad.data(),
                ]
                .concat(),
            )
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn a_layer_without_bias_has_only_a_weight_and_adds_nothing() {
    // bias=false: one parameter, `weight`; the output is the convolution alone.
    let with = spec(4, (3, 3), 1, 1, 2);
    let without = Conv2dSpec {
        bias: false,
        ..with.clone()
    };
    let mut a = Layer::new(&LayerSpec::Conv2D(with), &[4, 5, 5]).unwrap();
    let mut b = Layer::new(&LayerSpec::Conv2D(without), &[4, 5, 5]).unwrap();
    let names: Vec<&str> = b.params().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["weight"]);
    let mut rng = Rng::new(3);
    let w = random(4 * 2 * 9, &mut rng);
    for layer in [&mut a, &mut b] {
        layer.params_mut()[0].1.value.data_mut().copy_from_slice(&w);
    }
    let x = cnn::tensor::Tensor::from_vec(&[2, 4, 5, 5], random(200, &mut rng)).unwrap();
    let (mut ya, mut yb) = (Default::default(), Default::default());
    a.forward(&x, &mut ya);
    b.forward(&x, &mut yb);
    assert_eq!(
        bits(ya.data()),
        bits(yb.data()),
        "a zero bias and none agree"
    );
}

/// The error of parsing `text` as `net.cfg`.
fn parse_error(text: &str) -> String {
    cnn::config::parse(text, "net.cfg").unwrap_err().to_string()
}

#[test]
fn groups_that_do_not_divide_c_or_k_are_an_error_at_their_value_naming_both() {
    let line = "Conv2D filters=12 kernel=3x3 padding=same groups=3";
    let col = line.find("groups=").unwrap() + 1 + "groups=".len();
    let text = format!("3\nInput shape=8x14x14\n{line}\nGlobalAvgPool2D\nDense units=10\n");
    let e = parse_error(&text);
    assert!(e.starts_with(&format!("net.cfg:3:{col}: ")), "{e}");
    assert!(
        e.contains("groups=3 must divide both the input channels (C = 8) and the filters (K = 12)")
            && e.contains("8 is not a multiple of 3"),
        "{e}"
    );
    let e = parse_error(
        &text
            .replace("filters=12", "filters=10")
            .replace("groups=3", "groups=4"),
    );
    assert!(
        e.contains(":3:") && e.contains("10 is not a multiple of 4"),
        "{e}"
    );
    let e = parse_error(&text.replace("groups=3", "groups=5"));
    assert!(e.contains("neither 8 nor 12 is a multiple of 5"), "{e}");
    let e = parse_error(&text.replace("groups=3", "groups=0"));
    assert!(e.contains("`groups` must be a whole number from 1"), "{e}");
    let e = parse_error(&text.replace("groups=3", "groups=4 bias=maybe"));
    assert!(
        e.contains("`bias` must be `true` or `false`, found `maybe`"),
        "{e}"
    );
    // A wrong kernel still points at the kernel.
    let e = parse_error(
        &text
            .replace("groups=3", "groups=4")
            .replace("3x3", "15x3")
            .replace("padding=same", ""),
    );
    assert!(e.starts_with("net.cfg:3:26: "), "{e}");
}

#[test]
fn groups_and_bias_show_in_the_summary_and_its_arithmetic() {
    let parsed = cnn::config::parse(
        "4\nInput shape=8x14x14\n\
         Conv2D filters=16 kernel=3x3 stride=2 padding=1 groups=8 bias=false\n\
         Conv2D filters=8 kernel=1x1 groups=2 activation=relu\n\
         GlobalAvgPool2D\nDense units=10\n",
        "net.cfg",
    )
    .unwrap();
    let (dw, pw) = (&parsed.spec.layers[0], &parsed.spec.layers[1]);
    assert_eq!(
        dw.describe(),
        "Conv2D 16 3x3 stride 2 pad 1 groups 8 no bias"
    );
    assert_eq!(pw.describe(), "Conv2D 8 1x1 valid groups 2 relu");
    // 16 filters of 1 channel x 3x3, no bias; 8 filters of 8 channels x 1x1 + 8 biases.
    let c = dw.counts(&[8, 14, 14], &[16, 7, 7]);
    assert_eq!((c.params, c.flops), (144, 2 * 16 * 49 * 9));
    let c = pw.counts(&[16, 7, 7], &[8, 7, 7]);
    assert_eq!((c.params, c.flops), (72, 2 * 8 * 49 * 8));
    let lines = dw.explain(&[8, 14, 14], &[16, 7, 7]).unwrap();
    assert_eq!(
        lines[1..],
        [
            "groups = C = 8: depthwise, filter k reads input channel k/2 alone (2 filters per \
             channel)",
            "params = 3*3*1*16 + 0 = 144  (kh*kw*(C/G)*K weights, no bias)",
            "FLOPs = 2*16*7*7*1*3*3 = 14,112  (2*K*H'*W'*(C/G)*kh*kw)",
        ]
    );
    let lines = pw.explain(&[16, 7, 7], &[8, 7, 7]).unwrap();
    assert_eq!(
        lines[1],
        "groups = 2: filter k reads the C/G = 8 input channels (k/4)*8 .. +8 of its group \
         (4 filters per group)"
    );
    // PyTorch's fans: fan_in = C/G kh kw, fan_out = K kh kw.
    let layer = Layer::new(dw, &[8, 14, 14]).unwrap();
    assert_eq!(layer.op.fans(), Some((9, 144)));
    let Op::Conv2D(conv) = &layer.op else {
        panic!()
    };
    assert_eq!(conv.weight.value.shape(), &[16, 1, 3, 3]);
    assert!(conv.uses_depthwise() && !conv.uses_winograd());
}
