//! Fuzzing as property tests: the entry points a fuzzer would hit (the config
//! parser, the IDX reader, labels.txt, model files, image decoding) fed with arbitrary bytes
//! and with mutations of valid inputs. None may panic; each either succeeds with a
//! consistent result or returns a one-line error of the expected kind.
//!
//! The same properties are run by the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`).
//! `PROPTEST_CASES` raises the number of cases (the defaults keep this file near 10 s in
//! release mode).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::bytes::{gz, idx_header, idx_images, idx_labels};
use cnn::config;
use cnn::data::{self, LoadOptions, Normalization};
use cnn::init::Init;
use cnn::model::Model;
use cnn::model_file::{self, ModelMeta};
use cnn::Error;
use proptest::prelude::*;
use proptest::test_runner::Config;

const REPORT1: &str = include_str!("../../examples/report1.cfg");

/// `n` cases unless `PROPTEST_CASES` says otherwise.
fn cases(n: u32) -> Config {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n);
    Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    }
}

/// An error's message is one line.
fn one_line(e: &Error) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(!s.contains('\n'), "multi-line error: {s:?}");
    Ok(())
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Tokens that a config or a JSON header is made of, so that insertions make sense.
    let token = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..4),
        prop::sample::select(vec![
            b"x".to_vec(),
            b"=".to_vec(),
            b" ".to_vec(),
            b"\n".to_vec(),
            b"\n ".to_vec(),
            b"#".to_vec(),
            b"0".to_vec(),
            b"9999999".to_vec(),
            b"18446744073709551616".to_vec(),
            b"Dense units=3\n".to_vec(),
            b"Conv2D filters=2 kernel=3\n".to_vec(),
            b"MaxPool2D pool=2\n".to_vec(),
            b"padding=".to_vec(),
            b"stride=".to_vec(),
            b"activation=leaky_relu alpha=".to_vec(),
            b"\"".to_vec(),
            b"{".to_vec(),
            b"}".to_vec(),
            b"[".to_vec(),
            b",".to_vec(),
        ]),
    ];
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), token).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<usize>(), 1..16usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut v: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = v.len();
        match e {
            Edit::Flip(i, b) if len > 0 => v[i % len] ^= b,
            Edit::Set(i, b) if len > 0 => v[i % len] = *b,
            Edit::Insert(i, t) => {
                let at = i % (len + 1);
                v.splice(at..at, t.iter().copied());
            }
            Edit::Delete(i, n) if len > 0 => {
                let at = i % len;
                v.drain(at..(at + n).min(len));
            }
            Edit::Truncate(i) => v.truncate(i % (len + 1)),
            _ => {}
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// Config parser

fn check_config(text: &str) -> Result<(), TestCaseError> {
    match config::parse(text, "fuzz.cfg") {
        Ok(parsed) => {
            let shapes = parsed.spec.shapes();
            prop_assert!(shapes.is_ok(), "parsed but shapes fail: {shapes:?}");
            let params = parsed.spec.param_count().expect("shapes work") as u128;
            prop_assert!(params <= config::MAX_PARAMS);
            for s in shapes.expect("checked") {
                let n: u128 = s.output.iter().map(|&d| d as u128).product();
                prop_assert!(n <= config::MAX_SAMPLE_VALUES);
            }
            prop_assert!(parsed.spec.train_flops_per_sample().is_ok());
            prop_assert_eq!(parsed.layers.len(), parsed.spec.layers.len());
        }
        Err(e) => {
            prop_assert!(
                matches!(e, Error::Config { .. }),
                "not a config error: {e:?}"
            );
            one_line(&e)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Proves: any text is parsed or refused with a one-line config error, never a panic.
    #[test]
    fn config_parse_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        check_config(&text)?;
    }

    /// Proves: any bytes (read lossily as text) are parsed or refused.
    #[test]
    fn config_parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_config(&String::from_utf8_lossy(&bytes))?;
    }

    /// Proves: mutations of report 1's config either parse into a network whose shapes work
    /// and whose sizes are within the caps, or are refused with a one-line config error.
    #[test]
    fn config_parse_of_mutated_report1_parses_within_caps_or_is_refused(
        edits in prop::collection::vec(edit(), 1..6)
    ) {
        let bytes = apply(REPORT1.as_bytes().to_vec(), &edits);
        check_config(&String::from_utf8_lossy(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------
// IDX reader

/// Loads `images` as `x-images-idx3-ubyte` beside a valid labels file of 2 labels.
fn check_idx(images: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x-labels-idx1-ubyte"), idx_labels(&[0, 1])).unwrap();
    let path = dir.path().join("x-images-idx3-ubyte");
    std::fs::write(&path, images).unwrap();
    match data::load(&path, &LoadOptions::default()) {
        Ok(ds) => {
            prop_assert_eq!(ds.len(), 2);
            prop_assert_eq!(ds.images.len(), 2 * ds.image_len());
        }
        Err(e) => {
            prop_assert!(matches!(e, Error::Data { .. }), "not a data error: {e:?}");
            one_line(&e)?;
        }
    }
    Ok(())
}

/// IDX-like bytes: a header with small or huge dims, then some data.
fn idx_like() -> impl Strategy<Value = Vec<u8>> {
    let dim = prop_oneof![0..5u32, Just(u32::MAX), Just(65536u32), any::<u32>()];
    (
        prop::sample::select(vec![1u8, 2, 3, 4]),
        prop::collection::vec(dim, 0..5),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(edit(), 0..3),
    )
        .prop_map(|(nd, dims, data, edits)| {
            let mut v = idx_header(nd, &dims);
            v.extend(data);
            apply(v, &edits)
        })
}

proptest! {
    #![proptest_config(cases(400))]

    /// Proves: arbitrary bytes as an IDX images file load or give a one-line data error.
    #[test]
    fn idx_load_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        check_idx(&bytes)?;
    }

    /// Proves: headers with arbitrary (also huge) dimensions load or are refused, raw.
    #[test]
    fn idx_load_never_panics_on_idx_like_headers(bytes in idx_like()) {
        check_idx(&bytes)?;
    }

    /// Proves: the same inside gzip, where the file length does not bound the header.
    #[test]
    fn idx_load_never_panics_on_gzipped_idx_like_headers(bytes in idx_like()) {
        check_idx(&gz(&bytes))?;
    }

    /// Proves: corrupt gzip streams (a valid one with edits) give a one-line data error.
    #[test]
    fn idx_load_never_panics_on_corrupted_gzip(edits in prop::collection::vec(edit(), 1..4)) {
        check_idx(&apply(gz(&idx_images(2, 2, &[7; 8])), &edits))?;
    }
}

// ---------------------------------------------------------------------------------------
// labels.txt

fn png_bytes(v: u8) -> Vec<u8> {
    crate::bytes::png_bytes(4, 4, |x, y| v ^ (x * 16 + y) as u8)
}

fn check_labels_txt(text: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.png"), png_bytes(0)).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.png"), png_bytes(200)).unwrap();
    std::fs::write(dir.path().join("labels.txt"), text).unwrap();
    match data::load(dir.path(), &LoadOptions::default()) {
        Ok(ds) => {
            prop_assert!(!ds.is_empty());
            prop_assert_eq!(ds.images.len(), ds.len() * ds.image_len());
            prop_assert!(ds.labels.iter().all(|&l| usize::from(l) < ds.classes.len()));
        }
        Err(e) => {
            prop_assert!(
                matches!(e, Error::Data { .. } | Error::Io { .. }),
                "unexpected error kind: {e:?}"
            );
            one_line(&e)?;
        }
    }
    Ok(())
}

fn labels_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a.png 0".to_string()),
        Just("sub/b.png 1".to_string()),
        Just("a.png cat".to_string()),
        Just("sub/b.png dog".to_string()),
        Just("# classes: cat, dog".to_string()),
        Just("# classes: ,".to_string()),
        Just("../a.png 0".to_string()),
        Just("/etc/passwd 0".to_string()),
        Just("missing.png 0".to_string()),
        Just("a.png 70000".to_string()),
        Just("a.png 18446744073709551616".to_string()),
        Just("a.png".to_string()),
        Just("sub 0".to_string()),
        Just("labels.txt 0".to_string()),
        "\\PC{0,20}",
    ]
}

proptest! {
    #![proptest_config(cases(300))]

    /// Proves: arbitrary bytes as labels.txt load or give a one-line data error.
    #[test]
    fn labels_txt_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        check_labels_txt(&bytes)?;
    }

    /// Proves: lines mixing valid, hostile and random entries load consistently or are
    /// refused with a one-line error.
    #[test]
    fn labels_txt_never_panics_on_mixed_lines(lines in prop::collection::vec(labels_line(), 0..8)) {
        check_labels_txt(lines.join("\n").as_bytes())?;
    }
}

// ---------------------------------------------------------------------------------------
// Model files

const MODEL_CONFIG: &str = "3\nInput shape=1x4x4\n\
Conv2D filters=2 kernel=3x3 padding=same activation=relu\n\
MaxPool2D pool=2\n\
Dense units=2 activation=softmax\n";

/// The bytes of a valid, small saved model.
fn model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let parsed = config::parse(MODEL_CONFIG, "model").unwrap();
        let model = Model::new(&parsed.spec, Init::He, 3).unwrap();
        let meta = ModelMeta {
            config: MODEL_CONFIG.to_string(),
            classes: vec!["a".into(), "b".into()],
            normalization: Normalization::identity(1),
            seed: 3,
        };
        model_file::to_bytes(&model, &[], model_file::meta_map(&meta)).unwrap()
    })
}

fn save_bytes(dir: &Path, name: &str, model: &Model, meta: &ModelMeta) -> (PathBuf, Vec<u8>) {
    let p = dir.join(name);
    model_file::save(&p, model, meta).unwrap();
    let b = std::fs::read(&p).unwrap();
    (p, b)
}

fn check_model_file(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(&path, bytes).unwrap();
    match model_file::load(&path) {
        Ok((model, meta)) => {
            // Save, load, save again: the same bytes and the same model.
            let (p1, b1) = save_bytes(dir.path(), "1.safetensors", &model, &meta);
            let (m2, meta2) = model_file::load(&p1).expect("a saved model loads");
            prop_assert_eq!(&meta2, &meta);
            let (_, b2) = save_bytes(dir.path(), "2.safetensors", &m2, &meta2);
            prop_assert!(b1 == b2, "save-load-save changed the bytes");
        }
        Err(e) => {
            prop_assert!(
                matches!(e, Error::Model { .. } | Error::Config { .. }),
                "unexpected error kind: {e:?}"
            );
            one_line(&e)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(400))]

    /// Proves: arbitrary bytes as a model file give a one-line error, never a panic.
    #[test]
    fn model_file_load_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_model_file(&bytes)?;
    }

    /// Proves: arbitrary bytes after a plausible 8-byte header length are refused.
    #[test]
    fn model_file_load_never_panics_on_a_plausible_header_length(
        n in 0u64..300, rest in prop::collection::vec(any::<u8>(), 0..300)
    ) {
        let mut v = n.to_le_bytes().to_vec();
        v.extend(rest);
        check_model_file(&v)?;
    }

    /// Proves: a valid model with byte flips, insertions, deletions or truncations either
    /// loads (and then round-trips byte for byte) or is refused with a one-line error.
    #[test]
    fn model_file_load_of_a_mutated_model_round_trips_or_is_refused(
        edits in prop::collection::vec(edit(), 1..4)
    ) {
        check_model_file(&apply(model_bytes().to_vec(), &edits))?;
    }
}

// ---------------------------------------------------------------------------------------
// Image decoding

fn bmp_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 90, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Bmp).unwrap();
    out.into_inner()
}

fn check_image(bytes: &[u8], ext: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("x.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    for (shape, resize) in [([1, 4, 4], true), ([3, 2, 3], false)] {
        match data::load_image(&path, shape, resize) {
            Ok(v) => prop_assert_eq!(v.len(), shape.iter().product::<usize>()),
            Err(e) => {
                prop_assert!(
                    matches!(e, Error::Data { .. } | Error::Io { .. }),
                    "unexpected error kind: {e:?}"
                );
                one_line(&e)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(400))]

    /// Proves: arbitrary bytes as an image decode or give a one-line data error.
    #[test]
    fn load_image_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        ext in prop::sample::select(vec!["png", "jpg", "bmp", "bin"])
    ) {
        check_image(&bytes, ext)?;
    }

    /// Proves: mutated PNG, BMP and JPEG files decode or give a one-line data error.
    #[test]
    fn load_image_never_panics_on_mutated_images(
        which in 0..3usize,
        edits in prop::collection::vec(edit(), 1..4)
    ) {
        let (bytes, ext) = match which {
            0 => (png_bytes(9), "png"),
            1 => (bmp_bytes(), "bmp"),
            _ => (jpeg_bytes(), "jpg"),
        };
        check_image(&apply(bytes, &edits), ext)?;
    }
}

fn jpeg_bytes() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let img =
                image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 99]));
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
            out.into_inner()
        })
        .clone()
}
