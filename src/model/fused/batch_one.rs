//! The latency path of inference at batch 1: a one-channel convolution, the pooling layer
//! after it and the Dense layer after that, run with one fork-join instead of three.
//!
//! A batch of one image gives nothing to split, so at batch 1 each of these layers splits
//! its own work in two halves on two threads: the convolution its K filters
//! ([`Conv2D::one_image_split`](crate::layers::Conv2D::one_image_split)), the pooling its K planes, the Dense layer its inputs
//! ([`Dense::one_split`](crate::layers::Dense::one_split)). Run layer by layer, each layer waits for both halves before the
//! next starts. But when the Dense layer's first half of inputs is exactly the pooled
//! planes of the first half of the filters, each thread needs nothing from the other until
//! the very end, and carries its half through all three layers:
//!
//! ```text
//! thread 0:  conv filters 0..K/2  ->  pool planes 0..K/2  ->  p0 = W[:, ..h] x[..h]
//! thread 1:  conv filters K/2..K  ->  pool planes K/2..K  ->  p1 = W[:, h..] x[h..]
//! then:      y = act((b + p0) + p1)          (h = K/2 * H'W' of the pooled planes)
//! ```
//!
//! Each layer computes what its own one-image path computes, in the same order, so the
//! outputs are the same bits, and every layer's output is written as usual when the caller
//! keeps them all (the page of `cnn serve` shows them). What goes is two of the three waits
//! for the slower half, and two of the three hand-overs of a job to the other thread.
//! Otherwise a one-channel 3x3 ReLU convolution and its max pooling run as the kernel that
//! pools as it goes (`kernels::conv_relu_pool`), each thread its half of the filters, and
//! the convolution's output is not written.

use crate::kernels::geom::PoolGeom;
use crate::layers::activation;
use crate::layers::{Layer, Op};
use crate::tensor::Tensor;

/// The number of layers in a chain.
pub const LEN: usize = 3;

/// Whether `layers[i..i + 3]` is a chain this path runs at batch 1: a Conv2D on the
/// one-image path, then a MaxPool2D or AvgPool2D, then a Dense layer that splits its inputs
/// where the pooled planes of the first half of the filters end.
pub fn starts_at(layers: &[Layer], i: usize) -> bool {
    let [conv, pool, dense] = match layers.get(i..i + LEN) {
        Some([a, b, c]) => [a, b, c],
        _ => return false,
    };
    let (Op::Conv2D(conv), Op::Dense(dense)) = (&conv.op, &dense.op) else {
        return false;
    };
    let Some(pool) = pool_geom(&pool.op) else {
        return false;
    };
    let Some(half) = conv.one_image_split() else {
        return false;
    };
    let planes = pool.out_h * pool.out_w;
    pool.c == conv.geom.k
        && dense.inputs == pool.c * planes
        && dense.one_split() == Some(half * planes)
}

/// The geometry of a pooling layer.
fn pool_geom(op: &Op) -> Option<PoolGeom> {
    match op {
        Op::MaxPool2D(p) => Some(p.geom),
        Op::AvgPool2D(p) => Some(p.geom),
        _ => None,
    }
}

/// Runs the chain `layers` (three layers, [`starts_at`]`(layers, 0)`) on one image `x`
/// (`[1, C, H, W]`) for inference, writing the three layers' outputs into `acts`; but
/// unless `keep` asks for every output, a convolution that the max pooling after it can
/// consume in one kernel (`Conv2D::pools_in_kernel`) is run that way, each thread pooling
/// its filters' planes in registers, and its output is not written. Returns whether the
/// convolution's output was written.
///
/// # Panics
/// If `layers` is not such a chain or `x` is not one image of the first layer's input.
pub fn forward(layers: &mut [Layer], x: &Tensor, acts: &mut [Tensor], keep: bool) -> bool {
    assert!(starts_at(layers, 0), "batch_one::forward: not a chain");
    assert_eq!(x.shape()[0], 1, "batch_one::forward: one image");
    for (layer, y) in layers.iter().zip(acts.iter_mut()) {
        layer.resize_output(1, y);
    }
    let (first, rest) = layers.split_at_mut(1);
    let (second, third) = rest.split_at_mut(1);
    let (Op::Conv2D(conv), Op::Dense(dense)) = (&first[0].op, &mut third[0].op) else {
        unreachable!("checked by starts_at");
    };
    let pool = &second[0].op;
    let pool_planes = |x: &[f32], y: &mut [f32]| match pool {
        Op::MaxPool2D(p) => p.forward_planes(x, y),
        Op::AvgPool2D(p) => p.forward_planes(x, y),
        _ => unreachable!("checked by starts_at"),
    };
    let half = conv.one_image_split().expect("checked by starts_at");
    let k = conv.geom.k;
    let conv_plane = conv.geom.out_h * conv.geom.out_w;
    let g = pool_geom(pool).expect("checked by starts_at");
    let in_kernel = !keep && matches!(pool, Op::MaxPool2D(_)) && conv.pools_in_kernel(&g);
    // Filters `ks` of the image into their convolution planes `c` and pooled planes `q`:
    // by the kernel that pools as it goes (leaving `c`), or layer by layer.
    let conv_pool = |ks: std::ops::Range<usize>, c: &mut [f32], q: &mut [f32]| {
        if in_kernel {
            conv.forward_pooled_filters(x.data(), ks, &g, q);
        } else {
            conv.forward_one_filters(x.data(), ks, conv.act, c);
            pool_planes(c, q);
        }
    };
    // The Dense layer's split: the pooled planes of the first half of the filters.
    let h = half * g.out_h * g.out_w;
    dense.pack_for_one();
    let mut parts = dense.take_parts();
    let units = dense.units;
    let (y_conv, rest) = acts.split_at_mut(1);
    let (y_pool, y_dense) = rest.split_at_mut(1);
    let (c0, c1) = y_conv[0].data_mut().split_at_mut(half * conv_plane);
    let (q0, q1) = y_pool[0].data_mut().split_at_mut(h);
    let (p0, p1) = parts.split_at_mut(units);
    let dense_ref = &*dense;
    rayon::join(
        || {
            conv_pool(0..half, c0, q0);
            dense_ref.forward_one_part(q0, 0, p0);
        },
        || {
            conv_pool(half..k, c1, q1);
            dense_ref.forward_one_part(q1, h, p1);
        },
    );
    let y = y_dense[0].data_mut();
    dense.finish_one(parts, y);
    activation::forward(dense.act, &mut y[..units], units);
    !in_kernel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::synthetic_batch;
    use crate::init::Init;
    use crate::layers::Pass;
    use crate::model::Model;

    fn model(input: &str, pool: &str, units: usize) -> Model {
        let text = format!(
            "4\nInput shape=1x{input}\n\
             Conv2D filters=8 kernel=3x3 stride=1 padding=same activation=relu\n\
             {pool} pool=2x2 stride=2\n\
             Dense units={units} activation=relu\n\
             Dense units=10 activation=softmax\n"
        );
        let spec = crate::config::parse(&text, "batch_one test").unwrap().spec;
        Model::new(&spec, Init::He, 5).unwrap()
    }

    /// Every layer's output, one layer at a time through its own forward pass (the
    /// reference: each layer's one-image path, with its own fork-join).
    fn layer_by_layer(model: &mut Model, x: &Tensor) -> Vec<Tensor> {
        let mut outs: Vec<Tensor> = Vec::new();
        for layer in &mut model.layers {
            layer.op.prepare(Pass {
                training: false,
                stream: 0,
                ..Default::default()
            });
            let mut y = Tensor::default();
            layer.forward(outs.last().unwrap_or(x), &mut y);
            outs.push(y);
        }
        outs
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.data().iter().map(|v| v.to_bits()).collect()
    }

    /// The chain writes every layer's output with the same bits as the layers one by one,
    /// for max and average pooling, on one thread and on two; unless every output is to be
    /// kept, a convolution pooled as it goes leaves its own unwritten (and the others the
    /// same bits).
    #[test]
    fn the_chain_writes_the_bits_of_the_layers_one_by_one() {
        for pool in ["MaxPool2D", "AvgPool2D"] {
            // 8 filters of 12 x 12 pooled to 6 x 6: 288 inputs split at 144 = 4 x 36, and
            // 288 x 256 weights, enough for the Dense layer to split.
            let mut m = model("12x12", pool, 256);
            // The chain needs the direct kernel's one-image path, which the portable kernels
            // (`CNN_NO_SIMD=1`, aarch64) do not have; then inference runs layer by layer and
            // must still give these bits.
            let Op::Conv2D(conv) = &m.layers[0].op else {
                unreachable!("the first layer is the convolution")
            };
            let direct = crate::kernels::direct::applies(&conv.geom);
            assert_eq!(starts_at(&m.layers, 0), direct, "{pool}");
            assert!(!starts_at(&m.layers, 1));
            let (x, _) = synthetic_batch(&m.spec, 1, 3).unwrap();
            let want = layer_by_layer(&mut m, &x);
            // The convolution pooled as it goes when no one asks for its output: a
            // one-channel 3x3 ReLU convolution with max pooling, on AVX-512 or AVX2.
            let Op::Conv2D(conv) = &m.layers[0].op else {
                unreachable!("the first layer is the convolution")
            };
            let pool_geom = pool_geom(&m.layers[1].op).unwrap();
            let in_kernel = pool == "MaxPool2D" && conv.pools_in_kernel(&pool_geom);
            for (threads, keep) in [(1, true), (2, true), (1, false), (2, false)] {
                let pool_threads = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                m.set_keep_outputs(keep);
                let logits = pool_threads.install(|| m.infer(&x).unwrap().clone());
                let at = format!("{pool}, {threads} threads, keep {keep}");
                assert_eq!(bits(&logits), bits(&want[3]), "{at}");
                assert_eq!(m.activation(0).is_none(), in_kernel && !keep, "{at}");
                for (i, w) in want.iter().enumerate() {
                    let Some(got) = m.activation(i) else {
                        assert!(i == 0 && in_kernel && !keep, "layer {i}: {at}");
                        continue;
                    };
                    assert_eq!(got.shape(), w.shape());
                    assert_eq!(bits(got), bits(w), "layer {i}, {at}");
                }
            }
            m.set_keep_outputs(false);
            // The outputs are not all one value: the comparison means something.
            assert!(want[2].data().iter().any(|&v| v != want[2].data()[0]));
        }
    }

    /// A Dense layer whose split does not fall where the pooled planes of the first half
    /// of the filters end, or that is too small to split, is not a chain.
    #[test]
    fn no_chain_where_the_halves_do_not_line_up() {
        // 8 x 5 x 5 = 200 inputs split at 96, not 4 x 25 = 100.
        assert!(!starts_at(&model("10x10", "MaxPool2D", 512).layers, 0));
        // 288 x 16 weights: too few to split.
        assert!(!starts_at(&model("12x12", "MaxPool2D", 16).layers, 0));
    }
}
