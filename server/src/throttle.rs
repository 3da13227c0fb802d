//! Bounds on the log a client can cause: rate limits for log lines it can
//! cause once per message, and excerpts of its text. A flood of bad
//! messages must not become a flood of log (a client sending millions of
//! malformed frames once wrote 200 MB of warnings), nor one long string a
//! long line.
//!
//! Each call site has its own static [`Throttle`]: at most [`BURST`] lines
//! per [`WINDOW`]; the first line of the next window says how many were
//! left out. The language server's glue (`protocol`) and its keystroke
//! path (`completion::session`) both log what a client sent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines allowed per window.
pub(crate) const BURST: u32 = 10;
/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// One call site's rate limit.
#[derive(Debug)]
pub(crate) struct Throttle(Mutex<Option<Window>>);

impl Throttle {
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(None))
    }

    /// `Some(n)` when this line may be logged (`n` lines were left out
    /// since the last one that was); `None` to leave it out.
    pub(crate) fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Option<u64> {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let window = guard.get_or_insert(Window { start: now, logged: 0, suppressed: 0 });
        if now.duration_since(window.start) >= WINDOW {
            window.start = now;
            window.logged = 0;
        }
        if window.logged < BURST {
            window.logged += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}

/// At most 120 characters of untrusted text, escaped, for a log line.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(120).flat_map(char::escape_debug).collect();
    if text.chars().nth(120).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_silence_then_a_count_of_what_was_left_out() {
        let throttle = Throttle::new();
        let t0 = Instant::now();
        let logged: Vec<Option<u64>> = (0..1000).map(|_| throttle.check_at(t0)).collect();
        assert_eq!(logged.iter().filter(|l| l.is_some()).count(), BURST as usize);
        assert!(logged[..BURST as usize].iter().all(|l| *l == Some(0)));
        assert_eq!(throttle.check_at(t0 + WINDOW), Some(1000 - u64::from(BURST)));
        assert_eq!(throttle.check_at(t0 + WINDOW), Some(0));
    }

    #[test]
    fn excerpts_are_bounded_and_escaped() {
        assert_eq!(excerpt(b"a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(excerpt("é".repeat(500).as_bytes()).chars().count(), 121);
    }
}
