//! Prefill rates measured on this machine, kept in cria's folder
//! (`prefill-rates.json`), so that every process on it sizes prompts alike:
//! the editor's server and `cria complete` build the same full prompt
//! (`completion::full_prompt_tokens` sizes it from the rate), and a restart
//! does not move it. Each process measures one chunk when it loads a model;
//! one measurement is noisy (a busy machine, a cold cache), so the rate kept
//! is the first one, replaced only by one much faster (the first was taken
//! on a busy machine) and only once it is some minutes old (processes
//! started together, as an editor's server and a `cria complete` beside it,
//! or a test's, always agree), never by a slower one.

use std::collections::BTreeMap;
use std::path::Path;

use super::CriaHome;

/// A measurement replaces the kept rate only when it is this much faster...
const MUCH_FASTER: f64 = 1.5;

/// ...and the kept one is at least this old (seconds).
const SETTLED_AFTER_S: u64 = 600;

/// A rate as kept: tokens per second, and when it was measured (seconds
/// since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Kept {
    rate: f64,
    measured_at: u64,
}

/// The most rates kept (models × instruction sets × thread counts × builds);
/// the oldest measurement goes first.
const MOST_KEPT: usize = 64;

/// The rate to size prompts from for `model_file` run as `runs_on` says
/// (device, kernels, threads), given the rate `measured` now: the kept one,
/// or `measured` when none is kept or it is much faster (then it is kept).
/// Reading or writing the file may fail (a read-only folder): `measured` is
/// used then, and nothing breaks.
pub fn kept_prefill_rate(home: &CriaHome, model_file: &Path, runs_on: &str, measured: f64) -> f64 {
    let size = std::fs::metadata(model_file).map(|m| m.len()).unwrap_or(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    kept_rate_at(home, &format!("{}|{size}|{runs_on}", model_file.display()), measured, now)
}

fn kept_rate_at(home: &CriaHome, key: &str, measured: f64, now: u64) -> f64 {
    let path = home.root().join("prefill-rates.json");
    let mut rates = read_rates(&path);
    let kept = rates.get(key).copied().filter(|k| k.rate.is_finite() && k.rate > 0.0);
    let valid = measured.is_finite() && measured > 0.0;
    match kept {
        Some(kept) if !valid || measured < kept.rate * MUCH_FASTER || now < kept.measured_at.saturating_add(SETTLED_AFTER_S) => kept.rate,
        _ => {
            if valid {
                rates.insert(key.to_string(), Kept { rate: measured, measured_at: now });
                while rates.len() > MOST_KEPT {
                    let oldest = rates.iter().filter(|(k, _)| k.as_str() != key).min_by_key(|(_, kept)| kept.measured_at);
                    let Some(oldest) = oldest.map(|(k, _)| k.clone()) else { break };
                    rates.remove(&oldest);
                }
                if let Err(e) = write_rates(&path, &rates) {
                    tracing::debug!(path = %path.display(), "prefill rate not kept: {e}");
                }
            }
            measured
        }
    }
}

fn read_rates(path: &Path) -> BTreeMap<String, Kept> {
    std::fs::read(path)
        .ok()
        .filter(|bytes| bytes.len() < 1 << 20)
        .and_then(|bytes| serde_json::from_slice::<BTreeMap<String, Kept>>(&bytes).ok())
        .unwrap_or_default()
}

/// Writes through a temporary file and a rename, so a process reading at the
/// same time sees the old file or the new one.
fn write_rates(path: &Path, rates: &BTreeMap<String, Kept>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&temporary, serde_json::to_vec_pretty(rates).map_err(std::io::Error::other)?)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rate_is_kept_until_one_much_faster_comes_minutes_later() {
        let dir = tempfile::tempdir().unwrap();
        let home = CriaHome::new(dir.path());
        let at = |measured: f64, s: u64| kept_rate_at(&home, "qwen|avx2|2", measured, 1_000_000 + s);
        assert_eq!(at(80.0, 0), 80.0, "nothing kept: the measurement");
        assert_eq!(at(95.0, 1), 80.0, "a little faster: the kept one, so processes agree");
        assert_eq!(at(130.0, 60), 80.0, "much faster, but a minute later: processes started together agree");
        assert_eq!(at(40.0, 700), 80.0, "slower (a busy moment): the kept one");
        assert_eq!(kept_rate_at(&home, "qwen|avx512|2", 200.0, 1_000_000), 200.0, "another key is its own");
        assert_eq!(at(130.0, 700), 130.0, "much faster and settled: the first was measured on a busy machine");
        assert_eq!(at(100.0, 800), 130.0);
        assert_eq!(at(f64::NAN, 2000), 130.0, "no measurement keeps what is kept");
    }

    #[test]
    fn a_broken_or_unwritable_file_costs_only_the_keeping() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prefill-rates.json"), b"{not json").unwrap();
        let home = CriaHome::new(dir.path());
        assert_eq!(kept_rate_at(&home, "k", 70.0, 1_000_000), 70.0);
        assert_eq!(kept_rate_at(&home, "k", 90.0, 1_000_001), 70.0, "the broken file was replaced");
        let missing = CriaHome::new(dir.path().join("a-file").join("below"));
        std::fs::write(dir.path().join("a-file"), b"").unwrap();
        assert_eq!(kept_rate_at(&missing, "k", 70.0, 1_000_000), 70.0, "a folder that cannot be made: the measurement");
    }

    #[test]
    fn the_file_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let home = CriaHome::new(dir.path());
        for i in 0..(MOST_KEPT + 10) {
            // Measured a second apart, the names' order not their age's.
            kept_rate_at(&home, &format!("model-{}", MOST_KEPT + 10 - i), 100.0, 1_000_000 + i as u64);
        }
        let rates = read_rates(&dir.path().join("prefill-rates.json"));
        assert_eq!(rates.len(), MOST_KEPT);
        let oldest_left = rates.values().map(|kept| kept.measured_at).min().unwrap();
        assert_eq!(oldest_left, 1_000_010, "the ten oldest measurements went first");
    }
}
