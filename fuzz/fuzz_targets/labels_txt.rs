//! labels.txt: any text in a folder holding two real PNGs loads a consistent dataset or is
//! a one-line data or I/O error.
#![no_main]
use cnn::data::{self, LoadOptions};
use cnn::Error;
use libfuzzer_sys::fuzz_target;

// A 2x2 grey PNG.
const PNG: &[u8] = include_bytes!("tiny.png");

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.png"), PNG).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.png"), PNG).unwrap();
    std::fs::write(dir.path().join("labels.txt"), data).unwrap();
    match data::load(dir.path(), &LoadOptions::default()) {
        Ok(ds) => {
            assert!(!ds.is_empty());
            assert_eq!(ds.images.len(), ds.len() * ds.image_len());
            assert!(ds.labels.iter().all(|&l| usize::from(l) < ds.classes.len()));
        }
        Err(e) => {
            assert!(matches!(e, Error::Data { .. } | Error::Io { .. }), "{e:?}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
});
