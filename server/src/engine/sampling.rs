//! Choosing the next token from the logits: greedy by default (the same input
//! always gives the same suggestion), or temperature with top-k and top-p and a
//! seed for reproducible variety.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Seed of the random generator, for reproducible sampling.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 40, top_p: 0.95, seed: 0 }
    }
}

/// A sampler with its own random state, made once per generation.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// Starts a sampler seeded from the params.
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    /// Picks a token id from one position's logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature <= 0.0 || logits.len() < 2 {
            return greedy(logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, l)| (i as u32, *l / self.params.temperature))
            .collect();
        if candidates.is_empty() {
            return greedy(logits);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let mut keep = probs.len();
        if self.params.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.params.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, p) in probs[..keep].iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return candidates[i].0;
            }
        }
        candidates[keep - 1].0
    }
}

/// The index of the largest logit (the first one on ties).
pub fn greedy(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(greedy(&[0.1, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn temperature_zero_is_greedy() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&[0.0, 5.0, 1.0]), 1);
    }

    #[test]
    fn sampling_is_reproducible_for_a_seed_and_stays_in_top_k() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 5, top_p: 1.0, seed: 7 };
        let run = || {
            let mut s = Sampler::new(params.clone());
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let mut order: Vec<usize> = (0..100).collect();
        order.sort_by(|x, y| logits[*y].total_cmp(&logits[*x]));
        let top: Vec<u32> = order[..5].iter().map(|i| *i as u32).collect();
        assert!(a.iter().all(|t| top.contains(t)), "{a:?} not all in {top:?}");
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }
}
