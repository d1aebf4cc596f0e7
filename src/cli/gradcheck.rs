//! `cnn gradcheck CONFIG`: backprop against finite differences, for any network.

use std::path::PathBuf;

use clap::Args;
use cnn::gradcheck::check_model;
use cnn::init::Init;
use cnn::model::Model;
use cnn::rng::Rng;
use cnn::tensor::Tensor;

use super::CmdResult;

/// Relative error above which a tensor is reported as failing.
const TOLERANCE: f64 = 1e-2;

#[derive(Debug, Args)]
pub struct GradcheckArgs {
    /// The network config file.
    config: PathBuf,
    /// Seed for the random weights, batch and labels.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images in the random batch.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Entries checked per parameter tensor (chosen at random).
    #[arg(long, default_value_t = 20)]
    entries: usize,
}

pub fn run(args: GradcheckArgs) -> CmdResult {
    let parsed = cnn::config::load(&args.config)?;
    let spec = &parsed.spec;
    let mut model = Model::new(spec, Init::He, args.seed)?;
    let [c, h, w] = spec.input;
    let n = args.batch.max(1);
    let mut rng = Rng::for_purpose(args.seed, "gradcheck-data");
    let data = (0..n * c * h * w).map(|_| rng.normal() as f32).collect();
    let x = Tensor::from_vec(&[n, c, h, w], data)?;
    let k = model.classes();
    let labels: Vec<usize> = (0..n).map(|_| rng.below(k)).collect();
    let checks = check_model(&mut model, &x, &labels, args.entries, 1e-2, args.seed)?;
    println!(
        "{:<20} {:>8} {:>16}  verdict",
        "tensor", "checked", "max rel. error"
    );
    let mut failed = 0;
    for c in &checks {
        let ok = c.max_rel_error < TOLERANCE;
        failed += usize::from(!ok);
        println!(
            "{:<20} {:>8} {:>16.2e}  {}",
            c.name,
            c.checked,
            c.max_rel_error,
            if ok { "ok" } else { "MISMATCH" }
        );
    }
    println!(
        "relative error |backprop - numeric| / max(|backprop|, |numeric|, 1e-3), \
         central differences with h = 1e-2, tolerance {TOLERANCE:.0e}"
    );
    if failed > 0 {
        println!(
            "note: an entry whose finite difference straddles a ReLU kink or a max-pool tie \
             can mismatch on its own; rerun with another --seed to tell it from a bug"
        );
        return Err(cnn::Error::Invalid(format!(
            "{failed} of {} parameter tensors exceed the tolerance",
            checks.len()
        ))
        .into());
    }
    Ok(())
}
