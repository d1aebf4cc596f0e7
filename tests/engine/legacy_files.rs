//! Files written by an earlier version of `cnn` still load and give the same results.

use std::path::Path;

use crate::common::run;

const DIR: &str = "tests/fixtures/legacy-2026-11-27";

/// `(class index, [(class name, probability)])` of each line of `predict --json`.
fn predictions(jsonl: &str) -> Vec<(u64, Vec<(String, f64)>)> {
    jsonl
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let probs = v["probabilities"]
                .as_array()
                .expect("probabilities")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("a class name").to_string(),
                        p[1].as_f64().expect("a probability"),
                    )
                })
                .collect();
            (v["index"].as_u64().expect("index"), probs)
        })
        .collect()
}

#[test]
fn a_model_file_written_before_the_layer_refactor_predicts_what_it_predicted_then() {
    let model = Path::new(DIR).join("model.safetensors");
    let (code, stdout, stderr) = run(&[
        &"predict",
        &model,
        &"data/demo/t10k-images-idx3-ubyte.gz",
        &"--top",
        &"10",
        &"--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let now = predictions(&stdout);
    let then_text =
        std::fs::read_to_string(Path::new(DIR).join("predict-first-20.jsonl")).expect("fixture");
    let then = predictions(&then_text);
    assert_eq!(then.len(), 20);
    for (i, ((idx_then, p_then), (idx_now, p_now))) in then.iter().zip(&now).enumerate() {
        assert_eq!(idx_then, idx_now, "image {i}: predicted class");
        for ((name_then, a), (name_now, b)) in p_then.iter().zip(p_now) {
            assert_eq!(name_then, name_now, "image {i}: class order");
            assert!(
                (a - b).abs() < 1e-6,
                "image {i}, {name_then}: {a} then, {b} now"
            );
        }
    }
}

#[test]
fn a_model_file_written_before_the_layer_refactor_summarises_as_its_config() {
    let parsed = cnn::config::load(&Path::new(DIR).join("tiny.cfg")).expect("the config parses");
    let (model, meta) =
        cnn::model_file::load(&Path::new(DIR).join("model.safetensors")).expect("it loads");
    assert_eq!(model.spec(), &parsed.spec);
    assert_eq!(meta.classes.len(), 10);
    assert_eq!(parsed.spec.param_count().expect("shapes work"), 204);
}
