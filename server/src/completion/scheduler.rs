//! One completion in flight per document: a newer request for the same
//! document cancels the older one, which stops at its next token.
//!
//! This is all the scheduling the editor needs. The engine thread runs one
//! job at a time; cancelled jobs leave the queue at once, so the newest
//! keystroke's request is never stuck behind stale work for long.
//!
//! One exception: when the newer request only typed on at the older one's
//! cursor ([`Scheduler::begin_typing_on`]), the older request is answered
//! (empty: the editor moved on) but its generation *lingers*: its answer may
//! still start with what was typed since, and then serves the newer request
//! at once (typed-through). A lingering generation runs on while what it has
//! written agrees with what the user typed after its cursor (the requests in
//! between give way to it); the first request whose typing disagrees stops
//! it, and its own generation lingers in turn, and so does the first piece
//! it writes that disagrees with the newest typing (the newest request
//! waits for nothing it cannot use). The session's suggestion at a resting
//! cursor lingers the same way from the start
//! ([`Scheduler::linger_unasked`]). When the newest request
//! wants one line (the user types inside a line), or the lingering
//! generation is that suggestion at rest, it ends with the line being
//! typed: a multi-line answer's later lines would only keep
//! the keystrokes waiting. On a fast typist's machine,
//! where one generation takes longer than the gap between two keys, this is
//! what lets a suggestion appear at all: restarting on every key would stop
//! each generation before it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::context::CompletionMode;
use crate::engine::{CancelFlag, WrittenSoFar};

/// A request in flight for a document.
struct InFlight {
    id: u64,
    /// Stops its generation.
    flag: CancelFlag,
    /// Wakes its waiter when it is superseded.
    notify: Arc<Notify>,
    /// Where it was asked: a byte offset in its document.
    cursor: usize,
    /// What its generation has written so far.
    written: WrittenSoFar,
    /// Nobody asked for it: the session's guess at a resting cursor.
    unasked: bool,
}

impl InFlight {
    /// Whether its generation, left running after its request was answered,
    /// is still worth running for `document` with the cursor at `cursor`:
    /// it has not ended, and what it wrote agrees with what was typed after
    /// its own cursor.
    fn agrees_with(&self, document: &str, cursor: usize) -> bool {
        !self.flag.is_cancelled()
            && self.cursor <= cursor
            && document.get(self.cursor..cursor).is_some_and(|typed| self.written.agrees_with(typed))
    }
}

/// Tracks the request in flight for each document.
#[derive(Default)]
pub struct Scheduler {
    inflight: Mutex<HashMap<String, InFlight>>,
    /// Per document, the generation of a request answered but left running
    /// (see the module's doc).
    lingering: Mutex<HashMap<String, InFlight>>,
    next_id: AtomicU64,
    superseded: AtomicU64,
}

/// A registered request; dropping it (answered, or abandoned because the
/// client cancelled it) cancels its flag and unregisters it.
pub struct Ticket {
    scheduler: Arc<Scheduler>,
    key: String,
    id: u64,
    flag: CancelFlag,
    notify: Arc<Notify>,
    written: WrittenSoFar,
}

impl Scheduler {
    /// Registers a new request for `key` (a document URI) asked at byte
    /// `cursor`, cancelling the request in flight for it and any
    /// generation left running.
    pub fn begin(self: &Arc<Self>, key: &str, cursor: usize) -> Ticket {
        if let Some(older) = self.lingering.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            older.flag.cancel();
        }
        let (ticket, previous) = self.register(key, cursor);
        if let Some(previous) = previous {
            previous.flag.cancel();
            previous.notify.notify_one();
        }
        ticket
    }

    /// Registers a new request for `key` whose `document` is the previous
    /// request's with text typed at its cursor, the cursor now at byte
    /// `cursor`: the previous request is answered, but a generation keeps
    /// running while what it wrote agrees with the typing. The one left
    /// running is the older lingering generation if it still agrees (the
    /// previous request then gives way to it), else the previous request's.
    /// `mode` is the new request's: a single-line one needs the lingering
    /// answer only to the end of the line being typed.
    pub fn begin_typing_on(self: &Arc<Self>, key: &str, document: &str, cursor: usize, mode: CompletionMode) -> Ticket {
        let (ticket, previous) = self.register(key, cursor);
        let mut lingering = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
        let older = lingering.remove(key);
        let keep_older = older.as_ref().is_some_and(|older| older.agrees_with(document, cursor));
        if let Some(previous) = previous {
            previous.notify.notify_one();
            if keep_older {
                previous.flag.cancel();
            } else {
                lingering.insert(key.to_string(), previous);
            }
        }
        match older {
            Some(older) if keep_older => {
                lingering.insert(key.to_string(), older);
            }
            Some(older) => older.flag.cancel(),
            None => {}
        }
        if let Some(kept) = lingering.get(key) {
            let typed = cursor.saturating_sub(kept.cursor);
            // A guess at rest serves the line being typed, whatever the
            // request: its later lines would keep the keystrokes waiting
            // behind a block nobody asked for.
            let one_line = mode == CompletionMode::SingleLine || kept.unasked;
            kept.written.want_only_the_line_at(one_line.then_some(typed));
            if let Some(typed) = document.get(kept.cursor..cursor) {
                kept.written.typed_since(typed, &kept.flag);
            }
        }
        ticket
    }

    /// Leaves a generation nobody asked for (the suggestion at a resting
    /// cursor, started by the session) running as if an answered request
    /// at byte `cursor` had left it: a request that only types on there
    /// waits for it while what it writes agrees, any other request stops
    /// it (through `flag`). Registers only when no request is in flight or
    /// lingering for `key` (the user is not typing there); returns its id,
    /// for [`Self::end_unasked`] once it ends, and where the generation
    /// writes its text.
    pub fn linger_unasked(&self, key: &str, cursor: usize, flag: &CancelFlag) -> Option<(u64, WrittenSoFar)> {
        let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let mut lingering = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.contains_key(key) || lingering.get(key).is_some_and(|l| !l.flag.is_cancelled()) {
            return None;
        }
        let entry = InFlight { unasked: true, ..self.entry(flag.clone(), cursor) };
        let registered = (entry.id, entry.written.clone());
        lingering.insert(key.to_string(), entry);
        Some(registered)
    }

    /// The generation [`Self::linger_unasked`] registered as `id` ended: it
    /// lingers no more (a request that types on later computes its own).
    pub fn end_unasked(&self, key: &str, id: u64) {
        let mut lingering = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
        if lingering.get(key).is_some_and(|l| l.id == id) {
            lingering.remove(key);
        }
    }

    /// A new generation's entry (a fresh id, nothing written), stopped by
    /// `flag`, asked at byte `cursor`.
    fn entry(&self, flag: CancelFlag, cursor: usize) -> InFlight {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        InFlight { id, flag, notify: Arc::new(Notify::new()), cursor, written: WrittenSoFar::default(), unasked: false }
    }

    /// Registers a request, returning the one it replaces.
    fn register(self: &Arc<Self>, key: &str, cursor: usize) -> (Ticket, Option<InFlight>) {
        let entry = self.entry(CancelFlag::new(), cursor);
        let (id, flag, notify, written) = (entry.id, entry.flag.clone(), entry.notify.clone(), entry.written.clone());
        let previous = self.inflight.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string(), entry);
        if previous.is_some() {
            self.superseded.fetch_add(1, Ordering::Relaxed);
        }
        (Ticket { scheduler: self.clone(), key: key.to_string(), id, flag, notify, written }, previous)
    }

    /// Cancels whatever is in flight for `key` (the document changed in a
    /// way that makes it stale, or was closed).
    pub fn cancel(&self, key: &str) {
        if let Some(lingering) = self.lingering.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            lingering.flag.cancel();
        }
        if let Some(inflight) = self.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            inflight.flag.cancel();
            inflight.notify.notify_one();
        }
    }

    /// Whether no request is in flight for `key` (speculative work only runs
    /// when the editor is not waiting on the model).
    pub fn is_idle(&self, key: &str) -> bool {
        !self.inflight.lock().unwrap_or_else(|p| p.into_inner()).contains_key(key)
    }

    /// Requests cancelled because a newer one arrived, since start.
    pub fn superseded(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }
}

/// Resolves when a request is superseded; a waiter's view of a [`Ticket`]
/// whose owner (a job finishing in the background) lives elsewhere.
pub struct Superseded {
    flag: CancelFlag,
    notify: Arc<Notify>,
}

impl Superseded {
    /// Resolves when a newer request (or the document closing) cancels it.
    pub async fn cancelled(&self) {
        if self.flag.is_cancelled() {
            return;
        }
        self.notify.notified().await;
    }
}

impl Ticket {
    /// A view that waits for this request to be superseded, for a waiter
    /// that does not own the ticket.
    pub fn superseded(&self) -> Superseded {
        Superseded { flag: self.flag.clone(), notify: self.notify.clone() }
    }

    /// The flag the engine checks between tokens.
    pub fn flag(&self) -> CancelFlag {
        self.flag.clone()
    }

    /// Where the request's generation writes its text as it goes (the
    /// scheduler reads it to decide whether the generation may linger).
    pub fn written(&self) -> WrittenSoFar {
        self.written.clone()
    }

    /// Resolves when a newer request (or the document closing) cancels this
    /// one, so its caller can answer at once instead of waiting for the
    /// engine to reach the dropped job.
    pub async fn cancelled(&self) {
        if self.flag.is_cancelled() {
            return;
        }
        self.notify.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.flag.cancel();
        let mut map = self.scheduler.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.key).is_some_and(|inflight| inflight.id == self.id) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_LINE: CompletionMode = CompletionMode::SingleLine;

    #[test]
    fn a_newer_request_cancels_the_older_one_for_the_same_document_only() {
        let s = Arc::new(Scheduler::default());
        let a = s.begin("file:///a", 0);
        let b = s.begin("file:///b", 0);
        assert!(!a.flag().is_cancelled());
        let a2 = s.begin("file:///a", 0);
        assert!(a.flag().is_cancelled());
        assert!(!b.flag().is_cancelled());
        assert!(!a2.flag().is_cancelled());
        assert_eq!(s.superseded(), 1);
        drop(a);
        assert!(!a2.flag().is_cancelled(), "dropping the old ticket leaves the new one alone");
        let flag = a2.flag();
        drop(a2);
        assert!(flag.is_cancelled(), "an abandoned request stops its generation");
    }

    #[tokio::test]
    async fn typing_on_answers_the_older_request_but_lets_its_generation_run_while_it_agrees() {
        let s = Arc::new(Scheduler::default());
        let uri = "file:///a";
        // The document is "x = |" with the cursor at byte 4, then the user
        // types "de", "f".
        let a = s.begin(uri, 4);
        let waiting_on_a = a.superseded();
        let b = s.begin_typing_on(uri, "x = d", 5, ONE_LINE);
        waiting_on_a.cancelled().await; // a's waiter answers at once
        assert!(!a.flag().is_cancelled(), "a's generation lingers");
        a.written().push("defaultdi");
        let c = s.begin_typing_on(uri, "x = de", 6, ONE_LINE);
        assert!(!a.flag().is_cancelled(), "a wrote what was typed since: it runs on");
        assert!(b.flag().is_cancelled(), "the request in between gives way to it");
        assert!(!c.flag().is_cancelled());
        let d = s.begin_typing_on(uri, "x = dec", 7, ONE_LINE);
        assert!(a.flag().is_cancelled(), "typing that disagrees with what a wrote stops it");
        assert!(!c.flag().is_cancelled(), "c lingers in its turn");
        let e = s.begin(uri, 0);
        assert!(c.flag().is_cancelled() && d.flag().is_cancelled(), "a request that did not type on stops both");
        s.cancel(uri);
        assert!(e.flag().is_cancelled());
        assert_eq!(s.superseded(), 4);
    }

    #[test]
    fn a_generation_that_wrote_less_than_was_typed_lingers_while_it_agrees() {
        let s = Arc::new(Scheduler::default());
        let uri = "file:///a";
        let a = s.begin(uri, 0);
        a.written().push("re");
        let _b = s.begin_typing_on(uri, "ret", 3, ONE_LINE);
        let _c = s.begin_typing_on(uri, "retu", 4, ONE_LINE);
        assert!(!a.flag().is_cancelled(), "\"re\" agrees with \"retu\"");
        a.written().push("set");
        let _d = s.begin_typing_on(uri, "retur", 5, ONE_LINE);
        assert!(a.flag().is_cancelled(), "\"reset\" does not");
    }

    #[test]
    fn a_finished_generation_does_not_linger() {
        let s = Arc::new(Scheduler::default());
        let uri = "file:///a";
        let a = s.begin(uri, 0);
        let b = s.begin_typing_on(uri, "r", 1, ONE_LINE);
        drop(a); // its job ended
        let c = s.begin_typing_on(uri, "re", 2, ONE_LINE);
        assert!(!b.flag().is_cancelled(), "b lingers instead");
        assert!(!c.flag().is_cancelled());
    }

    #[test]
    fn a_cursor_outside_the_document_or_before_the_older_one_stops_it() {
        let s = Arc::new(Scheduler::default());
        let uri = "file:///a";
        let a = s.begin(uri, 3);
        let _b = s.begin_typing_on(uri, "abcd", 4, ONE_LINE);
        let _c = s.begin_typing_on(uri, "ab", 2, ONE_LINE);
        assert!(a.flag().is_cancelled());
        let d = s.begin(uri, 0);
        let _e = s.begin_typing_on(uri, "é", 1, ONE_LINE);
        let _f = s.begin_typing_on(uri, "é", 1, ONE_LINE);
        assert!(d.flag().is_cancelled(), "a cursor inside a character is no typing");
    }

    #[test]
    fn a_lingering_generation_ends_with_the_line_a_one_line_request_types() {
        let s = Arc::new(Scheduler::default());
        let uri = "file:///a";
        // An empty line, "|": a multi-line request; then "v", "va" typed.
        let a = s.begin(uri, 0);
        let written = a.written();
        let _b = s.begin_typing_on(uri, "v", 1, CompletionMode::MultiLine);
        written.push("value = 1\nif");
        assert!(!written.has_the_wanted_line(), "a multi-line request wants every line");
        let _c = s.begin_typing_on(uri, "va", 2, ONE_LINE);
        assert!(written.has_the_wanted_line(), "the line being typed is written: the rest waits for nobody");
        assert!(!a.flag().is_cancelled(), "it ends by itself, with its answer");

        // Typed past the first line: the second line is the one wanted.
        let d = s.begin(uri, 0);
        let written = d.written();
        written.push("a = 1\nb = 2");
        let _e = s.begin_typing_on(uri, "a = 1\nb", 7, ONE_LINE);
        assert!(!written.has_the_wanted_line(), "the line typed is not ended yet");
        written.push("\n");
        assert!(written.has_the_wanted_line());
    }

    #[test]
    fn a_guess_at_rest_ends_with_the_line_being_typed_even_for_a_multi_line_request() {
        let s = Arc::new(Scheduler::default());
        let uri = "file:///a";
        let (_, written) = s.linger_unasked(uri, 4, &CancelFlag::new()).expect("nothing under way");
        written.push("if x:\n        y = 1\n");
        // Typed its first line and Enter: a multi-line request.
        let typed = "    if x:\n        ";
        let _b = s.begin_typing_on(uri, typed, typed.len(), CompletionMode::MultiLine);
        assert!(written.has_the_wanted_line(), "the line after Enter is written: the guess ends there");

        // A generation a request asked for serves a multi-line request whole.
        let c = s.begin(uri, 0);
        let asked = c.written();
        let _d = s.begin_typing_on(uri, "\n    ", 5, CompletionMode::MultiLine);
        asked.push("\n    a\nb\n");
        assert!(!asked.has_the_wanted_line());
        drop(c);
    }

    #[test]
    fn a_generation_nobody_asked_for_lingers_only_where_nothing_is_under_way() {
        let s = Arc::new(Scheduler::default());
        let uri = "file:///a";
        let rest = CancelFlag::new();
        let (id, written) = s.linger_unasked(uri, 4, &rest).expect("nothing under way");
        assert!(s.linger_unasked(uri, 4, &CancelFlag::new()).is_none(), "one lingers already");
        // The first key types on at its cursor, before it wrote anything.
        let b = s.begin_typing_on(uri, "x = d", 5, ONE_LINE);
        assert!(!rest.is_cancelled(), "nothing written agrees with `d`");
        written.push("sum(");
        assert!(rest.is_cancelled(), "it wrote `s` where `d` was typed: it serves nobody");
        assert!(s.linger_unasked(uri, 5, &CancelFlag::new()).is_none(), "a request is in flight");
        drop(b);
        let late = CancelFlag::new();
        let (late_id, _) = s.linger_unasked(uri, 5, &late).expect("the first was stopped, the request ended");
        assert!(s.linger_unasked(uri, 5, &CancelFlag::new()).is_none(), "it runs");
        s.end_unasked(uri, id); // the first one's end: nothing changes
        assert!(s.linger_unasked(uri, 5, &CancelFlag::new()).is_none());
        s.end_unasked(uri, late_id);
        let again = CancelFlag::new();
        assert!(s.linger_unasked(uri, 5, &again).is_some(), "the request and the first one ended");
        let _c = s.begin(uri, 0);
        assert!(again.is_cancelled(), "a request elsewhere stops it");
    }
}
