//! Training from Rust code instead of the command line: report 1's network with 10 outputs on
//! the built-in Fashion-MNIST demo set. Run with `cargo run --release --example library`.

use cnn::optim::{Optimizer, OptimizerKind};
use cnn::{config, data, init::Init, model::Model, train};

fn main() -> cnn::Result<()> {
    let parsed = config::load(std::path::Path::new("examples/report1-10.cfg"))?;
    let mut model = Model::new(&parsed.spec, Init::Normal, 42)?;
    let train_set = data::demo(data::Split::Train)?;
    let test_set = data::demo(data::Split::Test)?;
    let norm = data::Normalization::identity(1);
    let opts = train::TrainOptions {
        epochs: 3,
        ..Default::default()
    };
    let mut state = train::TrainState::new(Optimizer::new(OptimizerKind::Sgd, 0.01, 0.0));
    train::train(
        &mut model,
        &train_set,
        Some(&test_set),
        &norm,
        &opts,
        &mut state,
        &mut |_, _, _| train::Control::Continue,
    )?;
    for m in &state.history {
        println!(
            "epoch {}: loss {:.4}, test accuracy {:.2}%",
            m.epoch,
            m.loss,
            m.val_accuracy.unwrap_or(0.0) * 100.0
        );
    }
    Ok(())
}
