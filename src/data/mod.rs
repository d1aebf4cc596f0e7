//! Datasets: loading images and labels, batching, splitting, inspecting and exporting.
//!
//! A [`Dataset`] holds every image as bytes (0..=255) in **NCHW** order, one label per image
//! and the class names. [`load`] reads four on-disk formats, chosen by looking at the path:
//!
//! 1. **IDX** (MNIST, Fashion-MNIST). A folder holding `train-images-idx3-ubyte`,
//!    `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (each may
//!    be gzip-compressed and named `*.gz`; gzip is recognised by its magic bytes `1f 8b`, not by
//!    the name). [`Split::Train`] reads `train-*`, [`Split::Test`] reads `t10k-*`. A single
//!    images file `X-images-idx3-ubyte[.gz]` may be given instead; its labels are read from
//!    `X-labels-idx1-ubyte[.gz]` beside it (the split is then ignored).
//!
//!    An IDX file is big-endian: two zero bytes, the data type (`0x08`, unsigned byte, is the
//!    only one accepted), the number of dimensions (3 for images: count, rows, cols; 1 for
//!    labels: count), one `u32` per dimension, then the bytes. Images get shape `(1, rows,
//!    cols)`. Classes are `"0"`, `"1"`, ... up to the largest label;
//!    when the path contains `fashion` they are the Fashion-MNIST names
//!    ([`FASHION_MNIST_CLASSES`]) and labels must be below 10.
//!
//! 2. **A folder with `labels.txt`**: one line per image, `FILE LABEL`, `FILE` relative to the
//!    folder (no absolute path, no `..`), `LABEL` the last whitespace-separated word of the
//!    line. Blank lines and lines starting with `#` are ignored, except a `# classes:` line
//!    which names the classes, by index, separated by commas.
//!
//!    ```text
//!    # classes: zero, one
//!    zeros/img_001.png 0
//!    zeros/img_002.png 0
//!    ones/img_001.png  1
//!    ```
//!
//!    Without a `# classes:` line: if every label is an integer, labels are class indices and
//!    the classes are `"0"`..=largest label; if none is, every label is a class name and the
//!    classes are the distinct names sorted by their bytes (so `"cat" < "dog"`, `"10" < "9"`).
//!    A file that mixes the two is an error: the lines of the less common kind are reported
//!    (an index among names would otherwise become a class of its own).
//!    With a `# classes:` line, a label is an index below the number of names, or one of the
//!    names.
//!
//! 3. **A folder per class**: `root/<class>/*.png|jpg|jpeg|bmp`. The classes are the
//!    sub-folder names sorted by their bytes; the images of a class are sorted by file name.
//!
//! 4. **CIFAR-10's binary format**: files of records, each a label byte then 3,072 bytes
//!    of an image's R, G and B planes (32x32 each, row-major), so shape `(3, 32, 32)`, no
//!    header. A folder holding `data_batch_1.bin` ... `data_batch_5.bin` (the training set,
//!    [`Split::Train`]: those of them that are there) and `test_batch.bin` (the test set,
//!    [`Split::Test`]), or holding them in `cifar-10-batches-bin/` (the official tarball's
//!    layout). A single batch file (any name ending in `.bin`) may be given instead (the split
//!    is then ignored). The classes are the lines of `batches.meta.txt` beside the files, or
//!    [`CIFAR10_CLASSES`] without one. A file whose size is not a whole number of 3,073-byte
//!    records, or a label byte naming no class, is an error naming the file and the record.
//!
//! 5. **`demo`**: the path `demo`, exactly as written, is the built-in demo set ([`demo`]), a
//!    Fashion-MNIST subset with both splits, like an IDX folder. A folder called `demo` is
//!    reached as `./demo`.
//!
//! Class names matter beyond a dataset: a model's outputs are named, and
//! [`Dataset::map_to_classes`] matches a dataset to them by name (label 0 of a folder holding
//! only bags is "Bag", not the model's output 0).
//!
//! Images of formats 2 and 3 are decoded with the `image` crate, with limits (at most 16384
//! pixels a side, 256 MiB per decoded image) so that a lying header allocates nothing. They are
//! converted to the wanted number of channels (1 = luma, 3 = RGB; when not given: 1 if every
//! image is grayscale, else 3). An image whose size differs from the wanted size (or from the
//! first image's) is an error naming it, unless [`LoadOptions::resize`] is set, in which case
//! it is resized with a triangle (bilinear) filter. The same channel and size options apply to
//! IDX and CIFAR-10 data.
//!
//! Malformed data is reported as [`Error::Data`] naming the file and, where it helps, the line
//! (`labels.txt:3: ...`) or the byte offset. Nothing is allocated from a size read in a header
//! before that size has been checked against the file's length or a cap.

mod cifar;
mod demo;
pub mod download;
mod export;
mod folder;
mod idx;
mod inspect;
mod relabel;
mod single;

pub use cifar::{load_cifar_images, CIFAR10_CLASSES};
pub use demo::{demo, FASHION_MNIST_CLASSES};
pub use download::download;
pub use export::{export, prepare_export_folder, Exported};
pub(crate) use folder::unreadable as unreadable_image;
pub use inspect::{inspect, skipped_images, DataReport, Problem, SetReport};
pub use relabel::has_index_names;
pub use single::{
    image_files_under, image_from_bytes, is_cifar_file, is_idx_file, load_idx_images, load_image,
};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};

/// Images (as bytes), their labels and the class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `N * C * H * W` bytes, one image after the other, each in CHW order.
    pub images: Vec<u8>,
    /// `N` labels, each below `classes.len()`.
    pub labels: Vec<u16>,
    /// `(C, H, W)` of every image.
    pub shape: [usize; 3],
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Where the data came from, for messages.
    pub source: String,
}

/// Per-channel normalisation: a pixel byte `b` of channel `c` becomes
/// `(b / 255 - mean[c]) / std[c]` ([`Normalization::apply`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Which part of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// How to load a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// For IDX folders: `train-*` or `t10k-*` files. Ignored by the other formats.
    pub split: Split,
    /// 1 (grayscale) or 3 (RGB); `None` keeps 1 when every image is grayscale, else 3.
    pub channels: Option<usize>,
    /// Wanted `(height, width)`; `None` takes the first image's.
    pub size: Option<(usize, usize)>,
    /// Resize images whose size differs instead of refusing them.
    pub resize: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            split: Split::Train,
            channels: None,
            size: None,
            resize: false,
        }
    }
}

impl LoadOptions {
    /// Default options for `split`.
    pub fn split(split: Split) -> LoadOptions {
        LoadOptions {
            split,
            ..LoadOptions::default()
        }
    }
}

/// A [`Error::Data`] about `file`.
pub(crate) fn data_err(file: &Path, msg: impl Into<String>) -> Error {
    Error::Data {
        file: file.to_path_buf(),
        msg: msg.into(),
    }
}

/// A [`Error::Data`] about line `line` (1-based) of `file`, displayed as `file:line: msg`.
pub(crate) fn line_err(file: &Path, line: usize, msg: impl Into<String>) -> Error {
    Error::Data {
        file: PathBuf::from(format!("{}:{line}", file.display())),
        msg: msg.into(),
    }
}

/// The name that stands for the built-in demo set wherever a dataset path is expected.
pub const DEMO_NAME: &str = "demo";

/// True when `path` is exactly [`DEMO_NAME`], the built-in demo set. A folder that happens to
/// be called `demo` is reached as `./demo`.
pub fn is_demo(path: &Path) -> bool {
    path.as_os_str() == DEMO_NAME
}

/// Why a file given as a dataset is none.
pub(crate) const NOT_A_DATASET: &str = "not a dataset: expected a folder, a labels.txt file, an \
     IDX images file named like train-images-idx3-ubyte[.gz] or a CIFAR-10 batch file (.bin)";

/// True when the dataset at `path` carries its own test set: an IDX folder with
/// `t10k-images-idx3-ubyte[.gz]`, a CIFAR-10 folder with `test_batch.bin`, or the built-in
/// demo set (`demo`). [`load`] reads it with [`Split::Test`].
pub fn has_test_split(path: &Path) -> bool {
    idx::has_idx_test_split(path) || (path.is_dir() && cifar::has_test_file(path))
}

/// Loads the dataset at `path` (see the [module documentation](self) for the formats). The
/// path `demo` is the built-in demo set ([`demo`], the asked split).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    if let Some(c) = opts.channels {
        if c != 1 && c != 3 {
            return Err(Error::Invalid(format!("channels must be 1 or 3, got {c}")));
        }
    }
    if let Some((h, w)) = opts.size {
        if h == 0 || w == 0 || h > folder::MAX_SIDE as usize || w > folder::MAX_SIDE as usize {
            return Err(Error::Invalid(format!(
                "image size must be between 1x1 and {0}x{0}, got {h}x{w}",
                folder::MAX_SIDE
            )));
        }
    }
    if is_demo(path) {
        return conform(demo(opts.split)?, opts);
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let ds = if meta.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == folder::LABELS_TXT {
            let dir = path.parent().unwrap_or(Path::new("."));
            folder::load_labels_txt(dir, opts)?
        } else if idx::is_images_name(name) {
            idx::load_single(path)?
        } else if cifar::is_batch_name(name) {
            cifar::load_single(path)?
        } else {
            return Err(data_err(path, NOT_A_DATASET));
        }
    } else if path.join(folder::LABELS_TXT).is_file() {
        folder::load_labels_txt(path, opts)?
    } else if idx::has_idx_files(path)? {
        idx::load_dir(path, opts.split)?
    } else if cifar::batches_dir(path).is_some() {
        cifar::load_dir(path, opts.split)?
    } else {
        folder::load_class_folders(path, opts)?
    };
    let ds = conform(ds, opts)?;
    if ds.is_empty() {
        return Err(data_err(path, "the dataset is empty (no image)"));
    }
    Ok(ds)
}

/// Converts `ds` to the channels and size asked for in `opts` (used for IDX data; the image
/// folders are converted image by image while decoding).
fn conform(mut ds: Dataset, opts: &LoadOptions) -> Result<Dataset> {
    let [c, h, w] = ds.shape;
    let want_c = opts.channels.unwrap_or(c);
    let (want_h, want_w) = opts.size.unwrap_or((h, w));
    if (want_h, want_w) != (h, w) && !opts.resize {
        return Err(Error::Data {
            file: PathBuf::from(&ds.source),
            msg: format!(
                "images are {h}x{w} (height x width), expected {want_h}x{want_w}; \
                 pass --resize to scale them"
            ),
        });
    }
    if want_c == c && (want_h, want_w) == (h, w) {
        return Ok(ds);
    }
    let n = ds.len();
    let mut out = Vec::with_capacity(n * want_c * want_h * want_w);
    for i in 0..n {
        let img = &ds.images[i * c * h * w..(i + 1) * c * h * w];
        let dynimg = folder::chw_to_dynamic(img, c, h, w);
        let resized = if (want_h, want_w) != (h, w) {
            dynimg.resize_exact(
                want_w as u32,
                want_h as u32,
                image::imageops::FilterType::Triangle,
            )
        } else {
            dynimg
        };
        folder::push_chw(&resized, want_c, &mut out);
    }
    ds.images = out;
    ds.shape = [want_c, want_h, want_w];
    Ok(ds)
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The bytes of image `i` (CHW). Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Writes the images `indices` into `x`, resized to `[n, C, H, W]`, each normalised by
    /// `norm` ([`Normalization::apply`]), and their labels into `labels`.
    /// Allocates nothing when `x` and `labels` are already large enough.
    ///
    /// Panics if an index is out of range or `norm` does not have `C` channels (both are
    /// programming errors, not bad data).
    pub fn batch(
        &self,
        indices: &[usize],
        norm: &Normalization,
        x: &mut Tensor,
        labels: &mut Vec<usize>,
    ) {
        let [c, h, w] = self.shape;
        assert!(
            norm.mean.len() == c && norm.std.len() == c,
            "normalisation has {} means and {} stds for {c} channels",
            norm.mean.len(),
            norm.std.len()
        );
        x.resize(&[indices.len(), c, h, w]);
        labels.clear();
        let plane = h * w;
        let out = x.data_mut();
        // The images lie scattered over the data set: ask for all of them at once rather
        // than waiting for each in turn (32 images from 60,000: 17 -> 9 us, `cargo bench
        // --bench kernels -- 'batch of 32'`).
        for &i in indices {
            crate::kernels::prefetch(self.image(i));
        }
        for (k, &i) in indices.iter().enumerate() {
            norm.apply(self.image(i), &mut out[k * c * plane..(k + 1) * c * plane]);
            labels.push(self.labels[i] as usize);
        }
    }

    /// Splits off a validation set holding `val_fraction` of the images (0 < fraction < 1).
    ///
    /// The split is stratified: in each class, `round(count * val_fraction)` images, chosen by
    /// a shuffle seeded with `seed` (purpose `"split"`), go to validation. Both parts keep the
    /// dataset order. Returns `(train, validation)`; fails if either would be empty.
    pub fn split(self, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(Error::Invalid(format!(
                "validation fraction must be strictly between 0 and 1, got {val_fraction}"
            )));
        }
        let mut rng = Rng::for_purpose(seed, "split");
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes.len()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut is_val = vec![false; self.len()];
        for members in &mut by_class {
            let k = (members.len() as f64 * val_fraction).round() as usize;
            rng.shuffle(members);
            for &i in &members[..k] {
                is_val[i] = true;
            }
        }
        let (val, train): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| is_val[i]);
        if val.is_empty() || train.is_empty() {
            return Err(Error::Invalid(format!(
                "a validation fraction of {val_fraction} of {} images leaves {} for training \
                 and {} for validation; both must be non-empty",
                self.len(),
                train.len(),
                val.len()
            )));
        }
        let mut tr = self.subset(&train);
        let mut va = self.subset(&val);
        tr.source = format!("{} (training part)", self.source);
        va.source = format!("{} (validation part)", self.source);
        Ok((tr, va))
    }

    /// A new dataset with the images `indices`, in that order. Panics if an index is out of
    /// range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes.clone(),
            source: self.source.clone(),
        }
    }
}

impl Normalization {
    /// Mean 0 and std 1 for each of `channels`: pixels become `b / 255`, in [0, 1].
    pub fn identity(channels: usize) -> Normalization {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// One image's CHW bytes as the network reads them, into `out` (one value per byte):
    /// each byte `b` of channel `c` becomes `(b / 255 - mean[c]) / std[c]`. Training,
    /// evaluation, `cnn predict`, `cnn visualize` and the page of `cnn serve` all call this,
    /// so a model sees the same input values, bit for bit, wherever an image comes from.
    ///
    /// It is computed as `b * (1 / (255 std[c])) - mean[c] / std[c]`, a multiply and a
    /// subtract per pixel, with the two constants computed once per channel: training's
    /// arithmetic, which the bytes of every trained model depend on. It can differ from
    /// the quotient form in the last bit of a value.
    ///
    /// # Panics
    /// If `bytes` and `out` differ in length, or do not split into one equal plane per
    /// channel (programming errors, not bad data).
    pub fn apply(&self, bytes: &[u8], out: &mut [f32]) {
        let c = self.mean.len();
        assert!(
            self.std.len() == c
                && bytes.len() == out.len()
                && (c > 0 && bytes.len().is_multiple_of(c)),
            "normalisation of {} channels ({} stds) on {} bytes into {} values",
            c,
            self.std.len(),
            bytes.len(),
            out.len()
        );
        let plane = bytes.len() / c;
        if plane == 0 {
            return;
        }
        for (ch, (dst, src)) in out.chunks_mut(plane).zip(bytes.chunks(plane)).enumerate() {
            // (b/255 - m)/s = b * (1/(255 s)) - m/s
            let scale = 1.0 / (255.0 * self.std[ch]);
            let shift = self.mean[ch] / self.std[ch];
            for (d, &b) in dst.iter_mut().zip(src) {
                *d = f32::from(b) * scale - shift;
            }
        }
    }

    /// [`Normalization::apply`] into a new vector: one image's CHW bytes as the network
    /// reads them.
    pub fn image(&self, bytes: &[u8]) -> Vec<f32> {
        let mut out = vec![0.0; bytes.len()];
        self.apply(bytes, &mut out);
        out
    }

    /// The per-channel mean and (population) standard deviation of `ds`'s pixels scaled to
    /// [0, 1]. A channel with zero spread gets std 1.
    pub fn fit(ds: &Dataset) -> Normalization {
        let [c, h, w] = ds.shape;
        let plane = h * w;
        let mut sum = vec![0u64; c];
        let mut sum_sq = vec![0u64; c];
        for img in ds.images.chunks_exact(c * plane) {
            for ch in 0..c {
                for &b in &img[ch * plane..(ch + 1) * plane] {
                    sum[ch] += u64::from(b);
                    sum_sq[ch] += u64::from(b) * u64::from(b);
                }
            }
        }
        let n = (ds.len() * plane).max(1) as f64;
        let mut norm = Normalization::identity(c);
        for ch in 0..c {
            let mean = sum[ch] as f64 / n / 255.0;
            let var = (sum_sq[ch] as f64 / n / (255.0 * 255.0) - mean * mean).max(0.0);
            let std = var.sqrt();
            norm.mean[ch] = mean as f32;
            norm.std[ch] = if std > 1e-6 { std as f32 } else { 1.0 };
        }
        norm
    }
}

#[cfg(test)]
mod tests;
