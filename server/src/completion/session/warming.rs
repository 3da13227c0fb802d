//! Warming: what a session computes before anyone asks. When the user
//! switches to a document or the cursor rests there (`cria/prefetch`), the
//! prompts a request there would run are warmed at background priority
//! (a quick one first when the full one is cold), and then the suggestion
//! itself is computed (`Session::suggest_at_rest`); a request computes its
//! full prompt's warm-up and the next anchor's through the same functions.
//! Each document has one warm-up, one next-anchor warm-up and one
//! suggestion at rest at a time: a newer one stops the older one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Asked, CursorRequest, Session};
use crate::completion::{BuiltPrompt, Model, Trigger};
use crate::documents::Position;
use crate::engine::{CancelFlag, Completion, EngineError, EngineHandle, GenerationRequest, JobOptions, Priority, SlotChoice};
use crate::locks::lock;

impl Session {
    /// A document was opened or edited: if the user switched to it, warm
    /// its prompt at its last known cursor (the edit's end, a prefetch, a
    /// request), so its first suggestion does not pay for the whole prompt.
    pub fn document_activity(self: &Arc<Self>, uri: &str) {
        if !self.activate(uri) {
            return;
        }
        let known = lock(&self.cursors).get(uri).copied();
        if let Some(position) = known {
            self.prefetch(uri, position);
        }
    }

    /// The user's cursor is at `position` in `uri` (`cria/prefetch`). Warms
    /// the prompt a request there would use, at background priority: if
    /// computing it would not fit the latency budget, a quick prompt first
    /// (what the first keystroke there will use), then the full one; and the
    /// suggestion a request there would get ([`Self::suggest_at_rest`]). A
    /// newer prefetch for the document replaces this one; any request runs
    /// first.
    ///
    /// A flood of prefetches (a cursor held on an arrow key, a hostile
    /// client) builds one prompt at a time, and only the newest: an older
    /// one whose turn comes after a newer one arrived does nothing.
    pub fn prefetch(self: &Arc<Self>, uri: &str, position: Position) {
        self.note_cursor(uri, position);
        self.activate(uri);
        let seq = self.prefetch_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let session = self.clone();
        let uri = uri.to_string();
        tokio::task::spawn_blocking(move || {
            let _turn = lock(&session.prefetch_turn);
            if session.prefetch_seq.load(Ordering::SeqCst) == seq {
                session.prefetch_now(&uri, position);
            }
        });
    }

    /// The work of [`Self::prefetch`], on a blocking thread: the warm-ups
    /// (the quick prompt's first when the full one is cold), and the
    /// suggestion at rest once the prompt it runs is warm (see
    /// [`Self::suggest_at_rest`]).
    pub(super) fn prefetch_now(self: &Arc<Self>, uri: &str, position: Position) {
        let Some(built) = self.prepare(uri, position, None, Trigger::Automatic) else {
            return;
        };
        if !built.setup.model.generator.finishes_late() {
            return; // a remote engine keeps its own cache, and each suggestion is a request
        }
        let flag = self.new_warm_up(uri);
        let budget = Duration::from_millis(built.setup.latency_budget_ms);
        let Some(prepared) = built.build(budget, None, CancelFlag::new()) else {
            return;
        };
        tracing::debug!(%uri, "prefetch: prompt built");
        self.remember_context(&built, &prepared);
        self.warm_next_anchor(uri, &built.setup.model, prepared.next_anchor.as_ref());
        let engine = built.setup.model.generator.engine();
        let full = &prepared.full.request.prompt;
        let cold = prepared.quick.is_some() || engine.is_some_and(|e| !e.holds(full));
        // The suggestion at rest runs once its own prompt is warm: the warm-ups
        // give way to keystrokes, a generation would not while it prefills.
        let warm_up = |built: &BuiltPrompt| engine.map(|e| queue_warm_up(e, uri, &built.request, &flag));
        let quick_warmed = prepared.quick.as_ref().and_then(warm_up);
        let full_warmed = cold.then(|| warm_up(&prepared.full)).flatten();
        if cold {
            tracing::debug!(%uri, quick = prepared.quick.is_some(), full = full.len(), "prompt warm-up queued");
        }
        let mut stages = Vec::new();
        if let Some(quick) = prepared.quick {
            stages.push((quick, quick_warmed));
        }
        stages.push((prepared.full, full_warmed));
        self.suggest_at_rest(&built, stages);
    }

    /// The suggestion at a resting cursor (a prefetch): computes what a
    /// request there would get, for each of `stages` in turn (a prompt, and
    /// its warm-up under way), once that prompt is warm: the quick prompt a
    /// keystroke on a cold cursor runs, then the full one, which is what a
    /// request there runs once it is warm. It is what the first keystroke
    /// after opening a file or pausing to read would otherwise wait for:
    /// the prompt is warm by then, but decoding takes some 300 ms on a slow
    /// laptop. A request right there gets it from the cache; one that types
    /// on at the cursor gets the rest of it as soon as it is written, as
    /// with a generation left running by an answered request (see
    /// `Scheduler::linger_unasked`): typing what it does not write, any
    /// other request, or a newer prefetch stops it. Each stage starts only
    /// while the document is as it was and no request is under way there.
    ///
    /// At the end of a written line where the model has nothing to add on
    /// the line (a one-line suggestion there is empty), what the user does
    /// next is Enter: each stage then computes the lines after it too (the
    /// same prompt, multi-line), kept for typing through, so the keystroke
    /// that starts the next line is answered at once when the editor's
    /// indentation is the model's.
    pub(super) fn suggest_at_rest(self: &Arc<Self>, request: &Arc<CursorRequest>, stages: Vec<(BuiltPrompt, Option<WarmUpDone>)>) {
        let uri = request.uri.clone();
        let flag = CancelFlag::new();
        if let Some(old) = lock(&self.warm_ups).insert(at_rest_key(&uri), flag.clone()) {
            old.cancel();
        }
        if request.setup.suggestion.ablation.no_suggestion_at_rest
            || lock(&self.typed).answer(&uri, &request.text, request.offset).is_some()
        {
            return; // switched off, or a suggestion typed through is shown
        }
        let (session, request) = (self.clone(), request.clone());
        tokio::spawn(async move {
            for (built, warmed) in stages {
                if let Some(warmed) = warmed {
                    let _ = warmed.await;
                }
                if flag.is_cancelled() || !session.unchanged(&request) {
                    return; // moved, typed, or asked there meanwhile
                }
                if request.setup.model.generator.engine().is_some_and(|e| !e.holds(&built.request.prompt)) {
                    return; // its warm-up gave way: a prefill here would not
                }
                let Some(shown) = session.at_rest(&request, &built, &flag).await else {
                    return; // the user is typing there
                };
                if !shown.is_empty() || !request.ends_a_written_line() {
                    continue;
                }
                let (line, built) = (request.clone(), built.clone());
                let Ok(Some((next, next_built))) = tokio::task::spawn_blocking(move || line.next_lines(&built)).await else {
                    return;
                };
                if flag.is_cancelled() || !session.unchanged(&request) {
                    return;
                }
                if session.at_rest(&next, &next_built, &flag).await.is_none() {
                    return;
                }
            }
        });
    }

    /// One suggestion at rest: `built`'s at `request`'s cursor, from the
    /// cache or computed (see [`Self::suggest_at_rest`]), and kept for a
    /// request that types through it. What is shown (empty: nothing), or
    /// `None` when it did not run to its end (the user is typing there, or
    /// `flag` stopped it).
    async fn at_rest(self: &Arc<Self>, request: &CursorRequest, built: &BuiltPrompt, flag: &CancelFlag) -> Option<String> {
        let uri = &request.uri;
        let cached = lock(&self.lru).get(built.key);
        if let Some(shown) = cached {
            // Computed at this place before.
            if !shown.is_empty() {
                lock(&self.typed).late(uri, &request.text, request.offset, &shown);
            }
            return Some(shown);
        }
        let (id, written) = self.scheduler.linger_unasked(uri, request.offset, flag)?;
        lock(&self.typed).asked(uri, &request.text, request.offset);
        let started = Instant::now();
        let generation = GenerationRequest { deadline: None, cancel: flag.clone(), ..built.request.clone() };
        let options =
            // No key: the warm-ups queued for the document stay queued.
            JobOptions { slot: SlotChoice::Auto, priority: Priority::Interactive, late_budget: None, key: None, written: Some(written) };
        let answer = request.setup.model.generator.submit(generation, options).await;
        self.scheduler.end_unasked(uri, id);
        let shown = self.finish(answer, request, built, started, Asked::AtRest).await;
        if let Some(shown) = &shown {
            lock(&self.typed).late(uri, &request.text, request.offset, shown);
            self.late_ready.notify_waiters();
        }
        if flag.is_cancelled() {
            return None;
        }
        Some(shown.unwrap_or_default())
    }

    /// Whether `request`'s document is still as it was then.
    pub(super) fn unchanged(&self, request: &CursorRequest) -> bool {
        let Some(host) = self.host.upgrade() else {
            return false;
        };
        let documents = host.documents();
        documents.snapshot(&request.uri).is_ok_and(|now| *now.rope() == request.rope)
    }

    /// Stops the suggestions at rest being computed in documents other than
    /// `uri`: a keystroke in one document is never queued behind guesses
    /// for another.
    pub(super) fn stop_resting_elsewhere(&self, uri: &str) {
        let own = at_rest_key(uri);
        lock(&self.warm_ups).retain(|key, flag| {
            let elsewhere = key.ends_with(AT_REST) && *key != own;
            if elsewhere {
                flag.cancel();
            }
            !elsewhere
        });
    }

    /// Queues the warm-up of a document's full prompt (background priority,
    /// replacing the document's earlier warm-up).
    pub(super) fn warm_full_prompt(&self, uri: &str, model: &Model, request: &GenerationRequest) {
        let Some(engine) = model.generator.engine() else {
            return;
        };
        drop(queue_warm_up(engine, uri, request, &self.new_warm_up(uri)));
    }

    /// Queues the warm-up of the prompt the document's next anchor will use
    /// (see `completion::anchor`), in a KV slot beside the one in use so
    /// the keystrokes keep their prompt; a newer one replaces it.
    pub(super) fn warm_next_anchor(&self, uri: &str, model: &Model, next: Option<&BuiltPrompt>) {
        if let (Some(next), Some(engine)) = (next, model.generator.engine()) {
            let flag = self.new_warm_up(&anchor_warm_up_key(uri));
            drop(queue_warm_up_in(engine, None, SlotChoice::Beside, &next.request, &flag));
            tracing::debug!(%uri, "next anchor's prompt queued to warm");
        }
    }

    /// Stops everything warming for `uri` (the document closed): its
    /// warm-up, its next anchor's and its suggestion at rest.
    pub(super) fn stop_warming(&self, uri: &str) {
        let mut warm_ups = lock(&self.warm_ups);
        for key in [uri.to_string(), anchor_warm_up_key(uri), at_rest_key(uri)] {
            if let Some(flag) = warm_ups.remove(&key) {
                flag.cancel();
            }
        }
    }

    /// A fresh cancellation flag for `uri`'s warm-ups; the earlier ones stop,
    /// and so does the warm-up of the next anchor at the old place (a new
    /// warm-up is for a cursor that moved; its own next anchor comes after).
    pub(super) fn new_warm_up(&self, uri: &str) -> CancelFlag {
        let flag = CancelFlag::new();
        let mut warm_ups = lock(&self.warm_ups);
        if let Some(anchor) = warm_ups.remove(&anchor_warm_up_key(uri)) {
            anchor.cancel();
        }
        if let Some(old) = warm_ups.insert(uri.to_string(), flag.clone()) {
            old.cancel();
        }
        flag
    }
}

/// Queues a warm-up of `request`'s prompt for `uri`: background priority,
/// nothing generated, stopped by `flag`; the receiver says when it ended.
pub(super) fn queue_warm_up(engine: &EngineHandle, uri: &str, request: &GenerationRequest, flag: &CancelFlag) -> WarmUpDone {
    queue_warm_up_in(engine, Some(uri), SlotChoice::Auto, request, flag)
}

/// Resolves when a warm-up ends (done, cancelled or given up).
pub(super) type WarmUpDone = oneshot::Receiver<Result<Completion, EngineError>>;

/// What ends the key of a document's suggestion at rest in `Session::warm_ups`.
const AT_REST: &str = "\u{0}rest";

/// The key of a document's suggestion at rest in `Session::warm_ups`.
fn at_rest_key(uri: &str) -> String {
    format!("{uri}{AT_REST}")
}

/// The key of a document's warm-up of its next anchor in `Session::warm_ups`.
fn anchor_warm_up_key(uri: &str) -> String {
    format!("{uri}\u{0}anchor")
}

/// Queues a warm-up in the slot `slot` chooses; with a `key`, it reports
/// progress as that document's warming and a request for it drops the
/// warm-up if still queued.
pub(super) fn queue_warm_up_in(
    engine: &EngineHandle,
    key: Option<&str>,
    slot: SlotChoice,
    request: &GenerationRequest,
    flag: &CancelFlag,
) -> WarmUpDone {
    let request = GenerationRequest { max_new_tokens: 0, deadline: None, cancel: flag.clone(), ..request.clone() };
    let options = JobOptions { slot, priority: Priority::Background, late_budget: None, key: key.map(str::to_string), written: None };
    engine.submit(request, options, None)
}
