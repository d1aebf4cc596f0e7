//! Matrix-vector products `y = A x` with A packed once for streaming: a Dense layer on one
//! image, where each call reads the whole weight matrix (the layer's half of it, 0.8 MB
//! for report 1's network) and does two floating-point operations per weight, so the time
//! is the time to read the weights.
//!
//! ```text
//! y[r] = sum_p A[r][p] x[p]
//! ```
//!
//! **Layout.** The rows go in tiles of [`TILE_ROWS`]; a tile stores, for each step of 16
//! columns, its rows' 16 values one after the other (the last step padded with zeros). A
//! call then reads one stream of consecutive memory. Read in place, eight rows 12.5 KB
//! apart were eight streams, and a 128 x 1568 product ran at 127 GB/s against 205 GB/s
//! packed (one core of the development machine, weights in L2).
//!
//! **Same bits.** Each y[r] is computed as the dot-product kernel (`gemm_dot`) computes a
//! one-column product: 16 lane chains of fused multiply-adds over the steps, from +0, then
//! the same lane tree. The padding adds `0 * 0` where that kernel's masked loads add
//! `0 * 0`; a chain that starts at +0 is never -0, so adding +0 changes nothing anyway.
//! The tests hold it to [`super::gemm::gemm`], bit for bit.
//!
//! AVX-512 and AVX2+FMA; elsewhere [`applies`] is false and the caller multiplies with
//! [`super::gemm::gemm`].

use super::mat::MatRef;
use super::Simd;

/// Rows per tile: eight independent chains of fused multiply-adds in flight.
pub const TILE_ROWS: usize = 8;

/// Whether [`Packed::matvec`] runs on this CPU (AVX-512 or AVX2+FMA).
pub fn applies() -> bool {
    matches!(super::simd(), Simd::Avx512 | Simd::Avx2)
}

/// Matrices in the layout of the module doc, side by side in one allocation (a Dense
/// layer's two halves, one per thread).
#[derive(Debug, Clone, Default)]
pub struct Packed {
    data: Storage,
    /// Each matrix's (first float, rows, columns).
    parts: Vec<(usize, usize, usize)>,
}

impl Packed {
    /// The values of `parts` in tiles of [`TILE_ROWS`] rows, 16 columns per step.
    pub fn new(parts: &[MatRef]) -> Packed {
        let len = |a: &MatRef| a.rows() * a.cols().div_ceil(16) * 16;
        let mut data = Storage::zeros(parts.iter().map(len).sum());
        let mut at = 0;
        let mut placed = Vec::with_capacity(parts.len());
        for a in parts {
            let (rows, cols) = (a.rows(), a.cols());
            let steps = cols.div_ceil(16);
            let m = &mut data.as_mut_slice()[at..at + len(a)];
            for t0 in (0..rows).step_by(TILE_ROWS) {
                let tile_rows = TILE_ROWS.min(rows - t0);
                let tile = &mut m[t0 * steps * 16..][..tile_rows * steps * 16];
                for r in 0..tile_rows {
                    for p in 0..cols {
                        let (q, lane) = (p / 16, p % 16);
                        tile[(q * tile_rows + r) * 16 + lane] = a.get(t0 + r, p);
                    }
                }
            }
            placed.push((at, rows, cols));
            at += len(a);
        }
        Packed {
            data,
            parts: placed,
        }
    }

    /// (rows, columns) of matrix `part`, if there is one.
    pub fn shape(&self, part: usize) -> Option<(usize, usize)> {
        self.parts.get(part).map(|&(_, r, c)| (r, c))
    }

    /// `y = A x` for A the matrix `part` (`x` holds its columns, `y` its rows of values),
    /// the bits of [`super::gemm::gemm`] of A and the column x.
    ///
    /// # Panics
    /// If [`applies`] is false, there is no such matrix or a slice is too short.
    pub fn matvec(&self, part: usize, x: &[f32], y: &mut [f32]) {
        self.matvec_on(super::simd(), part, x, y)
    }

    /// [`Packed::matvec`] on the kernels of `simd` (or the best family below it that this
    /// CPU has): every family gives the same bits.
    ///
    /// # Panics
    /// If `simd` lowers to the portable family, there is no such matrix or a slice is too
    /// short.
    pub fn matvec_on(&self, simd: Simd, part: usize, x: &[f32], y: &mut [f32]) {
        let simd = simd.or_below();
        assert!(simd != Simd::Portable, "matvec: no portable kernel");
        let (at, rows, cols) = self.parts[part];
        assert!(
            x.len() >= cols && y.len() >= rows,
            "matvec: {} inputs and {} outputs for a {rows} x {cols} matrix",
            x.len(),
            y.len(),
        );
        let steps = cols.div_ceil(16);
        let m = &self.data.as_slice()[at..at + rows * steps * 16];
        for t0 in (0..rows).step_by(TILE_ROWS) {
            let tile_rows = TILE_ROWS.min(rows - t0);
            let tile = &m[t0 * steps * 16..][..tile_rows * steps * 16];
            let out = &mut y[t0..t0 + tile_rows];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the family's instructions are available (`or_below` gives one this
            // CPU has, not the portable one); the tile holds tile_rows x steps x 16 floats,
            // x at least `cols` and out tile_rows, as the kernels read and write.
            unsafe {
                if simd == Simd::Avx512 {
                    super::avx512::matvec_tile(tile, tile_rows, x, cols, out);
                } else {
                    super::avx2::matvec_tile(tile, tile_rows, x, cols, out);
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!(
                "no kernel off x86_64: {} {} {}",
                tile.len(),
                out.len(),
                x.len()
            );
        }
    }
}

/// Floats that Linux is asked to back with 2 MB pages (transparent huge pages, where the
/// system leaves that to `madvise`) when there are 256 K of them (1 MB) or more. A matrix
/// read again at every call should stay in the core's L2, but with 4 KB pages the cache
/// sets it lands in are as uneven as the pages' physical places, and 0.8 MB of weights in
/// a 1 MB L2 can partly miss it (one core reading such a half in a loop: 3.7 us from a 2 MB
/// page, 4.0-4.7 us from 4 KB pages). In one 2 MB page it is contiguous, and spreads over
/// the sets evenly.
struct Storage {
    ptr: std::ptr::NonNull<f32>,
    len: usize,
}

/// 2 MB: the size and alignment of a huge page.
const HUGE_PAGE: usize = 2 << 20;

impl Storage {
    fn layout(len: usize) -> std::alloc::Layout {
        let bytes = len * std::mem::size_of::<f32>();
        let (size, align) = if bytes >= HUGE_PAGE / 2 {
            (bytes.next_multiple_of(HUGE_PAGE), HUGE_PAGE)
        } else {
            (bytes, std::mem::align_of::<f32>())
        };
        std::alloc::Layout::from_size_align(size, align).expect("matvec: a layout of floats")
    }

    /// `len` zeros.
    fn zeros(len: usize) -> Storage {
        if len == 0 {
            return Storage::default();
        }
        let layout = Storage::layout(len);
        // SAFETY: the layout's size is not zero (len > 0).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) } as *mut f32;
        let Some(ptr) = std::ptr::NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if layout.align() == HUGE_PAGE {
            // SAFETY: the range is the allocation just made, page-aligned. Advice only: if
            // the system declines, the memory stays as it is.
            unsafe {
                libc::madvise(ptr.as_ptr().cast(), layout.size(), libc::MADV_HUGEPAGE);
            }
        }
        Storage { ptr, len }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: ptr holds len initialised floats (zeroed, then written through
        // as_mut_slice) owned by self, or is dangling with len 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in as_slice, borrowed mutably through self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            ptr: std::ptr::NonNull::dangling(),
            len: 0,
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated by `zeros` with this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), Storage::layout(self.len)) };
        }
    }
}

impl Clone for Storage {
    fn clone(&self) -> Storage {
        let mut copy = Storage::zeros(self.len);
        copy.as_mut_slice().copy_from_slice(self.as_slice());
        copy
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({} floats)", self.len)
    }
}

// SAFETY: Storage owns its floats as a Vec<f32> would; shared references only read them.
unsafe impl Send for Storage {}
// SAFETY: as above.
unsafe impl Sync for Storage {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::gemm_on;
    use crate::kernels::mat::MatMut;
    use crate::rng::Rng;

    /// The vector families this CPU has: the ones with a kernel here.
    fn families() -> Vec<Simd> {
        let all = Simd::all_supported().into_iter();
        all.filter(|&s| s != Simd::Portable).collect()
    }

    /// `A x` by the dot-product kernel of `simd`: the reference.
    fn dot_kernel(simd: Simd, a: MatRef, x: &[f32]) -> Vec<f32> {
        let (rows, cols) = (a.rows(), a.cols());
        let mut y = vec![0.0; rows];
        let x = MatRef::new(&x[..cols], cols, 1);
        gemm_on(simd, a, x, 0.0, MatMut::new(&mut y, rows, 1));
        y
    }

    #[test]
    fn a_packed_product_gives_the_bits_of_the_dot_product_kernel() {
        let mut rng = Rng::new(3);
        for simd in families() {
            for (rows, cols, ld) in [
                (128, 1568, 3136),
                (13, 37, 40),
                (1, 1, 1),
                (9, 16, 16),
                (20, 33, 33),
            ] {
                let a: Vec<f32> = (0..rows * ld).map(|_| rng.normal() as f32).collect();
                let x: Vec<f32> = (0..cols).map(|_| rng.normal() as f32).collect();
                let a = MatRef::new(&a, rows, ld).block(0, 0, rows, cols);
                let want = dot_kernel(simd, a, &x);
                let mut got = vec![f32::NAN; rows];
                // The matrix second, after another: parts start where the one before ends.
                let other = MatRef::new(&x, 1, cols);
                let packed = Packed::new(&[other, a]);
                assert_eq!(packed.shape(1), Some((rows, cols)));
                packed.matvec_on(simd, 1, &x, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{simd:?} {rows} x {cols}");
            }
        }
    }

    /// Zeros of both signs, infinities and NaN: the padding and the masked tail add
    /// nothing that shows.
    #[test]
    fn signed_zeros_and_infinities_come_out_as_the_dot_product_kernel_gives_them() {
        let specials = [
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.0,
            -1.0,
        ];
        let (rows, cols) = (11, 21);
        let a: Vec<f32> = (0..rows * cols).map(|i| specials[(i * 3) % 7]).collect();
        let x: Vec<f32> = (0..cols)
            .map(|i| if i % 4 == 0 { -0.0 } else { specials[i % 7] })
            .collect();
        let a = MatRef::new(&a, rows, cols);
        for simd in families() {
            let want = dot_kernel(simd, a, &x);
            let mut got = vec![1.0; rows];
            Packed::new(&[a]).clone().matvec_on(simd, 0, &x, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{simd:?}");
        }
    }
}
