//! Depthwise convolutions: G = C groups and K = m C filters, so filter k reads input
//! channel k / m alone (weight `[K, 1, kh, kw]`), by direct kernels that slide each
//! filter's window over its one channel.
//!
//! ```text
//! y[n][k][oy][ox] = b[k] + sum_{i, j} w[k][i][j] * xp[n][k / m][oy S + i][ox S + j]
//! dL/db[k]        = sum_{n, oy, ox} dy[n][k][oy][ox]
//! dL/dw[k][i][j]  = sum_{n, oy, ox} dy[n][k][oy][ox] * xp[n][k / m][oy S + i][ox S + j]
//! dL/dxp[n][c][oy S + i][ox S + j] += dy[n][k][oy][ox] * w[k][i][j]   for k / m = c
//! ```
//!
//! (`xp` the input padded with pad_top rows and pad_left columns of zeros, and zeros after.)
//! Such a layer does 2 kh kw multiply-adds per output where an ordinary convolution does
//! 2 C kh kw: it is bound by memory, not arithmetic, and im2col (a copy of every input kh kw
//! times) and a matrix product of one row per channel are the wrong tools. These kernels
//! read each input plane once, into a buffer of the thread's where it is padded with zeros
//! and, for a stride S > 1, split into S column phases (phase p holds the padded columns
//! p, p + S, ...: the inputs of window column j for consecutive outputs are then consecutive,
//! in phase j mod S from column j / S). Every loop then runs along an output row, 16
//! outputs at a time (one AVX-512 vector, two AVX2 vectors, or 16 plain floats on the
//! portable path): the forward pass is one fused multiply-add per window position, the
//! weight gradient one per position into 16 running sums per filter, dx one per position
//! into its padded plane, which is then written out without its padding.
//!
//! **Bits.** Each output is the chain `b + w00 x00 + w01 x01 + ...` in window order, as
//! the im2col product computes it; each weight and bias gradient of a block of samples is
//! 16 lane sums (lane l takes the outputs of row positions l mod 16, over the samples and
//! rows in order) added by a fixed tree; each dx value adds its terms in the order of the
//! filters, output rows and window positions. None of it depends on the vector width or
//! the thread count, so AVX-512 and AVX2 give the same bits; the portable path multiplies
//! and adds without fusing, so it rounds differently. The naive reference
//! ([`forward_naive`], [`backward_naive`]) is what the tests hold all of them to.

use super::geom::ConvGeom;
use super::Simd;

/// Whether these kernels compute a convolution of geometry `g` in `groups` groups: G = C
/// (each filter reads one channel) and K a multiple of C.
pub fn applies(g: &ConvGeom, groups: usize) -> bool {
    groups == g.c && g.c > 0 && g.k.is_multiple_of(g.c)
}

/// Floats of [`Scratch`] that [`backward`] on `samples` samples of `g` uses (more than
/// [`forward`]): a padded plane for each sample's input and one for dx.
pub fn scratch_len(g: &ConvGeom, samples: usize) -> usize {
    (samples + 1) * Layout::new(g).plane()
}

/// The kernels' buffers, kept by the caller from call to call.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// Padded, phase-split input planes: one per sample of a block.
    x: Vec<f32>,
    /// The padded, phase-split plane dx is summed in.
    dx: Vec<f32>,
}

/// Where the padded, phase-split plane of one channel keeps its values: phase p's padded
/// row r starts at `(p rows + r) lp`, and padded column `t S + p` is at `t` from there.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// S, and the number of phases.
    s: usize,
    /// The padded rows and columns the windows read: (H' - 1) S + kh and (W' - 1) S + kw.
    rows: usize,
    cols: usize,
    /// Floats per phase row: room for every 16-wide load and store below.
    lp: usize,
    /// Input columns copied into each row: those the windows read.
    copy: usize,
    g: ConvGeom,
}

impl Layout {
    fn new(g: &ConvGeom) -> Layout {
        let s = g.stride;
        let rows = g.out_h.saturating_sub(1) * s + g.kh;
        let cols = g.out_w.saturating_sub(1) * s + g.kw;
        let copy = g.w.min(cols.saturating_sub(g.pad_left));
        let lp = [
            // Row kernels: up to 16 lanes from the last chunk of outputs, shifted by j / S.
            (g.kw - 1) / s + g.out_w.next_multiple_of(16),
            // Stride 1: a row's copy and its read back as dx, 16 lanes at a time.
            g.pad_left + g.w.next_multiple_of(16),
            cols.div_ceil(s),
        ]
        .into_iter()
        .max()
        .unwrap_or(16)
        .next_multiple_of(16);
        Layout {
            s,
            rows,
            cols,
            lp,
            copy,
            g: *g,
        }
    }

    /// Floats of one channel's plane.
    fn plane(&self) -> usize {
        self.s * self.rows * self.lp
    }

    /// Where phase `p`'s padded row `r` starts.
    #[inline(always)]
    fn at(&self, p: usize, r: usize) -> usize {
        (p * self.rows + r) * self.lp
    }

    /// Where window position (i, j) of output row `oy`'s first output reads: its phase
    /// row plus j / S.
    #[inline(always)]
    fn tap(&self, i: usize, j: usize, oy: usize) -> usize {
        self.at(j % self.s, oy * self.s + i) + j / self.s
    }
}

/// One sample's depthwise convolution `y = conv(x) + b`, then `max(y, 0)` if `relu`:
/// `x` `[C, H, W]`, `w` `[K, kh, kw]`, `b` `[K]`, `y` `[K, H', W']`, for a geometry with
/// K a multiple of C ([`applies`]).
///
/// # Panics
/// If K is not a multiple of C or a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    relu: bool,
    sc: &mut Scratch,
    y: &mut [f32],
) {
    forward_on(super::simd(), g, x, w, b, relu, sc, y)
}

/// [`forward`] on the kernels of `simd` (or the best family below it that this CPU has).
///
/// # Panics
/// As [`forward`].
#[allow(clippy::too_many_arguments)]
pub fn forward_on(
    simd: Simd,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    relu: bool,
    sc: &mut Scratch,
    y: &mut [f32],
) {
    assert!(
        applies(g, g.c),
        "depthwise: K = {} is not a multiple of C = {}",
        g.k,
        g.c
    );
    let (taps, ohw) = (g.kh * g.kw, g.out_h * g.out_w);
    assert!(
        x.len() >= g.c * g.h * g.w
            && w.len() >= g.k * taps
            && b.len() >= g.k
            && y.len() >= g.k * ohw,
        "depthwise forward: slices too short for {g:?}"
    );
    let l = Layout::new(g);
    sc.x.resize(l.plane(), 0.0);
    let a = Args {
        l,
        x: x.as_ptr(),
        w: w.as_ptr(),
        b: b.as_ptr(),
        dy: std::ptr::null(),
        xs: sc.x.as_mut_ptr(),
        dxs: std::ptr::null_mut(),
    };
    // SAFETY: the slices hold every value the geometry reaches (asserted), the scratch
    // plane has `l.plane()` floats, which `Layout` sizes for every load and store of the
    // kernels, and y is borrowed mutably, so it overlaps no input. The SIMD families are
    // available: `or_below` returns only families this CPU supports.
    unsafe {
        match simd.or_below() {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => forward_avx512(&a, relu, y.as_mut_ptr()),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => forward_avx2(&a, relu, y.as_mut_ptr()),
            _ => forward_samples::<Portable>(&a, relu, y.as_mut_ptr()),
        }
    }
}

/// A block of samples' weight and bias gradients and, if `dx` is given, dL/dx:
/// `x` `[n, C, H, W]`, `dy` `[n, K, H', W']` (dL/d(convolution output), any activation
/// already undone), `w` `[K, kh, kw]`; writes `dw` `[K, kh, kw]` (the block's sums), adds
/// the block's sums to `db` `[K]`, and overwrites `dx` `[n, C, H, W]`.
///
/// # Panics
/// If K is not a multiple of C or a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    n: usize,
    sc: &mut Scratch,
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    backward_on(super::simd(), g, x, dy, w, n, sc, dw, db, dx)
}

/// [`backward`] on the kernels of `simd` (or the best family below it that this CPU has).
///
/// # Panics
/// As [`backward`].
#[allow(clippy::too_many_arguments)]
pub fn backward_on(
    simd: Simd,
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    n: usize,
    sc: &mut Scratch,
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    assert!(
        applies(g, g.c),
        "depthwise: K = {} is not a multiple of C = {}",
        g.k,
        g.c
    );
    let (taps, ohw, in_len) = (g.kh * g.kw, g.out_h * g.out_w, g.c * g.h * g.w);
    assert!(
        x.len() >= n * in_len
            && dy.len() >= n * g.k * ohw
            && w.len() >= g.k * taps
            && dw.len() >= g.k * taps
            && db.len() >= g.k
            && dx.as_ref().is_none_or(|d| d.len() >= n * in_len),
        "depthwise backward: slices too short for {g:?} and {n} samples"
    );
    let l = Layout::new(g);
    sc.x.resize(n * l.plane(), 0.0);
    sc.dx.resize(l.plane(), 0.0);
    let a = Args {
        l,
        x: x.as_ptr(),
        w: w.as_ptr(),
        b: std::ptr::null(),
        dy: dy.as_ptr(),
        xs: sc.x.as_mut_ptr(),
        dxs: sc.dx.as_mut_ptr(),
    };
    let dx = dx.map_or(std::ptr::null_mut(), |d| d.as_mut_ptr());
    let (dw, db) = (dw.as_mut_ptr(), db.as_mut_ptr());
    // SAFETY: as in `forward_on`, with n planes of scratch for x and one for dx; dw, db
    // and dx are borrowed mutably, so they overlap no input.
    unsafe {
        match simd.or_below() {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => backward_avx512(&a, n, dw, db, dx),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => backward_avx2(&a, n, dw, db, dx),
            _ => backward_block::<Portable>(&a, n, dw, db, dx),
        }
    }
}

/// What the kernels read and where they keep their planes.
struct Args {
    l: Layout,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    dy: *const f32,
    /// Scratch for the padded input planes, and for the padded dx plane.
    xs: *mut f32,
    dxs: *mut f32,
}

/// # Safety
/// AVX-512F must be available; as [`forward_samples`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_avx512(a: &Args, relu: bool, y: *mut f32) {
    // SAFETY: the caller's.
    unsafe { forward_samples::<x86::Avx512>(a, relu, y) }
}

/// # Safety
/// AVX2 and FMA must be available; as [`forward_samples`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(a: &Args, relu: bool, y: *mut f32) {
    // SAFETY: the caller's.
    unsafe { forward_samples::<x86::Avx2>(a, relu, y) }
}

/// # Safety
/// AVX-512F must be available; as [`backward_block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn backward_avx512(a: &Args, n: usize, dw: *mut f32, db: *mut f32, dx: *mut f32) {
    // SAFETY: the caller's.
    unsafe { backward_block::<x86::Avx512>(a, n, dw, db, dx) }
}

/// # Safety
/// AVX2 and FMA must be available; as [`backward_block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2(a: &Args, n: usize, dw: *mut f32, db: *mut f32, dx: *mut f32) {
    // SAFETY: the caller's.
    unsafe { backward_block::<x86::Avx2>(a, n, dw, db, dx) }
}

/// One sample's forward pass, channel by channel: its plane padded into scratch, then each
/// of its m filters along every output row. A 3x3 window is a case of its own so that its
/// loops are unrolled; the arithmetic is the same.
///
/// # Safety
/// `a.x` holds a sample `[C, H, W]`, `a.w` `[K, kh, kw]`, `a.b` `[K]`, `a.xs` one
/// [`Layout::plane`], `y` `[K, H', W']`, and y overlaps nothing else; `V`'s instructions
/// are available.
#[inline(always)]
unsafe fn forward_samples<V: Lanes>(a: &Args, relu: bool, y: *mut f32) {
    let g = a.l.g;
    // SAFETY: the caller's.
    unsafe {
        if (g.kh, g.kw) == (3, 3) {
            forward_sample::<V>(a, 3, 3, relu, y)
        } else {
            forward_sample::<V>(a, g.kh, g.kw, relu, y)
        }
    }
}

/// [`forward_samples`] with the window `kh` x `kw` (the geometry's).
///
/// # Safety
/// As [`forward_samples`].
#[inline(always)]
unsafe fn forward_sample<V: Lanes>(a: &Args, kh: usize, kw: usize, relu: bool, y: *mut f32) {
    let (l, g) = (&a.l, &a.l.g);
    let (m, taps) = (g.k / g.c, kh * kw);
    let ow = g.out_w;
    // SAFETY: every pointer below stays inside the caller's slices and the scratch plane,
    // whose layout has room for each 16-wide load at every window position (`Layout`);
    // the stores write only the lanes of outputs (`n`).
    unsafe {
        for c in 0..g.c {
            fill::<V>(l, a.x.add(c * g.h * g.w), a.xs);
            for q in 0..m {
                let k = c * m + q;
                let (wk, bk) = (a.w.add(k * taps), *a.b.add(k));
                let yk = y.add(k * g.out_h * ow);
                for oy in 0..g.out_h {
                    for ox0 in (0..ow).step_by(16) {
                        let n = (ow - ox0).min(16);
                        let mut acc = V::splat(bk);
                        for i in 0..kh {
                            for j in 0..kw {
                                let xv = V::load(a.xs.add(l.tap(i, j, oy) + ox0), 16);
                                acc = V::splat(*wk.add(i * kw + j)).mul_add(xv, acc);
                            }
                        }
                        if relu {
                            acc = acc.relu();
                        }
                        acc.store(yk.add(oy * ow + ox0), n);
                    }
                }
            }
        }
    }
}

/// A block of `n` samples' backward pass, channel by channel: the channel's plane of each
/// sample padded into scratch, then for each of its filters the weight and bias gradients
/// over the block, then each sample's dx of the channel.
///
/// # Safety
/// `a.x` holds `[n, C, H, W]`, `a.dy` `[n, K, H', W']`, `a.w` `[K, kh, kw]`, `a.xs` n
/// planes and `a.dxs` one ([`Layout::plane`]); `dw` `[K, kh, kw]`, `db` `[K]` and, unless
/// null, `dx` `[n, C, H, W]`, none overlapping another; `V`'s instructions are available.
#[inline(always)]
unsafe fn backward_block<V: Lanes>(a: &Args, n: usize, dw: *mut f32, db: *mut f32, dx: *mut f32) {
    let g = a.l.g;
    // SAFETY: the caller's.
    unsafe {
        if (g.kh, g.kw) == (3, 3) {
            backward_channels::<V>(a, 3, 3, n, dw, db, dx)
        } else {
            backward_channels::<V>(a, g.kh, g.kw, n, dw, db, dx)
        }
    }
}

/// [`backward_block`] with the window `kh` x `kw` (the geometry's).
///
/// # Safety
/// As [`backward_block`].
#[inline(always)]
unsafe fn backward_channels<V: Lanes>(
    a: &Args,
    kh: usize,
    kw: usize,
    n: usize,
    dw: *mut f32,
    db: *mut f32,
    dx: *mut f32,
) {
    let (l, g) = (&a.l, &a.l.g);
    let (m, taps) = (g.k / g.c, kh * kw);
    let (oh, ow) = (g.out_h, g.out_w);
    let (ohw, hw, plane) = (oh * ow, g.h * g.w, l.plane());
    // SAFETY: as in `forward_sample`: every load and store stays inside the slices and
    // the scratch planes, whose layout has room for each 16-wide access; loads of dy are
    // limited to its outputs (`len`), so the lanes after them are 0 and add nothing.
    unsafe {
        for c in 0..g.c {
            for smp in 0..n {
                fill::<V>(l, a.x.add((smp * g.c + c) * hw), a.xs.add(smp * plane));
            }
            for q in 0..m {
                let k = c * m + q;
                // Bias: the 16 lane sums of dy over the block.
                let mut dbv = V::zero();
                for smp in 0..n {
                    let dyk = a.dy.add((smp * g.k + k) * ohw);
                    for oy in 0..oh {
                        for ox0 in (0..ow).step_by(16) {
                            let len = (ow - ox0).min(16);
                            dbv = dbv.add(V::load(dyk.add(oy * ow + ox0), len));
                        }
                    }
                }
                *db.add(k) += dbv.sum();
                // Weights: for each window position, the 16 lane sums of dy x over the block.
                for i in 0..kh {
                    for j in 0..kw {
                        let mut acc = V::zero();
                        for smp in 0..n {
                            let dyk = a.dy.add((smp * g.k + k) * ohw);
                            let xs = a.xs.add(smp * plane);
                            for oy in 0..oh {
                                let xr = xs.add(l.tap(i, j, oy));
                                for ox0 in (0..ow).step_by(16) {
                                    let len = (ow - ox0).min(16);
                                    let d = V::load(dyk.add(oy * ow + ox0), len);
                                    acc = d.mul_add(V::load(xr.add(ox0), len), acc);
                                }
                            }
                        }
                        *dw.add(k * taps + i * kw + j) = acc.sum();
                    }
                }
            }
            if dx.is_null() {
                continue;
            }
            for smp in 0..n {
                zero::<V>(a.dxs, plane);
                for q in 0..m {
                    let k = c * m + q;
                    let (wk, dyk) = (a.w.add(k * taps), a.dy.add((smp * g.k + k) * ohw));
                    for oy in 0..oh {
                        let dyr = dyk.add(oy * ow);
                        for i in 0..kh {
                            for j in 0..kw {
                                let wv = V::splat(*wk.add(i * kw + j));
                                let dr = a.dxs.add(l.tap(i, j, oy));
                                for ox0 in (0..ow).step_by(16) {
                                    let d = V::load(dyr.add(ox0), (ow - ox0).min(16));
                                    let p = dr.add(ox0);
                                    wv.mul_add(d, V::load(p, 16)).store(p, 16);
                                }
                            }
                        }
                    }
                }
                unpad::<V>(l, a.dxs, dx.add((smp * g.c + c) * hw));
            }
        }
    }
}

/// Zeroes `len` floats at `p`, 16 at a time.
///
/// # Safety
/// `p` must hold `len` floats.
#[inline(always)]
unsafe fn zero<V: Lanes>(p: *mut f32, len: usize) {
    for t in (0..len).step_by(16) {
        // SAFETY: lanes t .. t + min(16, len - t) are in bounds (caller).
        unsafe { V::zero().store(p.add(t), (len - t).min(16)) };
    }
}

/// Writes one channel's plane `x` `[H, W]` into `xs` ([`Layout::plane`] floats) padded with
/// zeros and split into phases: padded column `t S + p` of padded row `r` at
/// `xs[at(p, r) + t]`. At stride 1 each row is a few 16-wide copies; otherwise value by
/// value.
///
/// # Safety
/// `x` must hold H W floats and `xs` a plane.
#[inline(always)]
unsafe fn fill<V: Lanes>(l: &Layout, x: *const f32, xs: *mut f32) {
    let g = &l.g;
    // SAFETY: every index is inside the plane (rows < l.rows, columns < l.lp: `Layout`
    // has room for pad_left + W rounded up to 16 at stride 1) or inside x (iy < H,
    // columns < copy <= W).
    unsafe {
        zero::<V>(xs, l.plane());
        for r in 0..l.rows {
            let Some(iy) = r.checked_sub(g.pad_top).filter(|&iy| iy < g.h) else {
                continue;
            };
            let src = x.add(iy * g.w);
            if l.s == 1 {
                let dst = xs.add(l.at(0, r) + g.pad_left);
                for c0 in (0..l.copy).step_by(16) {
                    V::load(src.add(c0), (l.copy - c0).min(16)).store(dst.add(c0), 16);
                }
                continue;
            }
            for ix in 0..l.copy {
                let pc = ix + g.pad_left;
                *xs.add(l.at(pc % l.s, r) + pc / l.s) = *src.add(ix);
            }
        }
    }
}

/// Writes the padded, phase-split dx plane `dxs` out as the channel's `[H, W]` without
/// its padding; inputs no window reads get 0.
///
/// # Safety
/// `dxs` must hold a plane and `dx` H W floats.
#[inline(always)]
unsafe fn unpad<V: Lanes>(l: &Layout, dxs: *const f32, dx: *mut f32) {
    let g = &l.g;
    // SAFETY: as in `fill`, reading the plane and writing dx.
    unsafe {
        for iy in 0..g.h {
            let r = iy + g.pad_top;
            let dst = dx.add(iy * g.w);
            if r >= l.rows {
                zero::<V>(dst, g.w);
                continue;
            }
            if l.s == 1 {
                // Past the columns the windows read, the plane holds zeros (the kernels
                // add only 0 there), up to pad_left + W rounded up to 16.
                let src = dxs.add(l.at(0, r) + g.pad_left);
                for c0 in (0..g.w).step_by(16) {
                    V::load(src.add(c0), 16).store(dst.add(c0), (g.w - c0).min(16));
                }
                continue;
            }
            for ix in 0..g.w {
                let pc = ix + g.pad_left;
                *dst.add(ix) = if pc < l.cols {
                    *dxs.add(l.at(pc % l.s, r) + pc / l.s)
                } else {
                    0.0
                };
            }
        }
    }
}

/// 16 floats, the unit every loop above works in: one AVX-512 vector, two AVX2 vectors,
/// or a plain array. Each operation acts on each lane alone, so every family computes the
/// same lane values (the portable one without fused multiply-adds).
trait Lanes: Copy {
    /// Every lane `v`.
    unsafe fn splat(v: f32) -> Self;
    /// Every lane 0.
    unsafe fn zero() -> Self;
    /// Lanes 0..n (n <= 16) from `p`, the others 0; reads only those.
    unsafe fn load(p: *const f32, n: usize) -> Self;
    /// Writes lanes 0..n (n <= 16) to `p`, and only those.
    unsafe fn store(self, p: *mut f32, n: usize);
    /// `self * b + c`, fused on the SIMD families.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    /// `max(self, 0)`, 0 for NaN (as `f32::max` and the GEMM kernels' ReLU).
    unsafe fn relu(self) -> Self;
    unsafe fn to_array(self) -> [f32; 16];
    /// The 16 lanes added by a fixed tree: lane l plus lane l + 8, then + 4, + 2, + 1.
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        // SAFETY: the implementation's own instructions are available (caller).
        let mut v = unsafe { self.to_array() };
        for half in [8, 4, 2, 1] {
            for l in 0..half {
                v[l] += v[l + half];
            }
        }
        v[0]
    }
}

/// The portable family: 16 plain floats, multiplied and added without fusing.
#[derive(Clone, Copy)]
struct Portable([f32; 16]);

impl Lanes for Portable {
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Portable([v; 16])
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; 16])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, n: usize) -> Self {
        let mut v = [0.0; 16];
        for (l, v) in v.iter_mut().enumerate().take(n) {
            // SAFETY: p holds n floats (caller).
            *v = unsafe { *p.add(l) };
        }
        Portable(v)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, n: usize) {
        for (l, v) in self.0.iter().enumerate().take(n) {
            // SAFETY: p holds n floats (caller).
            unsafe { *p.add(l) = *v };
        }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] * b.0[l] + c.0[l]))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] + b.0[l]))
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        Portable(self.0.map(|v| v.max(0.0)))
    }
    #[inline(always)]
    unsafe fn to_array(self) -> [f32; 16] {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX-512 and AVX2+FMA families of [`super::Lanes`]. Their methods are inlined
    //! into the kernels compiled for those features (as `memchr` does), where the
    //! intrinsics are available.
    use std::arch::x86_64::*;

    use super::Lanes;

    /// One AVX-512 vector.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512(__m512);

    /// The mask of lanes 0..n.
    #[inline(always)]
    fn mask16(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    impl Lanes for Avx512 {
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: AVX-512F is available (the kernels this is inlined into).
            unsafe { Avx512(_mm512_set1_ps(v)) }
        }
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: as in `splat`.
            unsafe { Avx512(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, n: usize) -> Self {
            // SAFETY: lanes 0..n of p are in bounds (caller); masked-off lanes touch no
            // memory.
            unsafe {
                if n >= 16 {
                    Avx512(_mm512_loadu_ps(p))
                } else {
                    Avx512(_mm512_maskz_loadu_ps(mask16(n), p))
                }
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, n: usize) {
            // SAFETY: as in `load`.
            unsafe {
                if n >= 16 {
                    _mm512_storeu_ps(p, self.0)
                } else {
                    _mm512_mask_storeu_ps(p, mask16(n), self.0)
                }
            }
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: as in `splat`.
            unsafe { Avx512(_mm512_fmadd_ps(self.0, b.0, c.0)) }
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            // SAFETY: as in `splat`.
            unsafe { Avx512(_mm512_add_ps(self.0, b.0)) }
        }
        #[inline(always)]
        unsafe fn relu(self) -> Self {
            // max_ps returns its second operand when the first is NaN: 0.
            // SAFETY: as in `splat`.
            unsafe { Avx512(_mm512_max_ps(self.0, _mm512_setzero_ps())) }
        }
        #[inline(always)]
        unsafe fn to_array(self) -> [f32; 16] {
            let mut v = [0.0; 16];
            // SAFETY: v holds 16 floats.
            unsafe { _mm512_storeu_ps(v.as_mut_ptr(), self.0) };
            v
        }
    }

    /// Two AVX2 vectors: lanes 0-7 and 8-15.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256, __m256);

    /// 16 lanes set, then 16 clear: the mask of lanes 0..n of 8 starts at `16 - n`.
    static MASKS: [i32; 32] = {
        let mut m = [0; 32];
        let mut i = 0;
        while i < 16 {
            m[i] = -1;
            i += 1;
        }
        m
    };

    /// The masks of lanes 0..n (n < 16) of the two halves.
    #[inline(always)]
    unsafe fn masks(n: usize) -> (__m256i, __m256i) {
        // SAFETY: 16 - n + 8 + 8 <= 32 for n <= 16: both reads are inside MASKS.
        unsafe {
            let m = MASKS.as_ptr().add(16 - n);
            (
                _mm256_loadu_si256(m.cast()),
                _mm256_loadu_si256(m.add(8).cast()),
            )
        }
    }

    impl Lanes for Avx2 {
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: AVX2 and FMA are available (the kernels this is inlined into).
            let v = unsafe { _mm256_set1_ps(v) };
            Avx2(v, v)
        }
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: as in `splat`.
            unsafe { Avx2(_mm256_setzero_ps(), _mm256_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, n: usize) -> Self {
            // SAFETY: lanes 0..n of p are in bounds (caller); masked-off lanes touch no
            // memory (`wrapping_add`: the second half's address may lie past p's
            // allocation when its mask is empty).
            unsafe {
                if n >= 16 {
                    Avx2(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
                } else {
                    let (m0, m1) = masks(n);
                    Avx2(
                        _mm256_maskload_ps(p, m0),
                        _mm256_maskload_ps(p.wrapping_add(8), m1),
                    )
                }
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, n: usize) {
            // SAFETY: as in `load`.
            unsafe {
                if n >= 16 {
                    _mm256_storeu_ps(p, self.0);
                    _mm256_storeu_ps(p.add(8), self.1);
                } else {
                    let (m0, m1) = masks(n);
                    _mm256_maskstore_ps(p, m0, self.0);
                    _mm256_maskstore_ps(p.wrapping_add(8), m1, self.1);
                }
            }
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: as in `splat`.
            unsafe {
                Avx2(
                    _mm256_fmadd_ps(self.0, b.0, c.0),
                    _mm256_fmadd_ps(self.1, b.1, c.1),
                )
            }
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            // SAFETY: as in `splat`.
            unsafe { Avx2(_mm256_add_ps(self.0, b.0), _mm256_add_ps(self.1, b.1)) }
        }
        #[inline(always)]
        unsafe fn relu(self) -> Self {
            // max_ps returns its second operand when the first is NaN: 0.
            // SAFETY: as in `splat`.
            unsafe {
                let z = _mm256_setzero_ps();
                Avx2(_mm256_max_ps(self.0, z), _mm256_max_ps(self.1, z))
            }
        }
        #[inline(always)]
        unsafe fn to_array(self) -> [f32; 16] {
            let mut v = [0.0; 16];
            // SAFETY: v holds 16 floats.
            unsafe {
                _mm256_storeu_ps(v.as_mut_ptr(), self.0);
                _mm256_storeu_ps(v.as_mut_ptr().add(8), self.1);
            }
            v
        }
    }
}

/// The reference forward pass by the definition, in the plain loops of the module doc
/// (f64 sums): `x` `[n, C, H, W]`, `w` `[K, kh, kw]`, `b` `[K]`; returns `[n, K, H', W']`.
pub fn forward_naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let m = g.k / g.c;
    let mut y = vec![0.0; n * g.k * g.out_h * g.out_w];
    for s in 0..n {
        for k in 0..g.k {
            let c = k / m;
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let mut acc = f64::from(b[k]);
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            if let Some(v) = input_at(g, x, s, c, oy, ox, i, j) {
                                acc += f64::from(w[(k * g.kh + i) * g.kw + j]) * f64::from(v);
                            }
                        }
                    }
                    y[((s * g.k + k) * g.out_h + oy) * g.out_w + ox] = acc as f32;
                }
            }
        }
    }
    y
}

/// The reference backward pass by the definition (f64 sums): returns (dx, dw, db) for
/// `x` `[n, C, H, W]`, `w` `[K, kh, kw]` and `dy` `[n, K, H', W']`.
pub fn backward_naive(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = g.k / g.c;
    let mut dx = vec![0.0f64; n * g.c * g.h * g.w];
    let mut dw = vec![0.0f64; g.k * g.kh * g.kw];
    let mut db = vec![0.0f64; g.k];
    for s in 0..n {
        for k in 0..g.k {
            let c = k / m;
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let d = f64::from(dy[((s * g.k + k) * g.out_h + oy) * g.out_w + ox]);
                    db[k] += d;
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let Some(v) = input_at(g, x, s, c, oy, ox, i, j) else {
                                continue;
                            };
                            let iy = oy * g.stride + i - g.pad_top;
                            let ix = ox * g.stride + j - g.pad_left;
                            let wi = (k * g.kh + i) * g.kw + j;
                            dw[wi] += d * f64::from(v);
                            dx[((s * g.c + c) * g.h + iy) * g.w + ix] += d * f64::from(w[wi]);
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dx), f(dw), f(db))
}

/// The input under window position (i, j) of output (oy, ox) of channel c of sample s, or
/// None in the padding.
#[allow(clippy::too_many_arguments)]
fn input_at(
    g: &ConvGeom,
    x: &[f32],
    s: usize,
    c: usize,
    oy: usize,
    ox: usize,
    i: usize,
    j: usize,
) -> Option<f32> {
    let iy = (oy * g.stride + i)
        .checked_sub(g.pad_top)
        .filter(|&v| v < g.h)?;
    let ix = (ox * g.stride + j)
        .checked_sub(g.pad_left)
        .filter(|&v| v < g.w)?;
    Some(x[((s * g.c + c) * g.h + iy) * g.w + ix])
}
