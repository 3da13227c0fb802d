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
//!
//! Whether guessing pays depends on the machine: a batch costs little more
//! than one token where the products are memory-bound (AVX-512 kernels), and
//! noticeably more where they are not (AVX2 on Qwen2.5-Coder, whose output
//! projection dominates). So the engine learns what passes cost and how often
//! guesses come true ([`SpeculationStats`], kept across generations), and each
//! generation refines that rate with its own guesses (counting guesses it did
//! not run too); a guess is run only when the expected tokens per second beat
//! plain decoding.

use std::collections::VecDeque;
use std::time::Instant;

use super::kv_cache::KvCache;
use super::network::Network;
use super::EngineError;

/// Longest n-gram looked up (tried first: longer matches guess better).
const MAX_NGRAM: usize = 4;
/// Shortest n-gram looked up; a single token matches too often to be worth a batch.
const MIN_NGRAM: usize = 2;
/// Most tokens guessed in one batch.
const MAX_DRAFT: usize = 12;
/// Guesses in the first batch of a generation while the engine has not
/// timed enough batches to trust its costs (the first few generations after
/// loading): small, since on some machines a batch costs nearly a token per
/// guess; the length doubles while every guess comes true.
const FIRST_DRAFT: usize = 2;

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

/// Weight of a new timing in the running averages of [`SpeculationStats`].
const COST_WEIGHT: f64 = 0.2;
/// Batches timed before their cost is trusted (one can be an outlier: the
/// first after a prefill, or one slowed by another process).
const TRUSTED_AFTER: usize = 3;
/// One-token passes after which a batch (of one guess, the cheapest) is
/// tried again even when guessing did not pay, so that one bad timing does
/// not stop it for good.
const EXPLORE_EVERY: usize = 64;
/// Weight of one checked guess in the running guess rate of
/// [`SpeculationStats`] (about the last 32 guesses count).
const GUESS_WEIGHT: f64 = 1.0 / 32.0;
/// How many of a generation's own guesses the carried rate counts as, before
/// the generation has checked any: a new generation starts from what earlier
/// ones saw instead of a blind even chance, and its own guesses soon outweigh
/// that (a file that repeats itself more, or less, than the last one).
const PRIOR_GUESSES: f64 = 3.0;

/// What speculation costs and yields on this machine with this model, learnt
/// while decoding and kept by the engine across generations.
///
/// Costs: the running average of seconds per pass for each batch size. Sizes
/// not timed yet are interpolated between timed ones, or extended along the
/// line from one token to the largest timed batch: the cost need not be a
/// straight line (how the kernels split a batch into calls, caches).
/// Yield: the running share of guesses that came true, the starting
/// point of each generation's own estimate; without it every generation
/// would start from an even chance and pay for a few wrong guesses before
/// learning that, here, guessing does not pay.
#[derive(Debug, Clone, Copy)]
pub struct SpeculationStats {
    /// Seconds per pass, by tokens in the pass (index 0 unused).
    seconds: [Option<f64>; MAX_DRAFT + 2],
    /// Batches timed so far.
    batches: usize,
    /// One-token passes since the last batch.
    since_batch: usize,
    /// Set by hand: timings are not taken in.
    pinned: bool,
    /// Running share of checked guesses that were right.
    guess_rate: f64,
}

impl Default for SpeculationStats {
    fn default() -> Self {
        Self { seconds: [None; MAX_DRAFT + 2], batches: 0, since_batch: 0, pinned: false, guess_rate: 0.5 }
    }
}

impl SpeculationStats {
    /// Costs set by hand, `single + (tokens - 1) * per_extra`, and kept
    /// whatever the timings (tests that must speculate, or must not,
    /// whatever this machine's speed).
    pub fn known(single: f64, per_extra: f64) -> Self {
        let mut seconds = [None; MAX_DRAFT + 2];
        for (tokens, s) in seconds.iter_mut().enumerate().skip(1) {
            *s = Some(single + (tokens - 1) as f64 * per_extra);
        }
        Self { seconds, batches: TRUSTED_AFTER, since_batch: 0, pinned: true, guess_rate: 0.5 }
    }

    /// Takes in one checked guess (run or not).
    pub fn record_guess(&mut self, right: bool) {
        self.guess_rate += GUESS_WEIGHT * (f64::from(u8::from(right)) - self.guess_rate);
    }

    /// Running share of guesses that came true, over recent generations.
    pub fn guess_rate(&self) -> f64 {
        self.guess_rate
    }

    /// Seconds per pass for the batch sizes timed so far, for logs and
    /// benchmarks: `(tokens, seconds)`.
    pub fn timed(&self) -> Vec<(usize, f64)> {
        self.seconds.iter().enumerate().filter_map(|(n, s)| s.map(|s| (n, s))).collect()
    }

    /// Takes in one pass of `tokens` tokens that took `seconds`.
    pub fn record(&mut self, tokens: usize, seconds: f64) {
        if self.pinned || tokens == 0 || tokens >= self.seconds.len() {
            return;
        }
        let old = &mut self.seconds[tokens];
        *old = Some(old.map_or(seconds, |old| old + COST_WEIGHT * (seconds - old)));
        if tokens == 1 {
            self.since_batch += 1;
        } else {
            self.since_batch = 0;
            self.batches += 1;
        }
    }

    /// Seconds for a pass of `tokens` tokens, timed or estimated; `None`
    /// until one token and some batch have been timed.
    fn cost(&self, tokens: usize) -> Option<f64> {
        let timed = |n: usize| self.seconds.get(n).copied().flatten();
        if let Some(s) = timed(tokens) {
            return Some(s);
        }
        let single = timed(1)?;
        let below = (1..tokens).rev().find(|&n| timed(n).is_some())?;
        let above = (tokens + 1..self.seconds.len()).find(|&n| timed(n).is_some());
        let (from, to) = match above {
            Some(above) => (below, above),
            None => {
                let largest = (2..self.seconds.len()).rev().find(|&n| timed(n).is_some())?;
                let slope = (timed(largest)? - single) / (largest - 1) as f64;
                return Some(timed(largest)? + slope.max(0.0) * (tokens - largest) as f64);
            }
        };
        let (t0, t1) = (timed(from)?, timed(to)?);
        Some(t0 + (t1 - t0) * (tokens - from) as f64 / (to - from) as f64)
    }

    /// The number of guesses (at most `max`) that gives the most tokens per
    /// second when each guess comes true with probability `p` given the ones
    /// before it did: `Σ_{i≤n} p^i` tokens for a pass of `n + 1` tokens.
    /// Zero when guessing does not pay, and one when it is time to time a
    /// batch again; `None` while the costs are not known well enough yet.
    pub fn best_draft(&self, p: f64, max: usize) -> Option<usize> {
        if self.batches < TRUSTED_AFTER {
            return None;
        }
        let (mut best, mut best_rate) = (0, 1.0 / self.cost(1)?);
        let (mut tokens, mut chance) = (1.0, 1.0);
        for n in 1..=max.min(MAX_DRAFT) {
            chance *= p;
            tokens += chance;
            let rate = tokens / self.cost(n + 1)?;
            if rate > best_rate {
                (best, best_rate) = (n, rate);
            }
        }
        if best == 0 && self.since_batch >= EXPLORE_EVERY {
            return Some(1);
        }
        Some(best)
    }
}

/// One generation's speculation state: guesses already run through the model,
/// the adaptive guess length, and counts for logs and benchmarks.
pub struct Speculator {
    enabled: bool,
    /// Guessed tokens whose keys and values are in the cache, each with the
    /// logits that follow it.
    ahead: VecDeque<(u32, Vec<f32>)>,
    /// Guesses not run (not worth it at the time), checked against the tokens
    /// that come, to learn how often guesses are right.
    shadow: VecDeque<u32>,
    /// Guesses checked (run or not) that were right, and wrong.
    hits: usize,
    misses: usize,
    /// How many tokens to guess next time while the costs are unknown.
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
        Self { enabled, ahead: VecDeque::new(), shadow: VecDeque::new(), hits: 0, misses: 0, draft_len: FIRST_DRAFT, drafted: 0, accepted: 0, passes: 0 }
    }

    /// How likely the next guess is right, given this generation's guesses
    /// so far, starting from the rate earlier generations saw.
    fn hit_rate(&self, stats: &SpeculationStats) -> f64 {
        (self.hits as f64 + PRIOR_GUESSES * stats.guess_rate()) / ((self.hits + self.misses) as f64 + PRIOR_GUESSES)
    }

    /// How many tokens to guess now.
    fn draft_len(&self, stats: &SpeculationStats) -> usize {
        stats.best_draft(self.hit_rate(stats), MAX_DRAFT).unwrap_or(self.draft_len)
    }

    /// Counts one checked guess, here and in the engine's running rate.
    fn checked(&mut self, stats: &mut SpeculationStats, right: bool) {
        if right {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        stats.record_guess(right);
    }

    /// The logits that follow `next`, the token just chosen: from a batch run
    /// earlier when `next` was guessed right, or from a new forward pass of
    /// `next` and fresh guesses. `cached` is how many tokens precede `next`
    /// (prompt and earlier generated tokens); `room` bounds the tokens that may
    /// still be generated after `next`.
    /// `stats` are the engine's, updated here.
    pub fn step(&mut self, model: &Network, cache: &mut KvCache, stats: &mut SpeculationStats, next: u32, cached: usize, room: usize) -> Result<Vec<f32>, EngineError> {
        if let Some(guess) = self.shadow.pop_front() {
            self.checked(stats, guess == next);
            if guess != next {
                self.shadow.clear();
            }
        }
        if let Some((guess, logits)) = self.ahead.pop_front() {
            self.checked(stats, guess == next);
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
        let mut drafts = Vec::new();
        if self.enabled && self.shadow.is_empty() {
            let mut history = cache.tokens().to_vec();
            history.push(next);
            let guesses = prompt_lookup(&history, room.min(MAX_DRAFT));
            let run = self.draft_len(stats).min(guesses.len());
            drafts = guesses[..run].to_vec();
            if run == 0 {
                // Not run, but checked against the tokens to come.
                self.shadow = guesses.iter().copied().collect();
            }
        }
        let started = Instant::now();
        if drafts.is_empty() {
            let logits = model.forward(&[next], cache)?.to_vec1::<f32>()?;
            stats.record(1, started.elapsed().as_secs_f64());
            return Ok(logits);
        }
        let mut batch = Vec::with_capacity(drafts.len() + 1);
        batch.push(next);
        batch.extend(&drafts);
        let logits = model.forward_all(&batch, cache)?;
        stats.record(batch.len(), started.elapsed().as_secs_f64());
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
    fn guessing_runs_only_where_it_pays() {
        // Unknown costs: no opinion (the caller explores).
        assert_eq!(SpeculationStats::default().best_draft(0.9, 12), None);
        // A batch costs almost nothing more (memory-bound products): guess
        // long when guesses come true, and a little even when they rarely do.
        let cheap = SpeculationStats::known(0.010, 0.0002);
        assert_eq!(cheap.best_draft(0.9, 12), Some(12));
        assert!(cheap.best_draft(0.2, 12).unwrap() >= 1);
        // Each extra token costs half a token: only very likely guesses pay.
        let dear = SpeculationStats::known(0.010, 0.005);
        assert_eq!(dear.best_draft(0.3, 12), Some(0));
        assert!(dear.best_draft(0.95, 12).unwrap() >= 2);
    }

    #[test]
    fn costs_are_learnt_from_timings() {
        let mut costs = SpeculationStats::default();
        costs.record(4, 0.04);
        assert_eq!(costs.best_draft(0.5, 4), None, "one batch timed: not trusted yet");
        costs.record(1, 0.010);
        costs.record(5, 0.014);
        assert_eq!(costs.best_draft(0.5, 12), None, "two batches timed: not trusted yet");
        costs.record(5, 0.014);
        costs.record(5, 0.014);
        // 1 ms per extra token: at p = 0.5, a few guesses pay.
        assert!(costs.best_draft(0.5, 12).unwrap() >= 1);
        // A batch slower than its tokens one by one makes guessing stop...
        for _ in 0..30 {
            costs.record(5, 0.060);
        }
        assert_eq!(costs.best_draft(0.9, 12), Some(0));
        // ... until enough plain passes have gone by to time the cheapest
        // batch again.
        for _ in 0..EXPLORE_EVERY {
            costs.record(1, 0.010);
        }
        assert_eq!(costs.best_draft(0.9, 12), Some(1));
        costs.record(2, 0.030);
        assert_eq!(costs.best_draft(0.9, 12), Some(0));
    }

    #[test]
    fn generations_start_from_the_guess_rate_earlier_ones_saw() {
        let mut stats = SpeculationStats::default();
        let fresh = Speculator::new(true);
        assert!((fresh.hit_rate(&stats) - 0.5).abs() < 1e-12, "nothing seen yet: an even chance");
        for _ in 0..64 {
            stats.record_guess(false);
        }
        assert!(stats.guess_rate() < 0.1);
        // A new generation starts from that, and its own guesses soon count more.
        let mut speculator = Speculator::new(true);
        assert!(speculator.hit_rate(&stats) < 0.1);
        for _ in 0..6 {
            speculator.checked(&mut stats, true);
        }
        assert!(speculator.hit_rate(&stats) > 0.6);
        assert!(stats.guess_rate() > 0.15, "and the carried rate follows");
    }

    #[test]
    fn untimed_batch_sizes_are_estimated_from_timed_ones() {
        let mut costs = SpeculationStats::default();
        costs.record(1, 0.010);
        assert_eq!(costs.cost(4), None, "nothing to go on without a batch");
        costs.record(3, 0.012);
        costs.record(7, 0.020);
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        assert!(close(costs.cost(3), 0.012));
        assert!(close(costs.cost(5), 0.016), "between two timed sizes");
        assert!(close(costs.cost(2), 0.011));
        // Past the largest timed batch: along the line from one token to it.
        assert!(close(costs.cost(9), 0.020 + 2.0 * 0.010 / 6.0));
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
