//! An editor session's suggestions, keystroke by keystroke: what a front
//! end that stays up (the language server) keeps across requests, and the
//! way from a cursor to a placed suggestion within the latency budget.
//!
//! Per document it keeps the newest request (`Scheduler`), the suggestion
//! shown and late answers (`TypedThrough`), the anchor of the middle marker,
//! the snippets chosen for the cursor's block, the quick prompt size and the
//! warm-ups under way (`warming`: the prompts and the suggestion at a
//! resting cursor, computed before anyone asks); across documents, the
//! suggestion LRU, recent edits, the workspace's definitions and which
//! document is active. A request
//! checks typed-through, registers with the scheduler, builds its prompts
//! on a blocking thread, asks the LRU, submits the job, queues warm-ups
//! (the full prompt behind a quick one, the next anchor's), and waits for
//! its answer, for a late answer it types through, or for the deadline.
//!
//! Plain data in and out: positions in the negotiated encoding, byte
//! offsets, text. What it needs from the front end (documents, settings,
//! model) and what it tells the editor (`Event`) go through [`Host`].
//! Locks are std mutexes held for short, synchronous sections only: never
//! across an `.await`, never while the model runs.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::anchor::{choose_anchor, Anchor};
use super::placement::{over_selected, placed, SelectedItem, Suggestion};
use super::request::{display_path, CursorRequest, Prepared, Setup, PROMPT_PROBLEM};
use super::{mode_at, BuiltPrompt, GenerateError, Scheduler, SuggestionLru, Trigger, TypedThrough};
use crate::context::{CompletionMode, CursorText, Definition};
use crate::documents::encoding::position_to_byte;
use crate::documents::{DocumentSnapshot, DocumentStore, Position};
use crate::engine::{CancelFlag, Completion, JobOptions, Priority, SlotChoice, StopReason, WrittenSoFar};
use crate::locks::lock;
use crate::prompt::ContextChunk;
use crate::throttle::{excerpt, Throttle};

mod warming;

static GENERATION_PROBLEM: Throttle = Throttle::new();

/// The least time a late answer (its prefill outlived the latency budget)
/// may spend generating: it goes to the cache for the editor's re-ask. Also
/// how much longer than the budget a multi-line request made while typing
/// writes its block (its first lines are shown by the deadline).
const LATE_DECODE_BUDGET: Duration = Duration::from_secs(2);

/// A multi-line request (made while typing) still waiting this long after
/// it came is shown the whole lines its generation has written, while the
/// rest is written, for up to [`LATE_DECODE_BUDGET`] past the deadline (it
/// reaches the editor through typing through, or the re-ask the editor
/// makes when the status says it is cached). A block of many lines takes
/// seconds to write on a laptop's CPU; its first line, a few hundred
/// milliseconds. llama.vim caps its first request's generation at 250 ms
/// for the same reason. A longer latency budget, set to wait for whole
/// answers, waits longer ([`EARLY_LINES_BUDGET_SHARE`]).
const EARLY_LINES_AFTER: Duration = Duration::from_millis(250);

/// The share of the latency budget a multi-line request waits at least
/// before its first lines are shown: an eighth (250 ms of the default 2 s).
const EARLY_LINES_BUDGET_SHARE: u32 = 8;

/// How often a waiting multi-line request looks at what its generation
/// wrote, after [`EARLY_LINES_AFTER`].
const EARLY_LINES_POLL: Duration = Duration::from_millis(20);

/// What a session needs from the front end that holds it.
pub trait Host: Send + Sync + 'static {
    /// The open documents, as the editor's edits left them.
    fn documents(&self) -> MutexGuard<'_, DocumentStore>;
    /// What a request in a document of `language_id` runs with now; `None`
    /// when there is nothing to do (the language is switched off, the model
    /// is not ready).
    fn setup(&self, language_id: &str) -> Option<Setup>;
    /// Tells the editor what changed (in the language server, `cria/status`).
    fn notify(&self, event: Event) -> BoxFuture<'_, ()>;
}

/// What a session tells the editor.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generation ended; a generation failure shown before is over.
    Generated(Generated),
    /// A generation failed (the remote engine is down, refused the key, did
    /// not answer in time): worth showing until one succeeds.
    Failed(String),
    /// A request in this document was answered empty because its prompt is
    /// still being computed (in the background, its answer cached).
    Warming(String),
    /// An answer came after its request was answered (empty while its
    /// prompt was warming, with its first lines while the rest was written,
    /// or superseded) and is remembered for typing through: an editor that
    /// got an empty answer may ask again.
    LateAnswer {
        /// The document it is for.
        uri: String,
        /// Whether the editor may ask for it: it is whole and in the cache
        /// for its prompt, and its request was answered before it (with its
        /// first lines, or empty while warming), not superseded. Asked again
        /// at the same cursor, the document unchanged, it is the answer at
        /// once (the rest of a block whose first lines were shown).
        ask_again: bool,
    },
}

/// The numbers of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// From the request to the answer.
    pub latency: Duration,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens reused from the KV cache.
    pub reused_tokens: usize,
    /// Generated tokens per second, when it decoded at all.
    pub tokens_per_second: Option<f64>,
}

/// The snippets a document's prompt used, and the cursor block they were
/// chosen for (see `Session::context_memo`).
type ContextMemo = (usize, Arc<Vec<ContextChunk>>);

/// One editor session's suggestions (see the module's documentation).
pub struct Session {
    host: Weak<dyn Host>,
    scheduler: Arc<Scheduler>,
    lru: Mutex<SuggestionLru>,
    /// Typed-through: suggestions shown, answers that came late, where
    /// each document was last asked.
    typed: Mutex<TypedThrough>,
    /// Signalled when a late answer is remembered: a newer request waiting
    /// on its own generation may type through it.
    late_ready: tokio::sync::Notify,
    /// The last edited places (document, line), newest last.
    recent_edits: Mutex<VecDeque<(String, usize)>>,
    /// Where each document's last edit ended: the cursor after accepting a
    /// suggestion, for speculative next suggestions.
    last_edit_end: Mutex<HashMap<String, Position>>,
    /// Definitions found in the workspace folders' files.
    workspace_definitions: RwLock<Arc<Vec<Definition>>>,
    workspace_roots: Mutex<Vec<PathBuf>>,
    /// The document the user works in now (the last one edited, asked
    /// about or prefetched): activity in another one warms that one.
    active: Mutex<Option<String>>,
    /// Each open document's last known cursor (requests, prefetches,
    /// edits), where its prompt is warmed when it becomes active again.
    cursors: Mutex<HashMap<String, Position>>,
    /// Stops the warm-up under way for a document when a newer one starts.
    warm_ups: Mutex<HashMap<String, CancelFlag>>,
    /// The snippets from other files each document's prompt used, and the
    /// 16-line block of the cursor they were chosen for: while the cursor
    /// stays in that block they are used again, so the prompt's start (and
    /// its KV cache) does not change when other files open or change.
    context_memo: Mutex<HashMap<String, ContextMemo>>,
    /// The quick prompt size each cold document uses until its full prompt
    /// is cached: sizes follow the measured prefill rate, and a size that
    /// changed from one keystroke to the next would throw away the quick
    /// prompt's own cache.
    quick_sizes: Mutex<HashMap<String, usize>>,
    /// Where each document's prompt puts the middle marker (see
    /// `completion::anchor`): Enter keeps the prompt's prefix and suffix.
    anchors: Mutex<HashMap<String, Anchor>>,
    /// The newest `cria/prefetch`'s number: older ones are skipped.
    prefetch_seq: AtomicU64,
    /// Held while a prefetch builds its prompt: one at a time.
    prefetch_turn: Mutex<()>,
}

impl Session {
    /// A fresh session for the front end `host` (held weakly: the host holds
    /// the session).
    pub fn new(host: Weak<dyn Host>) -> Self {
        Self {
            host,
            scheduler: Arc::new(Scheduler::default()),
            lru: Mutex::new(SuggestionLru::new(256)),
            typed: Mutex::new(TypedThrough::default()),
            late_ready: tokio::sync::Notify::new(),
            recent_edits: Mutex::new(VecDeque::new()),
            last_edit_end: Mutex::new(HashMap::new()),
            workspace_definitions: RwLock::new(Arc::new(Vec::new())),
            workspace_roots: Mutex::new(Vec::new()),
            active: Mutex::new(None),
            cursors: Mutex::new(HashMap::new()),
            warm_ups: Mutex::new(HashMap::new()),
            context_memo: Mutex::new(HashMap::new()),
            quick_sizes: Mutex::new(HashMap::new()),
            anchors: Mutex::new(HashMap::new()),
            prefetch_seq: AtomicU64::new(0),
            prefetch_turn: Mutex::new(()),
        }
    }

    /// Tells the editor, while the host is there.
    async fn notify(&self, event: Event) {
        if let Some(host) = self.host.upgrade() {
            host.notify(event).await;
        }
    }

    /// Cancels the suggestion in flight for a document and forgets what
    /// the session kept for it (the document closed).
    pub fn forget(&self, uri: &str) {
        self.scheduler.cancel(uri);
        lock(&self.typed).forget(uri);
        lock(&self.last_edit_end).remove(uri);
        lock(&self.cursors).remove(uri);
        self.stop_warming(uri);
        lock(&self.context_memo).remove(uri);
        lock(&self.quick_sizes).remove(uri);
        lock(&self.anchors).remove(uri);
        let mut active = lock(&self.active);
        if active.as_deref() == Some(uri) {
            *active = None;
        }
    }

    /// Forgets every suggestion (those of a previous model or backend are
    /// not the next one's).
    pub fn forget_answers(&self) {
        *lock(&self.lru) = SuggestionLru::new(256);
        lock(&self.typed).clear();
    }

    /// Remembers where the user edited, for context from recent edits.
    pub fn record_edit(&self, uri: &str, line: usize) {
        let mut edits = lock(&self.recent_edits);
        if edits.back().is_some_and(|(u, l)| u == uri && l.abs_diff(line) < 4) {
            return;
        }
        edits.push_back((uri.to_string(), line));
        while edits.len() > 16 {
            edits.pop_front();
        }
    }

    /// Remembers where a document's last edit ended.
    pub fn record_edit_end(&self, uri: &str, end: Position) {
        lock(&self.last_edit_end).insert(uri.to_string(), end);
        self.note_cursor(uri, end);
    }

    /// The workspace folders, for paths relative to them.
    pub fn set_workspace_roots(&self, roots: Vec<PathBuf>) {
        *lock(&self.workspace_roots) = roots;
    }

    /// The definitions found in the workspace folders' files.
    pub fn set_workspace_definitions(&self, definitions: Vec<Definition>) {
        *self.workspace_definitions.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(definitions);
    }

    fn note_cursor(&self, uri: &str, position: Position) {
        let mut cursors = lock(&self.cursors);
        if cursors.len() >= 4096 && !cursors.contains_key(uri) {
            return; // closed documents leave; this bounds a client that never closes
        }
        cursors.insert(uri.to_string(), position);
    }

    /// Makes `uri` the active document; true when it was not (the user
    /// switched to it).
    fn activate(&self, uri: &str) -> bool {
        let mut active = lock(&self.active);
        if active.as_deref() == Some(uri) {
            return false;
        }
        *active = Some(uri.to_string());
        true
    }

    /// After a suggestion was accepted: computes the next suggestion at the
    /// end of the accepted text, as if the editor had asked, so it is in the
    /// cache when the editor does ask. Lowest priority: it only starts when
    /// nothing is in flight for the document, and any new request for the
    /// document cancels it.
    pub fn speculate_after_accept(self: &Arc<Self>, uri: &str) {
        let Some(position) = lock(&self.last_edit_end).get(uri).copied() else {
            return;
        };
        if !self.scheduler.is_idle(uri) {
            return;
        }
        let session = self.clone();
        let uri = uri.to_string();
        tokio::spawn(async move {
            let found = session.suggest(&uri, position, None, Trigger::Automatic).await;
            tracing::debug!(%uri, found = found.is_some(), "speculative suggestion after accept");
        });
    }

    /// Open documents other than `uri`, small enough to lend context.
    fn other_documents(host: &dyn Host, uri: &str) -> Vec<(String, DocumentSnapshot)> {
        let documents = host.documents();
        documents
            .uris()
            .filter(|u| *u != uri)
            .take(16)
            .filter_map(|u| documents.snapshot(u).ok().map(|s| (u.to_string(), s)))
            .filter(|(_, s)| s.skip_reason().is_none() && s.rope().len_bytes() <= 256 * 1024)
            .collect()
    }

    /// The synchronous part of a request at a cursor: the document as of
    /// now (ordered with the edits before it), the settings and the model.
    /// `None` when there is nothing to do (model not ready, document unknown
    /// or skipped, language off, no completion wanted here).
    fn prepare(&self, uri: &str, position: Position, selected: Option<&SelectedItem>, trigger: Trigger) -> Option<Arc<CursorRequest>> {
        let host = self.host.upgrade()?;
        let snapshot = match host.documents().snapshot(uri) {
            Ok(s) => s,
            Err(e) => {
                if let Some(suppressed) = PROMPT_PROBLEM.check() {
                    tracing::warn!(suppressed, uri = %excerpt(uri.as_bytes()), "completion: {e}");
                }
                return None;
            }
        };
        if let Some(reason) = snapshot.skip_reason() {
            tracing::debug!("no completion for {uri}: {reason:?}");
            return None;
        }
        let mut setup = host.setup(snapshot.language().id())?;
        setup.latency_budget_ms = trigger.latency_budget_ms(setup.latency_budget_ms);
        let encoding = setup.encoding;
        let offset = position_to_byte(snapshot.rope(), position, encoding);
        if !offset.clamp.is_exact() {
            tracing::debug!(?position, clamp = ?offset.clamp, "completion position clamped");
        }
        let (mut text, mut offset) = (snapshot.text(), offset.value);
        let (mut rope, mut tree) = (snapshot.rope().clone(), snapshot.tree().cloned());
        if let Some(item) = selected {
            // As if the item selected in the editor's completion list were
            // applied: the suggestion continues it (see `SelectedItem`).
            let start = position_to_byte(&rope, item.start, encoding).value;
            let end = position_to_byte(&rope, item.end, encoding).value.max(start);
            text = format!("{}{}{}", &text[..start], item.text, &text[end..]);
            offset = start + item.text.len();
            rope = ropey::Rope::from_str(&text);
            tree = None;
        }
        let mode = mode_at(&text, offset, tree.as_ref(), trigger);
        if mode == CompletionMode::Skip {
            return None;
        }
        let block = position.line as usize / crate::context::ALIGN_LINES;
        let memo = lock(&self.context_memo).get(uri).filter(|(b, _)| *b == block).map(|(_, chunks)| chunks.clone());
        let others = if setup.suggestion.context_share > 0.0 && memo.is_none() { Self::other_documents(&*host, uri) } else { Vec::new() };
        let roots = lock(&self.workspace_roots).clone();
        let (anchor, warm_anchor) = {
            let mut anchors = lock(&self.anchors);
            let (anchor, warm) = choose_anchor(&text, offset, anchors.get(uri).copied());
            anchors.insert(uri.to_string(), anchor);
            (anchor.offset, warm)
        };
        Some(Arc::new(CursorRequest {
            quick_size: lock(&self.quick_sizes).get(uri).copied(),
            anchor: Some(anchor),
            warm_anchor,
            uri: uri.to_string(),
            block,
            memo,
            rope,
            language: snapshot.language().clone(),
            tree,
            text,
            offset,
            mode,
            path: display_path(uri, &roots),
            others,
            recent: lock(&self.recent_edits).iter().cloned().collect(),
            index: self.workspace_definitions.read().unwrap_or_else(|p| p.into_inner()).clone(),
            roots,
            setup,
        }))
    }

    /// Keeps the snippets a document's full prompt used, for its next prompts
    /// in the same block (only for documents still open).
    fn remember_context(&self, request: &CursorRequest, prepared: &Prepared) {
        let open = self.host.upgrade().is_some_and(|host| host.documents().get(&request.uri).is_some());
        if !open {
            return;
        }
        if request.memo.is_none() {
            lock(&self.context_memo).insert(request.uri.clone(), (request.block, prepared.full.context.clone()));
        }
        let mut sizes = lock(&self.quick_sizes);
        match &prepared.quick {
            Some(quick) => sizes.insert(request.uri.clone(), quick.prompt_tokens),
            None => sizes.remove(&request.uri),
        };
    }

    /// Computes the suggestion at a cursor, within the latency budget.
    /// `None` when there is nothing to show (model not ready, document
    /// unknown or skipped, superseded by a newer request, nothing useful,
    /// or not ready within the budget).
    ///
    /// A cursor whose prompt is not cached (a file just opened, switched
    /// to, or a far jump) runs a quick, smaller prompt now and warms the
    /// full one in the background. A request whose prompt still takes
    /// longer than the budget is answered empty with [`Event::Warming`],
    /// and finished in the background: its answer is cached, and
    /// [`Event::LateAnswer`] tells the editor to ask again and get it at
    /// once.
    ///
    /// With an item `selected` in the editor's completion list, the
    /// suggestion is computed as if it were applied, and covers its range:
    /// the item's text, then the suggestion (LSP 3.18: an editor shows an
    /// inline suggestion beside its list only if it extends the selected
    /// item).
    pub async fn suggest(
        self: &Arc<Self>,
        uri: &str,
        position: Position,
        selected: Option<SelectedItem>,
        trigger: Trigger,
    ) -> Option<Suggestion> {
        let started = Instant::now();
        let request = self.prepare(uri, position, selected.as_ref(), trigger)?;
        self.note_cursor(uri, position);
        self.activate(uri);
        self.stop_resting_elsewhere(uri);
        let place = |shown: String| match &selected {
            Some(item) => Some(over_selected(item, &shown)),
            None => Some(placed(&request.rope, &request.text, request.offset, request.setup.encoding, shown)),
        };
        // Typed-through: the user typed the start of the suggestion shown.
        let typed_on = {
            let mut typed = lock(&self.typed);
            let typed_on = typed.asked(uri, &request.text, request.offset);
            if let Some(rest) = typed.answer(uri, &request.text, request.offset).filter(|_| selected.is_none()) {
                drop(typed);
                self.scheduler.cancel(uri);
                return place(rest);
            }
            typed_on
        };
        // Typing on leaves the previous request's generation running a
        // little longer: its answer may be what the user is typing.
        let ticket = if typed_on && selected.is_none() {
            self.scheduler.begin_typing_on(uri, &request.text, request.offset, request.mode)
        } else {
            self.scheduler.begin(uri, request.offset)
        };
        let job_flag = ticket.flag();
        let budget = Duration::from_millis(request.setup.latency_budget_ms);
        let deadline = started + budget;
        let cancel = ticket.flag();
        let builder = request.clone();
        // Background work gives way from now, not only once the job is sent.
        let incoming = request.setup.model.generator.engine().map(|engine| engine.expect_interactive());
        let prepared = match tokio::task::spawn_blocking(move || builder.build(budget, Some(deadline), cancel)).await {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!("prompt building panicked: {e}");
                return None;
            }
        };
        self.remember_context(&request, &prepared);
        let Prepared { full, quick, next_anchor } = prepared;
        if quick.is_some() {
            tracing::debug!(%uri, full = full.request.prompt.len(), "cold cursor: a quick prompt now, the full one warmed");
        }
        let cached = [Some(&full), quick.as_ref()].into_iter().flatten().find_map(|b| lock(&self.lru).get(b.key).map(|hit| (b, hit)));
        if let Some((hit_prompt, hit)) = cached {
            tracing::debug!("completion from cache");
            if quick.is_some() {
                self.warm_full_prompt(uri, &request.setup.model, &full.request);
            }
            lock(&self.typed).shown(uri, &request.text, request.offset, &hit);
            if hit.is_empty() {
                drop(ticket);
                self.after_a_written_line(&request, hit_prompt);
                return None;
            }
            return place(hit);
        }
        let full_request = quick.is_some().then(|| full.request.clone());
        let chosen = quick.unwrap_or(full);
        let embedded = request.setup.model.generator.finishes_late();
        // A multi-line answer's first lines are shown once written (see
        // `EARLY_LINES_AFTER`); not for an explicit request, whose user
        // waits for the whole block.
        let early_lines = request.mode == CompletionMode::MultiLine && trigger == Trigger::Automatic;
        let mut job = chosen.request.clone();
        if early_lines && embedded {
            // The editor has its answer by the deadline (the first lines, or
            // nothing yet); the rest goes on being written for a while, for
            // the re-ask the editor makes when it is cached, and for typing
            // through.
            job.deadline = job.deadline.map(|d| d + budget.max(LATE_DECODE_BUDGET));
        }
        let options = JobOptions {
            slot: SlotChoice::Auto,
            priority: Priority::Interactive,
            // Nobody waits on a late answer: it gets time enough to finish.
            late_budget: embedded.then_some(budget.max(LATE_DECODE_BUDGET)),
            key: Some(uri.to_string()),
            written: Some(ticket.written()),
        };
        let pending = request.setup.model.generator.submit(job, options);
        drop(incoming);
        tracing::debug!(%uri, build_ms = started.elapsed().as_millis() as u64, prompt = chosen.request.prompt.len(), "job submitted");
        if let Some(full_request) = &full_request {
            self.warm_full_prompt(uri, &request.setup.model, full_request);
        }
        self.warm_next_anchor(uri, &request.setup.model, next_anchor.as_ref());
        let superseded = ticket.superseded();
        // The windows to post-process the first lines against.
        let written = ticket.written();
        let early = early_lines.then(|| chosen.cursor.clone());
        let early_after = EARLY_LINES_AFTER.max(budget / EARLY_LINES_BUDGET_SHARE);
        let mut lines_seen = 0;
        let (answered, answer) = tokio::sync::oneshot::channel();
        // Set when the editor got this request's answer before the whole
        // one (its first lines, or nothing while warming) and may ask again
        // for it; not when a newer request superseded it.
        let shown_before_whole = Arc::new(AtomicBool::new(false));
        let job_shown_before_whole = shown_before_whole.clone();
        let session = self.clone();
        let job_request = request.clone();
        let job_uri = uri.to_string();
        tokio::spawn(async move {
            let answer = pending.await;
            let ended = matches!(&answer, Ok(Ok(c)) if matches!(c.stop_reason, StopReason::Eos | StopReason::Stop));
            let whole = matches!(&answer, Ok(Ok(c)) if c.stop_reason.is_whole());
            let shown = session.finish(answer, &job_request, &chosen, started, Asked::ByEditor).await;
            let nothing_to_add = ended && shown.is_none();
            // The answer goes before the ticket: dropping it sets the flag
            // the waiter reads as "superseded".
            let unanswered = answered.send(shown);
            drop(ticket);
            if nothing_to_add {
                session.after_a_written_line(&job_request, &chosen);
            }
            if let Err(Some(shown)) = unanswered {
                // The request was answered empty meanwhile: the answer is
                // cached, a newer request typing through it may use it, and
                // the editor is told to ask again.
                tracing::info!(uri = %job_uri, ms = started.elapsed().as_millis() as u64, "late suggestion ready in the cache");
                lock(&session.typed).late(&job_uri, &job_request.text, job_request.offset, &shown);
                session.late_ready.notify_waiters();
                let ask_again = whole && job_shown_before_whole.load(Ordering::SeqCst);
                session.notify(Event::LateAnswer { uri: job_uri, ask_again }).await;
            }
        });
        let wait = tokio::time::timeout_at((deadline + Duration::from_millis(50)).into(), answer);
        tokio::pin!(wait);
        let outcome = loop {
            let late = self.late_ready.notified();
            tokio::pin!(late);
            late.as_mut().enable();
            // An older request's answer, come late, that this one types through.
            let through_late = lock(&self.typed).answer(uri, &request.text, request.offset).filter(|_| selected.is_none());
            if let Some(rest) = through_late {
                job_flag.cancel();
                return place(rest);
            }
            tokio::select! {
                outcome = &mut wait => break outcome,
                // The ticket also ends when its answer was just sent.
                () = superseded.cancelled() => match futures_util::FutureExt::now_or_never(&mut wait) {
                    Some(outcome) => break outcome,
                    None => return None,
                },
                () = &mut late => {}
                // The first look at `early_after`, then one per poll.
                () = tokio::time::sleep_until((started + early_after).max(Instant::now() + EARLY_LINES_POLL).into()), if early.is_some() => {
                    let cursor = early.as_ref().expect("only with windows");
                    if let Some(shown) = self.lines_written_so_far(&request, cursor, &written, &mut lines_seen) {
                        tracing::debug!(%uri, ms = started.elapsed().as_millis() as u64, "the first lines shown while the rest is written");
                        lock(&self.typed).shown(uri, &request.text, request.offset, &shown);
                        shown_before_whole.store(true, Ordering::SeqCst);
                        return place(shown);
                    }
                }
            }
        };
        match outcome {
            Ok(Ok(Some(shown))) => {
                lock(&self.typed).shown(uri, &request.text, request.offset, &shown);
                place(shown)
            }
            Ok(_) => None,
            Err(_) if embedded => {
                shown_before_whole.store(true, Ordering::SeqCst);
                tracing::info!(%uri, "not ready within the latency budget; finishing in the background");
                self.notify(Event::Warming(uri.to_string())).await;
                None
            }
            Err(_) => {
                tracing::info!(%uri, "no answer from the engine within the latency budget");
                self.notify(Event::Failed("the remote engine did not answer within the latency budget".into())).await;
                None
            }
        }
    }

    /// What a multi-line generation still running has to show: its whole
    /// lines so far, post-processed as an answer cut short; `None` while
    /// that is nothing, or no line was added since the last look
    /// (`lines_seen`: the bytes of whole lines looked at).
    fn lines_written_so_far(&self, request: &CursorRequest, cursor: &CursorText, written: &WrittenSoFar, lines_seen: &mut usize) -> Option<String> {
        let lines = written.whole_lines();
        if lines.len() <= *lines_seen || lines.trim().is_empty() {
            return None;
        }
        *lines_seen = lines.len();
        let so_far = Completion {
            text: lines,
            tokens: Vec::new(),
            stop_reason: StopReason::Enough,
            prompt_tokens: 0,
            reused_tokens: 0,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            drafted_tokens: 0,
            accepted_tokens: 0,
        };
        let shown = request.pipeline().shown_text(&request.place(request.anchor), cursor, &so_far);
        (!shown.trim().is_empty()).then_some(shown)
    }

    /// A request's answer was empty, the model having nothing to add (or
    /// nothing worth showing) at the cursor: where that cursor ends a
    /// written line, the lines after it are computed at rest (see
    /// [`Self::suggest_at_rest`]), for the Enter that comes next.
    fn after_a_written_line(self: &Arc<Self>, request: &Arc<CursorRequest>, built: &BuiltPrompt) {
        if request.ends_a_written_line() {
            self.suggest_at_rest(request, vec![(built.clone(), None)]);
        }
    }

    /// Turns a generation's answer into what is shown (post-processed,
    /// cached when complete); `None` when there is nothing to show.
    async fn finish(
        &self,
        answer: Result<Result<Completion, GenerateError>, tokio::sync::oneshot::error::RecvError>,
        request: &CursorRequest,
        built: &BuiltPrompt,
        started: Instant,
        asked: Asked,
    ) -> Option<String> {
        let completion = match answer {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let Some(suppressed) = GENERATION_PROBLEM.check() {
                    tracing::warn!(suppressed, "generation: {e}");
                }
                self.notify(Event::Failed(e.to_string())).await;
                return None;
            }
            Err(_) => return None,
        };
        match asked {
            Asked::ByEditor => self.record(&completion, built.prompt_tokens, started.elapsed()).await,
            Asked::AtRest => tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                prompt = completion.prompt_tokens,
                budget = built.prompt_tokens,
                reused = completion.reused_tokens,
                generated = completion.tokens.len(),
                stop = completion.stop_reason.as_str(),
                "suggestion at rest"
            ),
        }
        if completion.stop_reason == StopReason::Cancelled {
            return None;
        }
        let place = request.place(request.anchor);
        let shown = request.pipeline().shown_text(&place, &built.cursor, &completion);
        tracing::debug!(raw = ?completion.text, shown = ?shown, "postprocessed");
        // Only whole answers are cached for their prompt (one that ended
        // with `Enough` served a newer request's line, not this request).
        if completion.stop_reason.is_whole() {
            lock(&self.lru).put(built.key, shown.clone());
        }
        (!shown.trim().is_empty()).then_some(shown)
    }

    /// Logs a generation (its prompt was built within `budget` tokens: a
    /// quick prompt's or the full one's) and tells the host its numbers.
    async fn record(&self, completion: &Completion, budget: usize, latency: Duration) {
        tracing::info!(
            latency_ms = latency.as_millis() as u64,
            prompt = completion.prompt_tokens,
            budget,
            reused = completion.reused_tokens,
            generated = completion.tokens.len(),
            stop = completion.stop_reason.as_str(),
            superseded_total = self.scheduler.superseded(),
            "completion"
        );
        let decode = completion.decode.as_secs_f64();
        let generated = Generated {
            latency,
            prompt_tokens: completion.prompt_tokens,
            reused_tokens: completion.reused_tokens,
            tokens_per_second: (decode > 0.0).then(|| completion.tokens.len() as f64 / decode),
        };
        self.notify(Event::Generated(generated)).await;
    }
}

/// Who asked for a generation: the editor (its numbers go to the editor
/// and the log's `completion` lines), or the session, for a cursor at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    ByEditor,
    AtRest,
}
