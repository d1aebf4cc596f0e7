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
#[command(after_help = "Examples:\n  \
    cnn gradcheck examples/lenet.cfg\n  \
    cnn gradcheck my-network.cfg --seed 3 --batch 2 --entries 50")]
pub struct GradcheckArgs {
    /// The network config file.
    config: PathBuf,
    /// Seed for the random weights, batch and labels.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images in the random batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Entries checked per parameter tensor (chosen at random).
    #[arg(long, default_value_t = 20)]
    entries: usize,
}

pub fn run(args: GradcheckArgs) -> CmdResult {
    let parsed = cnn::config::load(&args.config)?;
    let spec = &parsed.spec;
    let mut model = Model::new(spec, Init::Normal, args.seed)?;
    let [c, h, w] = spec.input;
    let n = args.batch.max(1);
    let mut rng = Rng::for_purpose(args.seed, "gradcheck-data");
    // Pixel-like inputs in [0, 1), as real images are after scaling.
    let data = (0..n * c * h * w).map(|_| rng.uniform() as f32).collect();
    let x = Tensor::from_vec(&[n, c, h, w], data)?;
    let k = model.classes();
    let labels: Vec<usize> = (0..n).map(|_| rng.below(k)).collect();
    let checks = check_model(&mut model, &x, &labels, args.entries, 1e-2, args.seed)?;
    println!(
        "{:<20} {:>8} {:>8} {:>16}  verdict",
        "tensor", "checked", "skipped", "max rel. error"
    );
    let (mut failed, mut unverified) = (0, 0);
    for c in &checks {
        let ok = c.max_rel_error < TOLERANCE;
        failed += usize::from(!ok);
        unverified += usize::from(c.checked == 0);
        let verdict = match (c.checked, ok) {
            (0, _) => "UNVERIFIED (every entry tried crossed a kink)",
            (_, true) => "ok",
            (_, false) => "MISMATCH",
        };
        println!(
            "{:<20} {:>8} {:>8} {:>16.2e}  {}",
            c.name, c.checked, c.skipped, c.max_rel_error, verdict
        );
    }
    println!(
        "rel. error = max |backprop - numeric| / max |gradient| over the checked entries, \
         central differences with h = 1e-2 (or h/2, h/5, h/10 where a ReLU kink or max-pool \
         switch is crossed; an entry is skipped if all of them cross one), \
         tolerance {TOLERANCE:.0e}"
    );
    if unverified > 0 {
        return Err(cnn::Error::Invalid(format!(
            "{unverified} parameter tensors could not be checked: every entry tried crossed a \
             ReLU kink or max-pool switch; try another --seed or a smaller network"
        ))
        .into());
    }
    if failed > 0 {
        return Err(cnn::Error::Invalid(format!(
            "{failed} of {} parameter tensors exceed the tolerance",
            checks.len()
        ))
        .into());
    }
    Ok(())
}
