//! NumPy arrays in: images and labels, checked against the network, read where they lie.
//!
//! Images are `[N, C, H, W]` (or `[N, H, W]` for one channel) of `uint8` pixels 0-255, as the
//! command line's datasets hold them, or of `float32` values in [0, 1] (pixels / 255). A
//! C-contiguous array of either type is read in place, without a copy; any other layout is
//! made contiguous, a `float64` (or `float16`) array becomes `float32` and an integer array
//! with values 0-255 becomes `uint8` (each a copy). Anything else is refused with a
//! `ValueError` saying what was expected.

use numpy::prelude::*;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use cnn::data::Normalization;
use cnn::tensor::Tensor;

use crate::errors::value_error;

/// A batch of images in one of the two pixel types.
pub enum Pixels<'py> {
    U8(PyReadonlyArrayDyn<'py, u8>),
    F32(PyReadonlyArrayDyn<'py, f32>),
}

/// Images checked against a network's input.
pub struct Images<'py> {
    pub pixels: Pixels<'py>,
    /// Number of images.
    pub n: usize,
    /// (C, H, W) of each.
    pub shape: [usize; 3],
}

/// `numpy.asarray(x)` (lists and other array-likes become arrays).
fn as_array<'py>(x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = x.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let np = x.py().import("numpy")?;
    let a = np.call_method1("asarray", (x,))?;
    Ok(a.cast_into::<PyUntypedArray>()?)
}

/// `a` as a C-contiguous array of `dtype` (the same object when it is one already).
fn contiguous<'py>(a: &Bound<'py, PyUntypedArray>, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
    let same = match dtype {
        "uint8" => a.dtype().is_equiv_to(&numpy::dtype::<u8>(a.py())),
        "float32" => a.dtype().is_equiv_to(&numpy::dtype::<f32>(a.py())),
        "int64" => a.dtype().is_equiv_to(&numpy::dtype::<i64>(a.py())),
        _ => false,
    };
    if same && a.is_c_contiguous() {
        return Ok(a.clone().into_any());
    }
    let np = a.py().import("numpy")?;
    let kwargs = PyDict::new(a.py());
    kwargs.set_item("dtype", dtype)?;
    np.call_method("ascontiguousarray", (a,), Some(&kwargs))
}

/// A `(a, b, c)` shape as NumPy prints it.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl<'py> Images<'py> {
    /// `x` (called `name` in messages) as images of `input` = (C, H, W).
    pub fn load(x: &Bound<'py, PyAny>, input: [usize; 3], name: &str) -> PyResult<Images<'py>> {
        let a = as_array(x)?;
        let [c, h, w] = input;
        let shape = a.shape().to_vec();
        let want = if c == 1 {
            format!("[N, {c}, {h}, {w}] (or [N, {h}, {w}])")
        } else {
            format!("[N, {c}, {h}, {w}]")
        };
        let n = match shape.as_slice() {
            [n, hh, ww] if c == 1 && [*hh, *ww] == [h, w] => *n,
            [n, cc, hh, ww] if [*cc, *hh, *ww] == input => *n,
            [_, hh, ww, cc] if [*hh, *ww, *cc] == [h, w, c] => {
                return Err(value_error(format!(
                    "{name} has shape {} with the channels last; the network takes {want}: \
                     pass {name}.transpose(0, 3, 1, 2)",
                    shape_text(&shape)
                )))
            }
            _ => {
                return Err(value_error(format!(
                    "{name} has shape {}; the network takes {want}",
                    shape_text(&shape)
                )))
            }
        };
        if n == 0 {
            return Err(value_error(format!(
                "{name} holds no image (shape {})",
                shape_text(&shape)
            )));
        }
        let dtype = a.dtype();
        let (kind, size) = (dtype.kind(), dtype.itemsize());
        let dtype_name = || dtype.str().map(|s| s.to_string());
        let pixels = match (kind, size) {
            (b'u', 1) => Pixels::U8(
                contiguous(&a, "uint8")?
                    .cast_into::<PyArrayDyn<u8>>()?
                    .readonly(),
            ),
            (b'f', _) => Pixels::F32(
                contiguous(&a, "float32")?
                    .cast_into::<PyArrayDyn<f32>>()?
                    .readonly(),
            ),
            (b'i' | b'u', _) => {
                let lo: i128 = a.call_method0("min")?.extract()?;
                let hi: i128 = a.call_method0("max")?.extract()?;
                if lo < 0 || hi > 255 {
                    return Err(value_error(format!(
                        "{name} holds integers from {lo} to {hi}; pixels are 0 to 255 (uint8), \
                         or float32 values in [0, 1]"
                    )));
                }
                Pixels::U8(
                    contiguous(&a, "uint8")?
                        .cast_into::<PyArrayDyn<u8>>()?
                        .readonly(),
                )
            }
            _ => {
                return Err(value_error(format!(
                    "{name} has dtype {}; images are uint8 pixels (0-255) or float32 values in \
                     [0, 1]",
                    dtype_name()?
                )))
            }
        };
        if let Pixels::F32(f) = &pixels {
            let v = f.as_slice()?;
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(value_error(format!(
                    "{name} holds {x} at flat index {i}; images must be finite"
                )));
            }
            let (lo, hi) = v
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            if lo < 0.0 || hi > 1.0 {
                return Err(value_error(format!(
                    "{name} is {} with values from {lo} to {hi}; float images must be in [0, 1] \
                     (pixels / 255), or pass uint8 pixels 0-255",
                    dtype_name()?
                )));
            }
        }
        Ok(Images {
            pixels,
            n,
            shape: input,
        })
    }

    /// The network's input for images `start..end`: each pixel `p` of channel `c` as
    /// `(p / 255 - mean[c]) / std[c]` for bytes ([`Normalization::apply`], the arithmetic of
    /// training and `cnn predict`), `(p - mean[c]) / std[c]` for floats.
    pub fn tensor(&self, norm: &Normalization, start: usize, end: usize) -> PyResult<Tensor> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let per = c * plane;
        let mut t = Tensor::zeros(&[end - start, c, h, w]);
        let out = t.data_mut();
        match &self.pixels {
            Pixels::U8(a) => {
                let src = &a.as_slice()?[start * per..end * per];
                for (d, s) in out.chunks_mut(per).zip(src.chunks(per)) {
                    norm.apply(s, d);
                }
            }
            Pixels::F32(a) => {
                let src = &a.as_slice()?[start * per..end * per];
                for (k, (d, s)) in out.chunks_mut(plane).zip(src.chunks(plane)).enumerate() {
                    let (m, sd) = (norm.mean[k % c], norm.std[k % c]);
                    for (d, &x) in d.iter_mut().zip(s) {
                        *d = (x - m) / sd;
                    }
                }
            }
        }
        Ok(t)
    }

    /// The images as bytes, as a dataset holds them: `uint8` as they are, `float32` only
    /// when every value is exactly `b / 255` for a byte `b` (what `pixels / 255` gives);
    /// otherwise `None`.
    pub fn exact_bytes(&self) -> PyResult<Result<Vec<u8>, (usize, f32)>> {
        match &self.pixels {
            Pixels::U8(a) => Ok(Ok(a.as_slice()?.to_vec())),
            Pixels::F32(a) => {
                let v = a.as_slice()?;
                let mut out = Vec::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    let b = (f64::from(x) * 255.0).round();
                    // In [0, 255]: `load` checked the range.
                    let b = b as u8;
                    if f32::from(b) / 255.0 != x {
                        return Ok(Err((i, x)));
                    }
                    out.push(b);
                }
                Ok(Ok(out))
            }
        }
    }

    /// [`Images::exact_bytes`], or a `ValueError` saying why float images cannot be trained
    /// on as they are.
    pub fn bytes_for_training(&self, name: &str) -> PyResult<Vec<u8>> {
        match self.exact_bytes()? {
            Ok(bytes) => Ok(bytes),
            Err((i, x)) => Err(value_error(format!(
                "{name} holds {x} at flat index {i}, which is not a pixel / 255: training reads \
                 8-bit pixels, as the command line's datasets hold them, so float32 images \
                 must be uint8 pixels divided by 255; pass (x * 255).round().astype(numpy.uint8) \
                 to train on the nearest pixels"
            ))),
        }
    }
}

/// `y` (called `name`) as `n` class labels below `classes`.
pub fn labels(y: &Bound<'_, PyAny>, n: usize, classes: usize, name: &str) -> PyResult<Vec<u16>> {
    let a = as_array(y)?;
    let shape = a.shape().to_vec();
    if shape.len() != 1 {
        let hint = match shape.as_slice() {
            [_, k] if *k == classes => format!(" (one-hot? pass {name}.argmax(1))"),
            _ => String::new(),
        };
        return Err(value_error(format!(
            "{name} has shape {}; labels are one class index per image, shape ({n},){hint}",
            shape_text(&shape)
        )));
    }
    if shape[0] != n {
        return Err(value_error(format!(
            "{name} has {} labels for {n} images",
            shape[0]
        )));
    }
    let dtype = a.dtype();
    let kind = dtype.kind();
    if !matches!(kind, b'i' | b'u') {
        return Err(value_error(format!(
            "{name} has dtype {}; labels are integer class indices (0 to {}): pass \
             {name}.astype(int)",
            dtype.str()?,
            classes.saturating_sub(1)
        )));
    }
    let a = contiguous(&a, "int64")?.cast_into::<PyArrayDyn<i64>>()?;
    let a = a.readonly();
    let mut out = Vec::with_capacity(n);
    for (i, &l) in a.as_slice()?.iter().enumerate() {
        if l < 0 || l as u64 >= classes as u64 {
            return Err(value_error(format!(
                "{name}[{i}] is {l}; the model has {classes} classes, labels 0 to {}",
                classes - 1
            )));
        }
        out.push(l as u16);
    }
    Ok(out)
}
