//! The example networks of `examples/`, built into the library (for `cnn bench`, the
//! benchmarks and the tests), so there is one copy of each network: its config file.

use crate::config;
use crate::layers::NetworkSpec;

/// `examples/report1.cfg`: report 1's network as printed (2 classes).
pub const REPORT1: &str = include_str!("../examples/report1.cfg");
/// `examples/report1-10.cfg`: report 1's network with 10 outputs.
pub const REPORT1_10: &str = include_str!("../examples/report1-10.cfg");
/// `examples/lenet.cfg`: a LeNet-style network (two convolutions).
pub const LENET: &str = include_str!("../examples/lenet.cfg");

fn parse(text: &str, name: &str) -> NetworkSpec {
    match config::parse(text, name) {
        Ok(parsed) => parsed.spec,
        // The files are part of the source and a unit test parses each one.
        Err(e) => panic!("built-in example {name} does not parse: {e}"),
    }
}

/// Report 1's network (1x28x28, Conv2D 16 3x3 same relu, MaxPool 2x2/2, Dense 128 relu,
/// Dense `classes` softmax), from `examples/report1.cfg` with its output units set.
pub fn report1(classes: usize) -> NetworkSpec {
    let mut spec = parse(REPORT1, "examples/report1.cfg");
    if let Some(last) = spec.layers.last_mut() {
        *last = last.with_output_size(classes);
    }
    spec
}

/// The LeNet-style network of `examples/lenet.cfg`.
pub fn lenet() -> NetworkSpec {
    parse(LENET, "examples/lenet.cfg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_parses_and_report1_10_is_report1_with_10_classes() {
        assert_eq!(parse(REPORT1_10, "report1-10.cfg"), report1(10));
        assert_eq!(report1(2).output_shape().unwrap(), vec![2]);
        assert_eq!(lenet().layers.len(), 6);
    }
}
