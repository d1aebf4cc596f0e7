//! Winograd's minimal filtering F(2x2, 3x3): a 3x3 convolution with stride 1 in 2.25 times
//! fewer multiplies than the direct (im2col) product.
//!
//! Legend: N samples, C input channels, K filters, H, W input size, H', W' output size,
//! T = ceil(H'/2) * ceil(W'/2) output tiles of 2x2 per sample, P = (samples) * T, xi one of
//! the 16 positions of a 4x4 tile.
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
//! independent matrix products `M[xi] = U[xi] V[xi]` (K x C times C x P), and
//! `Y_p = A^T M_p A` brings each tile back. Per output, the products cost 16 C / 4 = 4 C
//! multiplies instead of 9 C.
//!
//! Backward is the exact adjoint of those steps, given dY = dL/dY:
//!
//! ```text
//! dM_p      = A dY_p A^T                     (4x4 from each 2x2 tile of dY)
//! dU[xi]    = dM[xi] V[xi]^T                 (K x P times P x C)
//! dV[xi]    = U[xi]^T dM[xi]                 (C x K times K x P)
//! dd_cp     = B dV_cp B^T, added into dx over the overlapping 4x4 input blocks
//! dL/dg_kc  = G^T dU_kc G                    (3x3 from 4x4)
//! ```
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

/// Input channels from which Winograd is used: below it the products `U V` are too thin
/// (C is their inner dimension) for the kernels to run near peak, and im2col is faster.
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

    /// Tile columns of a row of tiles: T_w and one spare (see [`Quarters`]).
    pub fn half(&self) -> usize {
        self.tiles_w + 1
    }

    /// Tiles per sample in the buffers V and M: T_h (T_w + 1), the spare tile of each row
    /// included (its outputs are computed and dropped, its gradient is zero).
    pub fn tiles(&self) -> usize {
        self.tiles_h * self.half()
    }

    /// Floats of one quarter plane: T_h + 1 rows of T_w + 1, and one more that the spare
    /// tile of the last row reads.
    fn quarter_len(&self) -> usize {
        (self.tiles_h + 1) * self.half() + 1
    }

    /// Floats of U (or dU): 16 K C.
    pub fn u_len(&self) -> usize {
        TILE * self.k * self.c
    }

    /// Floats of the buffers V and M for `samples` samples: 16 C P and 16 K P.
    pub fn v_len(&self, samples: usize) -> usize {
        TILE * self.c * samples * self.tiles()
    }
    pub fn m_len(&self, samples: usize) -> usize {
        TILE * self.k * samples * self.tiles()
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

/// A padded plane split by the parity of its rows and columns: `q[2 a + b][r][t]` is padded
/// pixel (2 r + a, 2 t + b), with rows of T_w + 1 (see [`Plan::half`]). A tile's 4x4 block
/// at (2 ty, 2 tx) is then, with f = ty (T_w + 1) + tx and h = T_w + 1,
///
/// ```text
/// row 0: q0[f]      q1[f]      q0[f+1]      q1[f+1]
/// row 1: q2[f]      q3[f]      q2[f+1]      q3[f+1]
/// row 2: q0[f+h]    q1[f+h]    q0[f+h+1]    q1[f+h+1]
/// row 3: q2[f+h]    q3[f+h]    q2[f+h+1]    q3[f+h+1]
/// ```
///
/// so each transform is one element-wise loop over f (every tile of the plane at once,
/// which the compiler vectorises), and tile f is column f of the buffers V and M. The
/// spare tile at the end of each row (tx = T_w) reads the next row's first values: its
/// outputs are dropped and its output gradient is zero.
struct Quarters<'a> {
    q: [&'a mut [f32]; 4],
    /// One padded row, 2 (T_w + 1) floats.
    line: &'a mut [f32],
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

impl<'a> Quarters<'a> {
    /// Floats that [`Quarters::new`] takes: four quarter planes and a line.
    fn buf_len(p: &Plan) -> usize {
        4 * p.quarter_len() + 2 * p.half()
    }

    /// Four quarter planes and a line from `buf` ([`Quarters::buf_len`] floats).
    fn new(p: &Plan, buf: &'a mut [f32]) -> Quarters<'a> {
        let len = p.quarter_len();
        let (q0, rest) = buf.split_at_mut(len);
        let (q1, rest) = rest.split_at_mut(len);
        let (q2, rest) = rest.split_at_mut(len);
        let (q3, rest) = rest.split_at_mut(len);
        Quarters {
            q: [q0, q1, q2, q3],
            line: &mut rest[..2 * p.half()],
        }
    }

    /// Quarters (2 a, 2 a + 1) at tile row r: the even and odd columns of padded row 2 r + a.
    #[inline(always)]
    fn row_pair(&mut self, p: &Plan, a: usize, r: usize) -> (&mut [f32], &mut [f32]) {
        let half = p.half();
        let [q0, q1, q2, q3] = &mut self.q;
        let (e, o) = if a == 0 { (q0, q1) } else { (q2, q3) };
        (&mut e[r * half..][..half], &mut o[r * half..][..half])
    }

    #[inline(always)]
    fn fill_zero(&mut self) {
        self.q.iter_mut().for_each(|q| q.fill(0.0));
    }

    /// Splits an image plane `[H, W]` padded by (pad_top, pad_left) zeros.
    #[inline(always)]
    fn split(&mut self, p: &Plan, plane: &[f32]) {
        self.fill_zero();
        let cols = p.w.min(self.line.len().saturating_sub(p.pad_left));
        for (y, row) in plane.chunks(p.w).enumerate() {
            let py = y + p.pad_top;
            if py / 2 > p.tiles_h {
                break;
            }
            self.line.fill(0.0);
            self.line[p.pad_left..p.pad_left + cols].copy_from_slice(&row[..cols]);
            let line = std::mem::take(&mut self.line);
            let (e, o) = self.row_pair(p, py % 2, py / 2);
            deinterleave(line, e, o);
            self.line = line;
        }
    }

    /// Writes the padded plane, cropped to the image, to `plane` `[H, W]`.
    #[inline(always)]
    fn crop(&mut self, p: &Plan, plane: &mut [f32]) {
        let cols = p.w.min(self.line.len().saturating_sub(p.pad_left));
        for (y, row) in plane.chunks_mut(p.w).enumerate() {
            let py = y + p.pad_top;
            row.fill(0.0);
            if py / 2 > p.tiles_h {
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let (e, o) = self.row_pair(p, py % 2, py / 2);
            interleave(e, o, line);
            row[..cols].copy_from_slice(&line[p.pad_left..p.pad_left + cols]);
            self.line = line;
        }
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

/// `V[xi][c][p] = (B^T d_cp B)[xi]` for the `samples` samples of `x` `[samples, C, H, W]`,
/// tile p = s T + f ([`Quarters`]). `rows` is scratch.
#[inline(always)]
fn input_transform(p: &Plan, x: &[f32], samples: usize, v: &mut [f32], rows: &mut Vec<f32>) {
    let (half, n) = (p.half(), p.tiles());
    let big_p = samples * n;
    let m = n + 1;
    rows.clear();
    rows.resize(Quarters::buf_len(p) + 8 * m, 0.0);
    let (qbuf, t) = rows.split_at_mut(Quarters::buf_len(p));
    let mut q = Quarters::new(p, qbuf);
    for s in 0..samples {
        for c in 0..p.c {
            q.split(p, &x[(s * p.c + c) * p.h * p.w..][..p.h * p.w]);
            // t = B^T d, rows d0..d3 of every tile at once, even columns (q0, q2) in
            // t[0..4] and odd ones (q1, q3) in t[4..8]:
            // t0 = d0 - d2, t1 = d1 + d2, t2 = d2 - d1, t3 = d1 - d3 (d2, d3 one tile row down).
            for (par, (top, bottom)) in [(&q.q[0], &q.q[2]), (&q.q[1], &q.q[3])]
                .into_iter()
                .enumerate()
            {
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
            // V = t B on each row i of t: with e, o its even and odd columns, a tile's 4
            // columns are e[f], o[f], e[f+1], o[f+1] and
            // V[i][0..4] = e[f] - e[f+1], o[f] + e[f+1], e[f+1] - o[f], o[f] - o[f+1].
            for i in 0..4 {
                let (e, o) = (&t[i * m..][..m], &t[(4 + i) * m..][..m]);
                let row = |j: usize| ((i * 4 + j) * p.c + c) * big_p + s * n;
                zip2(&mut v[row(0)..row(0) + n], &e[..n], &e[1..], |a, b| a - b);
                zip2(&mut v[row(1)..row(1) + n], &o[..n], &e[1..], |a, b| a + b);
                zip2(&mut v[row(2)..row(2) + n], &e[1..], &o[..n], |a, b| a - b);
                zip2(&mut v[row(3)..row(3) + n], &o[..n], &o[1..], |a, b| a - b);
            }
        }
    }
}

/// `y_p = act(A^T M_p A + b)` for each tile, written to `y` `[samples, K, H', W']`, ReLU if
/// `relu`; outputs beyond H' x W' are dropped. `rows` is scratch.
#[inline(always)]
fn output_transform(
    p: &Plan,
    m: &[f32],
    samples: usize,
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
    rows: &mut Vec<f32>,
) {
    let (n, ohw) = (p.tiles(), p.out_h * p.out_w);
    let big_p = samples * n;
    rows.clear();
    rows.resize(Quarters::buf_len(p) + 8 * n, 0.0);
    let (qbuf, t) = rows.split_at_mut(Quarters::buf_len(p));
    let mut q = Quarters::new(p, qbuf);
    for s in 0..samples {
        for k in 0..p.k {
            let mv = |xi: usize| &m[(xi * p.k + k) * big_p + s * n..][..n];
            // t = A^T M (2x4), each entry a row over the tiles, t[i * 4 + j]:
            // t0j = m0j + m1j + m2j, t1j = m1j - m2j - m3j.
            let (ta, tb) = t.split_at_mut(4 * n);
            for (j, (t0, t1)) in ta.chunks_mut(n).zip(tb.chunks_mut(n)).enumerate() {
                zip3(t0, mv(j), mv(4 + j), mv(8 + j), |a, b, c| a + b + c);
                zip3(t1, mv(4 + j), mv(8 + j), mv(12 + j), |a, b, c| a - b - c);
            }
            // Y = t A: yi0 = ti0 + ti1 + ti2, yi1 = ti1 - ti2 - ti3, plus the bias, then
            // ReLU; quarter 2 i + j holds y_ij of every tile.
            let b = bias[k];
            let act = |v: f32| if relu { v.max(0.0) } else { v };
            for i in 0..2 {
                let tr = |j: usize| &t[(4 * i + j) * n..][..n];
                let [q0, q1, q2, q3] = &mut q.q;
                let (q0, q1) = if i == 0 { (q0, q1) } else { (q2, q3) };
                zip3(&mut q0[..n], tr(0), tr(1), tr(2), |a, bb, c| {
                    act(a + bb + c + b)
                });
                zip3(&mut q1[..n], tr(1), tr(2), tr(3), |a, bb, c| {
                    act(a - bb - c + b)
                });
            }
            // Output (oy, ox) is quarter (oy % 2, ox % 2) at tile (oy / 2, ox / 2).
            let plane = &mut y[(s * p.k + k) * ohw..][..ohw];
            for (oy, row) in plane.chunks_mut(p.out_w).enumerate() {
                let (e, o) = q.row_pair(p, oy % 2, oy / 2);
                interleave(e, o, row);
            }
        }
    }
}

/// `dM_p = A dY_p A^T` for each tile of `dy` `[samples, K, H', W']` (zero beyond H' x W',
/// and for the spare tiles). `rows` is scratch.
#[inline(always)]
fn output_grad_transform(
    p: &Plan,
    dy: &[f32],
    samples: usize,
    dm: &mut [f32],
    rows: &mut Vec<f32>,
) {
    let (n, ohw) = (p.tiles(), p.out_h * p.out_w);
    let big_p = samples * n;
    rows.clear();
    rows.resize(Quarters::buf_len(p) + 8 * n, 0.0);
    let (qbuf, t_buf) = rows.split_at_mut(Quarters::buf_len(p));
    let mut q = Quarters::new(p, qbuf);
    for s in 0..samples {
        for k in 0..p.k {
            // dY's tiles by quarter: g[2 a + b][f] = dY(2 ty + a, 2 tx + b).
            q.fill_zero();
            let plane = &dy[(s * p.k + k) * ohw..][..ohw];
            for (oy, row) in plane.chunks(p.out_w).enumerate() {
                let (e, o) = q.row_pair(p, oy % 2, oy / 2);
                deinterleave(row, e, o);
            }
            // t = A dY (4x2): rows g0, g0 + g1, g0 - g1, -g1 (g0 = (g00, g01), g1 = (g10,
            // g11)), each entry a row over the tiles, in t[2 i] and t[2 i + 1].
            let [g00, g01, g10, g11] = [&q.q[0][..n], &q.q[1][..n], &q.q[2][..n], &q.q[3][..n]];
            let (t, _) = t_buf.split_at_mut(8 * n);
            let mut ts = t.chunks_mut(n);
            let mut next = || ts.next().expect("8 rows of n");
            next().copy_from_slice(g00);
            next().copy_from_slice(g01);
            zip2(next(), g00, g10, |a, b| a + b);
            zip2(next(), g01, g11, |a, b| a + b);
            zip2(next(), g00, g10, |a, b| a - b);
            zip2(next(), g01, g11, |a, b| a - b);
            zip2(next(), g10, g10, |a, _| -a);
            zip2(next(), g11, g11, |a, _| -a);
            // dM = t A^T: per row (a, b) of t: a, a + b, a - b, -b.
            for i in 0..4 {
                let (a, b) = (&t[2 * i * n..][..n], &t[(2 * i + 1) * n..][..n]);
                let row = |j: usize| ((i * 4 + j) * p.k + k) * big_p + s * n;
                dm[row(0)..row(0) + n].copy_from_slice(a);
                zip2(&mut dm[row(1)..row(1) + n], a, b, |a, b| a + b);
                zip2(&mut dm[row(2)..row(2) + n], a, b, |a, b| a - b);
                zip2(&mut dm[row(3)..row(3) + n], b, b, |b, _| -b);
            }
        }
    }
}

/// `dx = sum over tiles of B dV_p B^T`, each 4x4 block added where it lies in the image
/// (its padding dropped), written to `dx` `[samples, C, H, W]`. `rows` is scratch.
#[inline(always)]
fn input_grad_transform(p: &Plan, dv: &[f32], samples: usize, dx: &mut [f32], rows: &mut Vec<f32>) {
    let (half, n) = (p.half(), p.tiles());
    let big_p = samples * n;
    rows.clear();
    rows.resize(Quarters::buf_len(p) + TILE * n, 0.0);
    let (qbuf, dd) = rows.split_at_mut(Quarters::buf_len(p));
    let mut q = Quarters::new(p, qbuf);
    for s in 0..samples {
        for c in 0..p.c {
            let dvv = |xi: usize| &dv[(xi * p.c + c) * big_p + s * n..][..n];
            let vs: [&[f32]; TILE] = std::array::from_fn(dvv);
            // dd = B dV B^T per tile, into 16 rows over the tiles: dd[r * 4 + j].
            {
                let mut outs: Vec<&mut [f32]> = dd.chunks_mut(n).collect();
                for f in 0..n {
                    // t = dV B^T: per row (a, b, c, e) of dV: a, b - c + e, -a + b + c, -e;
                    // dd = B t: the same on the columns of t.
                    let t = |i: usize| {
                        let (a, b, cc, e) = (
                            vs[4 * i][f],
                            vs[4 * i + 1][f],
                            vs[4 * i + 2][f],
                            vs[4 * i + 3][f],
                        );
                        [a, b - cc + e, -a + b + cc, -e]
                    };
                    let (t0, t1, t2, t3) = (t(0), t(1), t(2), t(3));
                    for j in 0..4 {
                        outs[j][f] = t0[j];
                        outs[4 + j][f] = t1[j] - t2[j] + t3[j];
                        outs[8 + j][f] = -t0[j] + t1[j] + t2[j];
                        outs[12 + j][f] = -t3[j];
                    }
                }
            }
            // dd row r, column j of tile f is padded pixel (2 ty + r, 2 tx + j): quarter
            // (r % 2, j % 2) at f + (r / 2) h + j / 2. Added in a fixed order.
            q.fill_zero();
            for r in 0..4 {
                for j in 0..4 {
                    let shift = (r / 2) * half + j / 2;
                    let acc = &mut q.q[2 * (r % 2) + j % 2][shift..shift + n];
                    acc.iter_mut()
                        .zip(&dd[(r * 4 + j) * n..][..n])
                        .for_each(|(a, v)| *a += v);
                }
            }
            // Crop the padding: image pixel (y, x) is padded (y + pad_top, x + pad_left).
            q.crop(p, &mut dx[(s * p.c + c) * p.h * p.w..][..p.h * p.w]);
        }
    }
}

/// Scratch buffers of one block of samples.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// V, then dV in backward: 16 C P.
    pub v: Vec<f32>,
    /// M, or dM in backward: 16 K P.
    pub m: Vec<f32>,
    /// Padded rows.
    pub rows: Vec<f32>,
}

/// Calls `f`, compiled for the best instruction set that [`super::simd`] chose: the
/// transforms are plain element-wise Rust, `#[inline(always)]`, which the compiler
/// vectorises 4 lanes wide for baseline x86-64 and 8 or 16 wide inside [`with_avx2`] or
/// [`with_avx512`]. They only add and subtract, so every width gives the same bits.
#[inline(always)]
fn on_best_simd<R>(f: impl FnOnce() -> R) -> R {
    match super::simd() {
        // SAFETY: `simd()` chooses only a family this CPU supports.
        #[cfg(target_arch = "x86_64")]
        super::Simd::Avx512 => unsafe { with_avx512(f) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        super::Simd::Avx2 => unsafe { with_avx2(f) },
        _ => f(),
    }
}

/// `f()` with AVX-512F enabled for the code inlined into it.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f()` with AVX2 enabled for the code inlined into it.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Forward for a block of `samples` samples: `y = act(conv(x) + b)` with `u` from
/// [`transform_weights`], ReLU if `relu`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    p: &Plan,
    u: &[f32],
    bias: &[f32],
    relu: bool,
    x: &[f32],
    samples: usize,
    sc: &mut Scratch,
    y: &mut [f32],
) {
    let big_p = samples * p.tiles();
    sc.v.resize(p.v_len(samples), 0.0);
    sc.m.resize(p.m_len(samples), 0.0);
    on_best_simd(
        #[inline(always)]
        || input_transform(p, x, samples, &mut sc.v, &mut sc.rows),
    );
    let (kc, cp, kp) = (p.k * p.c, p.c * big_p, p.k * big_p);
    for xi in 0..TILE {
        let u_xi = MatRef::new(&u[xi * kc..(xi + 1) * kc], p.k, p.c);
        let v_xi = MatRef::new(&sc.v[xi * cp..(xi + 1) * cp], p.c, big_p);
        gemm(
            u_xi,
            v_xi,
            0.0,
            MatMut::new(&mut sc.m[xi * kp..(xi + 1) * kp], p.k, big_p),
        );
    }
    on_best_simd(
        #[inline(always)]
        || output_transform(p, &sc.m, samples, bias, relu, y, &mut sc.rows),
    );
}

/// Backward for a block of `samples` samples, given `dy` = dL/d(conv output) (the
/// activation already undone): writes this block's dU to `du` (16 K C) and, if asked,
/// dL/dx to `dx`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    p: &Plan,
    u: &[f32],
    x: &[f32],
    dy: &[f32],
    samples: usize,
    sc: &mut Scratch,
    du: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let big_p = samples * p.tiles();
    sc.v.resize(p.v_len(samples), 0.0);
    sc.m.resize(p.m_len(samples), 0.0);
    on_best_simd(
        #[inline(always)]
        || {
            input_transform(p, x, samples, &mut sc.v, &mut sc.rows);
            output_grad_transform(p, dy, samples, &mut sc.m, &mut sc.rows);
        },
    );
    let (kc, cp, kp) = (p.k * p.c, p.c * big_p, p.k * big_p);
    for xi in 0..TILE {
        let dm_xi = MatRef::new(&sc.m[xi * kp..(xi + 1) * kp], p.k, big_p);
        let v_xi = MatRef::new(&sc.v[xi * cp..(xi + 1) * cp], p.c, big_p);
        let du_xi = MatMut::new(&mut du[xi * kc..(xi + 1) * kc], p.k, p.c);
        gemm(dm_xi, v_xi.t(), 0.0, du_xi);
    }
    let Some(dx) = dx else {
        return;
    };
    // V is free again: it holds dV = U^T dM.
    for xi in 0..TILE {
        let u_xi = MatRef::new(&u[xi * kc..(xi + 1) * kc], p.k, p.c);
        let dm_xi = MatRef::new(&sc.m[xi * kp..(xi + 1) * kp], p.k, big_p);
        let dv_xi = MatMut::new(&mut sc.v[xi * cp..(xi + 1) * cp], p.c, big_p);
        gemm(u_xi.t(), dm_xi, 0.0, dv_xi);
    }
    on_best_simd(
        #[inline(always)]
        || input_grad_transform(p, &sc.v, samples, dx, &mut sc.rows),
    );
}
