//! Model files: any bytes are refused with a one-line error, or load into a model that
//! saves, loads and saves again to the same bytes.
#![no_main]
use cnn::model_file;
use cnn::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(&path, data).unwrap();
    match model_file::load(&path) {
        Ok((model, meta)) => {
            let p1 = dir.path().join("1.safetensors");
            model_file::save(&p1, &model, &meta).unwrap();
            let (m2, meta2) = model_file::load(&p1).expect("a saved model loads");
            assert_eq!(meta2, meta);
            let p2 = dir.path().join("2.safetensors");
            model_file::save(&p2, &m2, &meta2).unwrap();
            assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        }
        Err(e) => {
            assert!(matches!(e, Error::Model { .. } | Error::Config { .. }), "{e:?}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
});
