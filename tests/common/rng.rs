//! The tests' own seeded generator, independent of the library's `cnn::rng` so that test
//! data does not change when the library's generator does.

/// A 64-bit linear congruential generator (Knuth's MMIX constants): state' = a * state + c
/// mod 2^64. Its high bits are good enough for test data and random delays; its low bits are
/// not (bit k has period 2^(k+1)), so [`Lcg::bits`] takes the top ones.
pub struct Lcg(pub u64);

impl Lcg {
    /// Advances the state and returns its top `k` bits (1 <= k <= 64).
    pub fn bits(&mut self, k: u32) -> u64 {
        assert!((1..=64).contains(&k));
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> (64 - k)
    }

    /// A seed that differs from run to run (the clock), for tests that sample moments.
    pub fn from_clock() -> Lcg {
        Lcg(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64)
    }
}
