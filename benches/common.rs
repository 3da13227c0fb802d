//! What the benchmark binaries share (each is its own crate and includes
//! this file with `mod common;`): their command line, how they stop on bad
//! input, and the median they report.
// Each binary uses only some of these.
#![allow(dead_code)]

/// A benchmark's command line after `cargo bench ... --`: `--flag value`
/// pairs, bare `--switches` and positional arguments (model names or files).
pub struct BenchArgs {
    args: Vec<String>,
    takes_value: &'static [&'static str],
}

impl BenchArgs {
    /// The arguments, or `None` without `--bench`: `cargo test` builds and
    /// runs benchmark binaries too, and they must not take minutes there.
    /// `takes_value` lists the flags followed by a value.
    pub fn from_env(name: &str, takes_value: &'static [&'static str]) -> Option<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !args.iter().any(|a| a == "--bench") {
            eprintln!("{name} benchmark: run it with `cargo bench --bench {name}` (skipped in test mode)");
            return None;
        }
        Some(Self { args, takes_value })
    }

    /// The value after `flag`.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.args.iter().position(|a| a == flag).and_then(|i| self.args.get(i + 1)).map(String::as_str)
    }

    /// The value after `flag` as a number, `default` without it; a value
    /// that is not a number stops the benchmark.
    pub fn number(&self, flag: &str, default: usize) -> usize {
        self.value(flag).map_or(default, |v| v.parse().unwrap_or_else(|_| fail(format!("{flag}: `{v}` is not a number"))))
    }

    /// Whether the switch `flag` was given.
    pub fn switch(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    /// The arguments that are neither flags nor flags' values, or `default`
    /// when there are none.
    pub fn positional(&self, default: &[&str]) -> Vec<String> {
        let given: Vec<String> = (0..self.args.len())
            .filter(|&i| !self.args[i].starts_with("--") && (i == 0 || !self.takes_value.contains(&self.args[i - 1].as_str())))
            .map(|i| self.args[i].clone())
            .collect();
        if given.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            given
        }
    }
}

/// Stops with the message and a failing status: a model that cannot be
/// loaded (a missing file, no GPU) or a bad argument is an answer, not a crash.
pub fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// The middle value (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
