//! `doctor`: a report on a dataset folder, listing every problem instead of stopping at the
//! first.

use super::folder::{
    bad_rel_path, decode, is_image_name, read_labels_txt, resolve_labels, scan_class_folders,
    LABELS_TXT,
};
use super::idx::{has_idx_files, is_images_name, load_dir, load_single};
use super::{cifar, data_err, Dataset, Split};
use crate::error::{Error, Result};
use image::DynamicImage;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a dataset: the file, the line when it is about a line of labels.txt,
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub msg: String,
}

/// Statistics of one part of a dataset (an IDX split, or the whole folder).
#[derive(Debug, Clone, PartialEq)]
pub struct SetReport {
    /// `"train"`, `"test"` or `"all"`.
    pub name: String,
    /// Number of readable, labelled images.
    pub images: usize,
    /// Images per class, indexed like [`DataReport::classes`].
    pub counts: Vec<usize>,
    /// `(C, H, W)` of most images (C = 1 when all are grayscale, else 3); `None` when empty.
    pub shape: Option<[usize; 3]>,
    /// Smallest, largest and mean pixel byte over all channels of all images.
    pub pixel_min: u8,
    pub pixel_max: u8,
    pub pixel_mean: f64,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct DataReport {
    /// The path inspected.
    pub source: String,
    /// `"IDX"`, `"CIFAR-10"`, `"labels.txt"` or `"folder per class"`.
    pub format: String,
    pub classes: Vec<String>,
    pub sets: Vec<SetReport>,
    pub problems: Vec<Problem>,
}

impl Problem {
    fn new(file: &Path, line: Option<usize>, msg: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }

    fn from_error(e: Error) -> Problem {
        match e {
            Error::Data { file, msg } => Problem {
                file,
                line: None,
                msg,
            },
            Error::Io { path, source } => Problem {
                file: path,
                line: None,
                msg: source.to_string(),
            },
            other => Problem {
                file: PathBuf::new(),
                line: None,
                msg: other.to_string(),
            },
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.msg),
            None => write!(f, "{}: {}", self.file.display(), self.msg),
        }
    }
}

impl fmt::Display for DataReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset: {} ({})", self.source, self.format)?;
        writeln!(f, "classes: {}", self.classes.len())?;
        for s in &self.sets {
            write!(f, "\n[{}] {} images", s.name, s.images)?;
            if let Some([c, h, w]) = s.shape {
                let kind = if c == 1 { "grayscale" } else { "RGB" };
                write!(
                    f,
                    ", {c}x{h}x{w} ({kind}), pixels min {} max {} mean {:.1}",
                    s.pixel_min, s.pixel_max, s.pixel_mean
                )?;
            }
            writeln!(f)?;
            let width = self.classes.iter().map(|c| c.len()).max().unwrap_or(0);
            for (i, (name, n)) in self.classes.iter().zip(&s.counts).enumerate() {
                let pct = 100.0 * *n as f64 / s.images.max(1) as f64;
                writeln!(f, "  {i:>3} {name:<width$} {n:>7}  {pct:5.1}%")?;
            }
        }
        if self.problems.is_empty() {
            writeln!(f, "\nno problems found")
        } else {
            writeln!(
                f,
                "\n{}:",
                crate::text::count(self.problems.len(), "problem")
            )?;
            const SHOWN: usize = 100;
            for p in self.problems.iter().take(SHOWN) {
                writeln!(f, "  {p}")?;
            }
            if self.problems.len() > SHOWN {
                writeln!(f, "  ... and {} more", self.problems.len() - SHOWN)?;
            }
            Ok(())
        }
    }
}

/// Inspects the dataset at `path` (any format [`load`](super::load) accepts, `demo` too).
/// Problems in the data are collected in the report; only a path that holds no dataset at
/// all is an error.
pub fn inspect(path: &Path) -> Result<DataReport> {
    if super::is_demo(path) {
        let parts = [("train", Split::Train), ("test", Split::Test)]
            .into_iter()
            .map(|(n, s)| (n, super::demo(s)))
            .collect();
        let mut report = inspect_idx(path, parts, "IDX");
        report.source = "demo (the built-in Fashion-MNIST subset)".into();
        return Ok(report);
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == LABELS_TXT {
            return inspect_labels_txt(path.parent().unwrap_or(Path::new(".")));
        }
        if is_images_name(name) {
            return Ok(inspect_idx(path, vec![("all", load_single(path))], "IDX"));
        }
        if cifar::is_batch_name(name) {
            let all = vec![("all", cifar::load_single(path))];
            return Ok(inspect_idx(path, all, "CIFAR-10"));
        }
        return Err(data_err(path, super::NOT_A_DATASET));
    }
    if path.join(LABELS_TXT).is_file() {
        inspect_labels_txt(path)
    } else if has_idx_files(path)? {
        let parts = [("train", Split::Train), ("test", Split::Test)]
            .into_iter()
            .map(|(n, s)| (n, load_dir(path, s)))
            .collect();
        Ok(inspect_idx(path, parts, "IDX"))
    } else if cifar::batches_dir(path).is_some() {
        let parts = [("train", Split::Train), ("test", Split::Test)]
            .into_iter()
            .map(|(n, s)| (n, cifar::load_dir(path, s)))
            .collect();
        Ok(inspect_idx(path, parts, "CIFAR-10"))
    } else {
        inspect_class_folders(path)
    }
}

/// The report on a dataset of files of images and labels (IDX, CIFAR-10), one part a split,
/// read as `parts` (`"train"` and `"test"`, or `"all"` for a single file).
fn inspect_idx(path: &Path, parts: Vec<(&str, Result<Dataset>)>, format: &str) -> DataReport {
    let mut report = DataReport {
        source: path.display().to_string(),
        format: format.into(),
        classes: Vec::new(),
        sets: Vec::new(),
        problems: Vec::new(),
    };
    // "no train-images-idx3-ubyte..." / "no t10k-images-idx3-ubyte...", or CIFAR-10's "no
    // data_batch_1.bin ..." / "no test_batch.bin...": a split is absent.
    let absent = |r: &Result<Dataset>| {
        matches!(r, Err(Error::Data { msg, .. })
            if ["no train-images", "no t10k-images", "no data_batch", "no test_batch"]
                .iter()
                .any(|p| msg.starts_with(p)))
    };
    let all_absent = parts.iter().all(|(_, r)| absent(r));
    let mut loaded: Vec<(&str, Dataset)> = Vec::new();
    for (name, r) in parts {
        match r {
            Ok(ds) => {
                if ds.classes.len() > report.classes.len() {
                    report.classes = ds.classes.clone();
                }
                let mut first: HashMap<&[u8], usize> = HashMap::new();
                for i in 0..ds.len() {
                    let j = *first.entry(ds.image(i)).or_insert(i);
                    if j != i {
                        let (a, b) = (ds.labels[j], ds.labels[i]);
                        let msg = if a == b {
                            format!("{name} image {i} is a duplicate of image {j} (label {a})")
                        } else {
                            format!(
                                "{name} image {i} has the same pixels as image {j} but label \
                                 {b} instead of {a}"
                            )
                        };
                        report.problems.push(Problem::new(path, None, msg));
                    }
                }
                report.sets.push(set_report(name, &ds));
                loaded.push((name, ds));
            }
            // A split that is absent is only a problem if no split is present.
            Err(_) if absent(&r) && !all_absent => {}
            Err(e) => report.problems.push(Problem::from_error(e)),
        }
    }
    // Test images that also appear in the training set make the test score optimistic.
    if let [(_, train), (_, test)] = &loaded[..] {
        let seen: HashMap<&[u8], usize> = (0..train.len()).map(|i| (train.image(i), i)).collect();
        let leaks: Vec<(usize, usize)> = (0..test.len())
            .filter_map(|i| seen.get(test.image(i)).map(|&j| (i, j)))
            .collect();
        if !leaks.is_empty() {
            let examples: Vec<String> = leaks
                .iter()
                .take(5)
                .map(|(i, j)| format!("test {i} = train {j}"))
                .collect();
            report.problems.push(Problem::new(
                path,
                None,
                format!(
                    "{} test image(s) also appear in the training set ({}{})",
                    leaks.len(),
                    examples.join(", "),
                    if leaks.len() > 5 { ", ..." } else { "" }
                ),
            ));
        }
    }
    let k = report.classes.len();
    for s in &mut report.sets {
        s.counts.resize(k, 0);
    }
    report
}

fn set_report(name: &str, ds: &Dataset) -> SetReport {
    let (min, max, sum) = ds
        .images
        .iter()
        .fold((u8::MAX, 0u8, 0u64), |(lo, hi, s), &b| {
            (lo.min(b), hi.max(b), s + u64::from(b))
        });
    SetReport {
        name: name.into(),
        images: ds.len(),
        counts: ds.class_counts(),
        shape: (!ds.is_empty()).then_some(ds.shape),
        pixel_min: if ds.images.is_empty() { 0 } else { min },
        pixel_max: max,
        pixel_mean: sum as f64 / ds.images.len().max(1) as f64,
    }
}

/// An image to check: its path, the labels.txt line naming it, and its label.
struct Item {
    path: PathBuf,
    line: Option<usize>,
    label: u16,
}

/// Decodes every item and checks sizes and duplicates; fills `report.sets` and problems.
fn check_images(items: &[Item], report: &mut DataReport, list_file: Option<&Path>) {
    let decoded: Vec<Result<DynamicImage>> = items.par_iter().map(|it| decode(&it.path)).collect();
    let mut sizes: HashMap<(u32, u32), usize> = HashMap::new();
    for img in decoded.iter().flatten() {
        *sizes.entry((img.height(), img.width())).or_default() += 1;
    }
    let common = sizes
        .iter()
        .max_by_key(|(hw, n)| (**n, std::cmp::Reverse(**hw)))
        .map(|(hw, _)| *hw);
    let at = |it: &Item| match (list_file, it.line) {
        (Some(f), Some(l)) => format!(" (listed at {}:{l})", f.display()),
        _ => String::new(),
    };
    let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
    let mut stats = SetReport {
        name: "all".into(),
        images: 0,
        counts: vec![0; report.classes.len()],
        shape: None,
        pixel_min: u8::MAX,
        pixel_max: 0,
        pixel_mean: 0.0,
    };
    let (mut sum, mut n_bytes, mut all_gray) = (0u64, 0u64, true);
    for (k, (it, img)) in items.iter().zip(&decoded).enumerate() {
        let img = match img {
            Ok(img) => img,
            Err(e) => {
                let msg = match e {
                    Error::Data { msg, .. } => msg.clone(),
                    other => other.to_string(),
                };
                let p = Problem::new(&it.path, None, format!("unreadable image: {msg}{}", at(it)));
                report.problems.push(p);
                continue;
            }
        };
        let hw = (img.height(), img.width());
        if Some(hw) != common {
            let (h0, w0) = common.unwrap_or(hw);
            report.problems.push(Problem::new(
                &it.path,
                None,
                format!(
                    "image is {}x{} (height x width) but most images are {h0}x{w0}{}",
                    hw.0,
                    hw.1,
                    at(it)
                ),
            ));
        }
        all_gray &= super::folder::is_gray(img);
        let bytes = img.as_bytes();
        for &b in bytes {
            stats.pixel_min = stats.pixel_min.min(b);
            stats.pixel_max = stats.pixel_max.max(b);
            sum += u64::from(b);
        }
        n_bytes += bytes.len() as u64;
        let mut hasher = Sha256::new();
        hasher.update(hw.0.to_le_bytes());
        hasher.update(hw.1.to_le_bytes());
        hasher.update([u8::from(super::folder::is_gray(img))]);
        hasher.update(bytes);
        let digest: [u8; 32] = hasher.finalize().into();
        let j = *seen.entry(digest).or_insert(k);
        if j != k {
            let (a, b) = (items[j].label, it.label);
            let name = |l: u16| report.classes.get(l as usize).cloned().unwrap_or_default();
            let msg = if a == b {
                format!(
                    "same pixels as {} (both labelled \"{}\"){}",
                    items[j].path.display(),
                    name(a),
                    at(it)
                )
            } else {
                format!(
                    "same pixels as {} but labelled \"{}\" instead of \"{}\"{}",
                    items[j].path.display(),
                    name(b),
                    name(a),
                    at(it)
                )
            };
            report.problems.push(Problem::new(&it.path, None, msg));
        }
        stats.images += 1;
        if let Some(c) = stats.counts.get_mut(it.label as usize) {
            *c += 1;
        }
    }
    if let Some((h, w)) = common {
        stats.shape = Some([if all_gray { 1 } else { 3 }, h as usize, w as usize]);
        stats.pixel_mean = sum as f64 / n_bytes.max(1) as f64;
    } else {
        stats.pixel_min = 0;
    }
    report.sets.push(stats);
}

/// Every image file under `dir` (relative paths, sorted), skipping hidden entries; at most
/// 16 levels deep.
fn walk_images(dir: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            if depth < 16 {
                walk_images(&p, &rel.join(&name), depth + 1, out);
            }
        } else if is_image_name(&name) {
            out.push(rel.join(&name));
        }
    }
}

/// The key of a path in labels.txt (relative to its folder) or found under the folder, for
/// telling whether an image is listed: `./a.png` and `a.png` are the same file.
fn listed_key(rel: &Path) -> PathBuf {
    rel.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// A one-line note on the images of the dataset at `path` that no label reaches, which
/// [`super::load`] skips: those under a labels.txt folder that its labels.txt does not list,
/// and those lying beside the class folders of a folder per class. `None` when there is none
/// (and for IDX and CIFAR-10 data and `demo`, where every image has its label), or when the
/// folder cannot be read (loading says why).
pub fn skipped_images(path: &Path) -> Option<String> {
    if super::is_demo(path) {
        return None;
    }
    let (dir, labels_txt) = if path.is_file() {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        (dir, path.file_name()? == LABELS_TXT)
    } else {
        (path, path.join(LABELS_TXT).is_file())
    };
    let (n, why) = if labels_txt {
        let parsed = read_labels_txt(&dir.join(LABELS_TXT)).ok()?;
        let listed: std::collections::HashSet<PathBuf> = parsed
            .entries
            .iter()
            .map(|e| listed_key(Path::new(&e.file)))
            .collect();
        let mut on_disk = Vec::new();
        walk_images(dir, Path::new(""), 0, &mut on_disk);
        let n = on_disk
            .iter()
            .filter(|rel| !listed.contains(&listed_key(rel)))
            .count();
        let labels = dir.join(LABELS_TXT);
        (n, format!("not listed in {}", labels.display()))
    } else if path.is_dir()
        && !has_idx_files(path).unwrap_or(true)
        && cifar::batches_dir(path).is_none()
    {
        let n = scan_class_folders(path).ok()?.loose.len();
        (n, "outside the class folders (in no class)".to_string())
    } else {
        return None;
    };
    let (s, verb, them) = if n == 1 {
        ("", "is", "it")
    } else {
        ("s", "are", "them")
    };
    (n > 0).then(|| {
        format!(
            "{n} image{s} under {} {verb} {why}: skipped (cnn data info {0} lists {them})",
            dir.display()
        )
    })
}

fn inspect_labels_txt(dir: &Path) -> Result<DataReport> {
    let lt = dir.join(LABELS_TXT);
    let parsed = read_labels_txt(&lt)?;
    let (classes, labels) = resolve_labels(&parsed);
    let mut report = DataReport {
        source: dir.display().to_string(),
        format: "labels.txt".into(),
        classes,
        sets: Vec::new(),
        problems: Vec::new(),
    };
    for (line, msg) in &parsed.malformed {
        report
            .problems
            .push(Problem::new(&lt, Some(*line), msg.clone()));
    }
    let mut listed: HashMap<PathBuf, usize> = HashMap::new();
    let mut items = Vec::new();
    for (e, l) in parsed.entries.iter().zip(labels) {
        let mut problem = |msg: String| report.problems.push(Problem::new(&lt, Some(e.line), msg));
        if let Some(why) = bad_rel_path(&e.file) {
            problem(format!("\"{}\" {why}", e.file));
            continue;
        }
        let rel = listed_key(Path::new(&e.file));
        if let Some(first) = listed.get(&rel) {
            problem(format!(
                "\"{}\" is listed again (first at line {first})",
                e.file
            ));
            continue;
        }
        listed.insert(rel, e.line);
        let path = dir.join(&e.file);
        if !path.is_file() {
            problem(format!("image file \"{}\" does not exist", e.file));
            continue;
        }
        match l {
            Ok(label) => items.push(Item {
                path,
                line: Some(e.line),
                label,
            }),
            Err(msg) => problem(msg),
        }
    }
    let mut on_disk = Vec::new();
    walk_images(dir, Path::new(""), 0, &mut on_disk);
    for rel in on_disk {
        if !listed.contains_key(&listed_key(&rel)) {
            report.problems.push(Problem::new(
                &dir.join(&rel),
                None,
                format!("image has no label: it is not listed in {LABELS_TXT}"),
            ));
        }
    }
    check_images(&items, &mut report, Some(&lt));
    Ok(report)
}

fn inspect_class_folders(root: &Path) -> Result<DataReport> {
    let cf = scan_class_folders(root)?;
    if cf.classes.is_empty() {
        return Err(data_err(
            root,
            "no dataset found: expected a labels.txt file, IDX files, CIFAR-10 batch files \
             or one sub-folder of images per class",
        ));
    }
    let mut report = DataReport {
        source: root.display().to_string(),
        format: "folder per class".into(),
        classes: cf.classes.clone(),
        sets: Vec::new(),
        problems: Vec::new(),
    };
    for p in &cf.loose {
        report.problems.push(Problem::new(
            p,
            None,
            "image has no label: it is not inside a class folder",
        ));
    }
    let mut items = Vec::new();
    for (c, files) in cf.files.iter().enumerate() {
        if files.is_empty() {
            report.problems.push(Problem::new(
                &root.join(&cf.classes[c]),
                None,
                "class folder holds no .png, .jpg, .jpeg or .bmp image",
            ));
        }
        for p in files {
            items.push(Item {
                path: p.clone(),
                line: None,
                label: c as u16,
            });
        }
    }
    check_images(&items, &mut report, None);
    Ok(report)
}
