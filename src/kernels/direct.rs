//! Direct kernels for a 3x3 convolution of one input channel (the first layer of every
//! example network), with no im2col matrix in between.
//!
//! **Forward**, stride 1: each vector of 16 outputs of every filter is 9 fused
//! multiply-adds on vectors of the input. With "same" padding across, the input is read in
//! place and the outputs go 16 at a time over the flattened plane; otherwise (outputs up to
//! 32 wide) from a padded copy, one output row at a time.
//!
//! ```text
//! y[k][oy][ox] = act(b[k] + sum_{i, j} w[k][3 i + j] * xp[oy + i][ox + j])
//! ```
//!
//! (`xp` the zero-padded plane). The products are added in the order of im2col's rows,
//! starting from the bias, which is the chain of fused multiply-adds the broadcast GEMM
//! kernel computes for the same output: the two paths give the same bits, and the GEMM path
//! is the reference the tests hold this one to.
//!
//! **Weight gradient** ([`weight_grad9`]), any convolution with nine weights per filter:
//! ReLU undone, the bias gradient and the weight gradient in one pass over dy and y, by
//! the operations of the three passes it replaces, so again the same bits.
//!
//! AVX-512, and for the forward pass read in place also AVX2+FMA (8 outputs at a time, the
//! same bits); elsewhere the GEMM path runs.

use super::geom::ConvGeom;
use super::Simd;

/// Row stride of the padded plane: room for 32 outputs and the 2 extra columns of a 3x3
/// window, rounded up to whole 16-lane vectors.
pub const CONV3_ROW: usize = 48;

/// Whether [`conv3x3`] computes the convolution `g` on this CPU: 3x3, stride 1, one input
/// channel, and on AVX-512 outputs as wide as the input ("same" padding across) or 1 to 32
/// across, on AVX2+FMA as wide as the input.
pub fn applies(g: &ConvGeom) -> bool {
    applies_on(super::simd(), g)
}

/// [`applies`] for the kernels of `simd` (or the best family below it that this CPU has).
pub fn applies_on(simd: Simd, g: &ConvGeom) -> bool {
    if (g.c, g.kh, g.kw, g.stride) != (1, 3, 3, 1) || g.out_h == 0 {
        return false;
    }
    match simd.or_below() {
        Simd::Avx512 => (1..=32).contains(&g.out_w) || reads_in_place(g),
        Simd::Avx2 => reads_in_place(g),
        Simd::Portable => false,
    }
}

/// Floats of the padded plane of the row kernel: (H' + 2) rows of [`CONV3_ROW`].
fn padded_len(g: &ConvGeom) -> usize {
    (g.out_h + 2) * CONV3_ROW
}

/// Writes `x` `[H, W]` zero-padded by (pad_top, pad_left) into `xp`, rows [`CONV3_ROW`]
/// apart: the rows and columns a 3x3 window over H' x W' outputs reads.
fn pad_plane(g: &ConvGeom, x: &[f32], xp: &mut [f32]) {
    xp.fill(0.0);
    let rows = g.out_h + 2;
    let cols = g.w.min(CONV3_ROW.saturating_sub(g.pad_left));
    for (y, row) in x.chunks(g.w).take(g.h).enumerate() {
        let py = y + g.pad_top;
        if py >= rows {
            break;
        }
        xp[py * CONV3_ROW + g.pad_left..][..cols].copy_from_slice(&row[..cols]);
    }
}

/// One sample's convolution `y = act(conv(x) + b)`, ReLU if `relu`, for `g` where
/// [`applies`] is true: `x` `[1, H, W]`, `w` `[K, 1, 3, 3]`, `y` `[K, H', W']`. With
/// "same" padding across, the plane is read in place (see [`Scratch`]), 16 outputs of the
/// flattened plane at a time; otherwise from a copy padded to rows of [`CONV3_ROW`], one
/// output row (up to 32 wide) at a time. Either way each output is the same chain of fused
/// multiply-adds.
///
/// # Panics
/// If [`applies`] is false for `g` or a slice is too short.
pub fn conv3x3(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    relu: bool,
    sc: &mut Scratch,
    y: &mut [f32],
) {
    conv3x3_on(super::simd(), g, x, w, bias, relu, sc, y)
}

/// [`conv3x3`] on the kernels of `simd` (or the best family below it that this CPU has):
/// every family gives the same bits.
///
/// # Panics
/// If [`applies_on`] is false for `simd` and `g`, or a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_on(
    simd: Simd,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    relu: bool,
    sc: &mut Scratch,
    y: &mut [f32],
) {
    assert!(
        applies_on(simd, g),
        "conv3x3: no direct kernel for {g:?} on {simd:?}"
    );
    let (k, oh, ow) = (g.k, g.out_h, g.out_w);
    assert!(x.len() >= g.h * g.w && w.len() >= k * 9 && bias.len() >= k && y.len() >= k * oh * ow);
    if reads_in_place(g) {
        let inputs = sc.in_place(g, x);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the family's instructions are available (`applies_on` lowers `simd` to a
        // family this CPU has, and none for the portable one); `in_place` made the buffer
        // and masks that `inputs` points into for these outputs; w holds K x 9, bias K and
        // y K x H'W' floats (asserted), and y is borrowed mutably, so it overlaps no input.
        unsafe {
            let (w, b, y) = (w.as_ptr(), bias.as_ptr(), y.as_mut_ptr());
            if simd.or_below() == Simd::Avx512 {
                super::avx512::conv9_flat(inputs, w, b, k, oh * ow, relu, y);
            } else {
                super::avx2::conv9_flat(inputs, w, b, k, oh * ow, relu, y);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("applies() is false off x86_64, {:?}", inputs.offsets);
        #[cfg(target_arch = "x86_64")]
        return;
    }
    sc.x.resize(padded_len(g), 0.0);
    let xp = &mut sc.x[..padded_len(g)];
    pad_plane(g, x, xp);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is available (`applies_on` accepts a plane not read in place only
    // there); xp holds (oh + 2) rows of CONV3_ROW, w K x 9,
    // bias K and y K x oh x ow floats (asserted), y is borrowed mutably so overlaps no
    // input, and 1 <= ow <= 32 (`applies`).
    unsafe {
        super::avx512::conv3x3_plane(
            xp.as_ptr(),
            w.as_ptr(),
            bias.as_ptr(),
            k,
            oh,
            ow,
            relu,
            y.as_mut_ptr(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("applies() is false off x86_64, {relu} {}", xp.len());
}

/// Whether [`weight_grad9`] computes the gradients of `g` on this CPU: nine weights per
/// filter (C kh kw = 9, as a 3x3 one-channel convolution has, at any stride and padding)
/// and AVX-512 chosen.
pub fn weight_grad9_applies(g: &ConvGeom) -> bool {
    g.patch_len() == 9 && super::simd() == Simd::Avx512
}

/// Whether the kernels read `g`'s input in place, with no padded copy or im2col matrix: a
/// 3x3 one-channel window at stride 1 with outputs as wide as the input ("same" padding
/// across). Then output p = oy W + ox meets input `p + i W + j` of the plane stored with
/// `pad_top W + pad_left` zeros before it: one offset per window position, and a lane mask
/// for the columns that fall off the image's sides. The outputs then go 16 at a time over
/// the whole flattened plane, so a 28-wide image takes 49 vectors, not 28 rows of 16 + 12.
fn reads_in_place(g: &ConvGeom) -> bool {
    (g.c, g.kh, g.kw, g.stride) == (1, 3, 3, 1) && g.out_w == g.w
}

/// Where the nine input values under each output's window are, for the AVX-512 and AVX2
/// kernels:
/// value r (`r = 3 i + j` for a 3x3 window) of output p is `src[offsets[r] + p]`, taken as
/// 0 in the lanes that `col_masks` clears.
#[derive(Debug, Clone, Copy)]
pub struct Inputs9 {
    pub src: *const f32,
    pub offsets: [usize; 9],
    /// None: every lane of the outputs is read (`src` is an im2col matrix, offsets r H'W').
    /// Some: for each vector c of 16 outputs, the lanes whose window column j = r mod 3
    /// falls inside the image (`src` is the plane read in place: stride 1, "same" padding across).
    pub col_masks: Option<*const [u16; 3]>,
}

/// The direct kernels' buffers, kept by the caller from sample to sample.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// The plane read in place, the padded plane of the row kernel, or the im2col matrix
    /// `[9, H'W']`.
    x: Vec<f32>,
    /// For each vector of 16 outputs, the lanes inside the image for window columns 0, 1, 2.
    col_masks: Vec<[u16; 3]>,
    /// (W, pad_left, H'W') of the masks held.
    masks_for: (usize, usize, usize),
}

impl Scratch {
    /// The column masks of [`reads_in_place`] for `g`, made when `g`'s differ from the
    /// ones held.
    fn col_masks(&mut self, g: &ConvGeom) -> &[[u16; 3]] {
        let ohw = g.out_h * g.out_w;
        let key = (g.w, g.pad_left, ohw);
        if self.masks_for != key || self.col_masks.len() != ohw.div_ceil(16) {
            self.col_masks = (0..ohw.div_ceil(16))
                .map(|c| {
                    let mut m = [0u16; 3];
                    for l in (0..16).take_while(|l| 16 * c + l < ohw) {
                        let ox = (16 * c + l) % g.w;
                        for (j, mj) in m.iter_mut().enumerate() {
                            if (g.pad_left..g.w + g.pad_left).contains(&(ox + j)) {
                                *mj |= 1 << l;
                            }
                        }
                    }
                    m
                })
                .collect();
            self.masks_for = key;
        }
        &self.col_masks
    }

    /// The sample `x` stored for reading in place ([`reads_in_place`] must hold for `g`),
    /// and where its nine inputs under each output are: output p's window row i, column j
    /// is at `p + i W + j` from the buffer's start. The buffer holds at least (H' + 2) W + 2
    /// floats, so every such place of every output is in it, and the masks cover every
    /// vector of outputs.
    fn in_place(&mut self, g: &ConvGeom, x: &[f32]) -> Inputs9 {
        let lead = g.pad_top * g.w + g.pad_left;
        let len = (g.out_h + 2) * g.w + 2;
        self.x.clear();
        self.x.resize(len.max(lead + g.h * g.w), 0.0);
        self.x[lead..lead + g.h * g.w].copy_from_slice(&x[..g.h * g.w]);
        let col_masks = Some(self.col_masks(g).as_ptr());
        Inputs9 {
            src: self.x.as_ptr(),
            offsets: std::array::from_fn(|r| (r / 3) * g.w + r % 3),
            col_masks,
        }
    }
}

/// One sample's weight and bias gradients for `g` where [`weight_grad9_applies`] is true,
/// ReLU undone on the way from its output `y` if `relu_of` gives it:
///
/// ```text
/// d[k][p]   = 0 if relu and y[k][p] <= 0, else dy[k][p]
/// db[k]    += sum_p d[k][p]
/// dw[k][r]  = (beta_one ? dw[k][r] : 0) + sum_p d[k][p] * cols[r][p]
/// ```
///
/// with `x` the sample's input `[C, H, W]`, cols its im2col matrix `[9, H'W']`, `dy` and
/// `y` `[K, H'W']`, `dw` `[K, 9]`, `db` `[K]`. One pass over dy and y instead of three (the
/// activation's backward, the bias sums, the product), by the same operations in the same
/// order: the same bits as that path, which stays the reference (and runs without
/// AVX-512). For a one-channel 3x3 window at stride 1 with "same" padding across, the
/// input is read in place and no im2col matrix is written. dy is
/// left as it is.
///
/// # Panics
/// If [`weight_grad9_applies`] is false for `g` or a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad9(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    relu_of: Option<&[f32]>,
    beta_one: bool,
    sc: &mut Scratch,
    dw: &mut [f32],
    db: &mut [f32],
) {
    assert!(
        weight_grad9_applies(g),
        "weight_grad9: not nine weights per filter on AVX-512: {g:?}"
    );
    let (k, ohw) = (g.k, g.out_h * g.out_w);
    // Without ReLU the kernel reads no y.
    let (relu, y) = (relu_of.is_some(), relu_of.unwrap_or(dy));
    assert!(
        x.len() >= g.c * g.h * g.w
            && dy.len() >= k * ohw
            && y.len() >= k * ohw
            && dw.len() >= k * 9
            && db.len() >= k,
        "weight_grad9: slices too short for {g:?}"
    );
    let inputs = if reads_in_place(g) {
        sc.in_place(g, x)
    } else {
        sc.x.resize(9 * ohw, 0.0);
        super::im2col::im2col(&x[..g.c * g.h * g.w], g, &mut sc.x);
        Inputs9 {
            src: sc.x.as_ptr(),
            offsets: std::array::from_fn(|r| r * ohw),
            col_masks: None,
        }
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is available (`weight_grad9_applies`). `inputs` points into the
    // buffer and masks made just above for these outputs (in place, see `in_place`; or the
    // im2col matrix of 9 x H'W', offsets r H'W'). dy and y hold K x H'W', dw K x 9 and db K
    // (asserted); dw and db are borrowed mutably, so they overlap no input.
    unsafe {
        super::avx512::weight_grad9(
            inputs,
            dy.as_ptr(),
            y.as_ptr(),
            relu,
            k,
            ohw,
            beta_one,
            dw.as_mut_ptr(),
            db.as_mut_ptr(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "weight_grad9_applies() is false off x86_64, {relu} {beta_one} {:?}",
        inputs.offsets
    );
}
