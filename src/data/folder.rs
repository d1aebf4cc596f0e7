//! Image folders: a folder with `labels.txt`, or one sub-folder per class.

use super::{data_err, line_err, Dataset, LoadOptions};
use crate::error::{Error, Result};
use image::{DynamicImage, ImageError, ImageFormat, ImageReader, Limits};
use rayon::prelude::*;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The name of the labels file of format 2.
pub(crate) const LABELS_TXT: &str = "labels.txt";
/// Largest image side accepted, in pixels.
pub(crate) const MAX_SIDE: u32 = 16384;
/// Largest allocation the decoder may make for one image.
const MAX_ALLOC: u64 = 256 << 20;
/// Largest labels.txt accepted.
const MAX_LABELS_TXT: u64 = 64 << 20;
/// Image file extensions recognised (compared case-insensitively).
pub(crate) const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// True for a file name ending in one of [`IMAGE_EXTENSIONS`].
pub(crate) fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes an image with size and allocation limits; a header claiming a huge size is refused
/// before any pixel buffer is allocated.
pub(crate) fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    decode_within_limits(path, reader)
}

/// [`decode`] for an image already in memory (an upload); `name` stands for it in errors.
pub(crate) fn decode_bytes(name: &Path, bytes: &[u8]) -> Result<DynamicImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(name, e))?;
    if reader.format().is_none() {
        return Err(data_err(name, "not a PNG, JPEG or BMP image"));
    }
    decode_within_limits(name, reader)
}

/// Decodes with the side and allocation limits set first, so that a header announcing a
/// huge image is refused before its pixel buffer is allocated; `name` stands for the
/// image in errors.
fn decode_within_limits<R: std::io::BufRead + std::io::Seek>(
    name: &Path,
    mut reader: ImageReader<R>,
) -> Result<DynamicImage> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let format = reader.format();
    let img = reader.decode().map_err(|e| unreadable(name, format, &e))?;
    Ok(luma_or_rgb(img))
}

/// `NAME: not a readable PNG (why)`: an image the decoder refused, the reason said in words
/// (the decoders' own messages name their internals: `ChunkType { type: IDAT, ... }`).
pub(crate) fn unreadable(name: &Path, format: Option<ImageFormat>, e: &ImageError) -> Error {
    let ext = name
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let kind = match (format, ext.as_deref()) {
        (Some(ImageFormat::Png), _) | (None, Some("png")) => "PNG",
        (Some(ImageFormat::Jpeg), _) | (None, Some("jpg" | "jpeg")) => "JPEG",
        (Some(ImageFormat::Bmp), _) | (None, Some("bmp")) => "BMP",
        _ => "image",
    };
    data_err(
        name,
        format!("not a readable {kind} ({})", decode_reason(e)),
    )
}

/// Why the decoder refused an image, in words.
fn decode_reason(e: &ImageError) -> String {
    let too_large = || {
        format!(
            "it is too large: at most {MAX_SIDE} pixels a side and {} MiB decoded",
            MAX_ALLOC >> 20
        )
    };
    match e {
        ImageError::Limits(_) => too_large(),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            CUT_SHORT.into()
        }
        ImageError::IoError(io) => io.to_string(),
        _ => {
            let text = one_line(e);
            let t = text.to_ascii_lowercase();
            let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
            if has(&["crc", "checksum"]) {
                "a checksum does not match: the file is damaged".into()
            } else if has(&["signature", "magic"]) {
                "it does not start as one does: damaged, or a file of another kind".into()
            } else if has(&["deflate", "huffman", "zlib", "inflate"]) {
                "its compressed pixel data is damaged".into()
            } else if has(&["not enough bytes", "unexpected end", "eof", "truncated"]) {
                CUT_SHORT.into()
            } else if has(&["too large", "limit"]) {
                too_large()
            } else if has(&["idat"]) {
                "it holds no pixel data".into()
            } else {
                plain(&text)
            }
        }
    }
}

/// What a decoder says of a file that ends early.
const CUT_SHORT: &str = "the file ends too early: it is cut short";

/// A decoder's message without the name of the decoder and without the `Name { ... }`
/// structures some of them print.
fn plain(text: &str) -> String {
    let text = text
        .split_once("decoding ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map_or(text, |(_, rest)| rest);
    let mut out = String::new();
    let mut depth = 0usize;
    for word in text.split_whitespace() {
        if word.ends_with('{') {
            // `ChunkType {`: the structure's name goes with it.
            if word == "{" {
                let kept = out.rfind(' ').unwrap_or(0);
                out.truncate(kept);
            }
            depth += 1;
            continue;
        }
        if depth > 0 {
            if word.starts_with('}') {
                depth -= 1;
            }
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.trim_end_matches('.').to_string()
}

/// Keep only what we use: 8-bit luma or 8-bit RGB.
fn luma_or_rgb(img: DynamicImage) -> DynamicImage {
    if is_gray(&img) {
        DynamicImage::ImageLuma8(img.to_luma8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    }
}

/// A decoder's message on one line: some decoders end theirs with a newline.
fn one_line(e: &image::ImageError) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when the image's colour type has no colour.
pub(crate) fn is_gray(img: &DynamicImage) -> bool {
    matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    )
}

/// An image of `c` (1 or 3) channels stored CHW as a `DynamicImage`.
pub(crate) fn chw_to_dynamic(img: &[u8], c: usize, h: usize, w: usize) -> DynamicImage {
    let plane = h * w;
    if c == 3 {
        let mut hwc = Vec::with_capacity(3 * plane);
        for p in 0..plane {
            hwc.extend_from_slice(&[img[p], img[plane + p], img[2 * plane + p]]);
        }
        DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(w as u32, h as u32, hwc).expect("buffer size matches"),
        )
    } else {
        DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w as u32, h as u32, img[..plane].to_vec())
                .expect("buffer size matches"),
        )
    }
}

/// Appends `img` in CHW order with `c` channels (1: luma, 3: RGB).
pub(crate) fn push_chw(img: &DynamicImage, c: usize, out: &mut Vec<u8>) {
    if c == 1 {
        out.extend_from_slice(img.to_luma8().as_raw());
    } else {
        let rgb = img.to_rgb8();
        let raw = rgb.as_raw();
        for ch in 0..3 {
            out.extend(raw.iter().skip(ch).step_by(3));
        }
    }
}

/// Appends `img` as CHW bytes of `shape` (C, H, W): converted to C channels, and resized
/// when `resize` is set and its size differs; otherwise a different size is an error naming
/// `path` and saying where the expected size came `from`.
pub(crate) fn push_fitted(
    img: &DynamicImage,
    path: &Path,
    shape: [usize; 3],
    resize: bool,
    from: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    let [c, h, w] = shape;
    let (ih, iw) = (img.height() as usize, img.width() as usize);
    if (ih, iw) == (h, w) {
        push_chw(img, c, out);
    } else if resize {
        let r = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
        push_chw(&r, c, out);
    } else {
        return Err(data_err(
            path,
            format!(
                "image is {ih}x{iw} (height x width), expected {h}x{w} ({from}); \
                 pass --resize to scale it"
            ),
        ));
    }
    Ok(())
}

/// Why a path written in labels.txt is refused, if it is.
pub(crate) fn bad_rel_path(file: &str) -> Option<&'static str> {
    for comp in Path::new(file).components() {
        match comp {
            Component::RootDir | Component::Prefix(_) => {
                return Some("is an absolute path; paths must be relative to the folder")
            }
            Component::ParentDir => {
                return Some("contains a `..` component; paths must stay inside the folder")
            }
            _ => {}
        }
    }
    None
}

/// One `FILE LABEL` line of labels.txt.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub line: usize,
    pub file: String,
    pub label: String,
}

/// labels.txt parsed leniently: its entries, the `# classes:` names if any, and the lines
/// that could not be parsed (line, message).
#[derive(Debug, Default)]
pub(crate) struct LabelsTxt {
    pub entries: Vec<Entry>,
    pub declared: Option<Vec<String>>,
    pub malformed: Vec<(usize, String)>,
}

/// Reads and parses `dir/labels.txt` (at most 64 MiB).
pub(crate) fn read_labels_txt(path: &Path) -> Result<LabelsTxt> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_LABELS_TXT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_LABELS_TXT {
        return Err(data_err(
            path,
            format!("is larger than the limit of {MAX_LABELS_TXT} bytes"),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        data_err(
            path,
            format!("is not UTF-8 text (invalid byte at offset {off})"),
        )
    })?;
    let mut out = LabelsTxt::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if let Some(comment) = t.strip_prefix('#') {
            if let Some(names) = comment.trim_start().strip_prefix("classes:") {
                let names: Vec<String> = names.split(',').map(|s| s.trim().to_string()).collect();
                if names.iter().any(|n| n.is_empty()) {
                    out.malformed.push((
                        line,
                        "expected \"# classes: NAME, NAME, ...\" with no empty name".into(),
                    ));
                } else if out.declared.is_some() {
                    out.malformed
                        .push((line, "a second \"# classes:\" line".into()));
                } else {
                    out.declared = Some(names);
                }
            }
            continue;
        }
        if t.is_empty() {
            continue;
        }
        match t.rsplit_once(|c: char| c.is_whitespace()) {
            Some((file, label)) if !file.trim().is_empty() => out.entries.push(Entry {
                line,
                file: file.trim().to_string(),
                label: label.to_string(),
            }),
            _ => out
                .malformed
                .push((line, format!("expected \"FILE LABEL\", got \"{t}\""))),
        }
    }
    Ok(out)
}

/// The class names and each entry's label index (or why it has none).
pub(crate) fn resolve_labels(
    parsed: &LabelsTxt,
) -> (Vec<String>, Vec<std::result::Result<u16, String>>) {
    let entries = &parsed.entries;
    if let Some(names) = &parsed.declared {
        let labels = entries
            .iter()
            .map(|e| {
                if let Some(i) = names.iter().position(|n| *n == e.label) {
                    return Ok(i as u16);
                }
                match e.label.parse::<usize>() {
                    Ok(i) if i < names.len() => Ok(i as u16),
                    Ok(i) => Err(format!(
                        "label {i} is out of range: the \"# classes:\" line names {} classes",
                        names.len()
                    )),
                    Err(_) => Err(format!(
                        "label \"{}\" is neither a class index nor one of the names of the \
                         \"# classes:\" line",
                        e.label
                    )),
                }
            })
            .collect();
        return (names.clone(), labels);
    }
    let parsed_nums: Vec<Option<usize>> = entries.iter().map(|e| e.label.parse().ok()).collect();
    let n_numeric = parsed_nums.iter().filter(|n| n.is_some()).count();
    if n_numeric > 0 && n_numeric < entries.len() {
        return mixed_labels(entries, &parsed_nums);
    }
    let numeric: Option<Vec<usize>> = parsed_nums.into_iter().collect();
    if let Some(nums) = numeric {
        let max = nums.iter().copied().max().unwrap_or(0);
        if max < usize::from(u16::MAX) {
            let classes = (0..=max).map(|i| i.to_string()).collect();
            return (classes, nums.iter().map(|&n| Ok(n as u16)).collect());
        }
        let classes = Vec::new();
        let labels = nums
            .iter()
            .map(|&n| {
                if n < usize::from(u16::MAX) {
                    Ok(n as u16)
                } else {
                    Err(format!("label {n} is too large (at most 65534 classes)"))
                }
            })
            .collect();
        return (classes, labels);
    }
    let mut names: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    names.sort();
    names.dedup();
    let labels = entries
        .iter()
        .map(|e| Ok(names.binary_search(&e.label).expect("collected above") as u16))
        .collect();
    (names, labels)
}

/// Classes and labels of a labels.txt (without a `# classes:` line) whose labels are partly
/// class indices and partly class names. The more common kind wins (names on a tie); each line
/// of the other kind gets an error naming the first line of the winning kind, since an index
/// among names would silently become a class of its own (and a name among indices one more
/// class at the end).
fn mixed_labels(
    entries: &[Entry],
    nums: &[Option<usize>],
) -> (Vec<String>, Vec<std::result::Result<u16, String>>) {
    let n_numeric = nums.iter().filter(|n| n.is_some()).count();
    let indices_win = 2 * n_numeric > entries.len();
    let first = |want_num: bool| {
        entries
            .iter()
            .zip(nums)
            .find(|(_, n)| n.is_some() == want_num)
            .map(|(e, _)| e)
            .expect("both kinds are present")
    };
    let model = first(indices_win);
    let classes: Vec<String> = if indices_win {
        let max = nums.iter().flatten().copied().max().unwrap_or(0);
        (0..=max.min(usize::from(u16::MAX) - 1))
            .map(|i| i.to_string())
            .collect()
    } else {
        let mut names: Vec<String> = entries
            .iter()
            .zip(nums)
            .filter(|(_, n)| n.is_none())
            .map(|(e, _)| e.label.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let (this, other) = if indices_win {
        ("a class name", "class indices")
    } else {
        ("a class index", "class names")
    };
    let labels = entries
        .iter()
        .zip(nums)
        .map(|(e, n)| {
            if n.is_some() != indices_win {
                return Err(format!(
                    "label \"{}\" is {this}, but most lines use {other} (line {}: \"{}\"); use \
                     one kind, or name the classes on a \"# classes: NAME, NAME, ...\" line",
                    e.label, model.line, model.label
                ));
            }
            match n {
                Some(i) => u16::try_from(*i)
                    .ok()
                    .filter(|&i| usize::from(i) < classes.len())
                    .ok_or_else(|| format!("label {i} is too large (at most 65534 classes)")),
                None => Ok(classes.binary_search(&e.label).expect("collected above") as u16),
            }
        })
        .collect();
    (classes, labels)
}

/// Loads a folder described by `dir/labels.txt`.
pub(crate) fn load_labels_txt(dir: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let lt = dir.join(LABELS_TXT);
    let parsed = read_labels_txt(&lt)?;
    if let Some((line, msg)) = parsed.malformed.first() {
        return Err(line_err(&lt, *line, msg.clone()));
    }
    let (classes, labels) = resolve_labels(&parsed);
    let mut items = Vec::with_capacity(parsed.entries.len());
    for (e, l) in parsed.entries.iter().zip(labels) {
        if let Some(why) = bad_rel_path(&e.file) {
            return Err(line_err(&lt, e.line, format!("\"{}\" {why}", e.file)));
        }
        let label = l.map_err(|msg| line_err(&lt, e.line, msg))?;
        let path = dir.join(&e.file);
        if !path.is_file() {
            return Err(line_err(
                &lt,
                e.line,
                format!("image file \"{}\" does not exist", e.file),
            ));
        }
        items.push((path, label));
    }
    if items.is_empty() {
        return Err(data_err(&lt, "lists no image: the dataset is empty"));
    }
    decode_all(&items, opts, classes, dir.display().to_string())
}

/// The class sub-folders of `root` (sorted, hidden ones skipped) and the image files of each
/// (sorted by name), plus the image files lying directly in `root`.
pub(crate) struct ClassFolders {
    pub classes: Vec<String>,
    pub files: Vec<Vec<PathBuf>>,
    pub loose: Vec<PathBuf>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort();
    Ok(out)
}

pub(crate) fn scan_class_folders(root: &Path) -> Result<ClassFolders> {
    let mut cf = ClassFolders {
        classes: Vec::new(),
        files: Vec::new(),
        loose: Vec::new(),
    };
    for (name, path, is_dir) in sorted_entries(root)? {
        if is_dir {
            let files = sorted_entries(&path)?
                .into_iter()
                .filter(|(n, _, d)| !d && is_image_name(n))
                .map(|(_, p, _)| p)
                .collect();
            cf.classes.push(name);
            cf.files.push(files);
        } else if is_image_name(&name) {
            cf.loose.push(path);
        }
    }
    Ok(cf)
}

/// Loads `root/<class>/*.png|jpg|jpeg|bmp`.
pub(crate) fn load_class_folders(root: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let cf = scan_class_folders(root)?;
    if cf.classes.is_empty() {
        return Err(data_err(
            root,
            "no dataset found: expected a labels.txt file, IDX files \
             (train-images-idx3-ubyte[.gz], ...), CIFAR-10 batch files (data_batch_1.bin, \
             ..., test_batch.bin) or one sub-folder of images per class",
        ));
    }
    if cf.classes.len() > usize::from(u16::MAX) {
        return Err(data_err(root, "more than 65535 class folders"));
    }
    let items: Vec<(PathBuf, u16)> = cf
        .files
        .iter()
        .enumerate()
        .flat_map(|(c, files)| files.iter().map(move |p| (p.clone(), c as u16)))
        .collect();
    if items.is_empty() {
        return Err(data_err(
            root,
            format!(
                "the class folders ({}) hold no .png, .jpg, .jpeg or .bmp image: the dataset is \
                 empty",
                cf.classes.join(", ")
            ),
        ));
    }
    decode_all(&items, opts, cf.classes, root.display().to_string())
}

/// Decodes every image (in parallel) and stacks them into a dataset.
fn decode_all(
    items: &[(PathBuf, u16)],
    opts: &LoadOptions,
    classes: Vec<String>,
    source: String,
) -> Result<Dataset> {
    let decoded: Vec<Result<DynamicImage>> = items.par_iter().map(|(p, _)| decode(p)).collect();
    let mut images = Vec::with_capacity(decoded.len());
    for d in decoded {
        images.push(d?);
    }
    let c = opts
        .channels
        .unwrap_or(if images.iter().all(is_gray) { 1 } else { 3 });
    let (h, w, from) = match opts.size {
        Some((h, w)) => (h, w, "as asked".to_string()),
        None => (
            images[0].height() as usize,
            images[0].width() as usize,
            format!("the size of the first image, {}", items[0].0.display()),
        ),
    };
    let mut out = Vec::with_capacity(items.len() * c * h * w);
    for (img, (path, _)) in images.iter().zip(items) {
        push_fitted(img, path, [c, h, w], opts.resize, &from, &mut out)?;
    }
    Ok(Dataset {
        images: out,
        labels: items.iter().map(|(_, l)| *l).collect(),
        shape: [c, h, w],
        classes,
        source,
    })
}
