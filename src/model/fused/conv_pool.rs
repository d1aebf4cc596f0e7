//! A convolution and the max pooling after it, forward and backward, block by block of
//! [`GRAD_BLOCK`] samples.
//!
//! Forward: each block is pooled by the thread that computed its convolution, right after,
//! while the block's output is in that thread's cache. Run one after the other, the pooling
//! read the whole batch's output back from memory (12.8 MB for LeNet's first layer at batch
//! 128). Where the convolution's activation has a derivative of 0 or 1 chosen by its output
//! (none, ReLU, ReLU6: `activation::has_gate`), its output is not written at all (unless the
//! model is asked to keep every output): each block goes to a buffer of the thread's, as in
//! inference. Backward needs the activation's output only where a gradient arrives, at the
//! winner of each pooling window, and there it is the pooled value the pooling keeps:
//!
//! ```text
//! dL/dz[p] = sum over the windows w that p won of dL/dpooled[w], if gate(pooled[w]); else 0
//! ```
//!
//! (z the convolution's output before the activation; every window p won has the same
//! pooled value, y[p]). For another activation (tanh, sigmoid, leaky ReLU) the output is
//! written whole, and backward undoes the activation from it.
//!
//! Backward: each block first gets its dL/dy (or dL/dz, gated as above) from the pooling's
//! backward (`MaxPool2D::backward_samples`, from the pooling's output gradient), into a
//! buffer of the thread's, and then goes through the convolution's backward (the one-pass
//! weight-gradient kernel for a one-channel 3x3 convolution on AVX-512, Winograd where it
//! applies, else im2col) while that buffer is in cache. Run one after the other, the pooling
//! wrote the whole batch's dL/dy to memory (12.8 MB for LeNet's first layer at batch 128,
//! 6.4 MB for its second) and the convolution read it back. The convolution's own gradient
//! buffer in the model is left as it was.
//!
//! Inference ([`infer`]) keeps only the pooling's output: each block's convolution output
//! goes to a buffer of the thread's, reused block after block, so it stays in that
//! thread's cache and is never written to memory. Report 1's network at batch 1000 (in
//! chunks of 64 images) spent 1.2 ms in the convolution and 1.0 ms in the pooling, which
//! read the 3.2 MB of each chunk's convolution output back from memory.
//!
//! The arithmetic is the two layers', in their order, so the outputs and gradients are the
//! same bits.

use crate::kernels::geom::PoolGeom;
use crate::layers::activation::{has_gate, Activation};
use crate::layers::conv2d::{AfterBlock, DyBlock, GRAD_BLOCK};
use crate::layers::pool::max_pool_planes;
use crate::layers::{Conv2D, Layer, MaxPool2D, Op};
use crate::tensor::Tensor;

/// Whether layer `a` and layer `b`, which reads `a`'s output, run together: a Conv2D and
/// a MaxPool2D.
pub fn applies(a: &Layer, b: &Layer) -> bool {
    matches!((&a.op, &b.op), (Op::Conv2D(_), Op::MaxPool2D(_)))
}

/// The convolution `conv` and the max pooling `pool` after it, forward on `x` in a pass that
/// keeps its outputs (training, inference on one image): writes the pooling's output
/// `pooled` (and in training its record of winners) and, if `keep` or if [`backward`] needs
/// it (an activation with no gate, [`has_gate`]), the convolution's output `y` (each
/// resized that it writes). Returns whether it wrote `y`.
///
/// # Panics
/// If the layers are not a Conv2D and a MaxPool2D ([`applies`]) on its output.
pub fn forward(
    conv: &mut Layer,
    pool: &mut Layer,
    x: &Tensor,
    y: &mut Tensor,
    pooled: &mut Tensor,
    keep: bool,
) -> bool {
    let n = x.batch();
    let write = keep || !has_gate(conv.activation());
    if write {
        conv.resize_output(n, y);
    }
    pool.resize_output(n, pooled);
    let (conv, pool) = the_pair(&mut conv.op, &mut pool.op);
    let mut blocks = pool_blocks(pool, pooled.data_mut(), n);
    let y = write.then(|| y.data_mut());
    conv.forward_blocks_then(x.data(), y, n, &mut blocks);
    write
}

/// The convolution `conv` and the max pooling `pool` after it in inference, keeping only
/// the pooling's output `pooled` (resized). A one-channel 3x3 convolution with ReLU and a
/// 2x2 pooling run as one kernel that pools as it goes (`kernels::conv_relu_pool`); any
/// other pair a block at a time: each block's convolution output goes to a buffer of the
/// thread that computes it, is pooled from there and is overwritten by the thread's next
/// block, so it is never written to memory nor read back.
///
/// # Panics
/// If the layers are not a Conv2D and a MaxPool2D ([`applies`]) on its output.
pub fn infer(conv: &mut Layer, pool: &mut Layer, x: &Tensor, pooled: &mut Tensor) {
    let n = x.batch();
    pool.resize_output(n, pooled);
    let (conv, pool) = the_pair(&mut conv.op, &mut pool.op);
    if conv.pools_in_kernel(&pool.geom) {
        return conv.forward_pooled(x.data(), n, &pool.geom, pooled.data_mut());
    }
    let mut blocks = pool_blocks(pool, pooled.data_mut(), n);
    conv.forward_blocks_then(x.data(), None, n, &mut blocks);
}

/// Backward through the pooling `pool` and the convolution `conv` before it, from the
/// pooling's output gradient `pool_dy`, given the convolution's input `x` of the last
/// forward pass ([`forward`]) and its outputs: the convolution's `y` (read only for an
/// activation with no gate, [`has_gate`]; [`forward`] wrote it then) and the pooling's `pooled`. Sets
/// the convolution's parameter gradients and, if `dx` is given, writes dL/dx (resized to
/// `x`'s shape).
///
/// # Panics
/// If the layers are not a Conv2D and a MaxPool2D ([`applies`]) on its output, or the last
/// forward pass was not a training pass of these samples.
pub fn backward(
    conv: &mut Layer,
    pool: &mut Layer,
    x: &Tensor,
    (y, pooled): (&Tensor, &Tensor),
    pool_dy: &Tensor,
    dx: Option<&mut Tensor>,
) {
    let n = x.batch();
    let dx = dx.map(|t| {
        t.resize(x.shape());
        t.data_mut()
    });
    let act = conv.activation();
    let gated = has_gate(act);
    let (conv, pool) = the_pair(&mut conv.op, &mut pool.op);
    let pool = &*pool;
    let p = pool.geom;
    let len = p.c * p.out_h * p.out_w;
    let dy: Vec<Unpooled> = pool_dy.data()[..n * len]
        .chunks(GRAD_BLOCK * len)
        .zip(pooled.data()[..n * len].chunks(GRAD_BLOCK * len))
        .enumerate()
        .map(|(b, (pool_dy, pooled))| Unpooled {
            pool,
            pool_dy,
            gated: gated.then_some((act, pooled)),
            first: b * GRAD_BLOCK,
        })
        .collect();
    // With a gate, the blocks' gradients are dL/dz already: the convolution reads no y.
    let y = (!gated).then(|| y.data());
    conv.backward_blocks_from(x.data(), y, dy, dx, n);
}

/// The convolution and the pooling of two layer operations, checked to be a Conv2D and a
/// MaxPool2D that reads its output.
fn the_pair<'a>(conv: &'a mut Op, pool: &'a mut Op) -> (&'a mut Conv2D, &'a mut MaxPool2D) {
    let (Op::Conv2D(conv), Op::MaxPool2D(pool)) = (conv, pool) else {
        panic!("conv_pool: not a Conv2D and a MaxPool2D");
    };
    let (g, p) = (conv.geom, pool.geom);
    assert_eq!(
        (p.c, p.h, p.w),
        (g.k, g.out_h, g.out_w),
        "conv_pool: the pooling's input is not the convolution's output"
    );
    (conv, pool)
}

/// The pooling's output `y` for a forward pass of `n` samples (and, in a training pass, its
/// record of winners), split into blocks of [`GRAD_BLOCK`] samples, one for each block of
/// the convolution before it.
fn pool_blocks<'a>(pool: &'a mut MaxPool2D, y: &'a mut [f32], n: usize) -> Vec<PoolBlock<'a>> {
    let geom = pool.geom;
    let len = geom.c * geom.out_h * geom.out_w;
    let y = y[..n * len].chunks_mut(GRAD_BLOCK * len);
    match pool.record(n * len) {
        None => y
            .map(|y| PoolBlock {
                geom,
                y,
                argmax: None,
            })
            .collect(),
        Some(arg) => y
            .zip(arg.chunks_mut(GRAD_BLOCK * len))
            .map(|(y, a)| PoolBlock {
                geom,
                y,
                argmax: Some(a),
            })
            .collect(),
    }
}

/// One block of samples of the pooling's forward pass: its part of the output and of the
/// record of winners.
struct PoolBlock<'a> {
    geom: PoolGeom,
    y: &'a mut [f32],
    argmax: Option<&'a mut [u32]>,
}

impl AfterBlock for PoolBlock<'_> {
    /// Pools the block's convolution output `x` (its samples' `[C, H, W]` planes) on the
    /// calling thread: the pooling's forward pass on those samples.
    fn run(&mut self, x: &[f32]) {
        max_pool_planes(&self.geom, x, self.y, self.argmax.as_deref_mut());
    }
}

/// One block's dL/d(convolution output), made from the pooling's output gradient of its
/// samples `first..`, `pool_dy`; with the gate of the convolution's activation and the
/// pooling's output of those samples, dL/d(convolution output before the activation).
struct Unpooled<'a> {
    pool: &'a MaxPool2D,
    pool_dy: &'a [f32],
    gated: Option<(Activation, &'a [f32])>,
    first: usize,
}

thread_local! {
    /// Each thread's buffer for a block's dL/d(convolution output), reused from block to
    /// block so that it stays in the thread's cache.
    static DY_BLOCK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl DyBlock for Unpooled<'_> {
    fn with(&mut self, len: usize, f: impl FnOnce(&mut [f32])) {
        DY_BLOCK.with_borrow_mut(|buf| {
            buf.resize(len, 0.0);
            let (dy, first) = (self.pool_dy, self.first);
            match self.gated {
                Some((act, y)) => self.pool.backward_samples_gated(dy, y, first, act, buf),
                None => self.pool.backward_samples(dy, first, buf),
            }
            f(buf)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::synthetic_batch;
    use crate::init::Init;
    use crate::layers::Pass;
    use crate::model::Model;

    /// Inference keeps only the pooling's output, made by the kernel that pools as it goes
    /// (a one-channel 3x3 ReLU convolution), or block by block through a thread's buffer
    /// (the direct kernel with tanh, im2col for a 2x2 kernel, Winograd for 8 channels):
    /// the bits of the two layers' own passes one after the other, for two whole blocks
    /// of samples and a partial one.
    #[test]
    fn inference_pools_each_block_as_the_layers_would_one_after_the_other() {
        for (input, line, in_kernel) in [
            ("1x10x12", "kernel=3x3 padding=same activation=relu", true),
            ("1x10x12", "kernel=3x3 padding=same activation=tanh", false),
            ("1x10x12", "kernel=2x2 padding=same activation=relu", false),
            ("8x10x12", "kernel=3x3 padding=same activation=relu", false),
        ] {
            let text = format!(
                "3\nInput shape={input}\nConv2D filters=6 {line}\nMaxPool2D pool=2x2\n\
                 Dense units=3 activation=softmax\n"
            );
            let spec = crate::config::parse(&text, "t").unwrap().spec;
            let mut model = Model::new(&spec, Init::He, 4).unwrap();
            let (x, _) = synthetic_batch(&spec, 2 * GRAD_BLOCK + 1, 8).unwrap();
            let layers = model.layers_mut();
            for l in layers.iter_mut() {
                l.op.prepare(Pass::default());
            }
            let (mut y, mut apart, mut fused) =
                (Tensor::default(), Tensor::default(), Tensor::default());
            layers[0].forward(&x, &mut y);
            layers[1].forward(&y, &mut apart);
            let (conv, pool) = layers.split_at_mut(1);
            let (Op::Conv2D(c), Op::MaxPool2D(p)) = (&conv[0].op, &pool[0].op) else {
                panic!("a convolution and a pooling")
            };
            let kernel = crate::kernels::simd() != crate::kernels::Simd::Portable;
            assert_eq!(c.pools_in_kernel(&p.geom), in_kernel && kernel, "{line}");
            infer(&mut conv[0], &mut pool[0], &x, &mut fused);
            let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(fused.shape(), apart.shape());
            assert_eq!(bits(&fused), bits(&apart), "{input} {line}");
            assert!(apart.data().iter().any(|&v| v != apart.data()[0]));
        }
    }
}
