//! The operands of the matrix products: a matrix view is a slice plus its shape and strides,
//! element (i, j) at `data[i*row_stride + j*col_stride]`.
//!
//! Two layers, so that bounds are checked once:
//! - [`MatRef`] and [`MatMut`] borrow slices. Their constructors check that the slice holds
//!   every element of the shape, and no method breaks that, so the safe products in
//!   [`super::gemm`] only check that the shapes agree.
//! - [`MatPtr`] and [`MatPtrMut`] are the same views as bare pointers, with [`Dims`] for the
//!   product's size: what the unsafe kernels take, trusting their caller for bounds.
//!
//! A transposed operand is the same slice with its strides swapped ([`MatRef::t`]): a
//! matrix stored K x M, used as its transpose, is `MatRef::new(data, k, m).t()`.

/// The size of a product `C[M x N] = op(A)[M x K] * op(B)[K x N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Rows of C and of op(A).
    pub m: usize,
    /// Columns of C and of op(B).
    pub n: usize,
    /// Columns of op(A), rows of op(B): the length of each sum.
    pub k: usize,
}

/// A read-only matrix in a slice: `rows` x `cols`, element (i, j) at
/// `data[i*row_stride + j*col_stride]`.
///
/// Invariant (set by [`MatRef::new`], kept by every method): that index is inside `data`
/// for every i < rows, j < cols.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// The `rows` x `cols` matrix stored row-major at the start of `data`.
    ///
    /// # Panics
    /// If `data` has fewer than `rows * cols` elements.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        let len = rows.checked_mul(cols).expect("matrix size overflows usize");
        assert!(
            data.len() >= len,
            "a {rows} x {cols} matrix needs {len} elements, the slice has {}",
            data.len()
        );
        MatRef {
            data: &data[..len],
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose: the same elements, rows and columns swapped (no copy).
    pub fn t(self) -> MatRef<'a> {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element (i, j).
    ///
    /// # Panics
    /// If i >= rows or j >= cols.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        assert!(i < self.rows && j < self.cols, "({i}, {j}) outside {self}");
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// The `rows` x `cols` block whose top-left element is (r0, c0), same strides.
    ///
    /// # Panics
    /// If the block does not fit inside this matrix.
    pub fn block(self, r0: usize, c0: usize, rows: usize, cols: usize) -> MatRef<'a> {
        assert!(
            r0 + rows <= self.rows && c0 + cols <= self.cols,
            "block of {rows} x {cols} at ({r0}, {c0}) outside {self}"
        );
        if rows == 0 || cols == 0 {
            return MatRef {
                data: &[],
                rows,
                cols,
                ..self
            };
        }
        // Block element (i, j) is (r0 + i, c0 + j) here, at `start + i*rs + j*cs`: inside
        // `data` by this view's invariant, so inside the subslice from `start`.
        let start = r0 * self.row_stride + c0 * self.col_stride;
        MatRef {
            data: &self.data[start..],
            rows,
            cols,
            ..self
        }
    }

    /// Row i as a slice.
    ///
    /// # Panics
    /// If i >= rows or the rows are not contiguous (column stride other than 1).
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert!(i < self.rows && self.rows_contiguous(), "row {i} of {self}");
        let start = i * self.row_stride;
        &self.data[start..start + self.cols]
    }

    /// Whether each row's elements are adjacent (column stride 1).
    pub fn rows_contiguous(&self) -> bool {
        self.col_stride == 1
    }

    /// The view as a bare pointer and strides, for the unsafe kernels. The pointer is valid
    /// for reads of every element while `self`'s borrow lives.
    pub fn as_ptr(&self) -> MatPtr {
        MatPtr {
            ptr: self.data.as_ptr(),
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }
}

impl std::fmt::Display for MatRef<'_> {
    /// `3 x 4 matrix (strides 4, 1)`, for panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} x {} matrix (strides {}, {})",
            self.rows, self.cols, self.row_stride, self.col_stride
        )
    }
}

/// A matrix written by a product: `rows` x `cols`, row-major, at the start of a slice.
///
/// Invariant (set by [`MatMut::new`]): `data` holds exactly `rows * cols` elements.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
}

impl<'a> MatMut<'a> {
    /// The `rows` x `cols` matrix stored row-major at the start of `data`.
    ///
    /// # Panics
    /// If `data` has fewer than `rows * cols` elements.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> MatMut<'a> {
        let len = rows.checked_mul(cols).expect("matrix size overflows usize");
        assert!(
            data.len() >= len,
            "a {rows} x {cols} matrix needs {len} elements, the slice has {}",
            data.len()
        );
        MatMut {
            data: &mut data[..len],
            rows,
            cols,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The `rows * cols` elements, row-major.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.data
    }

    /// A shorter-lived view of the same matrix, to pass on without giving this one up.
    pub fn rb(&mut self) -> MatMut<'_> {
        MatMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The view as a bare pointer and row stride, for the unsafe kernels. The pointer is
    /// valid for reads and writes of every element while `self`'s borrow lives.
    pub fn as_ptr(&mut self) -> MatPtrMut {
        MatPtrMut {
            ptr: self.data.as_mut_ptr(),
            row_stride: self.cols,
        }
    }
}

/// A read-only matrix as a bare pointer: element (i, j) at `ptr + i*row_stride +
/// j*col_stride`. It carries no length: whoever dereferences it must know the shape it was
/// made for (the [`Dims`] beside it) and that the memory is still borrowed.
#[derive(Debug, Clone, Copy)]
pub struct MatPtr {
    pub ptr: *const f32,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatPtr {
    /// The transpose: strides swapped.
    pub fn t(self) -> MatPtr {
        MatPtr {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// The address of element (i, j); the view of the block starting there with
    /// [`MatPtr::block`].
    ///
    /// # Safety
    /// The offset `i*row_stride + j*col_stride` must stay inside the allocation the pointer
    /// points into (one past its end at most): true for every element (i, j) of the matrix
    /// the pointer was made for.
    #[inline(always)]
    pub unsafe fn at(self, i: usize, j: usize) -> *const f32 {
        // SAFETY: the caller guarantees the offset stays inside the pointer's allocation.
        unsafe { self.ptr.add(i * self.row_stride + j * self.col_stride) }
    }

    /// The same strides from element (i, j) on: the view of a block.
    ///
    /// # Safety
    /// As for [`MatPtr::at`].
    #[inline(always)]
    pub unsafe fn block(self, i: usize, j: usize) -> MatPtr {
        MatPtr {
            // SAFETY: passed on to the caller (see above).
            ptr: unsafe { self.at(i, j) },
            ..self
        }
    }
}

/// A matrix written by a kernel, as a bare pointer: element (i, j) at
/// `ptr + i*row_stride + j` (rows contiguous). No length, as for [`MatPtr`].
#[derive(Debug, Clone, Copy)]
pub struct MatPtrMut {
    pub ptr: *mut f32,
    pub row_stride: usize,
}

impl MatPtrMut {
    /// The address of element (i, j).
    ///
    /// # Safety
    /// As for [`MatPtr::at`].
    #[inline(always)]
    pub unsafe fn at(self, i: usize, j: usize) -> *mut f32 {
        // SAFETY: the caller guarantees the offset stays inside the pointer's allocation.
        unsafe { self.ptr.add(i * self.row_stride + j) }
    }

    /// The same row stride from element (i, j) on: the view of a block.
    ///
    /// # Safety
    /// As for [`MatPtr::at`].
    #[inline(always)]
    pub unsafe fn block(self, i: usize, j: usize) -> MatPtrMut {
        MatPtrMut {
            // SAFETY: passed on to the caller (see above).
            ptr: unsafe { self.at(i, j) },
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_and_its_transpose_and_blocks_address_the_same_elements() {
        // 2 x 3: [0 1 2; 3 4 5]
        let d = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let a = MatRef::new(&d, 2, 3);
        assert_eq!((a.rows(), a.cols()), (2, 3));
        assert_eq!(a.get(1, 2), 5.0);
        let t = a.t();
        assert_eq!((t.rows(), t.cols()), (3, 2));
        assert_eq!(t.get(2, 1), 5.0);
        assert_eq!(t.get(0, 1), 3.0);
        let b = t.block(1, 1, 2, 1);
        assert_eq!((b.get(0, 0), b.get(1, 0)), (4.0, 5.0));
        assert_eq!(a.block(0, 3, 2, 0).rows(), 2);
    }

    #[test]
    #[should_panic(expected = "a 2 x 3 matrix needs 6 elements, the slice has 5")]
    fn a_short_slice_is_refused_with_the_shape_in_the_message() {
        MatRef::new(&[0.0; 5], 2, 3);
    }

    #[test]
    #[should_panic(expected = "block of 2 x 2 at (1, 0) outside 2 x 3 matrix")]
    fn a_block_must_fit() {
        MatRef::new(&[0.0; 6], 2, 3).block(1, 0, 2, 2);
    }

    #[test]
    #[should_panic(expected = "a 4 x 4 matrix needs 16 elements, the slice has 8")]
    fn a_short_output_is_refused() {
        MatMut::new(&mut [0.0; 8], 4, 4);
    }
}
