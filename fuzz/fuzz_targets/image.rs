//! Image decoding: any bytes, named as each supported format, decode to the wanted shape or
//! give a one-line data error.
#![no_main]
use cnn::data;
use cnn::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["png", "bmp", "jpg"] {
        let path = dir.path().join(format!("x.{ext}"));
        std::fs::write(&path, data).unwrap();
        for (shape, resize) in [([1, 4, 4], true), ([3, 2, 3], false)] {
            match data::load_image(&path, shape, resize) {
                Ok(v) => assert_eq!(v.len(), shape.iter().product::<usize>()),
                Err(e) => {
                    assert!(matches!(e, Error::Data { .. } | Error::Io { .. }), "{e:?}");
                    assert!(!e.to_string().contains('\n'), "{e}");
                }
            }
        }
    }
});
