//! Model files: safetensors, readable by PyTorch and every other tool that reads them.
//!
//! Tensors are named `layers.{i}.weight` and `layers.{i}.bias`, where `i` is the layer's
//! index among the config's layer lines (0-based; Flatten and pooling lines count, an implied
//! Flatten does not), in PyTorch's layouts: Conv2D `[K, C, kh, kw]`, Dense `[out, in]` with
//! its input flattened in (C, H, W) order. BatchNorm adds `layers.{i}.running_mean`,
//! `running_var` (F32 `[C]`) and `num_batches_tracked` (an I64 scalar), as PyTorch's state
//! dict names them. All other tensors are little-endian F32.
//!
//! The header's metadata (string to string) carries what is needed to use the file alone:
//!
//! | key | value |
//! | --- | --- |
//! | `format` | `cnn-model/1` |
//! | `config` | the config file's text |
//! | `classes` | JSON array of class names |
//! | `norm_mean`, `norm_std` | JSON arrays, one number per input channel |
//! | `seed` | the run's seed |
//!
//! Loading checks everything before use: the safetensors header (the crate's checks), the
//! metadata, that every tensor the config needs is present as F32 with the right shape, that
//! no unknown tensor is there, and that no value is NaN or infinite. A checkpoint, which is a
//! model file plus the optimiser's `optimizer.*` tensors and a `checkpoint` metadata entry,
//! loads as a model: the optimiser's tensors are skipped. A file cut short is reported as
//! "truncated or not a safetensors file", with the lengths that show it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use crate::config;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::io::{read_capped, write_atomic};
use crate::layers::{Buffer, BufferMut};
use crate::model::Model;

/// The `format` value we write and accept.
pub const FORMAT: &str = "cnn-model/1";

/// Largest model file we read (2 GiB): bigger is not a model of this tool.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Everything a model file holds besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    /// The config file's text (parsed again on load).
    pub config: String,
    /// Class names, indexed by output.
    pub classes: Vec<String>,
    /// The input normalisation that training used.
    pub normalization: Normalization,
    /// The run's seed.
    pub seed: u64,
}

/// Little-endian bytes of `v`.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The metadata map of `meta`.
pub fn meta_map(meta: &ModelMeta) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config".to_string(), meta.config.clone()),
        ("classes".to_string(), json(&meta.classes)),
        ("norm_mean".to_string(), json(&meta.normalization.mean)),
        ("norm_std".to_string(), json(&meta.normalization.std)),
        ("seed".to_string(), meta.seed.to_string()),
    ])
}

/// JSON of a vector of strings or numbers (which cannot fail to serialise).
fn json<T: serde::Serialize>(v: &[T]) -> String {
    serde_json::to_string(v).expect("a slice of strings or numbers serialises")
}

/// Serialises the model's weights and buffers, `extra` tensors and the metadata to
/// safetensors bytes.
pub fn to_bytes(
    model: &Model,
    extra: &[(String, Vec<usize>, Vec<f32>)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = model
        .named_params()
        .into_iter()
        .map(|(name, p)| {
            let bytes = f32_bytes(p.value.data());
            (name, Dtype::F32, p.value.shape().to_vec(), bytes)
        })
        .collect();
    for (name, b) in model.named_buffers() {
        owned.push(match b {
            Buffer::F32(t) => (name, Dtype::F32, t.shape().to_vec(), f32_bytes(t.data())),
            // A 0-dimensional I64 tensor, as PyTorch saves num_batches_tracked.
            Buffer::I64(v) => (name, Dtype::I64, Vec::new(), v.to_le_bytes().to_vec()),
        });
    }
    owned.extend(
        extra
            .iter()
            .map(|(n, s, v)| (n.clone(), Dtype::F32, s.clone(), f32_bytes(v))),
    );
    let mut views = Vec::with_capacity(owned.len());
    for (name, dtype, shape, bytes) in &owned {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| Error::Invalid(format!("tensor {name}: {e}")))?;
        views.push((name.as_str(), view));
    }
    let bytes = safetensors::serialize(views, &Some(metadata))
        .map_err(|e| Error::Invalid(format!("cannot serialise the model: {e}")))?;
    Ok(canonical_header(bytes))
}

/// Rewrites the JSON header of safetensors `bytes` with its keys sorted.
///
/// The crate writes the metadata in the iteration order of a `HashMap`, which is seeded at
/// random in every process, so the same model would be saved as different bytes from run to
/// run. Sorted keys make a model file a pure function of its content (same SHA-256). The
/// header keeps its length (same JSON, other order; padded with spaces to 8 bytes as the
/// format asks), so the tensor data does not move.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("the crate writes a JSON object");
    // Sorted explicitly at both levels, whatever serde_json's features.
    let header: BTreeMap<String, serde_json::Value> = header
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::Object(m) => {
                let m: BTreeMap<String, serde_json::Value> = m.into_iter().collect();
                (k, serde_json::to_value(m).expect("a map serialises"))
            }
            other => (k, other),
        })
        .collect();
    let mut sorted = serde_json::to_vec(&header).expect("a JSON value serialises");
    assert!(sorted.len() <= n, "a reordered header is no longer");
    sorted.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&sorted);
    bytes
}

/// Saves `model` with `meta` to `path`, atomically.
pub fn save(path: &Path, model: &Model, meta: &ModelMeta) -> Result<()> {
    let bytes = to_bytes(model, &[], meta_map(meta))?;
    write_atomic(path, &bytes)
}

/// A parsed model file whose tensors have not been checked against a config yet.
pub struct RawFile<'a> {
    pub tensors: SafeTensors<'a>,
    pub metadata: HashMap<String, String>,
}

/// Parses safetensors bytes, turning every failure into a one-line error about `path`.
pub fn parse_bytes<'a>(path: &Path, bytes: &'a [u8]) -> Result<RawFile<'a>> {
    let bad = |e: SafeTensorError| Error::Model {
        file: path.into(),
        msg: safetensors_problem(&e, bytes),
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors = SafeTensors::deserialize(bytes).map_err(bad)?;
    Ok(RawFile { tensors, metadata })
}

/// The header length a safetensors file gives in its first 8 bytes (little-endian).
fn header_len(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The tensor data the JSON header of `bytes` declares: the largest end offset of its tensors.
fn declared_data_len(bytes: &[u8]) -> Option<u64> {
    let n = usize::try_from(header_len(bytes)?).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .try_fold(0u64, |acc, end| Some(acc.max(end?)))
}

/// What is wrong with a file the safetensors crate refused, in words. A file cut short (a
/// copy interrupted, a download stopped) is said to be "truncated or not a safetensors file",
/// with the lengths that show it; other failures name the crate's error.
fn safetensors_problem(e: &SafeTensorError, bytes: &[u8]) -> String {
    const CUT: &str = "truncated or not a safetensors file";
    let len = bytes.len() as u64;
    match e {
        SafeTensorError::HeaderTooSmall => {
            format!("{CUT}: {len} bytes, fewer than the 8 that give the header's length")
        }
        SafeTensorError::InvalidHeaderLength => format!(
            "{CUT}: its first 8 bytes announce a {}-byte header, but the file has {len} bytes",
            header_len(bytes).unwrap_or(0)
        ),
        SafeTensorError::MetadataIncompleteBuffer => {
            let data = len.saturating_sub(8 + header_len(bytes).unwrap_or(0));
            match declared_data_len(bytes) {
                Some(want) if want > data => format!(
                    "{CUT}: its header declares {want} bytes of tensor data, the file holds {data}"
                ),
                Some(want) if want < data => format!(
                    "not a safetensors model file: {} bytes follow the last tensor's data",
                    data - want
                ),
                _ => "not a safetensors model file (its tensors do not fill the file)".into(),
            }
        }
        other => format!(
            "not a safetensors model file ({})",
            safetensors_reason(other)
        ),
    }
}

/// What the safetensors reader found wrong, in words (its own messages are its Debug text).
fn safetensors_reason(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidHeader | SafeTensorError::InvalidHeaderStart => {
            "its header is not JSON text".into()
        }
        SafeTensorError::InvalidHeaderDeserialization | SafeTensorError::JsonError(_) => {
            "its header is not the JSON of a safetensors file".into()
        }
        SafeTensorError::HeaderTooLarge => "its header is too large".into(),
        SafeTensorError::TensorNotFound(name) => format!("no tensor `{name}`"),
        SafeTensorError::TensorInvalidInfo | SafeTensorError::InvalidTensorView(..) => {
            "a tensor's type, shape and byte range do not agree".into()
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("the byte range of tensor `{name}` is not where it should be")
        }
        SafeTensorError::ValidationOverflow => "a tensor's size overflows".into(),
        SafeTensorError::IoError(io) => io.to_string(),
        _ => "its header and data do not agree".into(),
    }
}

/// Reads the metadata back into a [`ModelMeta`].
pub fn parse_meta(path: &Path, m: &HashMap<String, String>) -> Result<ModelMeta> {
    let bad = |msg: String| Error::Model {
        file: path.into(),
        msg,
    };
    let get = |key: &str| {
        m.get(key).ok_or_else(|| {
            bad(format!(
                "metadata has no `{key}` (not a model written by cnn?)"
            ))
        })
    };
    let format = get("format")?;
    if format != FORMAT {
        // Quoted and escaped: the value is the file's, and may hold newlines (found by
        // the model_file fuzz target) or be long.
        let shown: String = format.chars().take(60).collect();
        return Err(bad(format!("format is {shown:?}, expected {FORMAT:?}")));
    }
    let json_vec = |key: &str| -> Result<Vec<f32>> {
        serde_json::from_str(get(key)?).map_err(|e| bad(format!("metadata `{key}`: {e}")))
    };
    let classes: Vec<String> = serde_json::from_str(get("classes")?)
        .map_err(|e| bad(format!("metadata `classes`: {e}")))?;
    let seed = get("seed")?
        .parse()
        .map_err(|e| bad(format!("metadata `seed`: {e}")))?;
    Ok(ModelMeta {
        config: get("config")?.clone(),
        classes,
        normalization: Normalization {
            mean: json_vec("norm_mean")?,
            std: json_vec("norm_std")?,
        },
        seed,
    })
}

/// Copies the file's `layers.*` tensors into `model`, checking that each one the model
/// needs is present, F32, of the right shape and finite. BatchNorm's buffers come too:
/// `running_mean` and `running_var` are needed (a variance must not be negative);
/// `num_batches_tracked`, an I64 scalar, may be absent (it informs, nothing uses it), as in
/// files written before it existed. Tensors named in `allowed_extra` by prefix (checkpoint
/// state) are skipped; any other unknown tensor is an error.
pub fn copy_weights(
    path: &Path,
    file: &SafeTensors,
    model: &mut Model,
    allowed_extra: &str,
) -> Result<()> {
    let bad = |msg: String| Error::Model {
        file: path.into(),
        msg,
    };
    let params: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    let buffers: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
    for name in file.names() {
        let extra_ok = !allowed_extra.is_empty() && name.starts_with(allowed_extra);
        if !params.contains(name) && !buffers.contains(name) && !extra_ok {
            let mut known = params.clone();
            known.extend(buffers.iter().cloned());
            return Err(bad(format!(
                "unknown tensor `{name}`: the config's tensors are {}",
                known.join(", ")
            )));
        }
    }
    for (name, p) in params.iter().zip(model.params_mut()) {
        let t = file
            .tensor(name)
            .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
        let shape = p.value.shape().to_vec();
        read_f32_tensor(name, &t, p.value.data_mut(), &shape).map_err(bad)?;
    }
    for (name, b) in buffers.iter().zip(model.buffers_mut()) {
        match b {
            BufferMut::F32(out) => {
                let t = file
                    .tensor(name)
                    .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
                let shape = out.shape().to_vec();
                read_f32_tensor(name, &t, out.data_mut(), &shape).map_err(bad)?;
                if name.ends_with("running_var") && out.data().iter().any(|&v| v < 0.0) {
                    return Err(bad(format!("tensor `{name}` holds a negative variance")));
                }
            }
            BufferMut::I64(out) => {
                let Ok(t) = file.tensor(name) else {
                    continue;
                };
                *out = read_count(name, &t).map_err(bad)?;
            }
        }
    }
    Ok(())
}

/// Checks that `t` is F32 of `shape` and decodes it into `out`.
fn read_f32_tensor(
    name: &str,
    t: &TensorView,
    out: &mut [f32],
    shape: &[usize],
) -> std::result::Result<(), String> {
    if t.dtype() != Dtype::F32 {
        return Err(format!("tensor `{name}` is {:?}, expected F32", t.dtype()));
    }
    if t.shape() != shape {
        return Err(format!(
            "tensor `{name}` has shape {:?}, the config needs {shape:?}",
            t.shape()
        ));
    }
    read_f32_into(name, t.data(), out)
}

/// A count saved as an I64 scalar (shape `[]`, or `[1]`), not negative.
fn read_count(name: &str, t: &TensorView) -> std::result::Result<i64, String> {
    if t.dtype() != Dtype::I64 || t.shape().iter().product::<usize>() != 1 || t.shape().len() > 1 {
        return Err(format!(
            "tensor `{name}` is {:?} of shape {:?}, expected an I64 scalar",
            t.dtype(),
            t.shape()
        ));
    }
    let bytes: [u8; 8] = t
        .data()
        .try_into()
        .map_err(|_| format!("tensor `{name}` has {} bytes, expected 8", t.data().len()))?;
    match i64::from_le_bytes(bytes) {
        v if v >= 0 => Ok(v),
        v => Err(format!(
            "tensor `{name}` is {v}, a count cannot be negative"
        )),
    }
}

/// Decodes little-endian f32 bytes into `out`, refusing NaN and infinity.
pub fn read_f32_into(name: &str, bytes: &[u8], out: &mut [f32]) -> std::result::Result<(), String> {
    if bytes.len() != out.len() * 4 {
        return Err(format!(
            "tensor `{name}` has {} bytes, expected {}",
            bytes.len(),
            out.len() * 4
        ));
    }
    for (i, (o, b)) in out.iter_mut().zip(bytes.chunks_exact(4)).enumerate() {
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !v.is_finite() {
            return Err(format!("tensor `{name}` holds {v} at index {i}"));
        }
        *o = v;
    }
    Ok(())
}

/// Builds the model its config describes (checking the normalisation and class count
/// against it).
pub fn model_for_meta(path: &Path, meta: &ModelMeta) -> Result<Model> {
    let parsed = config::parse(
        &meta.config,
        &format!("{} (embedded config)", path.display()),
    )?;
    let model = Model::new(&parsed.spec, Init::Normal, meta.seed)?;
    let bad = |msg: String| Error::Model {
        file: path.into(),
        msg,
    };
    let c = parsed.spec.input[0];
    let n = &meta.normalization;
    if n.mean.len() != c
        || n.std.len() != c
        || n.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        || n.mean.iter().any(|m| !m.is_finite())
    {
        return Err(bad(format!(
            "normalisation needs {c} finite means and positive stds, has {:?} / {:?}",
            n.mean, n.std
        )));
    }
    if meta.classes.len() != model.classes() {
        return Err(bad(format!(
            "{} class names for a network with {} outputs",
            meta.classes.len(),
            model.classes()
        )));
    }
    Ok(model)
}

/// Loads a model file: the network, its weights and its metadata.
///
/// A checkpoint ([`crate::checkpoint`]) is a model file with the optimiser's state added, so
/// it loads too: its weights are used and its `optimizer.*` tensors skipped.
pub fn load(path: &Path) -> Result<(Model, ModelMeta)> {
    let bytes = read_capped(path, MAX_FILE_BYTES)?;
    let raw = parse_bytes(path, &bytes)?;
    let meta = parse_meta(path, &raw.metadata)?;
    let mut model = model_for_meta(path, &meta)?;
    let extra = if raw.metadata.contains_key(CHECKPOINT_KEY) {
        "optimizer."
    } else {
        ""
    };
    copy_weights(path, &raw.tensors, &mut model, extra)?;
    Ok((model, meta))
}

/// The metadata key that marks a checkpoint (see [`crate::checkpoint`]).
const CHECKPOINT_KEY: &str = "checkpoint";

/// The metadata of a model (or checkpoint) file, without building the network: for
/// describing a file (`cnn summary model.safetensors`). The file is checked as a whole, so a
/// truncated file is refused here too.
pub fn read_meta(path: &Path) -> Result<ModelMeta> {
    let bytes = read_capped(path, MAX_FILE_BYTES)?;
    let raw = parse_bytes(path, &bytes)?;
    parse_meta(path, &raw.metadata)
}

/// True when `path` looks like a safetensors file rather than a text config: its name ends in
/// `.safetensors`, or its first 8 bytes give a header length below 100 MB and the 9th byte
/// opens the JSON header (`{`). A config, being text, has a huge number in its first 8 bytes.
pub fn looks_like_safetensors(path: &Path) -> Result<bool> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        return Ok(true);
    }
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(9);
    file.take(9)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    Ok(head.len() == 9 && head[8] == b'{' && header_len(&head).is_some_and(|n| n < 100_000_000))
}

/// Replaces `model`'s weights with those of the model or checkpoint file at `path` (for
/// `cnn train --init`). The file's tensors must match the model's names and shapes; other
/// metadata is ignored, so weights exported from PyTorch work.
pub fn load_weights(path: &Path, model: &mut Model) -> Result<()> {
    let bytes = read_capped(path, MAX_FILE_BYTES)?;
    let raw = parse_bytes(path, &bytes)?;
    copy_weights(path, &raw.tensors, model, "optimizer.")
}
