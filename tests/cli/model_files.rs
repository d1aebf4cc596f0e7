//! Model files: a saved model comes back bit for bit, and a damaged or foreign file
//! is refused with a one-line error naming the file and the fault, never a panic.
//!
//! The library functions are tested directly; the last test also runs `cnn predict` on every
//! damaged file to check the command's exit code and message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cnn::config;
use cnn::data::Normalization;
use cnn::init::Init;
use cnn::model::Model;
use cnn::model_file::{self, ModelMeta};
use safetensors::tensor::{Dtype, TensorView};

const CONFIG: &str = "4\nInput shape=1x8x8\n\
Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n\
MaxPool2D pool=2x2 stride=2\n\
Dense units=16 activation=relu\n\
Dense units=3 activation=softmax\n";

fn meta() -> ModelMeta {
    ModelMeta {
        config: CONFIG.to_string(),
        // Non-ASCII and JSON-special characters must survive too.
        classes: vec!["shirt \"T\"".into(), "bâton\\1".into(), "3".into()],
        normalization: Normalization {
            mean: vec![0.286_040_5],
            std: vec![0.353_024_1],
        },
        seed: u64::MAX - 12345,
    }
}

fn model() -> Model {
    let parsed = config::parse(CONFIG, "test config").unwrap();
    let mut m = Model::new(&parsed.spec, Init::He, 7).unwrap();
    // Non-zero biases and awkward values (subnormal, negative zero, extremes) so that a
    // lossy round trip would show.
    let mut params = m.params_mut();
    let b = params[1].value.data_mut();
    b[0] = f32::MIN_POSITIVE / 4.0;
    b[1] = -0.0;
    b[2] = f32::MAX;
    b[3] = -1.0e-30;
    m
}

fn bits(m: &Model) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    m.named_params()
        .into_iter()
        .map(|(n, p)| {
            let b = p.value.data().iter().map(|v| v.to_bits()).collect();
            (n, p.value.shape().to_vec(), b)
        })
        .collect()
}

/// Proves: save then load gives every tensor's exact bits and the exact metadata (config
/// text, classes, normalisation, seed), and saving the loaded model again gives the same
/// bytes (so model files are reproducible byte for byte).
#[test]
fn save_load_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (m, meta) = (model(), meta());
    model_file::save(&path, &m, &meta).unwrap();
    let (back, back_meta) = model_file::load(&path).unwrap();
    assert_eq!(bits(&back), bits(&m));
    assert_eq!(back_meta, meta);
    assert_eq!(back_meta.config, CONFIG);
    assert_eq!(
        back_meta.normalization.mean[0].to_bits(),
        meta.normalization.mean[0].to_bits()
    );
    assert_eq!(
        back_meta.normalization.std[0].to_bits(),
        meta.normalization.std[0].to_bits()
    );

    let again = dir.path().join("again.safetensors");
    model_file::save(&again, &back, &back_meta).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == std::fs::read(&again).unwrap(),
        "saving the loaded model gives other bytes"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 2, "no temporary file is left behind");
}

/// Proves: the same model saved by separate processes (whose hash maps are seeded
/// differently) gives identical bytes: the header's order does not depend on a hash seed.
/// Saving twice in this process with fresh maps checks the same thing in-process.
#[test]
fn saved_bytes_do_not_depend_on_hash_map_order() {
    let dir = tempfile::tempdir().unwrap();
    let (m, meta) = (model(), meta());
    let mut first = None;
    for i in 0..8 {
        let p = dir.path().join(format!("{i}.safetensors"));
        model_file::save(&p, &m, &meta).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        match &first {
            None => first = Some(bytes),
            Some(f) => assert!(f == &bytes, "save {i} differs from save 0"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Damaged files, built with the safetensors crate directly.

/// A tensor to write: name, dtype, shape, raw bytes.
type Raw = (String, Dtype, Vec<usize>, Vec<u8>);

/// A change to a file's tensors and metadata.
type Damage<'a> = &'a dyn Fn(&mut Vec<Raw>, &mut HashMap<String, String>);

/// A change to a checkpoint's tensors.
type TensorDamage = Box<dyn Fn(&mut Vec<Raw>)>;

fn valid_parts() -> (Vec<Raw>, HashMap<String, String>) {
    let tensors = model()
        .named_params()
        .into_iter()
        .map(|(n, p)| {
            (
                n,
                Dtype::F32,
                p.value.shape().to_vec(),
                model_file::f32_bytes(p.value.data()),
            )
        })
        .collect();
    (tensors, model_file::meta_map(&meta()))
}

fn build(tensors: &[Raw], meta: HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.as_str(),
                TensorView::new(*d, s.clone(), b).expect("consistent test tensor"),
            )
        })
        .collect();
    safetensors::serialize(views, &Some(meta)).unwrap()
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// Every damaged file with what its error message must mention.
fn damaged_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let (tensors, meta) = valid_parts();
    let good = build(&tensors, meta.clone());
    let n = header_len(&good);
    let mut out: Vec<(&'static str, Vec<u8>, &'static str)> = vec![
        // A file cut short says so, rather than that it is not a model file.
        ("empty", Vec::new(), "truncated or not a safetensors file"),
        (
            "7 bytes",
            good[..7].to_vec(),
            "truncated or not a safetensors file",
        ),
        (
            "8 bytes",
            good[..8].to_vec(),
            "truncated or not a safetensors file",
        ),
        (
            "half the header",
            good[..8 + n / 2].to_vec(),
            "truncated or not a safetensors file",
        ),
        (
            "one byte short",
            good[..good.len() - 1].to_vec(),
            "truncated or not a safetensors file",
        ),
    ];
    let mut long = good.clone();
    long[..8].copy_from_slice(&((good.len() as u64) * 2).to_le_bytes());
    out.push(("header longer than file", long, "not a safetensors"));
    let mut garbage = good.clone();
    garbage[8..8 + n].fill(b'{');
    out.push(("garbage JSON header", garbage, "not a safetensors"));

    let with = |f: Damage| {
        let (mut t, mut m) = (tensors.clone(), meta.clone());
        f(&mut t, &mut m);
        build(&t, m)
    };
    out.push((
        "NaN weight",
        with(&|t, _| t[2].3[4..8].copy_from_slice(&f32::NAN.to_le_bytes())),
        "holds NaN at index 1",
    ));
    out.push((
        "infinite bias",
        with(&|t, _| t[1].3[..4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes())),
        "`layers.0.bias` holds -inf",
    ));
    out.push((
        "wrong shape, same size",
        with(&|t, _| t[0].2 = vec![4, 9]),
        "`layers.0.weight` has shape [4, 9], the config needs [4, 1, 3, 3]",
    ));
    out.push((
        "missing tensor",
        with(&|t, _| {
            t.remove(3);
        }),
        "tensor `layers.2.bias` is missing",
    ));
    out.push((
        "unknown extra tensor",
        with(&|t, _| t.push(("layers.9.weight".into(), Dtype::F32, vec![1], vec![0; 4]))),
        "unknown tensor `layers.9.weight`",
    ));
    out.push((
        "optimizer tensor in a model file",
        with(&|t, _| t.push(("optimizer.first.0".into(), Dtype::F32, vec![1], vec![0; 4]))),
        "unknown tensor `optimizer.first.0`",
    ));
    out.push((
        "F64 tensor",
        with(&|t, _| {
            let vals: Vec<u8> = t[1]
                .3
                .chunks(4)
                .flat_map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes())
                .collect();
            t[1].1 = Dtype::F64;
            t[1].3 = vals;
        }),
        "tensor `layers.0.bias` is F64, expected F32",
    ));
    out.push((
        "no format",
        with(&|_, m| {
            m.remove("format");
        }),
        "metadata has no `format`",
    ));
    out.push((
        "foreign format",
        with(&|_, m| {
            m.insert("format".into(), "pt".into());
        }),
        "format is \"pt\"",
    ));
    out.push((
        "no metadata at all",
        with(&|_, m| m.clear()),
        "metadata has no `format`",
    ));
    out.push((
        "classes not JSON",
        with(&|_, m| {
            m.insert("classes".into(), "a,b,c".into());
        }),
        "metadata `classes`",
    ));
    out.push((
        "class count differs from outputs",
        with(&|_, m| {
            m.insert("classes".into(), "[\"a\",\"b\"]".into());
        }),
        "2 class names for a network with 3 outputs",
    ));
    out.push((
        "norm std 0",
        with(&|_, m| {
            m.insert("norm_std".into(), "[0.0]".into());
        }),
        "normalisation needs 1 finite means and positive stds",
    ));
    out.push((
        "norm mean of the wrong length",
        with(&|_, m| {
            m.insert("norm_mean".into(), "[0.0, 1.0]".into());
        }),
        "normalisation needs 1 finite means",
    ));
    out.push((
        "seed not a number",
        with(&|_, m| {
            m.insert("seed".into(), "-1".into());
        }),
        "metadata `seed`",
    ));
    out.push((
        "broken embedded config",
        with(&|_, m| {
            m.insert("config".into(), "4\nInput shape=1x8\n".into());
        }),
        "embedded config",
    ));
    out
}

/// Proves: each damaged file is refused by `model_file::load` (and `checkpoint::load`) with
/// a one-line message naming the file and the fault; none panics.
#[test]
fn damaged_files_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, bytes, expect)) in damaged_files().into_iter().enumerate() {
        let path = dir.path().join(format!("damaged-{i}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        let msg = match model_file::load(&path) {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.contains(&path.display().to_string()),
            "{what}: the message does not name the file: {msg}"
        );
        assert!(msg.contains(expect), "{what}: {msg:?} lacks {expect:?}");
        assert!(!msg.contains('\n'), "{what}: more than one line: {msg}");
        let ck = cnn::checkpoint::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{what}: loaded as a checkpoint"));
        assert!(ck.to_string().contains(&path.display().to_string()));
    }
}

/// Proves: a checkpoint's optimiser tensors are checked like weights: a NaN, a wrong shape
/// or an unknown optimiser tensor is refused, and a plain model file is not a checkpoint.
#[test]
fn damaged_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (tensors, mut file_meta) = valid_parts();
    let plain = dir.path().join("plain.safetensors");
    std::fs::write(&plain, build(&tensors, file_meta.clone())).unwrap();
    let e = cnn::checkpoint::load(&plain).err().unwrap().to_string();
    assert!(e.contains("not a checkpoint"), "{e}");

    // A real checkpoint's metadata, taken from a training step.
    let parsed = config::parse(CONFIG, "test config").unwrap();
    let mut m = Model::new(&parsed.spec, Init::He, 1).unwrap();
    let mut opt = cnn::optim::Optimizer::new(cnn::optim::OptimizerKind::adam(), 0.01, 0.0);
    let x = cnn::tensor::Tensor::zeros(&[2, 1, 8, 8]);
    m.train_step(&x, &[0, 2], &mut opt).unwrap();
    let mut state = cnn::train::TrainState::new(opt);
    state.step = 1;
    let ckp = dir.path().join("ck.safetensors");
    cnn::checkpoint::save(
        &ckp,
        &m,
        &meta(),
        &state,
        &cnn::train::TrainOptions::default(),
        "fp",
    )
    .unwrap();
    let back = cnn::checkpoint::load(&ckp).unwrap();
    assert_eq!(back.state, state, "checkpoint state round trip");
    assert_eq!(bits(&back.model), bits(&m));

    let bytes = std::fs::read(&ckp).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    file_meta = header.metadata().clone().unwrap();
    let all: Vec<Raw> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let cases: Vec<(&str, TensorDamage, &str)> = vec![
        (
            "NaN moment",
            Box::new(|t: &mut Vec<Raw>| {
                let i = t.iter().position(|r| r.0 == "optimizer.second.1").unwrap();
                t[i].3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }),
            "`optimizer.second.1` holds NaN",
        ),
        (
            "wrong optimiser shape",
            Box::new(|t: &mut Vec<Raw>| {
                let i = t.iter().position(|r| r.0 == "optimizer.first.0").unwrap();
                t[i].2 = vec![36];
            }),
            "`optimizer.first.0` has shape [36]",
        ),
        (
            "unknown optimiser tensor",
            Box::new(|t: &mut Vec<Raw>| {
                t.push(("optimizer.third.0".into(), Dtype::F32, vec![1], vec![0; 4]))
            }),
            "unknown tensor `optimizer.third.0`",
        ),
        (
            "missing moment",
            Box::new(|t: &mut Vec<Raw>| t.retain(|r| r.0 != "optimizer.second.3")),
            "optimiser state",
        ),
    ];
    for (what, f, expect) in cases {
        let mut t = all.clone();
        f(&mut t);
        let p = dir.path().join("bad-ck.safetensors");
        std::fs::write(&p, build(&t, file_meta.clone())).unwrap();
        let e = cnn::checkpoint::load(&p)
            .err()
            .unwrap_or_else(|| panic!("{what}: loaded"))
            .to_string();
        assert!(e.contains(expect), "{what}: {e:?} lacks {expect:?}");
        assert!(e.contains(&p.display().to_string()), "{what}: {e}");
    }
}

fn png(dir: &Path) -> PathBuf {
    let p = dir.join("img.png");
    crate::files::write_png(&p, 8, 8, |x, y| (x * 30 + y) as u8);
    p
}

/// Proves: `cnn predict` on each damaged file exits with code 1 and one `error:` line that
/// names the file, never a panic (exit 101).
#[test]
fn cli_refuses_damaged_files_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let img = png(dir.path());
    for (i, (what, bytes, expect)) in damaged_files().into_iter().enumerate() {
        let path = dir.path().join(format!("damaged-{i}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        let out = crate::command::cnn()
            .arg("predict")
            .arg(&path)
            .arg(&img)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(err.starts_with("error: "), "{what}: {err}");
        assert!(err.contains(&path.display().to_string()), "{what}: {err}");
        assert!(err.contains(expect), "{what}: {err}");
    }
}

/// Proves: a valid file predicts through the CLI (the control for the test above).
#[test]
fn cli_predicts_with_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = png(dir.path());
    let path = dir.path().join("ok.safetensors");
    model_file::save(&path, &model(), &meta()).unwrap();
    crate::command::cnn()
        .arg("predict")
        .arg(&path)
        .arg(&img)
        .assert()
        .success();
}
