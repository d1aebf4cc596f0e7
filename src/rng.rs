//! A small, portable, seeded random number generator.
//!
//! We do not use `rand::StdRng` because its stream may change between versions. This is
//! **SplitMix64** (Steele, Lea, Flood 2014): the same seed gives the same numbers on every
//! machine, forever. Each purpose (initialisation, shuffling, ...) gets its own stream derived
//! from the run's seed and a purpose label with [`Rng::for_purpose`], so no stream depends on
//! the order in which threads draw.

/// SplitMix64: `state += 0x9E3779B97F4A7C15`, then a fixed mix of the state is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A generator for one purpose of a run: the seed mixed with a hash (FNV-1a) of `purpose`.
    pub fn for_purpose(seed: u64, purpose: &str) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in purpose.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let mut r = Rng::new(seed ^ h);
        r.next_u64();
        r
    }

    /// The internal state, to save in a checkpoint.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Restores a state saved with [`Rng::state`].
    pub fn from_state(state: u64) -> Rng {
        Rng { state }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (n > 0), by Lemire's multiply-shift (bias below 2^-32 for
    /// the sizes we use).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Standard normal N(0, 1) by the Box-Muller transform:
    /// `z = sqrt(-2 ln u1) * cos(2 pi u2)` with u1 in (0, 1].
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // Reference values of SplitMix64 seeded with 1234567 (from the public C reference
        // implementation by Sebastiano Vigna, splitmix64.c).
        let mut r = Rng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn normal_has_mean_zero_and_unit_variance() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }

    #[test]
    fn purposes_give_different_streams() {
        let a = Rng::for_purpose(1, "init").next_u64();
        let b = Rng::for_purpose(1, "shuffle").next_u64();
        assert_ne!(a, b);
    }
}
