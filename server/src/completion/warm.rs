//! Never cold: how big a prompt a request can afford when the KV cache does
//! not hold it yet (a file just opened, a switch to another file, a far
//! jump), so the first suggestion comes within the latency budget while the
//! full prompt is computed in the background.
//!
//! Pure arithmetic: the callers measure (what is cached, how fast prefill
//! runs) and act (submit jobs).

use std::time::Duration;

/// Prompt tokens per second assumed before the engine has measured its own
/// (a busy 2-core laptop with AVX2 on a 0.5B model).
pub const ASSUMED_PREFILL_RATE: f64 = 150.0;

/// Share of the latency budget a request may spend computing prompt tokens;
/// the rest is for generating.
pub const COLD_SHARE: f64 = 0.3;

/// The smallest quick prompt worth sending: a few lines around the cursor.
pub const MIN_QUICK_TOKENS: usize = 96;

/// The quick prompt sizes.
const QUICK_LADDER: [usize; 5] = [MIN_QUICK_TOKENS, 160, 256, 384, 640];

/// Seconds of prefill a cold full prompt may cost on this machine: the
/// full prompt holds at most what the engine computes in this time at the
/// rate it measured when the model was loaded. The default prompt size
/// (1,536 tokens) takes about 3 s with AVX-512 and 7 s with AVX2 on a
/// 2-core laptop, and 18 s on a slow one (75 tokens/s): there a warm-up
/// that long never finished while the user typed (each keystroke's job
/// comes first), and every suggestion of a typing session came from a
/// quick prompt of some 60 tokens.
pub const FULL_PROMPT_SECONDS: f64 = 6.0;

/// The full prompt sizes below the setting, smallest first: on a ladder, so
/// that every request of a session gets the same size (and its cached
/// prefix). The smallest still holds some 40 lines around the cursor.
const FULL_LADDER: [usize; 7] = [384, 512, 768, 1024, 1536, 2048, 3072];

/// The most tokens a full prompt takes: `setting` (the `promptTokens`
/// ceiling), or the largest rung of [`FULL_LADDER`] that prefill computes
/// within [`FULL_PROMPT_SECONDS`] at `rate` (prompt tokens per second,
/// measured at load; `None`: not measured, the setting holds), never less
/// than the smallest rung unless the setting is.
pub fn full_prompt_tokens(setting: usize, rate: Option<f64>) -> usize {
    let Some(rate) = measured(rate) else {
        return setting;
    };
    let affordable = (rate * FULL_PROMPT_SECONDS) as usize;
    if affordable >= setting {
        return setting;
    }
    largest_rung(&FULL_LADDER, affordable).min(setting)
}

/// A prefill rate that was really measured: finite and positive.
fn measured(rate: Option<f64>) -> Option<f64> {
    rate.filter(|r| r.is_finite() && *r > 0.0)
}

/// The largest size of `ladder` (smallest first) within `affordable`, or
/// its smallest: sizes from a ladder stay the same while a rate measured a
/// little differently moves `affordable` (and the prompt keeps its cached
/// prefix).
fn largest_rung(ladder: &[usize], affordable: usize) -> usize {
    ladder.iter().copied().rev().find(|&n| n <= affordable).unwrap_or(ladder[0])
}

/// Which prompt a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptPlan {
    /// The full prompt: it is (mostly) cached, or small enough anyway.
    Full,
    /// A prompt of at most this many tokens now, the full one warmed in the
    /// background for the next requests.
    Quick {
        /// Token budget of the quick prompt.
        prompt_tokens: usize,
    },
}

/// Prompt tokens that can be computed within `COLD_SHARE` of `budget`.
pub fn affordable_tokens(rate: Option<f64>, budget: Duration) -> usize {
    let rate = measured(rate).unwrap_or(ASSUMED_PREFILL_RATE);
    (rate * budget.as_secs_f64() * COLD_SHARE) as usize
}

/// The share of the affordable tokens ([`affordable_tokens`]) a document
/// already answering from quick prompts may be missing of its full prompt
/// to go back to it: the prefill rate is measured anew from job to job (a
/// small chunk runs slower), and a plan that flipped between the two
/// prompts on alternate keystrokes had each one's job cancel the other's
/// work (keystroke replay, ledger.py's jump: a first suggestion after 2 s
/// instead of 0.35 s).
pub const BACK_TO_FULL_SHARE: f64 = 0.5;

/// Chooses the prompt for a request whose full prompt has `prompt_len`
/// tokens, `cached` of them already in a KV cache, at a prefill rate of
/// `rate` tokens per second (`None`: not measured yet). `going_quick`: the
/// document's last request ran a quick prompt; it goes back to the full one
/// only with less missing ([`BACK_TO_FULL_SHARE`]).
pub fn plan_prompt(prompt_len: usize, cached: usize, rate: Option<f64>, budget: Duration, going_quick: bool) -> PromptPlan {
    let affordable = affordable_tokens(rate, budget);
    let missing = prompt_len.saturating_sub(cached);
    let back = if going_quick { (affordable as f64 * BACK_TO_FULL_SHARE) as usize } else { affordable };
    if missing <= back {
        return PromptPlan::Full;
    }
    let quick = largest_rung(&QUICK_LADDER, affordable);
    // A quick prompt nearly as long as the full one saves nothing.
    if quick * 4 >= prompt_len * 3 {
        return PromptPlan::Full;
    }
    PromptPlan::Quick { prompt_tokens: quick }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(2);

    #[test]
    fn a_cached_prompt_runs_whole() {
        assert_eq!(plan_prompt(1500, 1490, Some(200.0), BUDGET, false), PromptPlan::Full);
        assert_eq!(plan_prompt(1500, 1400, Some(200.0), BUDGET, false), PromptPlan::Full, "100 new tokens fit in 0.6 s at 200 tok/s");
    }

    #[test]
    fn a_cold_prompt_gets_a_quick_one_sized_by_the_measured_rate() {
        assert_eq!(plan_prompt(1500, 0, Some(200.0), BUDGET, false), PromptPlan::Quick { prompt_tokens: 96 }, "120 affordable");
        assert_eq!(plan_prompt(1500, 0, Some(300.0), BUDGET, false), PromptPlan::Quick { prompt_tokens: 160 }, "180 affordable");
        assert_eq!(plan_prompt(1500, 0, Some(330.0), BUDGET, false), PromptPlan::Quick { prompt_tokens: 160 }, "198: the same rung");
        assert_eq!(plan_prompt(1500, 0, Some(700.0), BUDGET, false), PromptPlan::Quick { prompt_tokens: 384 });
        assert_eq!(
            plan_prompt(1500, 0, None, BUDGET, false),
            PromptPlan::Quick { prompt_tokens: 96 },
            "the assumed rate gives 90: the floor holds"
        );
    }

    #[test]
    fn the_full_prompt_is_what_this_machine_computes_in_a_few_seconds() {
        assert_eq!(full_prompt_tokens(1536, None), 1536, "not measured: the setting");
        assert_eq!(full_prompt_tokens(1536, Some(470.0)), 1536, "AVX-512 laptop: 2,820 affordable, the setting holds");
        assert_eq!(full_prompt_tokens(1536, Some(207.0)), 1024, "AVX2 laptop: 1,242 affordable");
        assert_eq!(full_prompt_tokens(1536, Some(75.0)), 384, "a slow machine: 450 affordable");
        assert_eq!(full_prompt_tokens(1536, Some(20.0)), 384, "never below the smallest rung");
        assert_eq!(full_prompt_tokens(256, Some(20.0)), 256, "unless the setting is smaller");
        assert_eq!(full_prompt_tokens(4096, Some(600.0)), 3072, "a setting above the ladder: the largest rung that fits");
        assert_eq!(full_prompt_tokens(4096, Some(5000.0)), 4096, "a GPU: the setting");
        assert_eq!(full_prompt_tokens(1536, Some(f64::NAN)), 1536, "a broken measurement is no measurement");
        let sizes: Vec<usize> = (200..230).map(|r| full_prompt_tokens(1536, Some(r as f64))).collect();
        assert!(sizes.iter().all(|&n| n == 1024), "rates a little apart give the same rung: {sizes:?}");
    }

    #[test]
    fn a_document_answering_from_quick_prompts_goes_back_to_the_full_one_with_less_missing() {
        // 273 tokens affordable at 182 tokens/s within 30% of 5 s.
        let budget = Duration::from_secs(5);
        assert_eq!(plan_prompt(354, 118, Some(182.0), budget, false), PromptPlan::Full, "236 missing");
        assert!(matches!(plan_prompt(354, 118, Some(182.0), budget, true), PromptPlan::Quick { .. }), "going quick: 236 > 136");
        assert!(matches!(plan_prompt(354, 118, Some(150.0), budget, false), PromptPlan::Quick { .. }), "a slower chunk: 225 affordable");
        assert_eq!(plan_prompt(354, 230, Some(182.0), budget, true), PromptPlan::Full, "124 missing: back to the full prompt");
        assert_eq!(plan_prompt(1500, 1490, Some(200.0), BUDGET, true), PromptPlan::Full, "warm: the full prompt");
    }

    #[test]
    fn fast_machines_and_small_files_never_go_quick() {
        assert_eq!(plan_prompt(1500, 0, Some(5000.0), BUDGET, false), PromptPlan::Full, "a GPU computes it within the budget");
        assert_eq!(plan_prompt(120, 0, Some(150.0), BUDGET, false), PromptPlan::Full, "a quick prompt would be as long");
    }
}
