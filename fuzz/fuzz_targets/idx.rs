//! The IDX reader through `cnn::data::load`: the input as an images file (raw, and wrapped
//! in gzip) beside a valid labels file of 2 labels loads 2 images or is a one-line data error.
#![no_main]
use std::io::Write;

use cnn::data::{self, LoadOptions};
use cnn::Error;
use libfuzzer_sys::fuzz_target;

fn check(dir: &std::path::Path, images: &[u8]) {
    let path = dir.join("x-images-idx3-ubyte");
    std::fs::write(&path, images).unwrap();
    match data::load(&path, &LoadOptions::default()) {
        Ok(ds) => {
            assert_eq!(ds.len(), 2);
            assert_eq!(ds.images.len(), 2 * ds.image_len());
        }
        Err(e) => {
            assert!(matches!(e, Error::Data { .. }), "{e:?}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 2, 0, 1],
    )
    .unwrap();
    check(dir.path(), data);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    check(dir.path(), &gz.finish().unwrap());
});
