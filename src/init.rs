//! Weight initialisation. Biases start at zero; weights are drawn from one seeded stream
//! ([`Rng::for_purpose`]`(seed, "init")`), layer by layer in row-major order, so the same seed
//! gives bit-identical weights on any machine.
//!
//! With fan_in = inputs per output unit (C kh kw for Conv2D, I for Dense) and fan_out
//! (K kh kw, or O):
//!
//! ```text
//! Normal  (report 2, LeCun)  w ~ N(0, 1 / fan_in)
//! He      (Kaiming, ReLU)    w ~ N(0, 2 / fan_in)
//! Glorot  (Xavier, uniform)  w ~ U(-a, a),  a = sqrt(6 / (fan_in + fan_out))
//! ```

use crate::names::named_enum;
use crate::rng::Rng;

named_enum! {
    /// An initialisation scheme for weights. Stored in a run's `run.json` as `normal`, `he` or
    /// `glorot` (run folders written before `cnn::run` say `Normal`, `He`, `Glorot`).
    pub enum Init {
        /// N(0, 1/fan_in), report 2's.
        Normal = "normal",
        /// N(0, 2/fan_in), He / Kaiming, suited to ReLU.
        He = "he",
        /// U(-a, a), a = sqrt(6/(fan_in + fan_out)), Glorot / Xavier.
        Glorot = "glorot",
    }
    default Normal
}

impl Init {
    /// Fills `w` from `rng` for a layer with the given fans.
    pub fn fill(self, w: &mut [f32], fan_in: usize, fan_out: usize, rng: &mut Rng) {
        let fan_in = fan_in.max(1) as f64;
        match self {
            Init::Normal | Init::He => {
                let var = if self == Init::He { 2.0 } else { 1.0 } / fan_in;
                let sd = var.sqrt();
                w.iter_mut().for_each(|v| *v = (rng.normal() * sd) as f32);
            }
            Init::Glorot => {
                let a = (6.0 / (fan_in + fan_out as f64)).sqrt();
                w.iter_mut()
                    .for_each(|v| *v = ((2.0 * rng.uniform() - 1.0) * a) as f32);
            }
        }
    }
}
