use super::idx::read_idx;
use super::*;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use tempfile::TempDir;

fn idx_images(n: u32, rows: u32, cols: u32, f: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..(n * rows * cols) as usize).map(f));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A valid IDX training pair of `n` 2x3 images with labels `i % 3`.
fn idx_dir(n: u32, gzip: bool) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let img = idx_images(n, 2, 3, |i| (i * 7 % 256) as u8);
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let lab = idx_labels(&labels);
    if gzip {
        write(dir.path(), "train-images-idx3-ubyte.gz", &gz(&img));
        write(dir.path(), "train-labels-idx1-ubyte.gz", &gz(&lab));
    } else {
        write(dir.path(), "train-images-idx3-ubyte", &img);
        write(dir.path(), "train-labels-idx1-ubyte", &lab);
    }
    dir
}

fn train() -> LoadOptions {
    LoadOptions::split(Split::Train)
}

fn err_text(r: Result<Dataset>) -> String {
    match r {
        Ok(ds) => panic!("expected an error, loaded {} images", ds.len()),
        Err(e) => e.to_string(),
    }
}

fn assert_err(r: Result<Dataset>, parts: &[&str]) {
    let msg = err_text(r);
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should contain {p:?}");
    }
}

/// Loads `images` (and valid labels for `n` images) as a training IDX pair.
fn load_bad_images(images: &[u8], n: usize) -> Result<Dataset> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train-images-idx3-ubyte", images);
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_labels(&vec![0; n]),
    );
    load(dir.path(), &train())
}

#[test]
fn idx_plain_and_gzip_load_the_same() {
    for gzip in [false, true] {
        let dir = idx_dir(5, gzip);
        let ds = load(dir.path(), &train()).unwrap();
        assert_eq!(ds.len(), 5);
        assert_eq!(ds.shape, [1, 2, 3]);
        assert_eq!(ds.labels, vec![0, 1, 2, 0, 1]);
        assert_eq!(ds.image(1), &[42, 49, 56, 63, 70, 77]);
        // Classes run from "0" to the largest label.
        assert_eq!(ds.classes, vec!["0", "1", "2"]);
    }
}

#[test]
fn idx_single_file_finds_its_labels() {
    let dir = idx_dir(4, true);
    let ds = load(&dir.path().join("train-images-idx3-ubyte.gz"), &train()).unwrap();
    assert_eq!(ds.len(), 4);
    std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte.gz")).unwrap();
    assert_err(
        load(&dir.path().join("train-images-idx3-ubyte.gz"), &train()),
        &["no labels file beside it", "train-labels-idx1-ubyte"],
    );
}

#[test]
fn idx_train_missing_says_only_test_is_there() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t10k-images-idx3-ubyte",
        &idx_images(2, 2, 2, |_| 0),
    );
    write(dir.path(), "t10k-labels-idx1-ubyte", &idx_labels(&[0, 1]));
    assert_err(
        load(dir.path(), &train()),
        &[
            "only holds the test set",
            "train-images-idx3-ubyte",
            "pass --split test",
            "t10k-images-idx3-ubyte)",
        ],
    );
    assert_eq!(
        load(dir.path(), &LoadOptions::split(Split::Test))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn idx_wrong_magic() {
    let mut b = idx_images(1, 2, 2, |_| 0);
    b[0] = 0x50;
    assert_err(
        load_bad_images(&b, 1),
        &["train-images-idx3-ubyte", "not an IDX file", "50 00 08 03"],
    );
}

#[test]
fn idx_wrong_data_type() {
    let mut b = idx_images(1, 2, 2, |_| 0);
    b[2] = 0x0d;
    assert_err(
        load_bad_images(&b, 1),
        &["data type 0x0d at byte 2", "0x08 (unsigned byte)"],
    );
}

#[test]
fn idx_wrong_dimension_count() {
    let mut b = idx_images(1, 2, 2, |_| 0);
    b[3] = 2;
    assert_err(
        load_bad_images(&b, 1),
        &["has 2 dimensions", "expected 3 (images"],
    );
    // Labels with 3 dimensions.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_images(1, 2, 2, |_| 0),
    );
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_images(1, 2, 2, |_| 0),
    );
    assert_err(
        load(dir.path(), &train()),
        &[
            "train-labels-idx1-ubyte",
            "has 3 dimensions",
            "expected 1 (labels",
        ],
    );
}

#[test]
fn idx_dims_overflowing_or_over_cap_are_refused_before_allocation() {
    let mut b = vec![0, 0, 8, 3];
    for d in [u32::MAX, u32::MAX, u32::MAX] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    assert_err(load_bad_images(&b, 1), &["more than the limit"]);
    // Same in a gzip stream, where the length is unknown.
    assert_err(load_bad_images(&gz(&b), 1), &["more than the limit"]);
}

#[test]
fn idx_zero_rows() {
    let b = idx_images(1, 0, 5, |_| 0);
    assert_err(
        load_bad_images(&b, 1),
        &["rows and columns must be at least 1"],
    );
}

#[test]
fn idx_truncated_and_over_long() {
    let full = idx_images(3, 4, 4, |i| i as u8);
    assert_err(
        load_bad_images(&full[..full.len() - 5], 3),
        &["truncated", "should be 64 bytes, but it has 59"],
    );
    assert_err(
        load_bad_images(&full[..10], 3),
        &["truncated: the header ends at byte 10"],
    );
    assert_err(load_bad_images(&full[..2], 3), &["truncated: 2 bytes"]);
    let mut long = full.clone();
    long.extend_from_slice(&[1, 2, 3]);
    assert_err(load_bad_images(&long, 3), &["over-long", "byte offset 64"]);
    // gzip: only the decompressed stream tells.
    assert_err(
        load_bad_images(&gz(&full[..full.len() - 5]), 3),
        &[
            "truncated",
            "data ends after 43 bytes (byte offset 59 after gzip decompression)",
        ],
    );
    assert_err(
        load_bad_images(&gz(&long), 3),
        &["over-long", "after gzip decompression", "byte offset 64"],
    );
}

#[test]
fn idx_corrupt_gzip() {
    let mut z = gz(&idx_images(50, 4, 4, |i| (i * 31 % 251) as u8));
    let mid = z.len() / 2;
    for b in &mut z[mid..mid + 8] {
        *b ^= 0x5a;
    }
    assert_err(
        load_bad_images(&z, 50),
        &["train-images-idx3-ubyte", "corrupt gzip data"],
    );
    // A stream cut short (no CRC trailer).
    let z = gz(&idx_images(5, 4, 4, |i| i as u8));
    assert_err(
        load_bad_images(&z[..z.len() - 6], 5),
        &["corrupt gzip data"],
    );
}

#[test]
fn idx_gzip_bomb_stops_at_the_cap() {
    // The header claims 16 MiB, the cap is 1 MiB: refused without inflating anything.
    let mut b = vec![0, 0, 8, 3];
    for d in [16u32, 1024, 1024] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.resize(b.len() + (16 << 20), 0);
    let z = gz(&b);
    let p = Path::new("bomb.gz");
    let e = read_idx(&z[..], p, None, 3, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the limit of 1048576 bytes"), "{e}");
    // A header claiming little followed by much: stops one byte past what it declared.
    let mut small = idx_images(1, 2, 2, |_| 0);
    small.resize(small.len() + (16 << 20), 0);
    let z = gz(&small);
    let e = read_idx(&z[..], p, None, 3, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(e.contains("over-long"), "{e}");
}

#[test]
fn idx_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_images(3, 2, 2, |_| 0),
    );
    write(dir.path(), "train-labels-idx1-ubyte", &idx_labels(&[0, 1]));
    assert_err(
        load(dir.path(), &train()),
        &[
            "train-labels-idx1-ubyte",
            "has 2 labels but",
            "has 3 images",
        ],
    );
}

#[test]
fn idx_label_out_of_range_when_classes_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("fashion");
    write(&sub, "train-images-idx3-ubyte", &idx_images(3, 2, 2, |_| 0));
    write(&sub, "train-labels-idx1-ubyte", &idx_labels(&[0, 12, 1]));
    assert_err(
        load(&sub, &train()),
        &["label 12 of item 1 (byte offset 9)", "below 10"],
    );
    write(&sub, "train-labels-idx1-ubyte", &idx_labels(&[0, 9, 1]));
    let ds = load(&sub, &train()).unwrap();
    assert_eq!(ds.classes[9], "Ankle boot");
}

#[test]
fn idx_empty_dataset() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_images(0, 2, 2, |_| 0),
    );
    write(dir.path(), "train-labels-idx1-ubyte", &idx_labels(&[]));
    assert_err(load(dir.path(), &train()), &["empty"]);
}

#[test]
fn idx_channels_and_resize_options() {
    let dir = idx_dir(2, false);
    let opts = LoadOptions {
        channels: Some(3),
        ..train()
    };
    let ds = load(dir.path(), &opts).unwrap();
    assert_eq!(ds.shape, [3, 2, 3]);
    assert_eq!(&ds.image(1)[..6], &ds.image(1)[6..12]);
    let opts = LoadOptions {
        size: Some((4, 6)),
        ..train()
    };
    assert_err(load(dir.path(), &opts), &["expected 4x6", "resiz"]);
    let opts = LoadOptions {
        size: Some((4, 6)),
        resize: true,
        ..train()
    };
    assert_eq!(load(dir.path(), &opts).unwrap().shape, [1, 4, 6]);
}

// ---------------------------------------------------------------- image folders

fn png(dir: &Path, rel: &str, w: u32, h: u32, v: u8) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(w, h, image::Luma([v]))
        .save(&p)
        .unwrap();
    p
}

fn rgb_png(dir: &Path, rel: &str, w: u32, h: u32, px: [u8; 3]) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(px))
        .save(&p)
        .unwrap();
    p
}

#[test]
fn labels_txt_with_integer_labels() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "zeros/a.png", 4, 3, 10);
    png(dir.path(), "ones/b.png", 4, 3, 20);
    png(dir.path(), "c d.png", 4, 3, 30);
    write(
        dir.path(),
        "labels.txt",
        b"# a comment\n\nzeros/a.png 0\n  ones/b.png\t1  \nc d.png 2\n",
    );
    let ds = load(dir.path(), &train()).unwrap();
    assert_eq!(ds.shape, [1, 3, 4]);
    assert_eq!(ds.labels, vec![0, 1, 2]);
    assert_eq!(ds.classes, vec!["0", "1", "2"]);
    assert_eq!(ds.image(1), &[20; 12]);
    // Also through the labels.txt path itself.
    assert_eq!(load(&dir.path().join("labels.txt"), &train()).unwrap(), ds);
}

#[test]
fn labels_txt_with_names_sorts_them() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 2, 2, 1);
    png(dir.path(), "b.png", 2, 2, 2);
    png(dir.path(), "c.png", 2, 2, 3);
    write(
        dir.path(),
        "labels.txt",
        b"a.png dog\nb.png cat\nc.png Zebra\n",
    );
    let ds = load(dir.path(), &train()).unwrap();
    assert_eq!(ds.classes, vec!["Zebra", "cat", "dog"]);
    assert_eq!(ds.labels, vec![2, 1, 0]);
}

#[test]
fn labels_txt_mixing_indices_and_names_is_refused_at_the_odd_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (i, f) in ["a", "b", "c", "d"].iter().enumerate() {
        png(dir.path(), &format!("{f}.png"), 2, 2, i as u8);
    }
    // Mostly names: the index is the odd one.
    write(
        dir.path(),
        "labels.txt",
        b"a.png dog\nb.png cat\nc.png 3\nd.png cat\n",
    );
    assert_err(
        load(dir.path(), &train()),
        &[
            "labels.txt:3: label \"3\" is a class index, but most lines use class names \
             (line 1: \"dog\")",
            "# classes:",
        ],
    );
    let report = inspect(dir.path()).unwrap();
    assert_eq!(report.classes, vec!["cat", "dog"]);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].line, Some(3));
    // Mostly indices: the name is the odd one.
    write(
        dir.path(),
        "labels.txt",
        b"a.png 0\nb.png 1\nc.png cat\nd.png 1\n",
    );
    assert_err(
        load(dir.path(), &train()),
        &["labels.txt:3: label \"cat\" is a class name, but most lines use class indices (line 1: \"0\")"],
    );
    let report = inspect(dir.path()).unwrap();
    assert_eq!(report.classes, vec!["0", "1"]);
    assert_eq!(report.problems.len(), 1, "{report}");
}

#[test]
fn labels_txt_declared_classes() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 2, 2, 1);
    png(dir.path(), "b.png", 2, 2, 2);
    write(
        dir.path(),
        "labels.txt",
        b"# classes: T-shirt/top, Ankle boot\na.png 1\nb.png T-shirt/top\n",
    );
    let ds = load(dir.path(), &train()).unwrap();
    assert_eq!(ds.classes, vec!["T-shirt/top", "Ankle boot"]);
    assert_eq!(ds.labels, vec![1, 0]);
    write(
        dir.path(),
        "labels.txt",
        b"# classes: a, b\na.png 1\nb.png 2\n",
    );
    assert_err(
        load(dir.path(), &train()),
        &["labels.txt:3: label 2 is out of range"],
    );
}

#[test]
fn labels_txt_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 2, 2, 1);
    let cases: [(&[u8], &[&str]); 4] = [
        (
            b"a.png 0\nlonely\n",
            &["labels.txt:2: expected \"FILE LABEL\", got \"lonely\""],
        ),
        (
            b"a.png 0\nmissing.png 1\n",
            &["labels.txt:2: image file \"missing.png\" does not exist"],
        ),
        (b"/etc/passwd 0\n", &["labels.txt:1:", "absolute path"]),
        (b"# x\n../a.png 0\n", &["labels.txt:2:", "`..`"]),
    ];
    for (text, parts) in cases {
        write(dir.path(), "labels.txt", text);
        assert_err(load(dir.path(), &train()), parts);
    }
    write(dir.path(), "labels.txt", b"# only comments\n\n");
    assert_err(load(dir.path(), &train()), &["labels.txt", "empty"]);
    write(dir.path(), "labels.txt", b"a.png 0\n\xff\xfe 1\n");
    assert_err(load(dir.path(), &train()), &["not UTF-8", "offset 8"]);
}

#[test]
fn image_size_mismatch_names_the_file_unless_resizing() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 4, 4, 1);
    png(dir.path(), "b.png", 5, 4, 2);
    write(dir.path(), "labels.txt", b"a.png 0\nb.png 1\n");
    assert_err(
        load(dir.path(), &train()),
        &[
            "b.png",
            "image is 4x5",
            "expected 4x4",
            "a.png",
            "pass --resize",
        ],
    );
    let opts = LoadOptions {
        resize: true,
        ..train()
    };
    let ds = load(dir.path(), &opts).unwrap();
    assert_eq!(ds.shape, [1, 4, 4]);
    assert!(ds.image(1).iter().all(|&b| b == 2));
}

#[test]
fn huge_or_corrupt_image_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A BMP header claiming 20,000 x 20,000 pixels (over our 16384 limit), with no pixel data.
    let mut bmp = Vec::new();
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&(54u32).to_le_bytes()); // file size (a lie)
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&(54u32).to_le_bytes()); // pixel data offset
    bmp.extend_from_slice(&(40u32).to_le_bytes()); // BITMAPINFOHEADER
    bmp.extend_from_slice(&(20_000i32).to_le_bytes());
    bmp.extend_from_slice(&(20_000i32).to_le_bytes());
    bmp.extend_from_slice(&(1u16).to_le_bytes());
    bmp.extend_from_slice(&(24u16).to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    write(dir.path(), "huge.bmp", &bmp);
    write(dir.path(), "junk.png", b"\x89PNG\r\n\x1a\nnot really");
    write(dir.path(), "labels.txt", b"huge.bmp 0\n");
    assert_err(
        load(dir.path(), &train()),
        &["huge.bmp: not a readable BMP (it is too large: at most 16384 pixels a side"],
    );
    write(dir.path(), "labels.txt", b"junk.png 0\n");
    assert_err(
        load(dir.path(), &train()),
        &["junk.png: not a readable PNG ("],
    );
}

#[test]
fn a_damaged_image_is_said_to_be_unreadable_in_words_without_the_decoder_s_internals() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "good.png", 4, 4, 7);
    let good = std::fs::read(dir.path().join("good.png")).unwrap();
    // The IDAT chunk's length made wrong: its checksum no longer matches.
    let idat = good.windows(4).position(|w| w == b"IDAT").unwrap();
    let mut bad_crc = good.clone();
    bad_crc[idat - 4..idat].copy_from_slice(&5u32.to_be_bytes());
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "crc.png",
            bad_crc,
            "not a readable PNG (a checksum does not match: the file is damaged)",
        ),
        (
            "cut.png",
            good[..good.len() / 2].to_vec(),
            "not a readable PNG (the file ends too early",
        ),
        (
            "text.png",
            b"hello".to_vec(),
            "not a readable PNG (it does not start as one does",
        ),
        ("text.jpg", b"hello".to_vec(), "not a readable JPEG ("),
    ];
    for (name, bytes, says) in cases {
        write(dir.path(), name, &bytes);
        let e = crate::data::load_image(&dir.path().join(name), [1, 4, 4], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{name}: {e}");
        assert!(
            !e.contains('{') && !e.contains("ChunkType") && !e.contains('\n'),
            "{e}"
        );
    }
}

#[test]
fn class_folders_gray_and_rgb() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "dog/1.png", 3, 2, 5);
    png(dir.path(), "cat/2.png", 3, 2, 6);
    png(dir.path(), "cat/1.png", 3, 2, 7);
    write(dir.path(), "cat/notes.txt", b"ignored");
    let ds = load(dir.path(), &train()).unwrap();
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!(ds.labels, vec![0, 0, 1]);
    assert_eq!(ds.shape, [1, 2, 3]);
    assert_eq!(ds.image(0)[0], 7, "files sorted by name within a class");
    // One RGB image makes the whole set RGB, stored CHW.
    rgb_png(dir.path(), "dog/2.png", 3, 2, [10, 20, 30]);
    let ds = load(dir.path(), &train()).unwrap();
    assert_eq!(ds.shape, [3, 2, 3]);
    assert_eq!(
        ds.image(3),
        &[10, 10, 10, 10, 10, 10, 20, 20, 20, 20, 20, 20, 30, 30, 30, 30, 30, 30]
    );
    assert_eq!(ds.image(0), &[7; 18]);
    // Forced to grayscale.
    let opts = LoadOptions {
        channels: Some(1),
        ..train()
    };
    assert_eq!(load(dir.path(), &opts).unwrap().shape, [1, 2, 3]);
}

#[test]
fn empty_folders_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert_err(load(dir.path(), &train()), &["no dataset found"]);
    std::fs::create_dir(dir.path().join("cat")).unwrap();
    assert_err(load(dir.path(), &train()), &["empty"]);
}

// ---------------------------------------------------------------- batch, split, subset

fn toy(n: usize, classes: usize) -> Dataset {
    Dataset {
        images: (0..n * 2 * 2 * 2).map(|i| (i % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % classes) as u16).collect(),
        shape: [2, 2, 2],
        classes: (0..classes).map(|i| i.to_string()).collect(),
        source: "toy".into(),
    }
}

#[test]
fn batch_normalizes_per_channel_and_reuses_buffers() {
    let ds = toy(4, 2);
    let norm = Normalization {
        mean: vec![0.0, 0.5],
        std: vec![1.0, 0.25],
    };
    let mut x = Tensor::default();
    let mut labels = Vec::new();
    ds.batch(&[3, 1], &norm, &mut x, &mut labels);
    assert_eq!(x.shape(), &[2, 2, 2, 2]);
    assert_eq!(labels, vec![1, 1]);
    let b = ds.image(3);
    assert!((x.data()[0] - f32::from(b[0]) / 255.0).abs() < 1e-6);
    assert!((x.data()[4] - (f32::from(b[4]) / 255.0 - 0.5) / 0.25).abs() < 1e-5);
    let ptr = x.data().as_ptr();
    ds.batch(&[0], &norm, &mut x, &mut labels);
    assert_eq!(x.shape(), &[1, 2, 2, 2]);
    assert_eq!(
        x.data().as_ptr(),
        ptr,
        "no reallocation for a smaller batch"
    );
}

#[test]
fn fit_normalization() {
    let ds = Dataset {
        images: vec![0, 255, 0, 255, 51, 51, 51, 51],
        labels: vec![0],
        shape: [2, 2, 2],
        classes: vec!["a".into()],
        source: "t".into(),
    };
    let n = Normalization::fit(&ds);
    assert!((n.mean[0] - 0.5).abs() < 1e-6 && (n.std[0] - 0.5).abs() < 1e-6);
    assert!((n.mean[1] - 0.2).abs() < 1e-6 && n.std[1] == 1.0);
}

#[test]
fn split_is_stratified_deterministic_and_disjoint() {
    let ds = toy(100, 4);
    let (a, b) = ds.clone().split(0.2, 7).unwrap();
    assert_eq!((a.len(), b.len()), (80, 20));
    assert_eq!(b.class_counts(), vec![5, 5, 5, 5]);
    let (a2, b2) = ds.clone().split(0.2, 7).unwrap();
    assert_eq!((a.images.clone(), b.images.clone()), (a2.images, b2.images));
    let (_, b3) = ds.clone().split(0.2, 8).unwrap();
    assert_ne!(b.images, b3.images);
    assert!(ds.clone().split(0.0, 1).is_err());
    assert!(ds.clone().split(1.0, 1).is_err());
    assert!(toy(1, 1).split(0.5, 1).is_err());
}

#[test]
fn subset_copies_in_order() {
    let ds = toy(5, 5);
    let s = ds.subset(&[4, 0]);
    assert_eq!(s.labels, vec![4, 0]);
    assert_eq!(s.image(0), ds.image(4));
}

// ---------------------------------------------------------------- demo, export, inspect

#[test]
fn demo_set_is_balanced_fashion_mnist() {
    let tr = demo(Split::Train).unwrap();
    let te = demo(Split::Test).unwrap();
    assert_eq!((tr.len(), te.len()), (2000, 500));
    assert_eq!(tr.shape, [1, 28, 28]);
    assert_eq!(tr.class_counts(), vec![200; 10]);
    assert_eq!(te.class_counts(), vec![50; 10]);
    assert_eq!(tr.classes[0], "T-shirt/top");
    assert_eq!(tr.source, "built-in demo set (Fashion-MNIST subset)");
}

#[test]
fn export_then_load_round_trips_and_offsets_are_disjoint() {
    let ds = demo(Split::Test).unwrap();
    let out1 = tempfile::tempdir().unwrap();
    let out2 = tempfile::tempdir().unwrap();
    assert_eq!(
        export(&ds, out1.path(), Some(&[1, 8]), Some(3), 0)
            .unwrap()
            .images,
        6
    );
    assert_eq!(
        export(&ds, out2.path(), Some(&[1, 8]), Some(3), 3)
            .unwrap()
            .per_class,
        [("Trouser".to_string(), 3), ("Bag".to_string(), 3)]
    );
    let a = load(out1.path(), &train()).unwrap();
    let b = load(out2.path(), &train()).unwrap();
    // The selected classes become the export's classes 0 and 1, in the order given.
    assert_eq!(a.classes, vec!["Trouser".to_string(), "Bag".to_string()]);
    assert_eq!(a.class_counts(), vec![3, 3]);
    for i in 0..a.len() {
        for j in 0..b.len() {
            assert_ne!(a.image(i), b.image(j));
        }
    }
    // The first image of class 1 in dataset order is exported unchanged.
    let first = (0..ds.len()).find(|&i| ds.labels[i] == 1).unwrap();
    assert_eq!(a.image(0), ds.image(first));
    let text = std::fs::read_to_string(out1.path().join("labels.txt")).unwrap();
    assert!(text.starts_with("# classes: Trouser, Bag\n"), "{text}");
    assert!(text.contains(&format!("{first:05}_1.png 0\n")));
    let stray = std::fs::read_dir(out1.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(stray, 0, "a temporary file was left behind");
    assert!(export(&ds, out1.path(), Some(&[1, 1]), None, 0).is_err());
    assert!(export(&ds, out1.path(), Some(&[10]), None, 0).is_err());
}

#[test]
fn inspect_labels_txt_collects_problems() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 4, 4, 1);
    png(dir.path(), "b.png", 4, 4, 2);
    png(dir.path(), "c.png", 4, 4, 1); // same pixels as a.png, other label
    png(dir.path(), "d.png", 5, 4, 3); // other size
    png(dir.path(), "unlisted.png", 4, 4, 9);
    write(dir.path(), "bad.png", b"not an image");
    write(
        dir.path(),
        "labels.txt",
        b"a.png 0\nb.png 1\nc.png 1\nd.png 0\na.png 0\nnope.png 1\nbroken\nbad.png 0\n",
    );
    let r = inspect(dir.path()).unwrap();
    let text = r.to_string();
    let expect = [
        "labels.txt:5: \"a.png\" is listed again (first at line 1)",
        "labels.txt:6: image file \"nope.png\" does not exist",
        "labels.txt:7: expected \"FILE LABEL\", got \"broken\"",
        "unlisted.png: image has no label",
        "c.png: same pixels as",
        "labelled \"1\" instead of \"0\"",
        "d.png: image is 4x5 (height x width) but most images are 4x4",
        "bad.png: unreadable image",
    ];
    for e in expect {
        assert!(text.contains(e), "report should contain {e:?}:\n{text}");
    }
    assert_eq!(r.problems.len(), 7, "{text}");
    assert_eq!(r.sets[0].images, 4);
    assert_eq!(r.sets[0].counts, vec![2, 2]);
    assert_eq!(r.sets[0].shape, Some([1, 4, 4]));
    assert_eq!((r.sets[0].pixel_min, r.sets[0].pixel_max), (1, 3));
}

#[test]
fn inspect_class_folders_and_idx() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "cat/1.png", 2, 2, 1);
    png(dir.path(), "dog/1.png", 2, 2, 1);
    png(dir.path(), "stray.png", 2, 2, 1);
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let text = inspect(dir.path()).unwrap().to_string();
    for e in [
        "stray.png: image has no label",
        "empty: class folder holds no",
        "same pixels as",
    ] {
        assert!(text.contains(e), "{e:?}:\n{text}");
    }
    let dir = idx_dir(6, true);
    let r = inspect(dir.path()).unwrap();
    assert_eq!(r.sets.len(), 1, "{r}");
    assert_eq!(r.sets[0].counts[..3], [2, 2, 2]);
    assert!(r.problems.is_empty(), "{r}");
    // A broken IDX file is a problem in the report, not an error.
    write(dir.path(), "t10k-images-idx3-ubyte", &[0, 0, 9, 3]);
    write(dir.path(), "t10k-labels-idx1-ubyte", &idx_labels(&[0]));
    let r = inspect(dir.path()).unwrap();
    assert_eq!(r.problems.len(), 1, "{r}");
    assert!(
        r.to_string().contains("unsupported IDX data type 0x09"),
        "{r}"
    );
}

#[test]
fn the_name_demo_is_the_built_in_set_wherever_a_path_goes() {
    let demo_path = Path::new(DEMO_NAME);
    for split in [Split::Train, Split::Test] {
        assert_eq!(
            load(demo_path, &LoadOptions::split(split)).unwrap(),
            demo(split).unwrap()
        );
    }
    assert!(has_test_split(demo_path));
    // Asked for another size, it is converted like IDX data (or refused without resizing).
    let opts = LoadOptions {
        size: Some((14, 14)),
        ..LoadOptions::split(Split::Test)
    };
    assert_err(load(demo_path, &opts), &["pass --resize"]);
    let ds = load(
        demo_path,
        &LoadOptions {
            resize: true,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(ds.shape, [1, 14, 14]);
    let report = inspect(demo_path).unwrap();
    assert_eq!(report.sets.len(), 2);
    assert_eq!(report.sets[1].images, 500);
    assert!(report.problems.is_empty(), "{report}");
    // `./demo` is a folder of that name, not the built-in set.
    assert!(!is_demo(Path::new("./demo")));
}

#[test]
fn image_files_under_a_folder_are_found_recursively_and_sorted() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "b.png", 2, 2, 1);
    png(dir.path(), "a/z.PNG", 2, 2, 1);
    png(dir.path(), "a/deeper/y.png", 2, 2, 1);
    png(dir.path(), ".hidden/x.png", 2, 2, 1);
    write(dir.path(), "notes.txt", b"not an image");
    let found: Vec<PathBuf> = image_files_under(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
        .collect();
    let want: Vec<PathBuf> = ["a/deeper/y.png", "a/z.PNG", "b.png"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(found, want);
    let empty = tempfile::tempdir().unwrap();
    let e = image_files_under(empty.path()).unwrap_err().to_string();
    assert!(
        e.contains("holds no .png, .jpg, .jpeg or .bmp image"),
        "{e}"
    );
}

/// One image normalised on its own (prediction, visualize, the page) gets the bits a
/// training batch gives it, and stays within a few ulps of `(b / 255 - mean) / std`, for
/// every byte value, with Fashion-MNIST-like and RGB (ImageNet) statistics.
#[test]
fn one_image_is_normalised_as_in_a_training_batch() {
    let images: Vec<u8> = (0..=255).chain((0..=255).rev()).chain(0..=255).collect();
    let ds = Dataset {
        images: images.clone(),
        labels: vec![0],
        shape: [3, 16, 16],
        classes: vec!["a".into()],
        source: "bytes".into(),
    };
    let norm = Normalization {
        mean: vec![0.2860, 0.456, 0.406],
        std: vec![0.3530, 0.224, 0.225],
    };
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    ds.batch(&[0], &norm, &mut x, &mut labels);
    let one = norm.image(&images);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one), bits(x.data()));
    for (i, (&b, &v)) in images.iter().zip(&one).enumerate() {
        let c = i / 256;
        let quotient = (f32::from(b) / 255.0 - norm.mean[c]) / norm.std[c];
        assert!(
            (v - quotient).abs() <= 4.0 * f32::EPSILON * quotient.abs().max(1.0),
            "byte {b} of channel {c}: {v} against {quotient}"
        );
    }
    // An image with no pixels is no error.
    assert!(norm.image(&[]).is_empty());
}

/// CIFAR-10 records: for each label, the label byte then 3,072 image bytes, byte k of image
/// i being `f(i, k)`.
fn cifar_records(labels: &[u8], f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        v.push(l);
        v.extend((0..3072).map(|k| f(i, k)));
    }
    v
}

/// A CIFAR-10 folder: `data_batch_1.bin` and `data_batch_2.bin` of 3 and 2 images, and
/// `test_batch.bin` of 2; plane c of image i of file f (the test file: 3) is
/// `50 f + 10 i + c` everywhere.
fn cifar_dir(root: &Path) {
    let pixel = |file: usize| move |i: usize, k: usize| (50 * file + 10 * i + k / 1024) as u8;
    write(
        root,
        "data_batch_1.bin",
        &cifar_records(&[0, 9, 3], pixel(1)),
    );
    write(root, "data_batch_2.bin", &cifar_records(&[5, 5], pixel(2)));
    write(root, "test_batch.bin", &cifar_records(&[1, 2], pixel(3)));
}

#[test]
fn cifar_folders_read_their_batches_in_order_with_the_classes_of_batches_meta_txt() {
    let dir = tempfile::tempdir().unwrap();
    cifar_dir(dir.path());
    // Without batches.meta.txt: CIFAR-10's names.
    let ds = load(dir.path(), &train()).unwrap();
    assert_eq!(ds.shape, [3, 32, 32]);
    assert_eq!(ds.labels, [0, 9, 3, 5, 5]);
    assert_eq!(ds.classes, CIFAR10_CLASSES);
    // Record 1 of data_batch_1.bin: planes R, G, B of 60, 61, 62, the CHW order unchanged.
    let img = ds.image(1);
    assert!(img[..1024].iter().all(|&b| b == 60) && img[2048..].iter().all(|&b| b == 62));
    assert_eq!(
        ds.image(3)[0],
        100,
        "data_batch_2.bin follows data_batch_1.bin"
    );
    assert!(
        ds.source.contains("data_batch_1.bin to data_batch_2.bin"),
        "{}",
        ds.source
    );
    let test = load(dir.path(), &LoadOptions::split(Split::Test)).unwrap();
    assert_eq!(test.labels, [1, 2]);
    assert!(has_test_split(dir.path()));

    // The names of batches.meta.txt (with the blank line the official file ends with).
    let names = "plane\ncar\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    write(dir.path(), "batches.meta.txt", names.as_bytes());
    let ds = load(dir.path(), &train()).unwrap();
    assert_eq!(ds.classes[..2], ["plane", "car"]);
    assert_eq!(ds.classes.len(), 10);

    // The tarball's layout: the files in cifar-10-batches-bin/ of the folder given.
    let outer = tempfile::tempdir().unwrap();
    cifar_dir(&outer.path().join("cifar-10-batches-bin"));
    let ds = load(outer.path(), &train()).unwrap();
    assert_eq!(ds.len(), 5);
    assert!(has_test_split(outer.path()));

    // One batch file: its records, whatever the split.
    let one = dir.path().join("test_batch.bin");
    let ds = load(&one, &train()).unwrap();
    assert_eq!(
        (ds.labels.clone(), ds.classes[0].as_str()),
        (vec![1, 2], "plane")
    );
    let (images, shape) = load_cifar_images(&one).unwrap();
    assert_eq!((images.len(), shape), (2 * 3072, [3, 32, 32]));
    assert!(is_cifar_file(&one) && !is_cifar_file(Path::new("a.png")));

    // Converted to the config's channels and size as IDX data is.
    let gray = LoadOptions {
        channels: Some(1),
        size: Some((16, 16)),
        resize: true,
        ..train()
    };
    assert_eq!(load(dir.path(), &gray).unwrap().shape, [1, 16, 16]);
}

#[test]
fn cifar_errors_name_the_file_and_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = cifar_records(&[1, 2, 3], |_, _| 7);
    bytes.truncate(2 * 3073 + 100);
    let path = write(dir.path(), "data_batch_1.bin", &bytes);
    assert_err(
        load(dir.path(), &train()),
        &[
            &path.display().to_string(),
            "6,246 bytes is not a whole number of 3,073-byte records",
            "record 2 (byte offset 6,146) is cut short after 100 bytes",
        ],
    );
    write(
        dir.path(),
        "data_batch_1.bin",
        &cifar_records(&[1, 12, 3], |_, _| 7),
    );
    assert_err(
        load(dir.path(), &train()),
        &[
            "data_batch_1.bin: record 1 (byte offset 3,073): label 12 is above 9",
            "CIFAR-10 has 10 classes",
        ],
    );
    // Fewer classes named: the bound is theirs.
    write(dir.path(), "batches.meta.txt", b"a\nb\n");
    assert_err(
        load(dir.path(), &train()),
        &["label 12 is above 1 (batches.meta.txt names 2 classes"],
    );
    write(dir.path(), "batches.meta.txt", b"a\n\nb\n");
    assert_err(
        load(dir.path(), &train()),
        &["batches.meta.txt:2: blank line"],
    );
    std::fs::remove_file(dir.path().join("batches.meta.txt")).unwrap();
    // CIFAR-100's records (two label bytes) are told apart.
    write(dir.path(), "data_batch_1.bin", &vec![0; 3074 * 3]);
    assert_err(
        load(dir.path(), &train()),
        &["CIFAR-100's records of 3,074 bytes"],
    );
    write(dir.path(), "data_batch_1.bin", b"");
    assert_err(load(dir.path(), &train()), &["data_batch_1.bin: empty"]);
    // A folder with only the training set has no test split, and says so when asked.
    write(
        dir.path(),
        "data_batch_1.bin",
        &cifar_records(&[1], |_, _| 7),
    );
    assert!(!has_test_split(dir.path()));
    assert_err(
        load(dir.path(), &LoadOptions::split(Split::Test)),
        &["no test_batch.bin: this folder only holds the training set"],
    );
}

#[test]
fn inspect_reports_a_cifar_folder_split_by_split() {
    let dir = tempfile::tempdir().unwrap();
    cifar_dir(dir.path());
    let r = inspect(dir.path()).unwrap();
    assert_eq!(r.format, "CIFAR-10");
    assert_eq!(r.classes.len(), 10);
    let sets: Vec<(&str, usize)> = r.sets.iter().map(|s| (s.name.as_str(), s.images)).collect();
    assert_eq!(sets, [("train", 5), ("test", 2)]);
    assert_eq!(r.sets[0].shape, Some([3, 32, 32]));
    assert_eq!(r.sets[0].counts[5], 2);
    assert!(r.problems.is_empty(), "{r}");
    assert_eq!(skipped_images(dir.path()), None);
    // A bad label is a problem of the report, naming the record.
    write(
        dir.path(),
        "test_batch.bin",
        &cifar_records(&[1, 10], |i, _| i as u8 + 100),
    );
    let r = inspect(dir.path()).unwrap();
    assert_eq!(r.problems.len(), 1, "{r}");
    assert!(
        r.to_string()
            .contains("record 1 (byte offset 3,073): label 10"),
        "{r}"
    );
    // Only a test set: the absent training set is no problem.
    let only_test = tempfile::tempdir().unwrap();
    write(
        only_test.path(),
        "test_batch.bin",
        &cifar_records(&[4], |_, _| 1),
    );
    let r = inspect(only_test.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    assert_eq!(r.sets.len(), 1);
}
