//! A small model file written with the library, for tests that need one without training.

use std::path::{Path, PathBuf};

use cnn::config;
use cnn::data::Normalization;
use cnn::init::Init;
use cnn::model::Model;
use cnn::model_file::{self, ModelMeta};

/// A small model file (report 1's shape, fewer filters) written with the library.
pub fn tiny_model_file(dir: &Path) -> PathBuf {
    let text = "3\nInput shape=1x28x28\n\
        Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n\
        MaxPool2D pool=2x2 stride=2\n\
        Dense units=10 activation=softmax\n";
    let parsed = config::parse(text, "test config").unwrap();
    let model = Model::new(&parsed.spec, Init::He, 1).unwrap();
    let meta = ModelMeta {
        config: text.into(),
        classes: (0..10).map(|i| i.to_string()).collect(),
        normalization: Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        },
        seed: 1,
    };
    let path = dir.join("model.safetensors");
    model_file::save(&path, &model, &meta).unwrap();
    path
}
