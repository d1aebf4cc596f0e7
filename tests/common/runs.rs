//! What a run folder holds, read back: the model file and the per-epoch metrics.

use std::path::Path;

use serde_json::Value;

/// The bytes of `RUN/model.safetensors`.
pub fn model_bytes(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("model.safetensors")).unwrap()
}

/// The lines of `RUN/metrics.jsonl`, one per epoch.
pub fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The number `key` of every epoch in `RUN/metrics.jsonl`.
pub fn metrics_column(run: &Path, key: &str) -> Vec<f64> {
    metrics(run)
        .iter()
        .map(|epoch| epoch[key].as_f64().unwrap())
        .collect()
}

/// `RUN/run.json`: the run's settings.
pub fn run_json(run: &Path) -> Value {
    let text = std::fs::read_to_string(run.join("run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}
