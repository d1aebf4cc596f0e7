//! The PyTorch reference values in `tests/fixtures/*.json` (see tests/fixtures/README.md),
//! and the comparison they are checked with.

use cnn::tensor::Tensor;
use serde_json::Value;

/// Reads `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture file is present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A `{"shape": [...], "data": [...]}` object as a tensor.
pub fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| d.as_f64().expect("number") as f32)
        .collect();
    Tensor::from_vec(&shape, data).expect("consistent fixture")
}

/// Asserts |got - want| <= tol * max(1, |want|) elementwise.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}
