//! The example networks of `examples/`, built into the library, so there is one copy of each
//! network: its config file. Wherever a command takes a CONFIG, an example's name stands for
//! it (`cnn train report1-10`, from any folder; a file of that name wins), [`EXAMPLES`] lists
//! them for `cnn examples`, and `cnn bench`, the benchmarks and the tests build from them.

use std::path::Path;

use crate::config;
use crate::layers::NetworkSpec;

/// `examples/report1.cfg`: report 1's network as printed (2 classes).
pub const REPORT1: &str = include_str!("../examples/report1.cfg");
/// `examples/report1-10.cfg`: report 1's network with 10 outputs.
pub const REPORT1_10: &str = include_str!("../examples/report1-10.cfg");
/// `examples/lenet.cfg`: a LeNet-style network (two convolutions).
pub const LENET: &str = include_str!("../examples/lenet.cfg");
/// `examples/report1-bn.cfg`: report 1's network with batch normalisation.
pub const REPORT1_BN: &str = include_str!("../examples/report1-bn.cfg");
/// `examples/fashion-93.cfg`: the Fashion-MNIST recipe, with its `Train` and `Augment` lines.
pub const FASHION_93: &str = include_str!("../examples/fashion-93.cfg");
/// `examples/separable.cfg`: a MobileNet-style network of depthwise-separable convolutions.
pub const SEPARABLE: &str = include_str!("../examples/separable.cfg");
/// `examples/resnet-small.cfg`: a small residual network (Shortcut and Route lines).
pub const RESNET_SMALL: &str = include_str!("../examples/resnet-small.cfg");
/// `examples/fashion-resnet.cfg`: a residual network of three stages with its whole
/// Fashion-MNIST recipe.
pub const FASHION_RESNET: &str = include_str!("../examples/fashion-resnet.cfg");
/// `examples/cifar-resnet.cfg`: a small residual network for CIFAR-10, with its `Train` and
/// `Augment` lines.
pub const CIFAR_RESNET: &str = include_str!("../examples/cifar-resnet.cfg");

/// One built-in example: its name (the file name without `.cfg`), what it is, its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example {
    pub name: &'static str,
    pub description: &'static str,
    pub text: &'static str,
}

impl Example {
    /// The file name it is written out as: `NAME.cfg`.
    pub fn file_name(&self) -> String {
        format!("{}.cfg", self.name)
    }

    /// The name that stands for it in messages: `report1-10 (built-in example)`.
    pub fn display_name(&self) -> String {
        format!("{} (built-in example)", self.name)
    }
}

/// Every file of `examples/`, in the order `cnn examples` lists them.
pub const EXAMPLES: &[Example] = &[
    Example {
        name: "report1",
        description: "report 1's network exactly as printed: 0s against 1s, 2 classes",
        text: REPORT1,
    },
    Example {
        name: "report1-10",
        description: "report 1's network with 10 outputs, for MNIST and Fashion-MNIST \
                      (the built-in demo set)",
        text: REPORT1_10,
    },
    Example {
        name: "report1-bn",
        description: "report1-10 with batch normalisation after the convolution and the \
                      hidden Dense layer",
        text: REPORT1_BN,
    },
    Example {
        name: "lenet",
        description: "a LeNet-style network: two 3x3 convolutions with pooling, two Dense \
                      layers",
        text: LENET,
    },
    Example {
        name: "fashion-93",
        description: "a whole Fashion-MNIST recipe (93.5%+): BatchNorm, dropout, and Train \
                      and Augment lines",
        text: FASHION_93,
    },
    Example {
        name: "separable",
        description: "a MobileNet-style network: depthwise 3x3 and pointwise 1x1 \
                      convolutions with BatchNorm, global average pooling",
        text: SEPARABLE,
    },
    Example {
        name: "resnet-small",
        description: "a small residual network: three BasicBlocks with identity and \
                      projection shortcuts (Shortcut and Route lines), global average pooling",
        text: RESNET_SMALL,
    },
    Example {
        name: "fashion-resnet",
        description: "a residual recipe for Fashion-MNIST, 95.0%: three stages of \
                      BasicBlocks, its Train and Augment lines, 18 test views scored at the end",
        text: FASHION_RESNET,
    },
    Example {
        name: "cifar-resnet",
        description: "a small residual network for CIFAR-10 (3x32x32): three BasicBlocks, \
                      projection shortcuts, Train and Augment lines (accuracy not measured)",
        text: CIFAR_RESNET,
    },
];

/// The built-in example called `name` (`lenet` or `lenet.cfg`).
pub fn find(name: &str) -> Option<&'static Example> {
    let name = name.strip_suffix(".cfg").unwrap_or(name);
    EXAMPLES.iter().find(|e| e.name == name)
}

/// The built-in example a CONFIG argument names, when it names one: a bare name (no folder),
/// with or without `.cfg`. Whether a file of that name exists is the caller's to check
/// first: a file wins.
pub fn named_by(path: &Path) -> Option<&'static Example> {
    let bare = path.parent().is_none_or(|p| p.as_os_str().is_empty());
    if !bare {
        return None;
    }
    find(path.to_str()?)
}

/// The examples' names, `report1, report1-10, ...`, for messages.
pub fn names() -> String {
    EXAMPLES
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

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
        for e in EXAMPLES {
            let parsed = config::parse(e.text, e.name).unwrap();
            crate::run::settings::from_config(&parsed).unwrap();
        }
    }

    #[test]
    fn every_file_of_examples_is_built_in_under_its_name() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cfg"))
            .collect();
        files.sort();
        let mut built_in: Vec<String> = EXAMPLES.iter().map(Example::file_name).collect();
        built_in.sort();
        assert_eq!(files, built_in);
        for e in EXAMPLES {
            let on_disk = std::fs::read_to_string(dir.join(e.file_name())).unwrap();
            assert_eq!(on_disk, e.text, "{}", e.name);
        }
    }

    #[test]
    fn a_bare_name_names_an_example_and_a_path_does_not() {
        assert_eq!(named_by(Path::new("lenet")).unwrap().text, LENET);
        assert_eq!(named_by(Path::new("lenet.cfg")).unwrap().text, LENET);
        assert!(named_by(Path::new("./lenet")).is_none());
        assert!(named_by(Path::new("examples/lenet.cfg")).is_none());
        assert!(named_by(Path::new("lenet5")).is_none());
        assert!(named_by(Path::new("")).is_none());
    }
}
