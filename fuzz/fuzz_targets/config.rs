//! The config parser: any text parses into a network whose shapes work within the caps, or
//! is refused with a one-line config error.
#![no_main]
use cnn::{config, Error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match config::parse(&text, "fuzz.cfg") {
        Ok(parsed) => {
            let shapes = parsed.spec.shapes().expect("a parsed config's shapes work");
            let params = parsed.spec.param_count().expect("shapes work") as u128;
            assert!(params <= config::MAX_PARAMS);
            for s in shapes {
                let n: u128 = s.output.iter().map(|&d| d as u128).product();
                assert!(n <= config::MAX_SAMPLE_VALUES);
            }
            parsed.spec.train_flops_per_sample().expect("FLOPs fit");
        }
        Err(e) => {
            assert!(matches!(e, Error::Config { .. }), "{e:?}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
});
