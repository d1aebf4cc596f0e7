//! Dense (fully connected): z = W x + b (report 1, eq. 11-12), over a batch.
//!
//! Legend: N batch, I inputs (the input flattened in C, H, W order), O units.
//!
//! ```text
//! forward:  Y[N, O]  = X[N, I] * W^T[I, O] + b        (y_n = W x_n + b for each sample)
//!           computed as Y^T[O, N] = W[O, I] * X^T[I, N], then transposed back with b added:
//!           X^T (small at training batch sizes) is copied once so that the product reads
//!           rows of X^T whole, and W, the big operand, is read in place.
//!           One sample (N = 1): dot products over W's rows, the inputs in two halves on
//!           two threads, y = (b + W[:, ..h] x[..h]) + W[:, h..] x[h..].
//!           Inference on N > 1 samples: those dot products for every sample at once,
//!           P0[N, O] = X[:, ..h] * W[:, ..h]^T and P1 likewise, Y = (b + P0) + P1: each
//!           sample gets the bits it gets alone (the product's kernel sums an element over
//!           k in an order that depends only on K), so a prediction does not depend on the
//!           batch it ran in (`cnn serve` batches requests), and at small N this is also
//!           faster than the training product, whose vectors run along N.
//! backward: dW[O, I] = dY^T[O, N] * X[N, I]           (sum over the batch)
//!           db[O]    = sum_n dY[n, :]
//!           dX[N, I] = dY[N, O] * W[O, I]
//! ```

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::keys::{LineKeys, MAX_UNITS};
use super::param::Param;
use super::{Counts, InputForm, LayerKind, LayerOp, Pass, SampleShape};
use crate::error::Result;
use crate::kernels::gemm::{gemm, par_gemm, MatMut, MatRef};
use crate::kernels::matvec::{self, Packed};
use crate::kernels::transpose::par_transpose;
use crate::onnx::export::{int, Graph, LayerAt};
use crate::onnx::import::{dims_text, unsupported, Attrs, Importer, Step, StepKind};
use crate::onnx::proto::NodeProto;
use crate::text::thousands;

/// Below this many weights a one-sample forward pass runs on one thread.
const ONE_SPLIT_MIN: usize = 1 << 16;

/// A Dense config line: `Dense units=128 activation=relu`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseSpec {
    /// O, the number of output units. Required.
    pub units: usize,
    /// Fused into the layer. Default [`Activation::None`].
    pub activation: Activation,
}

/// The Dense kind.
pub struct Kind;

impl LayerKind for Kind {
    type Spec = DenseSpec;
    type Op = Dense;
    const LINES: &'static [(&'static str, &'static [&'static str])] =
        &[("Dense", &["units", "activation", "alpha"])];
    const INPUT: InputForm = InputForm::Flattened;

    fn parse(_name: &str, keys: &LineKeys) -> Result<DenseSpec> {
        Ok(DenseSpec {
            units: keys.whole(keys.required("units")?, 1, MAX_UNITS)?,
            activation: keys.activation()?,
        })
    }

    fn name(_spec: &DenseSpec) -> &'static str {
        "Dense"
    }

    fn output_shape(spec: &DenseSpec, _input: &[usize]) -> Result<SampleShape> {
        if spec.units == 0 {
            return Err(crate::error::Error::Invalid(
                "Dense: units must be at least 1".into(),
            ));
        }
        Ok(vec![spec.units])
    }

    /// params = O I + O; FLOPs = 2 O I.
    fn counts(spec: &DenseSpec, input: &[usize], _output: &[usize]) -> Counts {
        let i: u128 = input.iter().map(|&d| d as u128).product();
        let o = spec.units as u128;
        Counts {
            params: o * i + o,
            flops: 2 * o * i,
        }
    }

    fn describe(s: &DenseSpec) -> String {
        format!("Dense {}{}", s.units, s.activation.suffix())
    }

    fn explain(s: &DenseSpec, input: &[usize], _output: &[usize]) -> Result<Vec<String>> {
        let n: usize = input.iter().product();
        Ok(vec![
            format!(
                "params = {n}*{u} + {u} = {}  (inputs*units weights + units biases)",
                thousands((n * s.units + s.units) as u128),
                u = s.units
            ),
            format!(
                "FLOPs = 2*{n}*{} = {}  (2*inputs*units)",
                s.units,
                thousands(2 * (n * s.units) as u128)
            ),
        ])
    }

    fn activation(spec: &DenseSpec) -> Activation {
        spec.activation
    }

    fn with_activation(spec: &DenseSpec, act: Activation) -> DenseSpec {
        DenseSpec {
            activation: act,
            ..spec.clone()
        }
    }

    fn output_key(spec: &DenseSpec) -> Option<(&'static str, usize)> {
        Some(("units", spec.units))
    }

    fn with_output_size(spec: &DenseSpec, n: usize) -> DenseSpec {
        DenseSpec {
            units: n,
            ..spec.clone()
        }
    }

    /// `Gemm` (transB = 1) with the weight `[O, I]` and the bias `[O]`.
    fn onnx(_spec: &DenseSpec, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
        Ok(g.node(
            "Gemm",
            at.name,
            &[input, &at.tensor("weight"), &at.tensor("bias")],
            vec![int("transB", 1)],
        ))
    }

    const ONNX_OPS: &'static [&'static str] = &["Gemm", "MatMul", "Add"];

    /// `Gemm` (alpha = beta = 1, transA = 0, either transB), or `MatMul` then the `Add` of
    /// its bias, with a constant weight.
    fn onnx_import(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
        match node.op_type.as_deref() {
            Some("Gemm") => read_gemm(node, cx),
            Some("MatMul") => {
                let wname = node.input.get(1).ok_or("has no weight input")?;
                read_dense(cx, wname, false)?;
                Ok(())
            }
            _ if cx.previous_op() == Some("MatMul") => add_bias(node, cx),
            _ => Err(format!(
                "{} (an Add only as the bias of the MatMul right before it)",
                unsupported()
            )),
        }
    }

    fn build(spec: &DenseSpec, input: &[usize]) -> Result<Dense> {
        let mut layer = Dense::new(input.iter().product(), spec.units);
        layer.act = spec.activation;
        Ok(layer)
    }
}

/// A `Gemm` node as a Dense line.
fn read_gemm(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
    let attrs = Attrs::of(node);
    let unknown = attrs.unknown(&["alpha", "beta", "transA", "transB"]);
    if !unknown.is_empty() {
        return Err(format!("unsupported attributes {unknown:?}"));
    }
    if attrs.float("alpha", 1.0) != 1.0
        || attrs.float("beta", 1.0) != 1.0
        || attrs.int("transA", 0) != 0
    {
        return Err("only alpha = 1, beta = 1 and transA = 0 are supported".into());
    }
    let wname = node.input.get(1).ok_or("has no weight input")?;
    let trans_b = attrs.int("transB", 0) != 0;
    let units = read_dense(cx, wname, trans_b)?;
    if let Some(b) = node.input.get(2).filter(|s| !s.is_empty()) {
        let bias = cx.vector(b, units)?;
        set_bias(cx, bias);
    }
    Ok(())
}

/// The bias of the Dense made from the MatMul before this Add.
fn add_bias(node: &NodeProto, cx: &mut Importer<'_>) -> std::result::Result<(), String> {
    let [a, b] = node.input.as_slice() else {
        return Err("needs two inputs".into());
    };
    let other = if *a == cx.value() { b } else { a };
    let units = cx.shape[0];
    let bias = cx.vector(other, units)?;
    set_bias(cx, bias);
    Ok(())
}

/// A Dense line from the weight `wname`, `[out, in]` (or `[in, out]` when not
/// `transposed`), with a zero bias; returns its units.
fn read_dense(
    cx: &mut Importer<'_>,
    wname: &str,
    transposed: bool,
) -> std::result::Result<usize, String> {
    if cx.shape.len() != 1 {
        return Err(format!(
            "needs a flat [N, F] value, this one is [N, {}] (no Flatten before it)",
            dims_text(&cx.shape)
        ));
    }
    let inputs = cx.shape[0];
    let (wshape, w) = cx.floats(wname)?;
    let &[rows, cols] = wshape.as_slice() else {
        return Err(format!("weight shape {wshape:?} is not a matrix"));
    };
    let (units, n_in, weight) = if transposed {
        (rows, cols, w)
    } else {
        let mut t = vec![0.0; w.len()];
        par_transpose(&w, rows, cols, &mut t);
        (cols, rows, t)
    };
    if n_in != inputs {
        return Err(format!(
            "its weight {wshape:?} takes {n_in} inputs, the value it reads has {inputs} \
             (shapes do not chain)"
        ));
    }
    cx.shape = vec![units];
    cx.push(Step::new(
        format!("Dense units={units}"),
        StepKind::Fusable {
            fused: false,
            flat_input: true,
        },
        vec![
            ("weight", vec![units, n_in], weight),
            ("bias", vec![units], vec![0.0; units]),
        ],
    ));
    Ok(units)
}

/// Sets the bias of the Dense line just read.
fn set_bias(cx: &mut Importer<'_>, bias: Vec<f32>) {
    if let Some(step) = cx.last_step_mut() {
        if let Some(t) = step.tensors.iter_mut().find(|t| t.0 == "bias") {
            t.2 = bias;
        }
    }
}

/// A fully connected layer with weight `[O, I]` and bias `[O]` (PyTorch's `nn.Linear`).
///
/// # Shapes
/// input `[N, ...]` with I elements per sample (read flattened), output `[N, O]`.
#[derive(Debug, Clone)]
pub struct Dense {
    pub inputs: usize,
    pub units: usize,
    pub weight: Param,
    pub bias: Param,
    /// The activation fused into the layer (applied by [`LayerOp::forward`]).
    pub act: Activation,
    /// X^T `[I, N]` and Y^T `[O, N]` of the last forward pass (buffers reused).
    xt: Vec<f32>,
    yt: Vec<f32>,
    /// Whether the next forward pass is inference ([`LayerOp::prepare`]): then each
    /// sample is computed as if it were alone ([`Dense::forward_each_alone`]).
    inference: bool,
    /// This process's part of the batch ([`super::Pass::shard`]).
    shard: crate::distributed::Shard,
    /// The generation of the weights of the next pass ([`super::Pass::weights`]).
    weights_now: u64,
    /// The weights of the one-image path's two halves of the inputs, packed for
    /// [`matvec`], and the generation they were packed from (0: none).
    packed: Packed,
    packed_from: u64,
}

impl Dense {
    /// A layer with zero weights (the model initialises them).
    pub fn new(inputs: usize, units: usize) -> Dense {
        Dense {
            inputs,
            units,
            weight: Param::zeros(&[units, inputs]),
            bias: Param::zeros(&[units]),
            act: Activation::None,
            xt: Vec::new(),
            yt: Vec::new(),
            inference: false,
            shard: crate::distributed::Shard::default(),
            weights_now: 0,
            packed: Default::default(),
            packed_from: 0,
        }
    }

    /// Y = X W^T + b for `n` samples, without the activation (which
    /// [`LayerOp::forward`] applies after it).
    pub fn forward_linear(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        if n == 1 && self.shard.total(n) == 1 {
            return self.forward_one(x, y);
        }
        if self.inference {
            return self.forward_each_alone(x, y, n);
        }
        if n == 1 {
            // One sample of a larger batch split over processes: the batch's product, whose
            // kernel (X^T's rows are not contiguous for N > 1) groups the sums otherwise than
            // a one-column product's, run on the sample twice; the bits of one process.
            let mut twice = x[..self.inputs].to_vec();
            twice.extend_from_slice(&x[..self.inputs]);
            let mut y2 = vec![0.0; 2 * self.units];
            self.forward_linear(&twice, &mut y2, 2);
            y[..self.units].copy_from_slice(&y2[..self.units]);
            return;
        }
        let (i, o) = (self.inputs, self.units);
        let b = self.bias.value.data();
        let w = self.weight.value.data();
        self.xt.resize(i * n, 0.0);
        self.yt.resize(o * n, 0.0);
        par_transpose(&x[..n * i], n, i, &mut self.xt);
        let (w, xt) = (MatRef::new(w, o, i), MatRef::new(&self.xt, i, n));
        par_gemm(w, xt, 0.0, MatMut::new(&mut self.yt, o, n));
        for (s, row) in y[..n * o].chunks_mut(o).enumerate() {
            for (u, v) in row.iter_mut().enumerate() {
                *v = self.yt[u * n + s] + b[u];
            }
        }
    }

    /// Y = X W^T + b for `n` samples, each sample's outputs summed in the order of
    /// [`Dense::forward_one`], so that each gets the bits it gets alone: the same dot
    /// products (the products' kernel sums each element of Y over k in an order that
    /// depends only on K), in the same halves.
    fn forward_each_alone(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        let (i, o) = (self.inputs, self.units);
        let w = MatRef::new(self.weight.value.data(), o, i);
        let xm = MatRef::new(&x[..n * i], n, i);
        let Some(h) = self.one_split() else {
            for row in y[..n * o].chunks_mut(o) {
                row.copy_from_slice(self.bias.value.data());
            }
            return par_gemm(xm, w.t(), 1.0, MatMut::new(&mut y[..n * o], n, o));
        };
        self.yt.resize(2 * n * o, 0.0);
        let (p0, p1) = self.yt.split_at_mut(n * o);
        rayon::join(
            || {
                let (x0, w0) = (xm.block(0, 0, n, h), w.block(0, 0, o, h).t());
                par_gemm(x0, w0, 0.0, MatMut::new(p0, n, o))
            },
            || {
                let (x1, w1) = (xm.block(0, h, n, i - h), w.block(0, h, o, i - h).t());
                par_gemm(x1, w1, 0.0, MatMut::new(p1, n, o))
            },
        );
        let b = self.bias.value.data();
        for ((row, r0), r1) in y[..n * o].chunks_mut(o).zip(p0.chunks(o)).zip(p1.chunks(o)) {
            for (((v, &bu), &a), &c) in row.iter_mut().zip(b).zip(r0).zip(r1) {
                *v = (bu + a) + c;
            }
        }
    }

    /// y = W x + b for one sample, as dot products over W's rows (no copy of x needed).
    ///
    /// A large layer splits the inputs in two halves at `h` (a multiple of 16 fixed by the
    /// shape): `y = (b + W[:, ..h] x[..h]) + W[:, h..] x[h..]`, each half on its own thread.
    /// A thread then reads only its half of x, which the layer before wrote on that same
    /// thread when it split its planes the same way (see `Conv2D`'s one-image path), and
    /// the half of each row of W that it reads at every call. Splitting the rows instead
    /// made both threads read all of x, half of it from the other core's cache, and the
    /// layer before then had to take those lines back before writing them again. The sum
    /// depends only on the shape, so the bits do not depend on the thread count.
    fn forward_one(&mut self, x: &[f32], y: &mut [f32]) {
        let (i, o) = (self.inputs, self.units);
        let Some(h) = self.one_split() else {
            let w = MatRef::new(self.weight.value.data(), o, i);
            y[..o].copy_from_slice(self.bias.value.data());
            return gemm(
                w,
                MatRef::new(&x[..i], i, 1),
                1.0,
                MatMut::new(&mut y[..o], o, 1),
            );
        };
        self.pack_for_one();
        let mut parts = self.take_parts();
        let (p0, p1) = parts.split_at_mut(o);
        let this = &*self;
        rayon::join(
            || this.forward_one_part(&x[..h], 0, p0),
            || this.forward_one_part(&x[h..i], h, p1),
        );
        self.finish_one(parts, y);
    }

    /// Where the one-sample path splits the inputs (`h`, a multiple of 16), or `None` if
    /// the layer is too small to split.
    pub(crate) fn one_split(&self) -> Option<usize> {
        let (i, o) = (self.inputs, self.units);
        let h = (i / 2) / 16 * 16;
        (o * i >= ONE_SPLIT_MIN && h > 0).then_some(h)
    }

    /// The buffer for the two halves' partial sums, `2 O` values, taken out of the layer so
    /// that the halves can run while the layer is borrowed; [`Dense::finish_one`] puts it
    /// back.
    pub(crate) fn take_parts(&mut self) -> Vec<f32> {
        let mut parts = std::mem::take(&mut self.yt);
        parts.resize(2 * self.units, 0.0);
        parts
    }

    /// Packs the weights of the one-image path's two halves for [`matvec`], unless they
    /// are packed from this pass's weights already or the pass's weights are unknown
    /// ([`super::Pass::weights`] 0). A call reads all of W, two operations per weight, so
    /// its time is the time to read W: packed, each half is one stream of consecutive
    /// memory instead of O rows of W at once (report 1's network at batch 1: see
    /// `kernels::matvec`).
    pub(crate) fn pack_for_one(&mut self) {
        let fresh = self.packed_from == self.weights_now;
        let Some(h) = self.one_split().filter(|_| matvec::applies() && !fresh) else {
            return;
        };
        if self.weights_now == 0 {
            self.packed = Default::default();
            self.packed_from = 0;
            return;
        }
        let (i, o) = (self.inputs, self.units);
        let w = MatRef::new(self.weight.value.data(), o, i);
        self.packed = Packed::new(&[w.block(0, 0, o, h), w.block(0, h, o, i - h)]);
        self.packed_from = self.weights_now;
    }

    /// `p = W[:, c0..c0 + len] x_part` for one sample, where `x_part` is the inputs
    /// `c0..c0 + len` (`p` holds O values): from the packed half when
    /// [`Dense::pack_for_one`] packed it for these weights, the same bits.
    pub(crate) fn forward_one_part(&self, x_part: &[f32], c0: usize, p: &mut [f32]) {
        let (i, o) = (self.inputs, self.units);
        let cols = x_part.len();
        if self.packed_from != 0 && self.packed_from == self.weights_now {
            let half = usize::from(c0 > 0);
            if self.packed.shape(half) == Some((o, cols)) {
                return self.packed.matvec(half, x_part, &mut p[..o]);
            }
        }
        let w = MatRef::new(self.weight.value.data(), o, i);
        let xh = MatRef::new(x_part, cols, 1);
        gemm(
            w.block(0, c0, o, cols),
            xh,
            0.0,
            MatMut::new(&mut p[..o], o, 1),
        );
    }

    /// `y = (b + p0) + p1` from the two halves' partial sums in `parts` (`p0` then `p1`),
    /// which go back into the layer as its buffer. The activation is not applied.
    pub(crate) fn finish_one(&mut self, parts: Vec<f32>, y: &mut [f32]) {
        let o = self.units;
        let (p0, p1) = parts.split_at(o);
        let b = self.bias.value.data();
        for ((yu, &bu), (a, c)) in y[..o].iter_mut().zip(b).zip(p0.iter().zip(p1)) {
            *yu = (bu + a) + c;
        }
        self.yt = parts;
    }

    /// Sets dW and db from `dy`, the gradient before the activation (which
    /// [`LayerOp::backward`] undoes first); writes dX if asked.
    ///
    /// With the batch split over processes ([`crate::distributed`], exact mode), dW's product
    /// sums over the whole batch (its K is N), so every process gathers X and dY of every
    /// sample and runs the product one process runs: the same bytes. dX stays per sample.
    pub fn backward_linear(&mut self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, n: usize) {
        let (i, o) = (self.inputs, self.units);
        let gathered;
        let (xs, dys, rows) = if self.shard.exact() {
            let all_x = self.shard.gather_samples(&x[..n * i], i);
            gathered = (all_x, self.shard.gather_samples(&dy[..n * o], o));
            (&gathered.0[..], &gathered.1[..], self.shard.total(n))
        } else {
            (&x[..n * i], &dy[..n * o], n)
        };
        let db = self.bias.grad.data_mut();
        db.fill(0.0);
        for row in dys.chunks(o) {
            db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        }
        let dw = self.weight.grad.data_mut();
        let (dy_t, xm) = (MatRef::new(dys, rows, o).t(), MatRef::new(xs, rows, i));
        par_gemm(dy_t, xm, 0.0, MatMut::new(dw, o, i));
        if let Some(dx) = dx {
            let w = self.weight.value.data();
            let (dy, w) = (MatRef::new(dy, n, o), MatRef::new(w, o, i));
            par_gemm(dy, w, 0.0, MatMut::new(dx, n, i));
        }
    }
}

impl LayerOp for Dense {
    fn prepare(&mut self, pass: Pass) {
        self.inference = !pass.training;
        self.shard = pass.shard;
        self.weights_now = pass.weights;
    }

    /// y = act(W x + b).
    fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
        self.forward_linear(x, y, n);
        activation::forward(self.act, &mut y[..n * self.units], self.units);
    }

    /// Undoes the activation in `dy` first, then the product.
    fn backward(&mut self, x: &[f32], y: &[f32], dy: &mut [f32], dx: Option<&mut [f32]>, n: usize) {
        let len = n * self.units;
        activation::backward(self.act, &y[..len], &mut dy[..len], self.units);
        self.backward_linear(x, dy, dx, n);
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        vec![("weight", &self.weight), ("bias", &self.bias)]
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        vec![("weight", &mut self.weight), ("bias", &mut self.bias)]
    }

    /// (I, O).
    fn fans(&self) -> Option<(usize, usize)> {
        Some((self.inputs, self.units))
    }

    /// z = W x + b by the definition, in f64.
    fn reference(&self, x: &[f64], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
        let (inputs, units) = (self.inputs, self.units);
        let (w, b) = (&params[0], &params[1]);
        let mut y = vec![0.0; n * units];
        y.par_iter_mut().enumerate().for_each(|(at, v)| {
            let (s, u) = (at / units, at % units);
            let row = &w[u * inputs..(u + 1) * inputs];
            let xs = &x[s * inputs..(s + 1) * inputs];
            *v = b[u] + row.iter().zip(xs).map(|(a, c)| a * c).sum::<f64>();
        });
        Some(y)
    }

    /// Row u of the weight and bias u feed unit u alone.
    fn reference_channel(&self, slot: usize, e: usize) -> Option<(usize, usize)> {
        Some((if slot == 0 { e / self.inputs } else { e }, 1))
    }

    fn reference_one_channel(
        &self,
        x: &[f64],
        base_z: &[f64],
        params: &[Vec<f64>],
        c: usize,
        n: usize,
    ) -> Option<Vec<f64>> {
        let (inputs, units) = (self.inputs, self.units);
        let (w, b) = (&params[0], &params[1]);
        let mut z = base_z.to_vec();
        let row = &w[c * inputs..(c + 1) * inputs];
        for s in 0..n {
            let xs = &x[s * inputs..(s + 1) * inputs];
            z[s * units + c] = b[c] + row.iter().zip(xs).map(|(a, v)| a * v).sum::<f64>();
        }
        Some(z)
    }

    /// Linear in x: `z = base_z + W (x - base_x)` over the changed inputs only.
    fn reference_changed_inputs(
        &self,
        x: &[f64],
        base_x: &[f64],
        base_z: &[f64],
        params: &[Vec<f64>],
        channels: &[usize],
        block: usize,
        n: usize,
    ) -> Option<Vec<f64>> {
        let (inputs, units, w) = (self.inputs, self.units, &params[0]);
        let delta = super::changed_inputs(x, base_x, channels, block, n);
        let mut z = base_z.to_vec();
        z.par_iter_mut().enumerate().for_each(|(at, v)| {
            let (s, u) = (at / units, at % units);
            for (j, &c) in channels.iter().enumerate() {
                let row = &w[u * inputs + c * block..][..block];
                let d = &delta[s * channels.len() + j];
                *v += row.iter().zip(d).map(|(a, b)| a * b).sum::<f64>();
            }
        });
        Some(z)
    }
}
