//! ONNX import: any bytes are refused with a one-line error, or import into a model whose
//! export imports again to the same tensors, bit for bit, and from then on to the same model
//! file: the second import is a fixed point. (Not the first: a graph that ends in logits
//! imports without a softmax, and its export ends in the Softmax that `cnn predict` applies,
//! which imports as `activation=softmax`: the same predictions, another config line.)
#![no_main]
use std::path::Path;

use cnn::model::Model;
use cnn::model_file::ModelMeta;
use cnn::onnx::{export, import};
use libfuzzer_sys::fuzz_target;

/// Exports and imports again.
fn round_trip(model: &Model, meta: &ModelMeta) -> (Model, ModelMeta) {
    let bytes = prost::Message::encode_to_vec(&export::to_proto(model, meta).unwrap());
    import::from_bytes(Path::new("again.onnx"), &bytes, None).expect("an export imports")
}

fn bits(m: &Model) -> Vec<(String, Vec<u32>)> {
    m.named_params()
        .into_iter()
        .map(|(k, p)| (k, p.value.data().iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    match import::from_bytes(Path::new("fuzz.onnx"), data, None) {
        Ok((model, meta)) => {
            let (m2, meta2) = round_trip(&model, &meta);
            assert_eq!(bits(&m2), bits(&model));
            assert_eq!((&meta2.classes, &meta2.normalization), (&meta.classes, &meta.normalization));
            let (m3, meta3) = round_trip(&m2, &meta2);
            assert_eq!(meta3, meta2);
            assert_eq!(bits(&m3), bits(&m2));
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
});
