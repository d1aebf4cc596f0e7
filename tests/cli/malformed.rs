//! A malformed-input corpus run through the `cnn` command: one small file per
//! failure mode, generated here, each refused with its exact one-line message, exit code 1
//! and no panic. The memory bombs (headers claiming billions of values, a gzip stream that
//! inflates far past what its header declares, images claiming 100,000 x 100,000 pixels, a
//! safetensors header claiming a huge tensor) run under `ulimit -v 400000` (about 400 MB),
//! so that believing a header would kill the process instead of passing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cnn::config;
use cnn::data::Normalization;
use cnn::init::Init;
use cnn::model::Model;
use cnn::model_file::{self, ModelMeta};
use tempfile::TempDir;

use crate::bytes::{gz, idx_header as header};
use crate::common::{run_command, BIN};

/// A 1x4x4 network with 2 outputs.
const CFG: &str = "2\nInput shape=1x4x4\nConv2D filters=2 kernel=3x3 activation=relu\n\
Dense units=2 activation=softmax\n";

/// Runs `cnn ARGS` under a 400 MB address-space limit; returns (exit code, stderr).
fn cnn(args: &[&Path]) -> (i32, String) {
    let mut script = String::from("ulimit -v 400000; exec \"$0\"");
    for i in 1..=args.len() {
        script += &format!(" \"${i}\"");
    }
    let (code, _, stderr) =
        run_command(Command::new("sh").arg("-c").arg(script).arg(BIN).args(args));
    (code, stderr)
}

/// Asserts exit code 1 and exactly `error: {expected}` on one line.
fn refused(args: &[&Path], expected: &str) {
    let (code, stderr) = cnn(args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr, format!("error: {expected}\n"));
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

struct Case {
    tmp: TempDir,
}

impl Case {
    fn new() -> Case {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("net.cfg"), CFG).unwrap();
        Case { tmp }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `cnn train net.cfg --data DATA --out run` must fail with `expected`.
    fn train_refuses(&self, data: &Path, expected: &str) {
        let cfg = self.path("net.cfg");
        let out = self.path("run");
        refused(
            &[p("train"), &cfg, p("--data"), data, p("--out"), &out],
            expected,
        );
        assert!(!out.exists(), "no run folder for bad data");
    }

    /// `cnn predict MODEL img.png` must fail with `expected`.
    fn predict_refuses(&self, model: &Path, expected: &str) {
        let img = self.path("in.png");
        image::GrayImage::new(4, 4).save(&img).unwrap();
        refused(&[p("predict"), model, &img], expected);
    }

    /// A valid labels file `x-labels-idx1-ubyte` of `n` labels (0, 1, 0, ...).
    fn labels(&self, n: u32) {
        let mut v = header(1, &[n]);
        v.extend((0..n).map(|i| (i % 2) as u8));
        self.write("x-labels-idx1-ubyte", &v);
    }
}

// ---------------------------------------------------------------------------------------
// Config files

#[test]
fn config_with_a_layer_of_ten_million_units_is_refused_at_its_value() {
    let c = Case::new();
    let cfg = c.write("big.cfg", b"1\nInput shape=1x4x4\nDense units=10000000\n");
    refused(
        &[p("summary"), &cfg],
        &format!(
            "{}:3:13: `units` must be a whole number from 1 to 1,000,000, found `10000000`",
            cfg.display()
        ),
    );
}

#[test]
fn config_whose_input_holds_ten_billion_values_is_refused() {
    let c = Case::new();
    let cfg = c.write(
        "big.cfg",
        b"1\nInput shape=100x100000x1000\nDense units=2\n",
    );
    refused(
        &[p("summary"), &cfg],
        &format!(
            "{}:2:13: an input of 100x100000x1000 has 10,000,000,000 values per sample, more \
             than the limit of 100,000,000",
            cfg.display()
        ),
    );
}

#[test]
fn config_that_is_not_utf8_is_refused() {
    let c = Case::new();
    let cfg = c.write("bin.cfg", b"\xff\xfe\x00\x01");
    refused(
        &[p("summary"), &cfg],
        &format!(
            "{}: is not a network config: not UTF-8 text (invalid byte at offset 0); a config \
             is a text file, one layer a line (see `cnn examples`)",
            cfg.display()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// IDX files

#[test]
fn idx_header_claiming_4_billion_images_is_refused_without_allocating() {
    let c = Case::new();
    c.labels(2);
    let mut v = header(3, &[4_000_000_000, 28, 28]);
    v.extend_from_slice(&[0; 64]);
    let f = c.write("x-images-idx3-ubyte", &v);
    c.train_refuses(
        &f,
        &format!(
            "{}: header declares 4000000000 x 28 x 28 bytes of data, more than the limit of \
             1073741824 bytes",
            f.display()
        ),
    );
}

#[test]
fn gzipped_idx_header_claiming_4_billion_images_is_refused_without_inflating() {
    let c = Case::new();
    c.labels(2);
    let f = c.write(
        "x-images-idx3-ubyte",
        &gz(&header(3, &[4_000_000_000, 28, 28])),
    );
    c.train_refuses(
        &f,
        &format!(
            "{}: header declares 4000000000 x 28 x 28 bytes of data, more than the limit of \
             1073741824 bytes",
            f.display()
        ),
    );
}

#[test]
fn gzip_stream_inflating_far_past_its_header_stops_at_the_declared_size() {
    // 2 images of 4x4 declared, then 2 GB of zeros: a 2 MB file that must not be inflated.
    let c = Case::new();
    c.labels(2);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&header(3, &[2, 4, 4])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..2048 {
        e.write_all(&zeros).unwrap();
    }
    let f = c.write("x-images-idx3-ubyte", &e.finish().unwrap());
    c.train_refuses(
        &f,
        &format!(
            "{}: over-long: data continues past the 32 bytes the header declares (2 x 4 x 4), \
             at byte offset 48 after gzip decompression",
            f.display()
        ),
    );
}

#[test]
fn gzip_stream_within_the_cap_but_past_the_memory_limit_is_refused_by_its_true_length() {
    // The header declares 1000 x 1000 x 1000 bytes (under the 1 GiB cap) but the stream holds
    // 10 bytes: the reader must not reserve the declared size up front.
    let c = Case::new();
    c.labels(1000);
    let mut v = header(3, &[1000, 1000, 1000]);
    v.extend_from_slice(&[1; 10]);
    let f = c.write("x-images-idx3-ubyte", &gz(&v));
    c.train_refuses(
        &f,
        &format!(
            "{}: truncated: the header declares 1000 x 1000 x 1000 = 1000000000 data bytes, \
             but the data ends after 10 bytes (byte offset 26 after gzip decompression)",
            f.display()
        ),
    );
}

#[test]
fn idx_file_shorter_than_its_header_declares_is_refused() {
    let c = Case::new();
    c.labels(2);
    let mut v = header(3, &[2, 4, 4]);
    v.extend_from_slice(&[0; 31]);
    let f = c.write("x-images-idx3-ubyte", &v);
    c.train_refuses(
        &f,
        &format!(
            "{}: truncated: the header declares 2 x 4 x 4 = 32 data bytes, so the file should \
             be 48 bytes, but it has 47",
            f.display()
        ),
    );
}

#[test]
fn idx_file_longer_than_its_header_declares_is_refused() {
    let c = Case::new();
    c.labels(2);
    let mut v = header(3, &[2, 4, 4]);
    v.extend_from_slice(&[0; 33]);
    let f = c.write("x-images-idx3-ubyte", &v);
    c.train_refuses(
        &f,
        &format!(
            "{}: over-long: the header declares 2 x 4 x 4 = 32 data bytes, so the file should \
             be 48 bytes, but it has 49 (unexpected data from byte offset 48)",
            f.display()
        ),
    );
}

#[test]
fn idx_file_with_a_float_data_type_is_refused() {
    let c = Case::new();
    c.labels(2);
    let mut v = header(3, &[2, 4, 4]);
    v[2] = 0x0d;
    v.extend_from_slice(&[0; 32]);
    let f = c.write("x-images-idx3-ubyte", &v);
    c.train_refuses(
        &f,
        &format!(
            "{}: unsupported IDX data type 0x0d at byte 2: expected 0x08 (unsigned byte)",
            f.display()
        ),
    );
}

#[test]
fn idx_header_cut_inside_its_dimensions_is_refused() {
    let c = Case::new();
    c.labels(2);
    let f = c.write("x-images-idx3-ubyte", &header(3, &[2, 4, 4])[..10]);
    c.train_refuses(
        &f,
        &format!(
            "{}: truncated: the header ends at byte 10, expected 16 header bytes",
            f.display()
        ),
    );
}

#[test]
fn corrupt_gzip_is_refused_as_corrupt() {
    let c = Case::new();
    c.labels(2);
    let mut v = header(3, &[2, 4, 4]);
    v.extend_from_slice(&[0; 32]);
    let mut z = gz(&v);
    let n = z.len();
    z[n - 8] ^= 0xff; // the CRC
    let f = c.write("x-images-idx3-ubyte", &z);
    c.train_refuses(
        &f,
        &format!(
            "{}: corrupt gzip data: corrupt gzip stream does not have a matching checksum",
            f.display()
        ),
    );
}

#[test]
fn idx_labels_count_differing_from_the_images_is_refused() {
    let c = Case::new();
    c.labels(3);
    let mut v = header(3, &[2, 4, 4]);
    v.extend_from_slice(&[0; 32]);
    let f = c.write("x-images-idx3-ubyte", &v);
    c.train_refuses(
        &f,
        &format!(
            "{}: has 3 labels but {} has 2 images; the counts must match",
            c.path("x-labels-idx1-ubyte").display(),
            f.display()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// Images and labels.txt

/// A PNG of only a signature and an IHDR chunk claiming `w` x `h` grey pixels.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&chunk);
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&chunk);
    v.extend_from_slice(&crc.sum().to_be_bytes());
    v
}

/// A BMP header claiming `w` x `h` 24-bit pixels, with no pixel data.
fn bmp_header(w: i32, h: i32) -> Vec<u8> {
    let mut v = b"BM".to_vec();
    v.extend_from_slice(&54u32.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&54u32.to_le_bytes());
    v.extend_from_slice(&40u32.to_le_bytes());
    v.extend_from_slice(&w.to_le_bytes());
    v.extend_from_slice(&h.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&24u16.to_le_bytes());
    v.extend_from_slice(&[0; 24]);
    v
}

#[test]
fn png_claiming_100000_by_100000_pixels_is_refused_within_the_memory_limit() {
    let c = Case::new();
    let img = c.write("huge.png", &png_header(100_000, 100_000));
    c.write("labels.txt", b"huge.png 0\n");
    c.train_refuses(
        &c.path("labels.txt"),
        &format!(
            "{}: not a readable PNG (it is too large: at most 16384 pixels a side and 256 MiB \
             decoded)",
            img.display()
        ),
    );
}

#[test]
fn bmp_claiming_100000_by_100000_pixels_is_refused_within_the_memory_limit() {
    let c = Case::new();
    let img = c.write("huge.bmp", &bmp_header(100_000, 100_000));
    c.write("labels.txt", b"huge.bmp 0\n");
    c.train_refuses(
        &c.path("labels.txt"),
        &format!(
            "{}: not a readable BMP (it is too large: at most 16384 pixels a side and 256 MiB \
             decoded)",
            img.display()
        ),
    );
}

#[test]
fn truncated_jpeg_is_refused_on_one_line() {
    let c = Case::new();
    let img = c.write("cut.jpg", &[0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F']);
    c.write("labels.txt", b"cut.jpg 0\n");
    c.train_refuses(
        &c.path("labels.txt"),
        &format!(
            "{}: not a readable JPEG (the file ends too early: it is cut short)",
            img.display()
        ),
    );
}

#[test]
fn labels_txt_escaping_its_folder_is_refused_at_its_line() {
    let c = Case::new();
    c.write("labels.txt", b"# classes: a, b\n../secret.png 0\n");
    c.train_refuses(
        &c.path("labels.txt"),
        &format!(
            "{}:2: \"../secret.png\" contains a `..` component; paths must stay inside the folder",
            c.path("labels.txt").display()
        ),
    );
}

#[test]
fn labels_txt_that_is_not_utf8_is_refused_with_the_offset() {
    let c = Case::new();
    c.write("labels.txt", b"a.png 0\n\xff\n");
    c.train_refuses(
        &c.path("labels.txt"),
        &format!(
            "{}: is not UTF-8 text (invalid byte at offset 8)",
            c.path("labels.txt").display()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// Model files

fn meta() -> ModelMeta {
    ModelMeta {
        config: CFG.to_string(),
        classes: vec!["a".into(), "b".into()],
        normalization: Normalization::identity(1),
        seed: 1,
    }
}

fn model_bytes() -> Vec<u8> {
    let parsed = config::parse(CFG, "cfg").unwrap();
    let model = Model::new(&parsed.spec, Init::He, 1).unwrap();
    model_file::to_bytes(&model, &[], model_file::meta_map(&meta())).unwrap()
}

/// Safetensors bytes of a JSON header and `data`.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn safetensors_header_claiming_a_huge_tensor_is_refused_within_the_memory_limit() {
    let c = Case::new();
    let f = c.write(
        "m.safetensors",
        &safetensors(
            r#"{"layers.0.weight":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,40000000000]}}"#,
            &[0; 16],
        ),
    );
    // Said as a truncation, with the lengths, which is what went wrong.
    c.predict_refuses(
        &f,
        &format!(
            "{}: truncated or not a safetensors file: its header declares 40000000000 bytes \
             of tensor data, the file holds 16",
            f.display()
        ),
    );
}

#[test]
fn safetensors_header_length_of_a_terabyte_is_refused() {
    let c = Case::new();
    let mut v = (1u64 << 40).to_le_bytes().to_vec();
    v.extend_from_slice(b"{}");
    let f = c.write("m.safetensors", &v);
    c.predict_refuses(
        &f,
        &format!(
            "{}: not a safetensors model file (its header is too large)",
            f.display()
        ),
    );
}

#[test]
fn model_file_whose_format_holds_newlines_is_refused_on_one_line() {
    // Found by the model_file fuzz target: the format value was echoed as it was, newlines
    // and all, splitting the error over several lines.
    let c = Case::new();
    let f = c.write(
        "m.safetensors",
        &safetensors(
            r#"{"__metadata__":{"format":"ape=1x2x2\nDense units=2\n"}}"#,
            &[],
        ),
    );
    c.predict_refuses(
        &f,
        &format!(
            r#"{}: format is "ape=1x2x2\nDense units=2\n", expected "cnn-model/1""#,
            f.display()
        ),
    );
}

#[test]
fn model_file_cut_in_its_tensor_data_is_refused() {
    let c = Case::new();
    let b = model_bytes();
    let f = c.write("m.safetensors", &b[..b.len() - 4]);
    let data = b.len() - 8 - u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    // Said as a truncation, with the lengths, which is what went wrong.
    c.predict_refuses(
        &f,
        &format!(
            "{}: truncated or not a safetensors file: its header declares {data} bytes of \
             tensor data, the file holds {}",
            f.display(),
            data - 4
        ),
    );
}

#[test]
fn model_file_holding_a_nan_weight_is_refused_naming_the_tensor() {
    let c = Case::new();
    let mut b = model_bytes();
    let n = b.len();
    b[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let f = c.write("m.safetensors", &b);
    c.predict_refuses(
        &f,
        &format!(
            "{}: tensor `layers.1.weight` holds NaN at index 15",
            f.display()
        ),
    );
}

#[test]
fn model_file_whose_embedded_config_asks_for_a_billion_parameters_is_refused() {
    let c = Case::new();
    let parsed = config::parse(CFG, "cfg").unwrap();
    let model = Model::new(&parsed.spec, Init::He, 1).unwrap();
    let mut m = model_file::meta_map(&meta());
    m.insert(
        "config".into(),
        "2\nInput shape=1x1000x1000\nDense units=1000000\nDense units=2\n".into(),
    );
    let f = c.write(
        "m.safetensors",
        &model_file::to_bytes(&model, &[], m).unwrap(),
    );
    c.predict_refuses(
        &f,
        &format!(
            "{} (embedded config):3:1: the network has 1,000,001,000,000 parameters by this \
             layer (Dense adds 1,000,001,000,000), more than the limit of 1,000,000,000",
            f.display()
        ),
    );
}

#[test]
fn model_file_of_another_format_is_refused() {
    let c = Case::new();
    let parsed = config::parse(CFG, "cfg").unwrap();
    let model = Model::new(&parsed.spec, Init::He, 1).unwrap();
    let mut m = model_file::meta_map(&meta());
    m.insert("format".into(), "pt".into());
    let f = c.write(
        "m.safetensors",
        &model_file::to_bytes(&model, &[], m).unwrap(),
    );
    c.predict_refuses(
        &f,
        &format!(r#"{}: format is "pt", expected "cnn-model/1""#, f.display()),
    );
}
