//! One completion in flight per document: a newer request for the same
//! document cancels the older one, which stops at its next token.
//!
//! This is all the scheduling the editor needs. The engine thread runs one
//! job at a time; cancelled jobs leave the queue at once, so the newest
//! keystroke's request is never stuck behind stale work for long.
//!
//! One exception: when the newer request only typed on at the older one's
//! cursor ([`Scheduler::begin_typing_on`]), the older request is answered
//! (empty: the editor moved on) but its generation *lingers* until the
//! request after next: its answer may still start with what was typed
//! since, and then serves the newer request at once (typed-through). On a
//! fast typist's machine, where one generation takes longer than the gap
//! between two keys, this is what lets a suggestion appear at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::engine::CancelFlag;

/// The request in flight for a document: its id, the flag that stops its
/// generation, and the notify that wakes its waiter when it is superseded.
type InFlight = (u64, CancelFlag, Arc<Notify>);

/// Tracks the request in flight for each document.
#[derive(Default)]
pub struct Scheduler {
    inflight: Mutex<HashMap<String, InFlight>>,
    /// Per document, the generation of a request answered but left running
    /// (see the module's doc).
    lingering: Mutex<HashMap<String, CancelFlag>>,
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
}

impl Scheduler {
    /// Registers a new request for `key` (a document URI), cancelling the
    /// request that was in flight for it.
    pub fn begin(self: &Arc<Self>, key: &str) -> Ticket {
        self.begin_with(key, false)
    }

    /// Registers a new request for `key` whose document is the previous
    /// request's with text typed at its cursor: the previous request is
    /// answered, but its generation goes on until the next request (a
    /// generation left running before it is stopped now).
    pub fn begin_typing_on(self: &Arc<Self>, key: &str) -> Ticket {
        self.begin_with(key, true)
    }

    fn begin_with(self: &Arc<Self>, key: &str, typing_on: bool) -> Ticket {
        let older = self.lingering.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if let Some(older) = older {
            older.cancel();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let flag = CancelFlag::new();
        let notify = Arc::new(Notify::new());
        let previous = self
            .inflight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.to_string(), (id, flag.clone(), notify.clone()));
        if let Some((_, old, old_notify)) = previous {
            if typing_on {
                self.lingering.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string(), old);
            } else {
                old.cancel();
            }
            old_notify.notify_one();
            self.superseded.fetch_add(1, Ordering::Relaxed);
        }
        Ticket { scheduler: self.clone(), key: key.to_string(), id, flag, notify }
    }

    /// Cancels whatever is in flight for `key` (the document changed in a
    /// way that makes it stale, or was closed).
    pub fn cancel(&self, key: &str) {
        if let Some(lingering) = self.lingering.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            lingering.cancel();
        }
        if let Some((_, flag, notify)) = self.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            flag.cancel();
            notify.notify_one();
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
        if map.get(&self.key).is_some_and(|(id, _, _)| *id == self.id) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_request_cancels_the_older_one_for_the_same_document_only() {
        let s = Arc::new(Scheduler::default());
        let a = s.begin("file:///a");
        let b = s.begin("file:///b");
        assert!(!a.flag().is_cancelled());
        let a2 = s.begin("file:///a");
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
    async fn typing_on_answers_the_older_request_but_lets_its_generation_run_one_request_longer() {
        let s = Arc::new(Scheduler::default());
        let a = s.begin("file:///a");
        let waiting_on_a = a.superseded();
        let b = s.begin_typing_on("file:///a");
        waiting_on_a.cancelled().await; // a's waiter answers at once
        assert!(!a.flag().is_cancelled(), "a's generation lingers");
        let c = s.begin_typing_on("file:///a");
        assert!(a.flag().is_cancelled(), "the request after next stops it");
        assert!(!b.flag().is_cancelled(), "b lingers in its turn");
        let d = s.begin("file:///a");
        assert!(b.flag().is_cancelled() && c.flag().is_cancelled(), "a request that did not type on stops both");
        s.cancel("file:///a");
        assert!(d.flag().is_cancelled());
        assert_eq!(s.superseded(), 3);
    }
}
