//! Seeded random streams. PCG-64 (MCG variant) is portable and reproducible across platforms and
//! crate versions, which a saved seed needs; each consumer derives its own stream from the model
//! seed so that adding a layer does not shift the numbers another layer draws.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A reproducible random stream; serialisable so a saved model resumes with the same draws.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Stream(Pcg64Mcg);

/// SplitMix64 finaliser: spreads nearby seeds (0, 1, 2...) into unrelated states.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Stream {
    /// The stream for `purpose` (a small constant or index) under a model `seed`.
    pub fn new(seed: u64, purpose: u64) -> Self {
        Self(Pcg64Mcg::seed_from_u64(mix(seed ^ mix(purpose))))
    }

    /// 64 random bits (e.g. to seed the sub-streams of a parallel pass).
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)` with 24 random bits (every float32 step of that range).
    pub fn uniform(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Standard normal (Box-Muller; the second value of each pair is not kept, for simplicity
    /// of state and reproducibility).
    pub fn normal(&mut self) -> f32 {
        // 1 - u is in (0, 1], so the log is finite.
        let u1 = 1.0 - self.uniform() as f64;
        let u2 = self.uniform() as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Standard normal truncated to `[-2, 2]` by rejection (Keras' truncated normal).
    pub fn truncated_normal(&mut self) -> f32 {
        loop {
            let v = self.normal();
            if v.abs() <= 2.0 {
                return v;
            }
        }
    }

    /// Uniform integer in `[0, bound)` (Lemire's multiply-shift; bias below 2^-32 for any bound).
    pub fn below(&mut self, bound: usize) -> usize {
        ((self.0.next_u64() as u128 * bound as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle in place.
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
    fn same_seed_same_numbers_different_purpose_different_numbers() {
        let a: Vec<f32> = (0..5)
            .map({
                let mut s = Stream::new(7, 1);
                move |_| s.uniform()
            })
            .collect();
        let b: Vec<f32> = (0..5)
            .map({
                let mut s = Stream::new(7, 1);
                move |_| s.uniform()
            })
            .collect();
        let c: Vec<f32> = (0..5)
            .map({
                let mut s = Stream::new(7, 2);
                move |_| s.uniform()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&u| (0.0..1.0).contains(&u)));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        Stream::new(1, 0).shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
