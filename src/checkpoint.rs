//! Checkpoints: everything needed to resume a run bit for bit, in one safetensors file.
//!
//! A checkpoint is a model file ([`crate::model_file`]) with more in it:
//! - tensors `optimizer.first.{j}` and `optimizer.second.{j}`: the optimiser's buffers
//!   (momentum, or Adam's moments) for the j-th parameter tensor;
//! - metadata `checkpoint`: JSON of [`CheckpointInfo`]: epoch and step counters, the
//!   optimiser's hyper-parameters and step count, the running sums of the current epoch, the
//!   metrics history, the training options, and a fingerprint (SHA-256) of the config and
//!   data, so a resume on other data is refused.
//!
//! Random state: the only random stream training draws from is the shuffle, and each epoch's
//! order derives from (seed, epoch) alone, so (epoch, step) restores it exactly.

use std::path::Path;

use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::io::{read_capped, write_atomic};
use crate::model::Model;
use crate::model_file::{
    copy_weights, meta_map, model_for_meta, parse_bytes, parse_meta, read_f32_into, to_bytes,
    ModelMeta, MAX_FILE_BYTES,
};
use crate::optim::{Optimizer, OptimizerKind};
use crate::train::{EpochMetrics, TrainOptions, TrainState};

/// The optimiser's settings as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerInfo {
    /// `sgd`, `momentum`, `adam` or `adamw`.
    pub kind: String,
    pub lr: f32,
    pub weight_decay: f32,
    pub steps: u64,
    pub momentum: f32,
    pub nesterov: bool,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// The `checkpoint` metadata entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub epoch: usize,
    pub step: usize,
    pub optimizer: OptimizerInfo,
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub seconds: f64,
    pub history: Vec<EpochMetrics>,
    pub epochs: usize,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// SHA-256 (hex) of the config text and the training data.
    pub fingerprint: String,
    /// Early stopping's state (absent in checkpoints written before it existed).
    #[serde(default)]
    pub early_stop: crate::early_stop::EarlyStopState,
}

/// SHA-256 (hex) of the given byte strings, each prefixed by its length.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn optimizer_info(o: &Optimizer) -> OptimizerInfo {
    let (kind, momentum, nesterov, beta1, beta2, eps) = match o.kind {
        OptimizerKind::Sgd => ("sgd", 0.0, false, 0.0, 0.0, 0.0),
        OptimizerKind::Momentum { mu, nesterov } => ("momentum", mu, nesterov, 0.0, 0.0, 0.0),
        OptimizerKind::Adam {
            beta1,
            beta2,
            eps,
            decoupled,
        } => {
            let name = if decoupled { "adamw" } else { "adam" };
            (name, 0.0, false, beta1, beta2, eps)
        }
    };
    OptimizerInfo {
        kind: kind.into(),
        lr: o.lr,
        weight_decay: o.weight_decay,
        steps: o.steps,
        momentum,
        nesterov,
        beta1,
        beta2,
        eps,
    }
}

/// Writes a checkpoint of `model` and `state` to `path`, atomically: the previous file stays
/// whole until the new one has replaced it.
pub fn save(
    path: &Path,
    model: &Model,
    meta: &ModelMeta,
    state: &TrainState,
    opts: &TrainOptions,
    fingerprint: &str,
) -> Result<()> {
    let info = CheckpointInfo {
        epoch: state.epoch,
        step: state.step,
        optimizer: optimizer_info(&state.optimizer),
        loss_sum: state.loss_sum,
        correct: state.correct,
        seen: state.seen,
        seconds: state.seconds,
        history: state.history.clone(),
        epochs: opts.epochs,
        batch_size: opts.batch_size,
        shuffle: opts.shuffle,
        seed: opts.seed,
        fingerprint: fingerprint.into(),
        early_stop: state.early_stop.clone(),
    };
    let shapes: Vec<Vec<usize>> = model
        .named_params()
        .iter()
        .map(|(_, p)| p.value.shape().to_vec())
        .collect();
    let mut extra = Vec::new();
    for (prefix, bufs) in [
        ("first", &state.optimizer.first),
        ("second", &state.optimizer.second),
    ] {
        for (j, (buf, shape)) in bufs.iter().zip(&shapes).enumerate() {
            extra.push((
                format!("optimizer.{prefix}.{j}"),
                shape.clone(),
                buf.clone(),
            ));
        }
    }
    let mut map = meta_map(meta);
    let json = serde_json::to_string(&info)
        .map_err(|e| Error::Invalid(format!("cannot encode the checkpoint state: {e}")))?;
    map.insert("checkpoint".into(), json);
    write_atomic(path, &to_bytes(model, &extra, map)?)
}

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub model: Model,
    pub meta: ModelMeta,
    pub state: TrainState,
    pub options: TrainOptions,
    pub fingerprint: String,
}

/// Reads a checkpoint written by [`save`], checking every tensor.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bad = |msg: String| Error::Model {
        file: path.into(),
        msg,
    };
    let bytes = read_capped(path, MAX_FILE_BYTES)?;
    let raw = parse_bytes(path, &bytes)?;
    let meta = parse_meta(path, &raw.metadata)?;
    let info: CheckpointInfo = serde_json::from_str(
        raw.metadata
            .get("checkpoint")
            .ok_or_else(|| bad("not a checkpoint (no `checkpoint` metadata)".into()))?,
    )
    .map_err(|e| bad(format!("metadata `checkpoint`: {e}")))?;
    let mut model = model_for_meta(path, &meta)?;
    copy_weights(path, &raw.tensors, &mut model, "optimizer.")?;

    let o = &info.optimizer;
    let kind = match o.kind.as_str() {
        "sgd" => OptimizerKind::Sgd,
        "momentum" => OptimizerKind::Momentum {
            mu: o.momentum,
            nesterov: o.nesterov,
        },
        "adam" | "adamw" => OptimizerKind::Adam {
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            decoupled: o.kind == "adamw",
        },
        other => return Err(bad(format!("unknown optimiser `{other}`"))),
    };
    let mut optimizer = Optimizer::new(kind, o.lr, o.weight_decay);
    optimizer.steps = o.steps;
    let shapes: Vec<Vec<usize>> = model
        .named_params()
        .iter()
        .map(|(_, p)| p.value.shape().to_vec())
        .collect();
    let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
    // Every optimiser tensor must be one the state can hold: `copy_weights` let the
    // `optimizer.` prefix through.
    let known = |name: &str| {
        ["optimizer.first.", "optimizer.second."].iter().any(|p| {
            name.strip_prefix(p)
                .and_then(|j| j.parse::<usize>().ok())
                .is_some_and(|j| j < sizes.len() && name == format!("{p}{j}"))
        })
    };
    if let Some(name) = raw
        .tensors
        .names()
        .into_iter()
        .find(|n| n.starts_with("optimizer.") && !known(n))
    {
        return Err(bad(format!(
            "unknown tensor `{name}`: a checkpoint holds optimizer.first.J and \
             optimizer.second.J for J below {}",
            sizes.len()
        )));
    }
    for (prefix, bufs) in [
        ("first", &mut optimizer.first),
        ("second", &mut optimizer.second),
    ] {
        for (j, (&len, shape)) in sizes.iter().zip(&shapes).enumerate() {
            let name = format!("optimizer.{prefix}.{j}");
            let Ok(t) = raw.tensors.tensor(&name) else {
                break;
            };
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor `{name}` is {:?}, expected F32",
                    t.dtype()
                )));
            }
            if t.shape() != shape.as_slice() {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, its parameter's is {shape:?}",
                    t.shape()
                )));
            }
            let mut buf = vec![0.0; len];
            read_f32_into(&name, t.data(), &mut buf).map_err(bad)?;
            bufs.push(buf);
        }
    }
    // Every optimiser allocates its first buffers on its first step, Adam its second too.
    let expected_second = if matches!(kind, OptimizerKind::Adam { .. }) {
        sizes.len()
    } else {
        0
    };
    let complete = o.steps == 0
        || (optimizer.first.len() == sizes.len() && optimizer.second.len() == expected_second);
    if !complete {
        return Err(bad("the optimiser state tensors are incomplete".into()));
    }
    let state = TrainState {
        epoch: info.epoch,
        step: info.step,
        optimizer,
        history: info.history,
        loss_sum: info.loss_sum,
        correct: info.correct,
        seen: info.seen,
        seconds: info.seconds,
        early_stop: info.early_stop,
    };
    let options = TrainOptions {
        epochs: info.epochs,
        batch_size: info.batch_size,
        shuffle: info.shuffle,
        seed: info.seed,
        ..TrainOptions::default()
    };
    Ok(Checkpoint {
        model,
        meta,
        state,
        options,
        fingerprint: info.fingerprint,
    })
}
