//! Speculative decoding without a draft model ("prompt lookup"): code repeats
//! itself, so the tokens that followed the last occurrence of the current
//! n-gram in the prompt or the text generated so far are a cheap guess at what
//! comes next. The guesses run through the model in one batch with the token
//! just chosen; every position's logits come back, and a guess is kept as long
//! as the token chosen from the previous position's logits equals it.
//!
//! Decoding is memory-bound (each token reads every weight once) and a batch
//! of a few rows reads them once too, so every accepted guess is a token for
//! a fraction of its price. Because the forward pass computes each row
//! independently of the others in its batch, the kept logits are bit for bit
//! the ones token-by-token decoding would compute, and the output is the same.
//! That holds for cria's CPU pass only: the engine never speculates on the
//! device pass (candle's products), whose rows may differ in a batch.
//! Rejected guesses are forgotten by truncating the KV cache.

use std::collections::VecDeque;

use super::kv_cache::KvCache;
use super::network::Network;
use super::EngineError;

/// Longest n-gram looked up (tried first: longer matches guess better).
const MAX_NGRAM: usize = 4;
/// Shortest n-gram looked up; a single token matches too often to be worth a batch.
const MIN_NGRAM: usize = 2;
/// Most tokens guessed in one batch.
const MAX_DRAFT: usize = 12;
/// Guesses in the first batch of a generation.
const FIRST_DRAFT: usize = 6;

/// The tokens that followed the most recent earlier occurrence of the
/// longest n-gram (`MAX_NGRAM` down to `MIN_NGRAM` tokens) that ends `history`,
/// at most `max` of them.
pub fn prompt_lookup(history: &[u32], max: usize) -> &[u32] {
    if max == 0 {
        return &[];
    }
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if history.len() <= n {
            continue;
        }
        let tail = &history[history.len() - n..];
        // Occurrences must end before the tail itself does.
        for start in (0..history.len() - n).rev() {
            if &history[start..start + n] == tail {
                let from = start + n;
                let to = history.len().min(from + max);
                return &history[from..to];
            }
        }
    }
    &[]
}

/// One generation's speculation state: guesses already run through the model,
/// the adaptive guess length, and counts for logs and benchmarks.
pub struct Speculator {
    enabled: bool,
    /// Guessed tokens whose keys and values are in the cache, each with the
    /// logits that follow it.
    ahead: VecDeque<(u32, Vec<f32>)>,
    /// How many tokens to guess next time.
    draft_len: usize,
    /// Tokens guessed in all.
    pub drafted: usize,
    /// Guesses that turned out right.
    pub accepted: usize,
    /// Forward passes run while decoding.
    pub passes: usize,
}

impl Speculator {
    /// A speculator that guesses only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self { enabled, ahead: VecDeque::new(), draft_len: FIRST_DRAFT, drafted: 0, accepted: 0, passes: 0 }
    }

    /// The logits that follow `next`, the token just chosen: from a batch run
    /// earlier when `next` was guessed right, or from a new forward pass of
    /// `next` and fresh guesses. `cached` is how many tokens precede `next`
    /// (prompt and earlier generated tokens); `room` bounds the tokens that may
    /// still be generated after `next`.
    pub fn step(&mut self, model: &Network, cache: &mut KvCache, next: u32, cached: usize, room: usize) -> Result<Vec<f32>, EngineError> {
        if let Some((guess, logits)) = self.ahead.pop_front() {
            if guess == next {
                self.accepted += 1;
                if self.ahead.is_empty() {
                    // Every guess was right: guess further next time.
                    self.draft_len = (self.draft_len * 2).min(MAX_DRAFT);
                }
                return Ok(logits);
            }
            // Wrong from here on: guess less next time.
            self.draft_len = (self.draft_len / 2).max(1);
            self.ahead.clear();
        }
        // Forget the rejected guesses' keys and values.
        cache.truncate(cached);
        self.passes += 1;
        let room = room.min(cache.capacity().saturating_sub(cached + 1));
        let drafts: Vec<u32> = if self.enabled {
            let mut history = cache.tokens().to_vec();
            history.push(next);
            prompt_lookup(&history, room.min(self.draft_len)).to_vec()
        } else {
            Vec::new()
        };
        if drafts.is_empty() {
            return Ok(model.forward(&[next], cache)?.to_vec1::<f32>()?);
        }
        let mut batch = Vec::with_capacity(drafts.len() + 1);
        batch.push(next);
        batch.extend(&drafts);
        let logits = model.forward_all(&batch, cache)?;
        let vocab = model.vocab();
        let mut rows = logits.chunks_exact(vocab);
        let first = rows.next().map(<[f32]>::to_vec).unwrap_or_default();
        self.drafted += drafts.len();
        self.ahead = drafts.into_iter().zip(rows.map(<[f32]>::to_vec)).collect();
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefers_the_longest_most_recent_match() {
        // ... 1 2 3 9 ... 1 2 3 4 5 ... 2 3 → after "2 3" came "4 5" most recently.
        let history = [1, 2, 3, 9, 7, 1, 2, 3, 4, 5, 8, 2, 3];
        assert_eq!(prompt_lookup(&history, 2), &[4, 5]);
        // "1 2 3" (a 3-gram) beats the more recent 2-gram "2 3".
        let history = [1, 2, 3, 6, 6, 2, 3, 7, 1, 2, 3];
        assert_eq!(prompt_lookup(&history, 3), &[6, 6, 2]);
    }

    #[test]
    fn lookup_stops_at_the_end_and_at_max() {
        let history = [5, 6, 7, 5, 6];
        assert_eq!(prompt_lookup(&history, 10), &[7, 5, 6]);
        assert_eq!(prompt_lookup(&history, 1), &[7]);
        assert_eq!(prompt_lookup(&history, 0), &[] as &[u32]);
    }

    #[test]
    fn no_match_no_guess() {
        assert!(prompt_lookup(&[1, 2, 3, 4], 5).is_empty());
        assert!(prompt_lookup(&[], 5).is_empty());
        assert!(prompt_lookup(&[1], 5).is_empty());
        // A lone repeated token is not enough.
        assert!(prompt_lookup(&[1, 2, 3, 1], 5).is_empty());
    }
}
