//! The geometry of sliding windows (convolution and pooling): output sizes and padding.
//!
//! Dimension letters: C input channels, H, W input height and width, K filters, kh, kw the
//! window, S stride, P padding, H', W' output size. Along one axis (report 1, eq. 2-3):
//!
//! ```text
//! valid:      H' = floor((H - kh) / S) + 1
//! explicit P: H' = floor((H - kh + 2P) / S) + 1
//! same:       H' = ceil(H / S), total padding max((H' - 1) S + kh - H, 0), the extra row
//!             at the bottom (right)
//! ```
//!
//! The kernels take these resolved geometries; the layers build them from their configs.

use crate::error::{Error, Result};

/// How a convolution pads its input with zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: H' = floor((H - kh) / S) + 1.
    Valid,
    /// Output H' = ceil(H / S), as TensorFlow and Keras define it. The total padding
    /// `max((H' - 1) S + kh - H, 0)` is split with the smaller half on top (left) and the
    /// larger at the bottom (right). With stride 1 and an odd kernel this is P = (kh - 1) / 2
    /// on every side, and the output has the input's size.
    Same,
    /// P zeros on every side: H' = floor((H - kh + 2P) / S) + 1 (report 1, eq. 2-3).
    Explicit(usize),
}

/// The resolved geometry of a convolution on a given input: everything the kernels need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels, height, width.
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Filters (output channels).
    pub k: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Zeros added above and to the left; the bottom and right padding is implied by the
    /// output size.
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// The resolved geometry of a pooling layer on a given input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub ph: usize,
    pub pw: usize,
    pub stride: usize,
    /// H' = floor((H - ph) / S) + 1, W' likewise (no padding; PyTorch's floor mode).
    pub out_h: usize,
    pub out_w: usize,
}

/// Output size and leading padding along one axis: `(H', pad_before)` for a window of `k`
/// with stride `s` over `size` values.
pub fn conv_axis(
    op: &'static str,
    size: usize,
    k: usize,
    s: usize,
    padding: Padding,
) -> Result<(usize, usize)> {
    if s == 0 {
        return Err(Error::Invalid(format!("{op}: stride must be at least 1")));
    }
    let (out, pad_before) = match padding {
        Padding::Valid => {
            if k > size {
                return Err(kernel_too_large(op, k, size));
            }
            ((size - k) / s + 1, 0)
        }
        Padding::Explicit(p) => {
            if k > size + 2 * p {
                return Err(kernel_too_large(op, k, size + 2 * p));
            }
            ((size + 2 * p - k) / s + 1, p)
        }
        Padding::Same => {
            let out = size.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(size);
            (out, total / 2)
        }
    };
    Ok((out, pad_before))
}

fn kernel_too_large(op: &'static str, k: usize, size: usize) -> Error {
    Error::Invalid(format!(
        "{op}: kernel {k} is larger than its (padded) input {size}"
    ))
}

impl ConvGeom {
    /// Resolves a convolution of `filters` kernels of size `kernel` = (kh, kw), with
    /// `stride` and `padding`, on an input of shape (C, H, W).
    pub fn new(
        input: [usize; 3],
        filters: usize,
        kernel: (usize, usize),
        stride: usize,
        padding: Padding,
    ) -> Result<ConvGeom> {
        let [c, h, w] = input;
        if filters == 0 || kernel.0 == 0 || kernel.1 == 0 {
            return Err(Error::Invalid(
                "Conv2D: filters and kernel must be at least 1".into(),
            ));
        }
        let (out_h, pad_top) = conv_axis("Conv2D", h, kernel.0, stride, padding)?;
        let (out_w, pad_left) = conv_axis("Conv2D", w, kernel.1, stride, padding)?;
        Ok(ConvGeom {
            c,
            h,
            w,
            k: filters,
            kh: kernel.0,
            kw: kernel.1,
            stride,
            pad_top,
            pad_left,
            out_h,
            out_w,
        })
    }

    /// C * kh * kw: the length of one filter, and the rows of the im2col matrix.
    pub fn patch_len(&self) -> usize {
        self.c * self.kh * self.kw
    }
}

impl PoolGeom {
    /// Resolves a pooling window `pool` = (ph, pw) with `stride` on an input of shape
    /// (C, H, W); `op` names the layer in errors.
    pub fn new(
        op: &'static str,
        input: [usize; 3],
        pool: (usize, usize),
        stride: usize,
    ) -> Result<PoolGeom> {
        let [c, h, w] = input;
        if pool.0 == 0 || pool.1 == 0 {
            return Err(Error::Invalid(format!("{op}: pool must be at least 1x1")));
        }
        let (out_h, _) = conv_axis(op, h, pool.0, stride, Padding::Valid)?;
        let (out_w, _) = conv_axis(op, w, pool.1, stride, Padding::Valid)?;
        Ok(PoolGeom {
            c,
            h,
            w,
            ph: pool.0,
            pw: pool.1,
            stride,
            out_h,
            out_w,
        })
    }
}
