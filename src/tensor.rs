//! A dense `f32` tensor with an explicit shape, stored row-major.
//!
//! Images are batch-first **NCHW** (batch, channels, height, width), as in PyTorch, so that the
//! flatten order of one sample is (C, H, W) and weight layouts match PyTorch's:
//! Conv2D `[K, C, kh, kw]`, Dense `[out, in]`.

use crate::error::{Error, Result};

/// An owned, contiguous `f32` tensor.
///
/// The element at index `(i0, i1, ..., ik)` lives at `sum_j i_j * stride_j` where
/// `stride_k = 1` and `stride_j = stride_{j+1} * shape_{j+1}` (row-major).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// Wraps `data` with `shape`; fails if the element counts differ.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape {
                op: "Tensor::from_vec",
                expected: format!("{n} elements for shape {shape:?}"),
                got: format!("{} elements", data.len()),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements in row-major order, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor and returns its elements.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Size of the first (batch) dimension; 0 for a scalar.
    pub fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Changes the shape in place, keeping the data; fails if the element count differs.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != self.data.len() {
            return Err(Error::shape("Tensor::reshape", shape, &self.shape));
        }
        self.shape = shape.to_vec();
        Ok(())
    }

    /// Makes this tensor `shape`, reusing its allocation when it is large enough.
    /// The contents are unspecified afterwards (callers overwrite them).
    pub fn resize(&mut self, shape: &[usize]) {
        let n: usize = shape.iter().product();
        if self.shape != shape {
            self.shape.clear();
            self.shape.extend_from_slice(shape);
        }
        self.data.resize(n, 0.0);
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) {
        self.data.iter_mut().for_each(|x| *x = value);
    }
}
