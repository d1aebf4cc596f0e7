//! ONNX import: any bytes are refused with a one-line error, or import into a model whose
//! export imports again to the same config, tensors and classes.
#![no_main]
use std::path::Path;

use cnn::onnx::{export, import};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match import::from_bytes(Path::new("fuzz.onnx"), data, None) {
        Ok((model, meta)) => {
            let bytes = prost::Message::encode_to_vec(&export::to_proto(&model, &meta).unwrap());
            let (m2, meta2) =
                import::from_bytes(Path::new("again.onnx"), &bytes, None).expect("an export imports");
            assert_eq!(meta2, meta);
            let bits = |m: &cnn::model::Model| -> Vec<(String, Vec<u32>)> {
                m.named_params()
                    .into_iter()
                    .map(|(k, p)| (k, p.value.data().iter().map(|x| x.to_bits()).collect()))
                    .collect()
            };
            assert_eq!(bits(&m2), bits(&model));
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
});
