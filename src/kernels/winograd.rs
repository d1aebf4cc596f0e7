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
//! Layout, so that every transform is one loop over all the tiles of all the channels of a
//! sample at once, 16 tiles per step in vector registers: a plane, padded with zeros, is
//! split by the parity of its rows and columns into four quarter planes of T_h + 1 rows of
//! T_w + 1 (`q[2a + b][r][t]` is padded pixel (2r + a, 2t + b)). The tile slot
//! f = r (T_w + 1) + t then reads its 4x4 block as
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
//! price of loops without edges (for LeNet's 14x14 planes, 64 slots for 49 tiles). The
//! three products leave out the last row of slots: dU's sum runs over the other slots, and
//! the other two write only their columns ([`super::gemm::gemm_leading_cols`]; dV's last
//! row is set to zero instead). On AVX2 that drops a column tile's second vector (56 of 64
//! columns: three tiles of 16 and one of 8); the spare slots inside each row stay.
//!
//! Padding and ragged edges: an input block reads zeros outside the image (the padding,
//! and beyond the last row or column when H' or W' is odd); outputs beyond H' x W' are
//! computed and dropped, and their gradients are zero.
//!
//! Every step runs in an order that depends only on the shapes, so the results are the
//! same bits for any thread count; the transforms are plain Rust (adds and subtracts only,
//! so the same bits at any vector width), the products run on [`super::gemm::gemm`]. In
//! backward the input transform writes V slot-major, as V^T, so that dU's product runs on
//! the broadcast kernel without a transpose.

use super::gemm::{gemm, gemm_leading_cols, MatMut, MatRef};
use super::geom::ConvGeom;
use super::on_best_simd;
use super::transpose::deinterleave;

/// The 16 positions of a 4x4 tile.
pub const TILE: usize = 16;

/// Floats left unused after each of the 16 planes of V and M: the fused transforms read
/// or write all 16 planes at once, and planes a multiple of 4 KB apart would all fall in
/// the same few sets of the L1 cache and evict each other.
const PLANE_PAD: usize = 16;

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

    /// The slots in the rows of tiles, T_h (T_w + 1): all but the spare last row, which the
    /// products leave out.
    pub fn row_slots(&self) -> usize {
        self.tiles_h * self.half()
    }

    /// Floats of U (or dU): 16 K C.
    pub fn u_len(&self) -> usize {
        TILE * self.k * self.c
    }

    /// Floats of each slot-major quarter plane: (S + T_w + 2) C, as a block reads up to
    /// T_w + 2 slots beyond the last.
    fn slot_major_q_len(&self) -> usize {
        (self.slots() + self.half() + 1) * self.c
    }

    /// Distance between the 16 planes `V[xi]` (C S floats each) in the scratch buffer.
    fn v_stride(&self) -> usize {
        self.c * self.slots() + PLANE_PAD
    }

    /// Distance between the 16 planes `M[xi]` (K S floats each).
    fn m_stride(&self) -> usize {
        self.k * self.slots() + PLANE_PAD
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

/// `dst[2 t] = e[t]`, `dst[2 t + 1] = o[t]` over `dst`'s length.
#[inline(always)]
fn interleave(e: &[f32], o: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512_available() {
        // SAFETY: AVX-512F is available (checked).
        return unsafe { super::avx512::interleave(e, o, dst) };
    }
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

/// The row `row` of an image, after `pad` zeros, into its even and odd columns: `e[t]` =
/// padded column 2 t, `o[t]` = 2 t + 1. Writes only where the row's values land (the
/// caller has zeroed `e` and `o`).
#[inline(always)]
fn split_row(row: &[f32], pad: usize, e: &mut [f32], o: &mut [f32]) {
    let s = pad / 2;
    if pad.is_multiple_of(2) {
        deinterleave(row, &mut e[s..], &mut o[s..]);
    } else {
        // Column j of the row is padded column j + 2 s + 1: the row's even columns are
        // odd ones there, from o[s]; its odd columns even ones, from e[s + 1].
        deinterleave(row, &mut o[s..], &mut e[s + 1..]);
    }
}

/// The inverse of [`split_row`]: `dst[j]` = padded column j + `pad` of the row whose even
/// and odd columns are `e` and `o`.
#[inline(always)]
fn merge_row(e: &[f32], o: &[f32], pad: usize, dst: &mut [f32]) {
    let s = pad / 2;
    if pad.is_multiple_of(2) {
        interleave(&e[s..], &o[s..], dst);
    } else {
        interleave(&o[s..], &e[s + 1..], dst);
    }
}

/// Splits `planes` planes of `[H, W]` (padded by `pad_top`, `pad_left` zeros) into the
/// quarter planes `q` (4 buffers of at least `planes` S floats; see the module doc).
#[inline(always)]
fn split(p: &Plan, x: &[f32], planes: usize, q: &mut [&mut [f32]; 4]) {
    let (half, slots) = (p.half(), p.slots());
    // The columns that fit in a quarter row pair (all of them, as T_w = ceil(W'/2)).
    let cols = p.w.min((2 * half).saturating_sub(p.pad_left));
    for qq in q.iter_mut() {
        qq[..planes * slots].fill(0.0);
    }
    for (c, plane) in x.chunks(p.h * p.w).take(planes).enumerate() {
        for (y, row) in plane.chunks(p.w).enumerate() {
            let py = y + p.pad_top;
            if py / 2 > p.tiles_h {
                break;
            }
            let at = c * slots + (py / 2) * half;
            let [q0, q1, q2, q3] = q;
            let (e, o) = if py.is_multiple_of(2) {
                (q0, q1)
            } else {
                (q2, q3)
            };
            split_row(
                &row[..cols],
                p.pad_left,
                &mut e[at..at + half],
                &mut o[at..at + half],
            );
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

/// The 16 planes of `len` floats, `stride` apart, at the start of `buf`.
#[inline(always)]
fn planes_mut(buf: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; TILE] {
    let mut rest = buf;
    std::array::from_fn(|_| {
        let whole = std::mem::take(&mut rest);
        let (plane, tail) = whole.split_at_mut(stride.min(whole.len()));
        rest = tail;
        &mut plane[..len]
    })
}

/// Slots per step of the fused transforms: each step works on fixed-size arrays of this
/// many slots, which the compiler keeps in vector registers (the last step of a plane
/// runs one slot at a time).
const LANES: usize = 16;

/// `step(f, wide)` for the consecutive steps over `len` slots: [`LANES`] slots from `f`
/// (`wide`) while that many remain, then one slot at a time.
#[inline(always)]
fn steps(len: usize, mut step: impl FnMut(usize, bool)) {
    let full = len - len % LANES;
    for f in (0..full).step_by(LANES) {
        step(f, true);
    }
    for f in full..len {
        step(f, false);
    }
}

/// `W` values of `s` from `f` on, as an array.
#[inline(always)]
fn load<const W: usize>(s: &[f32], f: usize) -> [f32; W] {
    *s[f..f + W].first_chunk().expect("W values from f")
}

/// `dst[f..f + W] = vals`: one bounds check per row of a step (a check per element would
/// keep the compiler from vectorising it).
#[inline(always)]
fn store<const W: usize>(dst: &mut [f32], f: usize, vals: &[f32; W]) {
    dst[f..f + W].copy_from_slice(vals);
}

/// `B^T d B` for `W` slots from `f`: the 4x4 blocks read from the quarter planes `q` (see
/// the module doc), the 16 values of each written to `v[xi][f..]`. `one` is the distance
/// from a slot to the next one across in `q` (1, or C in the slot-major layout of
/// [`input_transform_slot_major`]), `h` the distance to the next one down, (T_w + 1) `one`.
#[inline(always)]
fn input_step<const W: usize>(
    q: &[&mut [f32]; 4],
    (one, h): (usize, usize),
    f: usize,
    v: &mut [&mut [f32]; TILE],
) {
    // t = B^T d on the block's 4 rows, column by column: column 2 c + b of the block is
    // quarter b of the top (rows 0, 2) and bottom (rows 1, 3) pairs at slot f + c.
    // t0 = d0 - d2, t1 = d1 + d2, t2 = d2 - d1, t3 = d1 - d3.
    let mut t = [[[0.0f32; W]; 4]; 4];
    for (col, t) in t.iter_mut().enumerate() {
        let (par, g) = (col % 2, f + (col / 2) * one);
        let (d0, d2): ([f32; W], [f32; W]) = (load(&q[par][..], g), load(&q[par][..], g + h));
        let (d1, d3): ([f32; W], [f32; W]) =
            (load(&q[2 + par][..], g), load(&q[2 + par][..], g + h));
        for l in 0..W {
            t[0][l] = d0[l] - d2[l];
            t[1][l] = d1[l] + d2[l];
            t[2][l] = d2[l] - d1[l];
            t[3][l] = d1[l] - d3[l];
        }
    }
    // V = t B on each row i: with c0..c3 its 4 columns,
    // V[i][0..4] = c0 - c2, c1 + c2, c2 - c1, c1 - c3.
    let mut out = [[0.0f32; W]; TILE];
    for i in 0..4 {
        let c = [t[0][i], t[1][i], t[2][i], t[3][i]];
        for l in 0..W {
            out[4 * i][l] = c[0][l] - c[2][l];
            out[4 * i + 1][l] = c[1][l] + c[2][l];
            out[4 * i + 2][l] = c[2][l] - c[1][l];
            out[4 * i + 3][l] = c[1][l] - c[3][l];
        }
    }
    for (row, vals) in v.iter_mut().zip(&out) {
        store(row, f, vals);
    }
}

/// `V[xi][c][f] = (B^T d_cf B)[xi]` for one sample `x` `[C, H, W]`; `v` holds the 16
/// planes [`Plan::v_stride`] apart, `q` quarter planes of C S + T_w + 2 floats. One pass
/// over every slot of every channel: each reads its block (16 values) and writes its 16
/// values of V.
#[inline(always)]
fn input_transform(p: &Plan, x: &[f32], v: &mut [f32], q: &mut [&mut [f32]; 4]) {
    let (half, n) = (p.half(), p.c * p.slots());
    split(p, x, p.c, q);
    input_steps(p, q, (1, half), n, v);
}

/// [`input_step`] over the `n` slots, the 16 planes of `v` [`Plan::v_stride`] apart; `step`
/// as there.
#[inline(always)]
fn input_steps(p: &Plan, q: &[&mut [f32]; 4], step: (usize, usize), n: usize, v: &mut [f32]) {
    let mut rows = planes_mut(v, p.v_stride(), n);
    steps(
        n,
        #[inline(always)]
        |f, wide| {
            if wide {
                input_step::<LANES>(q, step, f, &mut rows)
            } else {
                input_step::<1>(q, step, f, &mut rows)
            }
        },
    );
}

/// [`input_transform`] with V slot-major: `v[xi]` holds `V[xi]^T`, `[S][C]`, the operand
/// that dU's product `dM V^T` reads by rows, so that backward needs no transpose of V (16
/// per sample, which took about 4% of LeNet's step). The quarter planes are slot-major too
/// (`q[2a + b][f C + c]`, [`Plan::slot_major_q_len`] floats each): the transform is the
/// same arithmetic on each slot, its neighbours C apart instead of 1, so V's values are
/// the same bits. Only the split into quarters is a scatter (one store per pixel).
#[inline(always)]
fn input_transform_slot_major(p: &Plan, x: &[f32], v: &mut [f32], q: &mut [&mut [f32]; 4]) {
    let (c_n, half, slots) = (p.c, p.half(), p.slots());
    let n = c_n * slots;
    for qq in q.iter_mut() {
        qq[..p.slot_major_q_len()].fill(0.0);
    }
    let cols = p.w.min((2 * half).saturating_sub(p.pad_left));
    for (c, plane) in x.chunks(p.h * p.w).take(c_n).enumerate() {
        for (y, row) in plane.chunks(p.w).enumerate() {
            let py = y + p.pad_top;
            if py / 2 > p.tiles_h {
                break;
            }
            for (col, &val) in row[..cols].iter().enumerate() {
                let px = col + p.pad_left;
                let slot = (py / 2) * half + px / 2;
                q[2 * (py % 2) + px % 2][slot * c_n + c] = val;
            }
        }
    }
    input_steps(p, q, (c_n, half * c_n), n, v);
}

/// `A^T M A + b` (ReLU if `relu`) for `W` slots from `f` of one filter plane: `mv` its 16
/// rows of M; the 2x2 outputs go to `out[2 a + b]`. Plain loops over fixed-size arrays
/// (no closures, which might not be inlined into the vectorised caller).
#[inline(always)]
fn output_step<const W: usize>(
    mv: &[&[f32]; TILE],
    f: usize,
    b: f32,
    relu: bool,
    out: &mut [&mut [f32]; 4],
) {
    let mut v = [[0.0f32; W]; TILE];
    for xi in 0..TILE {
        v[xi] = load(mv[xi], f);
    }
    // t = A^T M (2x4): t0j = m0j + m1j + m2j, t1j = m1j - m2j - m3j.
    let mut t = [[[0.0f32; W]; 4]; 2];
    for j in 0..4 {
        for l in 0..W {
            t[0][j][l] = v[j][l] + v[4 + j][l] + v[8 + j][l];
            t[1][j][l] = v[4 + j][l] - v[8 + j][l] - v[12 + j][l];
        }
    }
    // Y = t A: yi0 = ti0 + ti1 + ti2, yi1 = ti1 - ti2 - ti3; then the bias and ReLU.
    for (i, t) in t.iter().enumerate() {
        let (head, tail) = out.split_at_mut(2 * i + 1);
        let (o0, o1) = (&mut head[2 * i][f..f + W], &mut tail[0][f..f + W]);
        for l in 0..W {
            let y0 = t[0][l] + t[1][l] + t[2][l] + b;
            let y1 = t[1][l] - t[2][l] - t[3][l] + b;
            o0[l] = if relu { y0.max(0.0) } else { y0 };
            o1[l] = if relu { y1.max(0.0) } else { y1 };
        }
    }
}

/// `y = act(A^T M A + b)` per tile for one sample, `m` `[16][K][S]`, written to `y`
/// `[K, H', W']`, ReLU if `relu`. `q` quarter planes of K S floats.
///
/// One pass per filter plane: each slot reads its 16 values of M once and writes its 2x2
/// outputs to the four quarter planes, the bias added and ReLU applied on the way.
#[inline(always)]
fn output_transform(
    p: &Plan,
    m: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
    q: &mut [&mut [f32]; 4],
) {
    let slots = p.slots();
    for (k, &b) in bias.iter().enumerate().take(p.k) {
        let at = k * slots;
        let mut mv: [&[f32]; TILE] = [&[]; TILE];
        for (xi, row) in mv.iter_mut().enumerate() {
            *row = &m[xi * p.m_stride() + at..][..slots];
        }
        let [q0, q1, q2, q3] = &mut *q;
        let mut out = [
            &mut q0[at..at + slots],
            &mut q1[at..at + slots],
            &mut q2[at..at + slots],
            &mut q3[at..at + slots],
        ];
        steps(
            slots,
            #[inline(always)]
            |f, wide| match (wide, relu) {
                (true, true) => output_step::<LANES>(&mv, f, b, true, &mut out),
                (true, false) => output_step::<LANES>(&mv, f, b, false, &mut out),
                (false, _) => output_step::<1>(&mv, f, b, relu, &mut out),
            },
        );
    }
    merge_outputs(p, q, y);
}

/// `A dY A^T` for `W` slots from `f`: `g[2 a + b]` the 2x2 tiles of dY by quarter, the
/// 16 values of each written to `dm[xi][f..]`.
#[inline(always)]
fn output_grad_step<const W: usize>(g: &[&mut [f32]; 4], f: usize, dm: &mut [&mut [f32]; TILE]) {
    let [g00, g01, g10, g11]: [[f32; W]; 4] = [
        load(&g[0][..], f),
        load(&g[1][..], f),
        load(&g[2][..], f),
        load(&g[3][..], f),
    ];
    // t = A dY (4x2): rows g0, g0 + g1, g0 - g1, -g1 (g0 = (g00, g01), g1 = (g10, g11));
    // then dM = t A^T: per row (a, b) of t: a, a + b, a - b, -b.
    let mut out = [[0.0f32; W]; TILE];
    for l in 0..W {
        let t = [
            [g00[l], g01[l]],
            [g00[l] + g10[l], g01[l] + g11[l]],
            [g00[l] - g10[l], g01[l] - g11[l]],
            [-g10[l], -g11[l]],
        ];
        for (i, [a, b]) in t.into_iter().enumerate() {
            out[4 * i][l] = a;
            out[4 * i + 1][l] = a + b;
            out[4 * i + 2][l] = a - b;
            out[4 * i + 3][l] = -b;
        }
    }
    for (row, vals) in dm.iter_mut().zip(&out) {
        store(row, f, vals);
    }
}

/// `dM = A dY A^T` per tile for one sample's `dy` `[K, H', W']` (zero beyond H' x W' and
/// in the spare slots), written to `dm` (16 planes [`Plan::m_stride`] apart). `q` quarter
/// planes of K S floats.
#[inline(always)]
fn output_grad_transform(p: &Plan, dy: &[f32], dm: &mut [f32], q: &mut [&mut [f32]; 4]) {
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
    let mut rows = planes_mut(dm, p.m_stride(), n);
    steps(
        n,
        #[inline(always)]
        |f, wide| {
            if wide {
                output_grad_step::<LANES>(q, f, &mut rows)
            } else {
                output_grad_step::<1>(q, f, &mut rows)
            }
        },
    );
}

/// `dd = B dV B^T` for `W` slots from `f`: the 16 values of each slot's `dV` (`dv[xi]`)
/// to its 4x4 block, written to `dd[4 r + j][f..]` (row r, column j of the block).
#[inline(always)]
fn block_grad_step<const W: usize>(dv: &[&[f32]; TILE], f: usize, dd: &mut [&mut [f32]; TILE]) {
    let mut v = [[0.0f32; W]; TILE];
    for xi in 0..TILE {
        v[xi] = load(dv[xi], f);
    }
    // u = dV B^T: per row (a, b, c, e) of dV: a, b - c + e, -a + b + c, -e.
    let mut u = [[0.0f32; W]; TILE];
    for i in 0..4 {
        let [a, b, c, e] = [v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]];
        for l in 0..W {
            u[4 * i][l] = a[l];
            u[4 * i + 1][l] = b[l] - c[l] + e[l];
            u[4 * i + 2][l] = -a[l] + b[l] + c[l];
            u[4 * i + 3][l] = -e[l];
        }
    }
    // dd = B u, the same on the columns of u.
    let mut out = [[0.0f32; W]; TILE];
    for j in 0..4 {
        let [a, b, c, e] = [u[j], u[4 + j], u[8 + j], u[12 + j]];
        for l in 0..W {
            out[j][l] = a[l];
            out[4 + j][l] = b[l] - c[l] + e[l];
            out[8 + j][l] = -a[l] + b[l] + c[l];
            out[12 + j][l] = -e[l];
        }
    }
    for (row, vals) in dd.iter_mut().zip(&out) {
        store(row, f, vals);
    }
}

/// Quarter plane `ab` of the summed blocks for `W` positions from `g`: padded pixel
/// (2 r' + a, 2 t' + b) at quarter position g = r' h + t' is where block row a (or a + 2)
/// and column b (or b + 2) of the tiles at slots g, g - h, g - 1, g - h - 1 fall. `dd` holds
/// each block value `front` slots later (zeros before and after), so `g - h - 1 >= -front`.
#[inline(always)]
fn gather_step<const W: usize>(
    dd: &[&mut [f32]; TILE],
    ab: (usize, usize),
    h: usize,
    front: usize,
    g: usize,
    out: &mut [f32],
) {
    let (a, b) = ab;
    let at = g + front;
    let x0: [f32; W] = load(&dd[4 * a + b][..], at);
    let x1: [f32; W] = load(&dd[4 * (a + 2) + b][..], at - h);
    let x2: [f32; W] = load(&dd[4 * a + b + 2][..], at - 1);
    let x3: [f32; W] = load(&dd[4 * (a + 2) + b + 2][..], at - h - 1);
    let mut sum = [0.0f32; W];
    for l in 0..W {
        // Added in the order of the tiles' rows of blocks, from 0 (so a sum of zeros is
        // +0 whatever the blocks' signs).
        sum[l] = 0.0 + x0[l] + x1[l] + x2[l] + x3[l];
    }
    store(out, g, &sum);
}

/// `dx = sum over tiles of B dV B^T` for one sample, `dv` 16 planes [`Plan::v_stride`]
/// apart: each 4x4 block added where it lies, the padding cropped, written to `dx` `[C, H,
/// W]`. `q` quarter planes of C S + T_w + 2 floats, `t` [`dd_len`] floats.
///
/// Two passes: every slot's block `dd` (16 values) from its dV, then each quarter-plane
/// position as the sum of the (up to) four blocks that cover it.
#[inline(always)]
fn input_grad_transform(
    p: &Plan,
    dv: &[f32],
    dx: &mut [f32],
    q: &mut [&mut [f32]; 4],
    t: &mut [f32],
) {
    let (half, slots) = (p.half(), p.slots());
    let n = p.c * slots;
    let vstride = p.v_stride();
    let mut dv_rows: [&[f32]; TILE] = [&[]; TILE];
    for (xi, row) in dv_rows.iter_mut().enumerate() {
        *row = &dv[xi * vstride..][..n];
    }
    // dd planes: `front` zeros, the n slots, zeros after (as far as the gather reads).
    let front = half + 1;
    let len = front + n + half + 1;
    let mut dd = planes_mut(t, len, len);
    for plane in dd.iter_mut() {
        plane[..front].fill(0.0);
        plane[front + n..].fill(0.0);
    }
    {
        let mut inner: [&mut [f32]; TILE] = std::array::from_fn(|_| &mut [][..]);
        for (i, plane) in inner.iter_mut().zip(dd.iter_mut()) {
            *i = &mut plane[front..front + n];
        }
        steps(
            n,
            #[inline(always)]
            |f, wide| {
                if wide {
                    block_grad_step::<LANES>(&dv_rows, f, &mut inner)
                } else {
                    block_grad_step::<1>(&dv_rows, f, &mut inner)
                }
            },
        );
    }
    let reach = n + half + 1;
    for (quarter, out) in q.iter_mut().enumerate() {
        let ab = (quarter / 2, quarter % 2);
        let out = &mut out[..reach];
        steps(
            reach,
            #[inline(always)]
            |g, wide| {
                if wide {
                    gather_step::<LANES>(&dd, ab, half, front, g, out)
                } else {
                    gather_step::<1>(&dd, ab, half, front, g, out)
                }
            },
        );
    }
    // Crop the padding: image pixel (y, x) is padded (y + pad_top, x + pad_left).
    let cols = p.w.min((2 * half).saturating_sub(p.pad_left));
    for (c, plane) in dx.chunks_mut(p.h * p.w).take(p.c).enumerate() {
        for (y, row) in plane.chunks_mut(p.w).enumerate() {
            let py = y + p.pad_top;
            if py / 2 > p.tiles_h {
                row.fill(0.0);
                continue;
            }
            let at = c * slots + (py / 2) * half;
            let (e, o) = if py.is_multiple_of(2) {
                (&q[0], &q[1])
            } else {
                (&q[2], &q[3])
            };
            let (inside, beyond) = row.split_at_mut(cols);
            merge_row(&e[at..at + half], &o[at..at + half], p.pad_left, inside);
            beyond.fill(0.0);
        }
    }
}

/// Floats of the block-gradient scratch of [`input_grad_transform`]: 16 planes of C S
/// slots with T_w + 2 zeros on each side.
fn dd_len(p: &Plan) -> usize {
    TILE * (p.c * p.slots() + 2 * (p.half() + 1))
}

/// Scratch buffers for [`forward`] and [`backward`], sized for the plan at each call; one
/// set can serve block after block (Conv2D keeps one per thread, so it stays in cache).
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// V, then dV in backward: 16 planes of C S, [`Plan::v_stride`] apart.
    v: Vec<f32>,
    /// M, or dM in backward: 16 planes of K S, [`Plan::m_stride`] apart.
    m: Vec<f32>,
    /// Four quarter planes.
    q: Vec<f32>,
    /// In backward, the blocks of dx's transform.
    t: Vec<f32>,
}

impl Scratch {
    /// Sizes the buffers for `p` and returns (v, m, quarters, t).
    #[allow(clippy::type_complexity)]
    fn parts(&mut self, p: &Plan) -> (&mut [f32], &mut [f32], [&mut [f32]; 4], &mut [f32]) {
        let planes = p.c.max(p.k);
        let q_len = (planes * p.slots() + p.half() + 1).max(p.slot_major_q_len());
        self.v.resize(TILE * p.v_stride(), 0.0);
        self.m.resize(TILE * p.m_stride(), 0.0);
        self.q.resize(4 * q_len, 0.0);
        self.t.resize(dd_len(p), 0.0);
        let (q0, rest) = self.q.split_at_mut(q_len);
        let (q1, rest) = rest.split_at_mut(q_len);
        let (q2, q3) = rest.split_at_mut(q_len);
        (&mut self.v, &mut self.m, [q0, q1, q2, q3], &mut self.t)
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
    let (slots, rows) = (p.slots(), p.row_slots());
    let (v, m, mut q, _) = sc.parts(p);
    let (kc, cs, ks) = (p.k * p.c, p.c * slots, p.k * slots);
    let (vst, mst) = (p.v_stride(), p.m_stride());
    for (x_s, y_s) in x.chunks(in_len).zip(y.chunks_mut(out_len)) {
        on_best_simd(
            #[inline(always)]
            || input_transform(p, x_s, v, &mut q),
        );
        // M = U V over the slots of the tile rows: the last row of slots is spare, and
        // what the output transform makes of it is dropped.
        for xi in 0..TILE {
            let u_xi = MatRef::new(&u[xi * kc..(xi + 1) * kc], p.k, p.c);
            let v_xi = MatRef::new(&v[xi * vst..][..cs], p.c, slots).block(0, 0, p.c, rows);
            let m_xi = MatMut::new(&mut m[xi * mst..][..ks], p.k, slots);
            gemm_leading_cols(u_xi, v_xi, 0.0, m_xi);
        }
        on_best_simd(
            #[inline(always)]
            || output_transform(p, m, bias, relu, y_s, &mut q),
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
    let (slots, rows) = (p.slots(), p.row_slots());
    let (v, m, mut q, t) = sc.parts(p);
    let (kc, cs, ks) = (p.k * p.c, p.c * slots, p.k * slots);
    let (vst, mst) = (p.v_stride(), p.m_stride());
    for (s, (x_s, dy_s)) in x.chunks(in_len).zip(dy.chunks(out_len)).enumerate() {
        on_best_simd(
            #[inline(always)]
            || {
                input_transform_slot_major(p, x_s, v, &mut q);
                output_grad_transform(p, dy_s, m, &mut q);
            },
        );
        // dU += dM V^T, V^T as the slot-major transform wrote it: the product runs on the
        // broadcast kernel, which reads B by rows (as dot products of rows only S long, it
        // spent as much time adding up lanes as multiplying). The sum runs over the slots
        // of the tile rows only: the last row of slots is spare, its dM zero, and its
        // terms would add nothing.
        let beta = if s == 0 { 0.0 } else { 1.0 };
        for xi in 0..TILE {
            let dm_xi = MatRef::new(&m[xi * mst..][..ks], p.k, slots).block(0, 0, p.k, rows);
            let vt_xi = MatRef::new(&v[xi * vst..][..cs], slots, p.c).block(0, 0, rows, p.c);
            let du_xi = MatMut::new(&mut du[xi * kc..(xi + 1) * kc], p.k, p.c);
            gemm(dm_xi, vt_xi, beta, du_xi);
        }
        let Some(dx) = dx.as_deref_mut() else {
            continue;
        };
        // V is free again: it holds dV = U^T dM, over the slots of the tile rows; the
        // last row's dM is zero, so its dV is set to zero rather than computed.
        for xi in 0..TILE {
            let u_xi = MatRef::new(&u[xi * kc..(xi + 1) * kc], p.k, p.c);
            let dm_xi = MatRef::new(&m[xi * mst..][..ks], p.k, slots).block(0, 0, p.k, rows);
            let dv = &mut v[xi * vst..][..cs];
            gemm_leading_cols(u_xi.t(), dm_xi, 0.0, MatMut::new(dv, p.c, slots));
            dv.chunks_mut(slots).for_each(|row| row[rows..].fill(0.0));
        }
        let dx_s = &mut dx[s * in_len..(s + 1) * in_len];
        on_best_simd(
            #[inline(always)]
            || input_grad_transform(p, v, dx_s, &mut q, t),
        );
    }
}
