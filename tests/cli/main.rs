//! Tests of the `cnn` command: each runs the binary as a process and checks its output, its
//! exit code and the files it writes (some also check the library beside it).

// Helpers, from tests/common (its mod.rs says why each crate names the files it uses).
#[path = "../common/bars.rs"]
mod bars;
#[path = "../common/bytes.rs"]
mod bytes;
#[path = "../common/cifar.rs"]
mod cifar;
#[path = "../common/command.rs"]
mod command;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/files.rs"]
mod files;
#[path = "../common/fixtures.rs"]
mod fixtures;
#[path = "../common/models.rs"]
mod models;
#[path = "../common/rng.rs"]
mod rng;
#[path = "../common/runs.rs"]
mod runs;
#[path = "../common/shared.rs"]
mod shared;
#[path = "../common/stripes.rs"]
mod stripes;

mod augment;
mod batchnorm;
mod builtin_examples;
mod cifar_data;
mod cli;
mod dropout;
mod early_stopping;
mod experiments;
mod full_disk;
mod gradcheck_examples;
mod label_smoothing;
mod malformed;
mod model_files;
mod monitor;
mod new_user;
mod onnx;
mod pictures;
mod resume;
mod run_options;
mod safety;
mod schedules;
mod simd;
mod test_sets;
mod train_settings;
