//! `cnn gradcheck CONFIG`: backprop against finite differences, for any network.

use std::path::PathBuf;

use clap::Args;
use cnn::gradcheck::{check_network, default_batch, Verdict, FORWARD_TOLERANCE, STEP, TOLERANCE};
use cnn::init::Init;
use cnn::model::Model;
use cnn::rng::Rng;
use cnn::tensor::Tensor;

use super::CmdResult;

/// Standard deviation of the random biases: small next to the pre-activations (about 0.5
/// with LeCun's initialisation on inputs in [0, 1)), but not 0 (see [`random_biases`]).
const BIAS_STD: f64 = 0.1;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn gradcheck lenet\n  \
    cnn gradcheck my-network.cfg --seed 3 --batch 2 --entries 50")]
pub struct GradcheckArgs {
    /// The network config file, or a built-in example's name (`cnn examples`).
    config: PathBuf,
    /// Seed for the random weights, batch and labels.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images in the random batch [default: the most any layer needs: 2, or 8 for a network
    /// with BatchNorm: over 2 samples BatchNorm1D's output is about +-1 whatever its input, a
    /// function too ill-conditioned for f32 to differentiate finely].
    #[arg(long, value_parser = super::arg_values::at_least_one, allow_negative_numbers = true)]
    batch: Option<usize>,
    /// Entries checked per parameter tensor (chosen at random).
    #[arg(long, default_value_t = 20, value_parser = super::arg_values::at_least_one, allow_negative_numbers = true)]
    entries: usize,
}

pub fn run(args: GradcheckArgs) -> CmdResult {
    let parsed = cnn::config::load(&args.config)?;
    let spec = &parsed.spec;
    let mut model = Model::new(spec, Init::Normal, args.seed)?;
    random_biases(&mut model, args.seed);
    let [c, h, w] = spec.input;
    let n = args.batch.unwrap_or_else(|| default_batch(spec));
    let mut rng = Rng::for_purpose(args.seed, "gradcheck-data");
    // Pixel-like inputs in [0, 1), as real images are after scaling.
    let data = (0..n * c * h * w).map(|_| rng.uniform() as f32).collect();
    let x = Tensor::from_vec(&[n, c, h, w], data)?;
    let k = model.classes();
    let labels: Vec<usize> = (0..n).map(|_| rng.below(k)).collect();
    let report = check_network(&mut model, &x, &labels, args.entries, STEP, args.seed)?;
    println!(
        "{:<20} {:>8} {:>8} {:>10} {:>11} {:>15}  verdict",
        "tensor", "checked", "on kink", "unchecked", "max |grad|", "max rel. error"
    );
    for t in &report.tensors {
        let verdict = match t.verdict() {
            Verdict::Ok => "ok",
            Verdict::Mismatch => "MISMATCH",
            Verdict::Unverified => "unverified (no finite difference)",
        };
        println!(
            "{:<20} {:>8} {:>8} {:>10} {:>11.2e} {:>15.2e}  {}",
            t.name, t.checked, t.on_kink, t.unchecked, t.scale, t.max_rel_error, verdict
        );
    }
    let f = &report.forward;
    println!(
        "forward pass: every layer's f32 output agrees with its definition in f64 to {:.1e} \
         (tolerance {FORWARD_TOLERANCE:.0e}); {} ReLU unit(s) or max-pool window(s) sit \
         within rounding of a kink",
        f.max_rel_error, f.near_kinks
    );
    println!(
        "numeric = central difference (h = {STEP:.0e} max(1, |w|)) of the loss in f64 with \
         every ReLU mask and max-pool winner frozen as the forward pass chose them, so no \
         step crosses a kink; rel. error = max |backprop - numeric| / max |gradient| over \
         the checked entries (at least 1% of the network's largest), tolerance {TOLERANCE:.0e} (f32 rounding gives about 1e-6); \
         on kink = the derivative there is one-sided, checked on the forward pass's side; \
         unchecked = the finite difference is not finite"
    );
    if let Some(why) = report.failure() {
        return Err(cnn::Error::Invalid(why).into());
    }
    Ok(())
}

/// Draws every bias from N(0, [`BIAS_STD`]^2). The model starts with zero biases, but a
/// check at zero is weaker: a dead unit's pre-activation is then exactly 0, a kink, and a
/// forward pass that ignored its bias would agree with the definition by accident.
fn random_biases(model: &mut Model, seed: u64) {
    let names: Vec<bool> = model
        .named_params()
        .iter()
        .map(|(name, _)| name.ends_with(".bias"))
        .collect();
    let mut rng = Rng::for_purpose(seed, "gradcheck-bias");
    for (p, is_bias) in model.params_mut().into_iter().zip(names) {
        if is_bias {
            let d = p.value.data_mut();
            d.iter_mut()
                .for_each(|v| *v = (BIAS_STD * rng.normal()) as f32);
        }
    }
}
