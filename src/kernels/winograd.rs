//! Winograd's minimal filtering F(2x2, 3x3): a 3x3 convolution with stride 1 in 2.25 times
//! fewer multiplies than the direct (im2col) product.
//!
//! Legend: C input channels, K filters, H, W input size, H', W' output size, T_h =
//! ceil(H'/2) and T_w = ceil(W'/2) rows and columns of 2x2 output tiles, S = (T_h + 1)
//! (T_w + 1) tile slots per plane (see [`Plan::slots`]), xi one of the 16 positions of a 4x4
//! tile. One sample at a time.
//!
//! Each 2x2 block of outputs `Y` of one filter depends on a 4x4 block `d` of each input
//! channel (the block's 3x3 windows together). Lavin and Gray (2015) write it as
//!
//! ```text
//! Y = A^T [ sum_c (G g_c G^T) . (B^T d_c B) ] A          (. is the element-wise product)
//!
//!       [1  0 -1  0]         [1    0    0 ]        [1  1  1  0]
//! B^T = [0  1  1  0]    G =  [1/2  1/2  1/2]  A^T = [0  1 -1 -1]
//!       [0 -1  1  0]         [1/2 -1/2  1/2]
//!       [0  1  0 -1]         [0    0    1 ]
//! ```
//!
//! so with `U[xi][k][c] = (G g_kc G^T)[xi]` (the weights, once per pass) and
//! `V[xi][c][p] = (B^T d_cp B)[xi]` (the input, per tile p), the sum over channels is 16
//! independent matrix products `M[xi] = U[xi] V[xi]` (K x C times C x S), and
//! `Y_p = A^T M_p A` brings each tile back. Per output, the products cost 16 C / 4 = 4 C
//! multiplies instead of 9 C.
//!
//! Backward is the exact adjoint of those steps, given dY = dL/dY:
//!
//! ```text
//! dM_p      = A dY_p A^T                     (4x4 from each 2x2 tile of dY)
//! dU[xi]    = dM[xi] V[xi]^T                 (K x S times S x C), summed over samples
//! dV[xi]    = U[xi]^T dM[xi]                 (C x K times K x S)
//! dd_cp     = B dV_cp B^T, added into dx over the overlapping 4x4 input blocks
//! dL/dg_kc  = G^T dU_kc G                    (3x3 from 4x4)
//! ```
//!
//! Layout, so that every transform is a few element-wise loops over all the tiles of all
//! the channels of a sample at once (thousands of values, which the compiler vectorises):
//! a plane, padded with zeros, is split by the parity of its rows and columns into four
//! quarter planes of T_h + 1 rows of T_w + 1 (`q[2a + b][r][t]` is padded pixel
//! (2r + a, 2t + b)). Tile slot f = r (T_w + 1) + t then reads its 4x4 block as
//!
//! ```text
//! row 0: q0[f]      q1[f]      q0[f+1]      q1[f+1]
//! row 1: q2[f]      q3[f]      q2[f+1]      q3[f+1]
//! row 2: q0[f+h]    q1[f+h]    q0[f+h+1]    q1[f+h+1]      (h = T_w + 1)
//! row 3: q2[f+h]    q3[f+h]    q2[f+h+1]    q3[f+h+1]
//! ```
//!
//! The planes of all channels follow each other (S slots each), so f runs over C S slots.
//! The slots of the last tile column and the last tile row are spare: they read the next
//! row's or channel's values, their outputs are dropped and their output gradients are
//! zero (so they add nothing to dU or dx). That is T_h + T_w + 1 spare slots per plane, the
//! price of loops without edges (for LeNet's 14x14 planes, 64 slots for 49 tiles).
//!
//! Padding and ragged edges: an input block reads zeros outside the image (the padding,
//! and beyond the last row or column when H' or W' is odd); outputs beyond H' x W' are
//! computed and dropped, and their gradients are zero.
//!
//! Every step runs in an order that depends only on the shapes, so the results are the
//! same bits for any thread count; the transforms are plain Rust, the products run on
//! [`super::gemm::gemm`].

use super::gemm::{gemm, MatMut, MatRef};
use super::geom::ConvGeom;
use super::on_best_simd;

/// The 16 positions of a 4x4 tile.
pub const TILE: usize = 16;

/// A convolution that [`Plan::new`] accepts, with its tiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Input channels, filters.
    pub c: usize,
    pub k: usize,
    /// Input and output size.
    pub h: usize,
    pub w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    /// Output tiles down and across: ceil(H'/2), ceil(W'/2).
    pub tiles_h: usize,
    pub tiles_w: usize,
}

/// Input channels from which Winograd is used. C is the inner dimension of the products
/// `U V`, and with few channels they are too thin for the kernels to pay for the
/// transforms. The bound is a choice, not a measurement: Winograd was measured faster at 32
/// channels (LeNet's second convolution) and not measured below.
pub const MIN_CHANNELS: usize = 8;

impl Plan {
    /// The plan for `g`, if it is a 3x3 convolution with stride 1 and at least
    /// [`MIN_CHANNELS`] input channels.
    pub fn new(g: &ConvGeom) -> Option<Plan> {
        if (g.kh, g.kw, g.stride) != (3, 3, 1) || g.c < MIN_CHANNELS {
            return None;
        }
        Some(Plan {
            c: g.c,
            k: g.k,
            h: g.h,
            w: g.w,
            out_h: g.out_h,
            out_w: g.out_w,
            pad_top: g.pad_top,
            pad_left: g.pad_left,
            tiles_h: g.out_h.div_ceil(2),
            tiles_w: g.out_w.div_ceil(2),
        })
    }

    /// Quarter-plane row length, T_w + 1.
    fn half(&self) -> usize {
        self.tiles_w + 1
    }

    /// Tile slots per plane, S = (T_h + 1)(T_w + 1).
    pub fn slots(&self) -> usize {
        (self.tiles_h + 1) * self.half()
    }

    /// Floats of U (or dU): 16 K C.
    pub fn u_len(&self) -> usize {
        TILE * self.k * self.c
    }
}

/// `U[xi][k][c] = (G g_kc G^T)[xi]` for weights `w` `[K, C, 3, 3]`.
pub fn transform_weights(p: &Plan, w: &[f32], u: &mut [f32]) {
    let (k_n, c_n) = (p.k, p.c);
    for k in 0..k_n {
        for c in 0..c_n {
            let g = &w[(k * c_n + c) * 9..(k * c_n + c) * 9 + 9];
            // t = G g (4x3), rows of g combined.
            let mut t = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                t[0][j] = g0;
                t[1][j] = 0.5 * (g0 + g1 + g2);
                t[2][j] = 0.5 * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            // U = t G^T (4x4), columns of t combined.
            for (i, row) in t.iter().enumerate() {
                let (a, b, cc) = (row[0], row[1], row[2]);
                let out = [a, 0.5 * (a + b + cc), 0.5 * (a - b + cc), cc];
                for (j, v) in out.into_iter().enumerate() {
                    u[((i * 4 + j) * k_n + k) * c_n + c] = v;
                }
            }
        }
    }
}

/// `dL/dg_kc = G^T dU_kc G` for `du` `[16][K][C]`, written to `dw` `[K, C, 3, 3]`.
pub fn weight_grad(p: &Plan, du: &[f32], dw: &mut [f32]) {
    let (k_n, c_n) = (p.k, p.c);
    for k in 0..k_n {
        for c in 0..c_n {
            let d = |i: usize, j: usize| du[((i * 4 + j) * k_n + k) * c_n + c];
            // t = G^T dU (3x4): rows combined.
            let cols: [[f32; 3]; 4] = std::array::from_fn(|j| {
                let (d0, d1, d2, d3) = (d(0, j), d(1, j), d(2, j), d(3, j));
                [d0 + 0.5 * (d1 + d2), 0.5 * (d1 - d2), 0.5 * (d1 + d2) + d3]
            });
            let t: [[f32; 4]; 3] = std::array::from_fn(|i| std::array::from_fn(|j| cols[j][i]));
            // dg = t G (3x3): columns combined.
            let out = &mut dw[(k * c_n + c) * 9..(k * c_n + c) * 9 + 9];
            for (i, row) in t.iter().enumerate() {
                let [d0, d1, d2, d3] = *row;
                out[i * 3] = d0 + 0.5 * (d1 + d2);
                out[i * 3 + 1] = 0.5 * (d1 - d2);
                out[i * 3 + 2] = 0.5 * (d1 + d2) + d3;
            }
        }
    }
}

/// `e[t] = src[2 t]`, `o[t] = src[2 t + 1]` for the pairs of `src` (and its odd last value).
#[inline(always)]
fn deinterleave(src: &[f32], e: &mut [f32], o: &mut [f32]) {
    let pairs = src.chunks_exact(2);
    let last = pairs.remainder().first().copied();
    let n = pairs.len();
    for ((pair, e), o) in pairs.zip(e.iter_mut()).zip(o.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
    if let Some(v) = last {
        e[n] = v;
    }
}

/// `dst[2 t] = e[t]`, `dst[2 t + 1] = o[t]` over `dst`'s length.
#[inline(always)]
fn interleave(e: &[f32], o: &[f32], dst: &mut [f32]) {
    let mut pairs = dst.chunks_exact_mut(2);
    let n = pairs.len();
    for ((pair, &e), &o) in (&mut pairs).zip(e).zip(o) {
        pair[0] = e;
        pair[1] = o;
    }
    if let Some(v) = pairs.into_remainder().first_mut() {
        *v = e[n];
    }
}

/// `out[f] = op(a[f], b[f])` over `out`'s length: the element-wise step of every
/// transform, written as a zip so that the compiler vectorises it.
#[inline(always)]
fn zip2(out: &mut [f32], a: &[f32], b: &[f32], op: impl Fn(f32, f32) -> f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = op(x, y);
    }
}

/// `out[f] = op(a[f], b[f], c[f])` over `out`'s length (see [`zip2`]).
#[inline(always)]
fn zip3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], op: impl Fn(f32, f32, f32) -> f32) {
    for (((o, &x), &y), &z) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = op(x, y, z);
    }
}

/// Splits `planes` planes of `[H, W]` (padded by `pad_top`, `pad_left` zeros) into the
/// quarter planes `q` (4 buffers of at least `planes` S floats; see the module doc).
/// `line` is scratch of 2 (T_w + 1) floats.
#[inline(always)]
fn split(p: &Plan, x: &[f32], planes: usize, q: &mut [&mut [f32]; 4], line: &mut [f32]) {
    let (half, slots) = (p.half(), p.slots());
    let cols = p.w.min(line.len().saturating_sub(p.pad_left));
    for qq in q.iter_mut() {
        qq[..planes * slots].fill(0.0);
    }
    for (c, plane) in x.chunks(p.h * p.w).take(planes).enumerate() {
        for (y, row) in plane.chunks(p.w).enumerate() {
            let py = y + p.pad_top;
            if py / 2 > p.tiles_h {
                break;
            }
            line.fill(0.0);
            line[p.pad_left..p.pad_left + cols].copy_from_slice(&row[..cols]);
            let at = c * slots + (py / 2) * half;
            let [q0, q1, q2, q3] = q;
            let (e, o) = if py.is_multiple_of(2) {
                (q0, q1)
            } else {
                (q2, q3)
            };
            deinterleave(line, &mut e[at..at + half], &mut o[at..at + half]);
        }
    }
}

/// The inverse of [`split`] for output-sized planes: quarter values at slot (r, t) of
/// plane k to `y[k][2 r + a][2 t + b]`, `[K, H', W']`, dropping what lies beyond.
#[inline(always)]
fn merge_outputs(p: &Plan, q: &[&mut [f32]; 4], y: &mut [f32]) {
    let (half, slots) = (p.half(), p.slots());
    for (k, plane) in y.chunks_mut(p.out_h * p.out_w).take(p.k).enumerate() {
        for (oy, row) in plane.chunks_mut(p.out_w).enumerate() {
            let at = k * slots + (oy / 2) * half;
            let (e, o) = if oy.is_multiple_of(2) {
                (&q[0], &q[1])
            } else {
                (&q[2], &q[3])
            };
            interleave(&e[at..at + half], &o[at..at + half], row);
        }
    }
}

/// `V[xi][c][f] = (B^T d_cf B)[xi]` for one sample `x` `[C, H, W]`; `v` holds 16 C S
/// floats, `q` quarter planes of C S + T_w + 2 floats, `t` 8 (C S + 1), `line` 2 (T_w + 1).
#[inline(always)]
fn input_transform(
    p: &Plan,
    x: &[f32],
    v: &mut [f32],
    q: &mut [&mut [f32]; 4],
    t: &mut [f32],
    line: &mut [f32],
) {
    let half = p.half();
    let n = p.c * p.slots();
    let m = n + 1;
    split(p, x, p.c, q, line);
    // t = B^T d on the 4 rows of every block at once, the even columns (q0 above q2) in
    // t[0..4] and the odd ones (q1 above q3) in t[4..8]:
    // t0 = d0 - d2, t1 = d1 + d2, t2 = d2 - d1, t3 = d1 - d3 (d2, d3 one slot row down).
    for (par, (top, bottom)) in [(&q[0], &q[2]), (&q[1], &q[3])].into_iter().enumerate() {
        let (d0, d2) = (&top[..m], &top[half..half + m]);
        let (d1, d3) = (&bottom[..m], &bottom[half..half + m]);
        let tt = &mut t[4 * par * m..][..4 * m];
        let (t0, rest) = tt.split_at_mut(m);
        let (t1, rest) = rest.split_at_mut(m);
        let (t2, t3) = rest.split_at_mut(m);
        zip2(t0, d0, d2, |a, b| a - b);
        zip2(t1, d1, d2, |a, b| a + b);
        zip2(t2, d2, d1, |a, b| a - b);
        zip2(t3, d1, d3, |a, b| a - b);
    }
    // V = t B on each row i of t: with e, o its even and odd columns, a block's 4 columns
    // are e[f], o[f], e[f+1], o[f+1] and
    // V[i][0..4] = e[f] - e[f+1], o[f] + e[f+1], e[f+1] - o[f], o[f] - o[f+1].
    for (i, rows) in v.chunks_mut(4 * n).take(4).enumerate() {
        let (e, o) = (&t[i * m..][..m], &t[(4 + i) * m..][..m]);
        let mut rows = rows.chunks_mut(n);
        let mut next = || rows.next().expect("4 rows of V");
        zip2(next(), &e[..n], &e[1..], |a, b| a - b);
        zip2(next(), &o[..n], &e[1..], |a, b| a + b);
        zip2(next(), &e[1..], &o[..n], |a, b| a - b);
        zip2(next(), &o[..n], &o[1..], |a, b| a - b);
    }
}

/// `y = act(A^T M A + b)` per tile for one sample, `m` `[16][K][S]`, written to `y`
/// `[K, H', W']`, ReLU if `relu`. `q` quarter planes of K S floats, `t` 8 K S.
#[inline(always)]
fn output_transform(
    p: &Plan,
    m: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
    q: &mut [&mut [f32]; 4],
    t: &mut [f32],
) {
    let slots = p.slots();
    let n = p.k * slots;
    let mv = |xi: usize| &m[xi * n..][..n];
    // t = A^T M (2x4), t[i * 4 + j]: t0j = m0j + m1j + m2j, t1j = m1j - m2j - m3j.
    let (ta, tb) = t[..8 * n].split_at_mut(4 * n);
    for (j, (t0, t1)) in ta.chunks_mut(n).zip(tb.chunks_mut(n)).enumerate() {
        zip3(t0, mv(j), mv(4 + j), mv(8 + j), |a, b, c| a + b + c);
        zip3(t1, mv(4 + j), mv(8 + j), mv(12 + j), |a, b, c| a - b - c);
    }
    // Y = t A: yi0 = ti0 + ti1 + ti2, yi1 = ti1 - ti2 - ti3, into quarter 2 i + j.
    for i in 0..2 {
        let tr = |j: usize| &t[(4 * i + j) * n..][..n];
        let [q0, q1, q2, q3] = &mut *q;
        let (qa, qb) = if i == 0 { (q0, q1) } else { (q2, q3) };
        zip3(&mut qa[..n], tr(0), tr(1), tr(2), |a, b, c| a + b + c);
        zip3(&mut qb[..n], tr(1), tr(2), tr(3), |a, b, c| a - b - c);
    }
    // The bias of each filter, then ReLU.
    for qq in q.iter_mut() {
        for (plane, &b) in qq[..n].chunks_mut(slots).zip(bias) {
            if relu {
                plane.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
            } else {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
    }
    merge_outputs(p, q, y);
}

/// `dM = A dY A^T` per tile for one sample's `dy` `[K, H', W']` (zero beyond H' x W' and
/// in the spare slots), written to `dm` `[16][K][S]`. `q` quarter planes of K S floats,
/// `t` 8 K S.
#[inline(always)]
fn output_grad_transform(
    p: &Plan,
    dy: &[f32],
    dm: &mut [f32],
    q: &mut [&mut [f32]; 4],
    t: &mut [f32],
) {
    let (half, slots) = (p.half(), p.slots());
    let n = p.k * slots;
    // dY by quarter: g[2 a + b][f] = dY(2 r + a, 2 t + b) for slot f = (r, t).
    for qq in q.iter_mut() {
        qq[..n].fill(0.0);
    }
    for (k, plane) in dy.chunks(p.out_h * p.out_w).take(p.k).enumerate() {
        for (oy, row) in plane.chunks(p.out_w).enumerate() {
            let at = k * slots + (oy / 2) * half;
            let [q0, q1, q2, q3] = &mut *q;
            let (e, o) = if oy.is_multiple_of(2) {
                (q0, q1)
            } else {
                (q2, q3)
            };
            deinterleave(row, &mut e[at..at + half], &mut o[at..at + half]);
        }
    }
    let [g00, g01, g10, g11] = [&q[0][..n], &q[1][..n], &q[2][..n], &q[3][..n]];
    // t = A dY (4x2): rows g0, g0 + g1, g0 - g1, -g1 (g0 = (g00, g01), g1 = (g10, g11)),
    // in t[2 i] and t[2 i + 1].
    let mut ts = t[..8 * n].chunks_mut(n);
    let mut next = || ts.next().expect("8 rows of t");
    next().copy_from_slice(g00);
    next().copy_from_slice(g01);
    zip2(next(), g00, g10, |a, b| a + b);
    zip2(next(), g01, g11, |a, b| a + b);
    zip2(next(), g00, g10, |a, b| a - b);
    zip2(next(), g01, g11, |a, b| a - b);
    zip2(next(), g10, g10, |a, _| -a);
    zip2(next(), g11, g11, |a, _| -a);
    // dM = t A^T: per row (a, b) of t: a, a + b, a - b, -b.
    for (i, rows) in dm.chunks_mut(4 * n).take(4).enumerate() {
        let (a, b) = (&t[2 * i * n..][..n], &t[(2 * i + 1) * n..][..n]);
        let mut rows = rows.chunks_mut(n);
        let mut next = || rows.next().expect("4 rows of dM");
        next().copy_from_slice(a);
        zip2(next(), a, b, |a, b| a + b);
        zip2(next(), a, b, |a, b| a - b);
        zip2(next(), b, b, |b, _| -b);
    }
}

/// `dx = sum over tiles of B dV B^T` for one sample, `dv` `[16][C][S]`: each 4x4 block
/// added where it lies, the padding cropped, written to `dx` `[C, H, W]`. `q` quarter
/// planes of C S + T_w + 2 floats, `t` 16 C S, `line` 2 (T_w + 1).
#[inline(always)]
fn input_grad_transform(
    p: &Plan,
    dv: &[f32],
    dx: &mut [f32],
    q: &mut [&mut [f32]; 4],
    t: &mut [f32],
    line: &mut [f32],
) {
    let (half, slots) = (p.half(), p.slots());
    let n = p.c * slots;
    let vs = |xi: usize| &dv[xi * n..][..n];
    // u = dV B^T: per row (a, b, c, e) of dV: a, b - c + e, -a + b + c, -e, into t[i * 4 + j].
    for i in 0..4 {
        let (a, b, c, e) = (vs(4 * i), vs(4 * i + 1), vs(4 * i + 2), vs(4 * i + 3));
        let mut rows = t[4 * i * n..][..4 * n].chunks_mut(n);
        let mut next = || rows.next().expect("4 rows of u");
        next().copy_from_slice(a);
        zip3(next(), b, c, e, |b, c, e| b - c + e);
        zip3(next(), a, b, c, |a, b, c| -a + b + c);
        zip2(next(), e, e, |e, _| -e);
    }
    // dd = B u, the same on the rows of u; dd row r, column j of slot f is padded pixel
    // (2 r' + r, 2 t' + j): quarter (r % 2, j % 2) at f + (r / 2) h + j / 2. Added in a
    // fixed order; the spare slots add zeros.
    for qq in q.iter_mut() {
        qq[..n + half + 1].fill(0.0);
    }
    for j in 0..4 {
        let u = |i: usize| &t[(4 * i + j) * n..][..n];
        for r in 0..4 {
            let shift = (r / 2) * half + j / 2;
            let acc = &mut q[2 * (r % 2) + j % 2][shift..shift + n];
            let (u0, u1, u2, u3) = (u(0), u(1), u(2), u(3));
            match r {
                0 => acc.iter_mut().zip(u0).for_each(|(a, v)| *a += v),
                1 => acc
                    .iter_mut()
                    .zip(u1.iter().zip(u2).zip(u3))
                    .for_each(|(a, ((b, c), e))| *a += b - c + e),
                2 => acc
                    .iter_mut()
                    .zip(u0.iter().zip(u1).zip(u2))
                    .for_each(|(a, ((x, b), c))| *a += -x + b + c),
                _ => acc.iter_mut().zip(u3).for_each(|(a, e)| *a += -e),
            }
        }
    }
    // Crop the padding: image pixel (y, x) is padded (y + pad_top, x + pad_left).
    let cols = p.w.min(line.len().saturating_sub(p.pad_left));
    for (c, plane) in dx.chunks_mut(p.h * p.w).take(p.c).enumerate() {
        for (y, row) in plane.chunks_mut(p.w).enumerate() {
            let py = y + p.pad_top;
            row.fill(0.0);
            if py / 2 > p.tiles_h {
                continue;
            }
            let at = c * slots + (py / 2) * half;
            let (e, o) = if py.is_multiple_of(2) {
                (&q[0], &q[1])
            } else {
                (&q[2], &q[3])
            };
            interleave(&e[at..at + half], &o[at..at + half], line);
            row[..cols].copy_from_slice(&line[p.pad_left..p.pad_left + cols]);
        }
    }
}

/// Scratch buffers of one block of samples.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// V, then dV in backward: 16 C S.
    v: Vec<f32>,
    /// M, or dM in backward: 16 K S.
    m: Vec<f32>,
    /// Four quarter planes, the transforms' rows and a line.
    q: Vec<f32>,
    t: Vec<f32>,
    line: Vec<f32>,
}

impl Scratch {
    /// Sizes the buffers for `p` and returns (v, m, quarters, t, line).
    #[allow(clippy::type_complexity)]
    fn parts(
        &mut self,
        p: &Plan,
    ) -> (
        &mut [f32],
        &mut [f32],
        [&mut [f32]; 4],
        &mut [f32],
        &mut [f32],
    ) {
        let planes = p.c.max(p.k);
        let q_len = planes * p.slots() + p.half() + 1;
        self.v.resize(TILE * p.c * p.slots(), 0.0);
        self.m.resize(TILE * p.k * p.slots(), 0.0);
        self.q.resize(4 * q_len, 0.0);
        self.t.resize(TILE * (planes * p.slots() + 1), 0.0);
        self.line.resize(2 * p.half(), 0.0);
        let (q0, rest) = self.q.split_at_mut(q_len);
        let (q1, rest) = rest.split_at_mut(q_len);
        let (q2, q3) = rest.split_at_mut(q_len);
        (
            &mut self.v,
            &mut self.m,
            [q0, q1, q2, q3],
            &mut self.t,
            &mut self.line,
        )
    }
}

/// Forward for a block of samples `x` `[samples, C, H, W]`: `y = act(conv(x) + b)` with
/// `u` from [`transform_weights`], ReLU if `relu`, one sample at a time.
pub fn forward(
    p: &Plan,
    u: &[f32],
    bias: &[f32],
    relu: bool,
    x: &[f32],
    sc: &mut Scratch,
    y: &mut [f32],
) {
    let (in_len, out_len) = (p.c * p.h * p.w, p.k * p.out_h * p.out_w);
    let slots = p.slots();
    let (v, m, mut q, t, line) = sc.parts(p);
    let (kc, cs, ks) = (p.k * p.c, p.c * slots, p.k * slots);
    for (x_s, y_s) in x.chunks(in_len).zip(y.chunks_mut(out_len)) {
        on_best_simd(
            #[inline(always)]
            || input_transform(p, x_s, v, &mut q, t, line),
        );
        for xi in 0..TILE {
            let u_xi = MatRef::new(&u[xi * kc..(xi + 1) * kc], p.k, p.c);
            let v_xi = MatRef::new(&v[xi * cs..(xi + 1) * cs], p.c, slots);
            gemm(
                u_xi,
                v_xi,
                0.0,
                MatMut::new(&mut m[xi * ks..(xi + 1) * ks], p.k, slots),
            );
        }
        on_best_simd(
            #[inline(always)]
            || output_transform(p, m, bias, relu, y_s, &mut q, t),
        );
    }
}

/// Backward for a block of samples, given `dy` = dL/d(conv output) (the activation already
/// undone): writes the block's dU, summed over its samples in order, to `du` (16 K C) and,
/// if asked, dL/dx to `dx`.
pub fn backward(
    p: &Plan,
    u: &[f32],
    x: &[f32],
    dy: &[f32],
    sc: &mut Scratch,
    du: &mut [f32],
    mut dx: Option<&mut [f32]>,
) {
    let (in_len, out_len) = (p.c * p.h * p.w, p.k * p.out_h * p.out_w);
    let slots = p.slots();
    let (v, m, mut q, t, line) = sc.parts(p);
    let (kc, cs, ks) = (p.k * p.c, p.c * slots, p.k * slots);
    for (s, (x_s, dy_s)) in x.chunks(in_len).zip(dy.chunks(out_len)).enumerate() {
        on_best_simd(
            #[inline(always)]
            || {
                input_transform(p, x_s, v, &mut q, t, line);
                output_grad_transform(p, dy_s, m, &mut q, t);
            },
        );
        let beta = if s == 0 { 0.0 } else { 1.0 };
        for xi in 0..TILE {
            let dm_xi = MatRef::new(&m[xi * ks..(xi + 1) * ks], p.k, slots);
            let v_xi = MatRef::new(&v[xi * cs..(xi + 1) * cs], p.c, slots);
            let du_xi = MatMut::new(&mut du[xi * kc..(xi + 1) * kc], p.k, p.c);
            gemm(dm_xi, v_xi.t(), beta, du_xi);
        }
        let Some(dx) = dx.as_deref_mut() else {
            continue;
        };
        // V is free again: it holds dV = U^T dM.
        for xi in 0..TILE {
            let u_xi = MatRef::new(&u[xi * kc..(xi + 1) * kc], p.k, p.c);
            let dm_xi = MatRef::new(&m[xi * ks..(xi + 1) * ks], p.k, slots);
            let dv_xi = MatMut::new(&mut v[xi * cs..(xi + 1) * cs], p.c, slots);
            gemm(u_xi.t(), dm_xi, 0.0, dv_xi);
        }
        let dx_s = &mut dx[s * in_len..(s + 1) * in_len];
        on_best_simd(
            #[inline(always)]
            || input_grad_transform(p, v, dx_s, &mut q, t, line),
        );
    }
}
