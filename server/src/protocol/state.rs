//! The server's state and the work behind the handlers: documents, settings,
//! the model's life cycle (load with progress, errors shown to the user), and
//! one suggestion from a cursor under the latency budget.
//!
//! Locks here are std mutexes held for short, synchronous sections only:
//! never across an `.await`, never while the model runs.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tower_lsp_server::gen_lsp_types as lsp;
use tower_lsp_server::Client;

use super::config::{ConfigProblem, ServerConfig};
use super::ext::{Status, StatusNotification, WarmingStatus};
use crate::completion::anchor::{choose_anchor, Anchor};
use crate::completion::{
    mode_at, plan_prompt, resolve_model, start_backend, start_with_generator, BuiltPrompt, CursorPlace, Generator, Model, Pipeline,
    PromptPlan, PromptSize, Scheduler, SuggestionLru, Trigger, TypedThrough,
};
use crate::context::{
    definitions, neighbourhood, relevant_definitions, similar_chunks, CompletionMode, CursorText, Definition, SourceFile,
};
use crate::documents::encoding::{byte_to_position, position_to_byte};
use crate::documents::DocumentSnapshot;
use crate::documents::{DocumentLimits, DocumentStore, Language, Position, PositionEncoding};
use crate::engine::{CancelFlag, Completion, EngineOptions, GenerationRequest, JobOptions, Priority, SlotChoice, StopReason};
use crate::models::CriaHome;
use crate::prompt::ContextChunk;

static PROMPT_PROBLEM: crate::throttle::Throttle = crate::throttle::Throttle::new();
static GENERATION_PROBLEM: crate::throttle::Throttle = crate::throttle::Throttle::new();

/// The least time a late answer (its prefill outlived the latency budget)
/// may spend generating: it goes to the cache for the editor's re-ask.
const LATE_DECODE_BUDGET: Duration = Duration::from_secs(2);

/// Changes the log filter at run time; given by the binary, which owns logging.
pub type LogControl = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where the model is in its life.
#[derive(Clone)]
pub enum ModelState {
    /// Nothing asked for yet (before `initialized`).
    NotStarted,
    /// Loading on the engine thread.
    Loading {
        /// The model being loaded.
        name: String,
    },
    /// Resident and answering.
    Ready(Model),
    /// Loading failed; the message says how to fix it.
    Failed {
        /// The model that failed.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// A suggestion ready to be turned into LSP items.
#[derive(Debug, Clone)]
pub struct Suggestion {
    /// Text to insert at the cursor.
    pub text: String,
    /// The cursor.
    pub cursor: Position,
    /// End of the text after the cursor the suggestion replaces (closing
    /// characters it also covers), if any.
    pub replace_end: Option<Position>,
    /// Start of the identifier being typed, for clients that filter by it.
    pub word_start: Position,
    /// The identifier characters between `word_start` and the cursor.
    pub word: String,
}

/// The item selected in the editor's completion list (LSP 3.18
/// `selectedCompletionInfo`): the range it would replace and its text.
#[derive(Debug, Clone)]
pub struct SelectedItem {
    /// Start of the range the item replaces.
    pub start: Position,
    /// End of that range.
    pub end: Position,
    /// The item's text.
    pub text: String,
}

/// Everything the handlers share.
pub struct State {
    pub(super) client: Client,
    documents: Mutex<DocumentStore>,
    encoding: Mutex<PositionEncoding>,
    config: Mutex<ServerConfig>,
    model: RwLock<ModelState>,
    scheduler: Arc<Scheduler>,
    log_control: Option<LogControl>,
    load_generation: AtomicU64,
    last: Mutex<Status>,
    /// The last generation's failure (remote engine down, 401...), shown
    /// as an `error` status until a generation succeeds again.
    generation_error: Mutex<Option<String>>,
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
    /// Runs the generations instead of the backend the settings choose
    /// (the model-free tests' scripted generator); the model file is still
    /// read for its tokenizer.
    given_generator: Option<Generator>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Fresh state for a new connection.
    pub fn new(client: Client, config: ServerConfig, log_control: Option<LogControl>) -> Self {
        Self {
            client,
            documents: Mutex::new(DocumentStore::new(DocumentLimits::default())),
            encoding: Mutex::new(PositionEncoding::Utf16),
            config: Mutex::new(config),
            model: RwLock::new(ModelState::NotStarted),
            scheduler: Arc::new(Scheduler::default()),
            log_control,
            load_generation: AtomicU64::new(0),
            last: Mutex::new(Status::default()),
            generation_error: Mutex::new(None),
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
            given_generator: None,
        }
    }

    /// Fresh state whose generations run on `generator` (see
    /// `State::given_generator`).
    pub fn with_generator(client: Client, config: ServerConfig, log_control: Option<LogControl>, generator: Generator) -> Self {
        Self { given_generator: Some(generator), ..Self::new(client, config, log_control) }
    }

    /// Sets the negotiated position encoding.
    pub fn set_encoding(&self, encoding: PositionEncoding) {
        *lock(&self.encoding) = encoding;
    }

    /// The negotiated position encoding.
    pub fn encoding(&self) -> PositionEncoding {
        *lock(&self.encoding)
    }

    /// The documents, for the synchronous notification handlers.
    pub fn documents(&self) -> std::sync::MutexGuard<'_, DocumentStore> {
        lock(&self.documents)
    }

    /// Cancels the suggestion in flight for a document.
    /// and forgets the suggestion last shown there (the document closed).
    pub fn cancel_pending(&self, uri: &str) {
        self.scheduler.cancel(uri);
        lock(&self.typed).forget(uri);
        lock(&self.last_edit_end).remove(uri);
        lock(&self.cursors).remove(uri);
        if let Some(flag) = lock(&self.warm_ups).remove(uri) {
            flag.cancel();
        }
        lock(&self.context_memo).remove(uri);
        lock(&self.quick_sizes).remove(uri);
        lock(&self.anchors).remove(uri);
        if let Some(flag) = lock(&self.warm_ups).remove(&anchor_warm_up_key(uri)) {
            flag.cancel();
        }
        let mut active = lock(&self.active);
        if active.as_deref() == Some(uri) {
            *active = None;
        }
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

    /// `cria/prefetch`: the user's cursor is at `position` in `uri`. Warms
    /// the prompt a request there would use, at background priority: if
    /// computing it would not fit the latency budget, a quick prompt first
    /// (what the first keystroke there will use), then the full one. A newer
    /// prefetch for the document replaces this one; any request runs first.
    ///
    /// A flood of prefetches (a cursor held on an arrow key, a hostile
    /// client) builds one prompt at a time, and only the newest: an older
    /// one whose turn comes after a newer one arrived does nothing.
    pub fn prefetch(self: &Arc<Self>, uri: &str, position: Position) {
        self.note_cursor(uri, position);
        self.activate(uri);
        let seq = self.prefetch_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let state = self.clone();
        let uri = uri.to_string();
        tokio::task::spawn_blocking(move || {
            let _turn = lock(&state.prefetch_turn);
            if state.prefetch_seq.load(Ordering::SeqCst) == seq {
                state.prefetch_now(&uri, position);
            }
        });
    }

    /// The work of [`Self::prefetch`], on a blocking thread.
    fn prefetch_now(self: &Arc<Self>, uri: &str, position: Position) {
        let Some(built) = self.prepare(uri, position, None, Trigger::Automatic) else {
            return;
        };
        let Some(engine) = built.model.generator.engine().cloned() else {
            return; // a remote engine keeps its own cache
        };
        let flag = self.new_warm_up(uri);
        let budget = Duration::from_millis(built.config.latency_budget_ms);
        let Some(prepared) = built.build(budget, None, CancelFlag::new()) else {
            return;
        };
        tracing::debug!(%uri, "prefetch: prompt built");
        self.remember_context(&built, &prepared);
        self.warm_next_anchor(uri, &built.model, prepared.next_anchor.as_ref());
        let full = &prepared.full.request.prompt;
        if prepared.quick.is_none() && engine.cached_prefix(full) + 1 >= full.len() {
            return; // already warm
        }
        if let Some(quick) = &prepared.quick {
            queue_warm_up(&engine, uri, &quick.request, &flag);
        }
        queue_warm_up(&engine, uri, &prepared.full.request, &flag);
        tracing::debug!(%uri, quick = prepared.quick.is_some(), full = prepared.full.request.prompt.len(), "prompt warm-up queued");
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
        let state = self.clone();
        let uri = uri.to_string();
        tokio::spawn(async move {
            let found = state.suggest(&uri, position, None, Trigger::Automatic).await;
            tracing::debug!(%uri, found = found.is_some(), "speculative suggestion after accept");
        });
    }

    /// Indexes the definitions in the workspace folders in the background.
    pub fn index_workspace(self: &Arc<Self>, roots: Vec<PathBuf>) {
        *lock(&self.workspace_roots) = roots.clone();
        if roots.is_empty() {
            return;
        }
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let found = crate::workspace::index_definitions(&roots);
            tracing::info!(definitions = found.len(), ms = started.elapsed().as_millis() as u64, "workspace indexed");
            *state.workspace_definitions.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(found);
        });
    }

    /// Open documents other than `uri`, small enough to lend context.
    fn other_documents(&self, uri: &str) -> Vec<(String, DocumentSnapshot)> {
        let documents = self.documents();
        documents
            .uris()
            .filter(|u| *u != uri)
            .take(16)
            .filter_map(|u| documents.snapshot(u).ok().map(|s| (u.to_string(), s)))
            .filter(|(_, s)| s.skip_reason().is_none() && s.rope().len_bytes() <= 256 * 1024)
            .collect()
    }

    /// Applies settings; returns the problems and whether the model changed.
    pub fn apply_settings(&self, settings: &serde_json::Value) -> (Vec<ConfigProblem>, bool) {
        let mut config = lock(&self.config);
        let before = (config.model.clone(), config.context_length, config.threads, config.device, config.backend.clone());
        let problems = config.apply(settings);
        if let Some(control) = &self.log_control {
            if let Err(e) = control(&config.log_level) {
                tracing::warn!("logLevel: {e}");
            }
        }
        let changed = before != (config.model.clone(), config.context_length, config.threads, config.device, config.backend.clone());
        (problems, changed)
    }

    /// Shows settings problems: warnings in the log, bad values to the user.
    pub async fn report_settings_problems(&self, problems: Vec<ConfigProblem>) {
        for problem in problems {
            match problem {
                ConfigProblem::UnknownKey(key) => tracing::warn!("unknown setting `{key}` ignored"),
                ConfigProblem::BadValue { key, message } => {
                    let text = format!("cria: setting `{key}`: {message}; keeping the previous value");
                    tracing::error!("{text}");
                    self.client.show_message(lsp::MessageType::Error, text).await;
                }
            }
        }
    }

    /// The current status, for `cria/status`.
    async fn publish_status(&self) {
        self.publish_status_with(false, None).await;
    }

    /// Sends `cria/status`. With `answer_ready`, as `ready` even while a
    /// warm-up goes on: an answer that came late is in the cache, and an
    /// editor that got an empty answer while warming asks again on `ready`.
    /// With `late`, as `warming` for that document: its request was just
    /// answered empty because its prompt is still being computed.
    async fn publish_status_with(&self, answer_ready: bool, late: Option<&str>) {
        let status = {
            let mut last = lock(&self.last);
            let (model, state, message) = match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
                ModelState::NotStarted => (String::new(), "loading", None),
                ModelState::Loading { name } => (name.clone(), "loading", None),
                ModelState::Ready(m) => {
                    let engine = m.generator.engine();
                    last.warming =
                        engine.and_then(|e| e.warming().borrow().clone()).map(|w| WarmingStatus { percentage: w.percentage(), uri: w.key });
                    if let Some(uri) = late {
                        if last.warming.as_ref().is_none_or(|w| w.uri != uri) {
                            last.warming = Some(WarmingStatus { uri: uri.to_string(), percentage: 0 });
                        }
                    }
                    if let Some(usage) = engine.map(|e| e.kv_usage()) {
                        last.kv_cache_mb = Some((usage.bytes as f64 / (1 << 20) as f64 * 10.0).round() / 10.0);
                        last.kv_slots = Some(usage.used);
                    }
                    match lock(&self.generation_error).clone() {
                        Some(error) => (m.name.clone(), "error", Some(error)),
                        None if last.warming.is_some() && !answer_ready => (m.name.clone(), "warming", None),
                        None => (m.name.clone(), "ready", None),
                    }
                }
                ModelState::Failed { name, message } => (name.clone(), "error", Some(message.clone())),
            };
            if state != "warming" {
                last.warming = None;
            }
            last.model = model;
            last.state = state.into();
            last.message = message;
            last.clone()
        };
        self.client.send_notification::<StatusNotification>(status).await;
    }

    fn set_model_state(&self, generation: u64, state: ModelState) -> bool {
        if self.load_generation.load(Ordering::SeqCst) != generation {
            return false; // a newer load replaced this one
        }
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = state;
        true
    }

    /// Loads the configured model in the background, with `$/progress`
    /// reports, a `showMessage` on failure and `cria/status` on each change.
    pub fn start_loading(self: &Arc<Self>) {
        let generation = self.load_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let config = lock(&self.config).clone();
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = ModelState::Loading { name: config.model.clone() };
        // Suggestions of the previous model (or backend) are not this one's.
        *lock(&self.lru) = SuggestionLru::new(256);
        lock(&self.typed).clear();
        let state = self.clone();
        tokio::spawn(async move { state.load(generation, config).await });
    }

    async fn load(self: Arc<Self>, generation: u64, config: ServerConfig) {
        self.publish_status().await;
        let token = lsp::ProgressToken::String(format!("cria/load/{generation}"));
        // Progress only for a client that takes it, and never waited on.
        let progress = super::progress::Progress::start(&self.client, token);
        let report = |value: serde_json::Value| {
            progress.report(value);
            std::future::ready(())
        };
        report(json!({"kind": "begin", "title": "cria: loading model", "message": config.model, "percentage": 0, "cancellable": false}))
            .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let spec = config.model.clone();
        let options = EngineOptions {
            context_length: config.context_length,
            threads: config.threads,
            device: config.device,
            kv_cache_mb: config.kv_cache_mb,
            ..EngineOptions::default()
        };
        let backend = config.backend.clone();
        let given = self.given_generator.clone();
        let starting = tokio::task::spawn_blocking(move || {
            let home = CriaHome::from_env().map_err(|e| e.to_string())?;
            let resolved = resolve_model(&spec, &home).map_err(|e| e.to_string())?;
            let mut last = 0;
            let progress = Box::new(move |f: f32| {
                let percent = (f * 100.0) as u32;
                if percent != last {
                    last = percent;
                    let _ = tx.send(percent);
                }
            });
            match given {
                Some(generator) => Ok(start_with_generator(resolved, generator, &options)),
                None => start_backend(resolved, &backend, options, progress).map_err(|e| e.to_string()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("model start-up panicked: {e}")));
        let result = match starting {
            Ok(starting) => {
                let finish = starting.finish();
                tokio::pin!(finish);
                loop {
                    tokio::select! {
                        result = &mut finish => break result.map_err(|e| e.to_string()),
                        Some(percent) = rx.recv() => report(json!({"kind": "report", "percentage": percent, "message": format!("{} {percent}%", config.model)})).await,
                    }
                }
            }
            Err(message) => Err(message),
        };
        match result {
            Ok(model) => {
                tracing::info!(model = %model.name, load_ms = model.load_time.as_millis() as u64, "model ready");
                report(json!({"kind": "end", "message": format!("{} ready", model.name)})).await;
                let warming = model.generator.engine().map(|e| e.warming());
                if !self.set_model_state(generation, ModelState::Ready(model)) {
                    return;
                }
                if let Some(mut warming) = warming {
                    // Warm-up progress goes to the editor's status line.
                    let state = self.clone();
                    tokio::spawn(async move {
                        while warming.changed().await.is_ok() {
                            if state.load_generation.load(Ordering::SeqCst) != generation {
                                break;
                            }
                            state.publish_status().await;
                        }
                    });
                }
            }
            Err(message) => {
                tracing::error!("model {} failed to load: {message}", config.model);
                report(json!({"kind": "end", "message": "failed"})).await;
                if !self.set_model_state(generation, ModelState::Failed { name: config.model.clone(), message: message.clone() }) {
                    return;
                }
                let text = format!("cria could not load model `{}`: {message}\nSet `model` in the cria settings to a model name or a .gguf path (see `cria models`).", config.model);
                self.client.show_message(lsp::MessageType::Error, text).await;
                // The status again once the progress reports are out: a
                // client that shows both must end on the error.
                let state = self.clone();
                tokio::spawn(async move {
                    progress.finished().await;
                    state.publish_status().await;
                });
            }
        }
        self.publish_status().await;
    }

    /// The synchronous part of a request at a cursor: the document as of
    /// now (ordered with the edits before it), the settings and the model.
    /// `None` when there is nothing to do (model not ready, document unknown
    /// or skipped, language off, no completion wanted here).
    fn prepare(&self, uri: &str, position: Position, selected: Option<&SelectedItem>, trigger: Trigger) -> Option<Arc<CursorRequest>> {
        let snapshot = match self.documents().snapshot(uri) {
            Ok(s) => s,
            Err(e) => {
                if let Some(suppressed) = PROMPT_PROBLEM.check() {
                    tracing::warn!(suppressed, uri = %crate::throttle::excerpt(uri.as_bytes()), "completion: {e}");
                }
                return None;
            }
        };
        if let Some(reason) = snapshot.skip_reason() {
            tracing::debug!("no completion for {uri}: {reason:?}");
            return None;
        }
        let mut config = lock(&self.config).clone();
        if !config.language_enabled(snapshot.language().id()) {
            return None;
        }
        config.latency_budget_ms = trigger.latency_budget_ms(config.latency_budget_ms);
        let model = match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
            ModelState::Ready(m) => m.clone(),
            _ => return None,
        };
        let encoding = self.encoding();
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
        let others = if config.suggestion.context_share > 0.0 && memo.is_none() { self.other_documents(uri) } else { Vec::new() };
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
            encoding,
            mode,
            path: display_path(uri, &roots),
            others,
            recent: lock(&self.recent_edits).iter().cloned().collect(),
            index: self.workspace_definitions.read().unwrap_or_else(|p| p.into_inner()).clone(),
            roots,
            config,
            model,
        }))
    }

    /// Keeps the snippets a document's full prompt used, for its next prompts
    /// in the same block (only for documents still open).
    fn remember_context(&self, request: &CursorRequest, prepared: &Prepared) {
        if self.documents().get(&request.uri).is_none() {
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

    /// Queues the warm-up of a document's full prompt (background priority,
    /// replacing the document's earlier warm-up).
    fn warm_full_prompt(&self, uri: &str, model: &Model, request: &GenerationRequest) {
        let Some(engine) = model.generator.engine() else {
            return;
        };
        queue_warm_up(engine, uri, request, &self.new_warm_up(uri));
    }

    /// Queues the warm-up of the prompt the document's next anchor will use
    /// (see `completion::anchor`), in a KV slot beside the one in use so
    /// the keystrokes keep their prompt; a newer one replaces it.
    fn warm_next_anchor(&self, uri: &str, model: &Model, next: Option<&BuiltPrompt>) {
        if let (Some(next), Some(engine)) = (next, model.generator.engine()) {
            let flag = self.new_warm_up(&anchor_warm_up_key(uri));
            queue_warm_up_in(engine, None, SlotChoice::Beside, &next.request, &flag);
            tracing::debug!(%uri, "next anchor's prompt queued to warm");
        }
    }

    /// A fresh cancellation flag for `uri`'s warm-ups; the earlier ones stop,
    /// and so does the warm-up of the next anchor at the old place (a new
    /// warm-up is for a cursor that moved; its own next anchor comes after).
    fn new_warm_up(&self, uri: &str) -> CancelFlag {
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

    /// Computes the suggestion at a cursor, within the latency budget.
    /// `None` when there is nothing to show (model not ready, document
    /// unknown or skipped, superseded by a newer request, nothing useful,
    /// or not ready within the budget).
    ///
    /// A cursor whose prompt is not cached (a file just opened, switched
    /// to, or a far jump) runs a quick, smaller prompt now and warms the
    /// full one in the background. A request whose prompt still takes
    /// longer than the budget is answered empty with the status `warming`,
    /// and finished in the background: its answer is cached, and the status
    /// returns to `ready` so the editor asks again and gets it at once.
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
        let place = |shown: String| match &selected {
            Some(item) => Some(Suggestion {
                text: format!("{}{shown}", item.text),
                cursor: item.start,
                replace_end: Some(item.end),
                word_start: item.start,
                word: String::new(),
            }),
            None => Some(placed(&request.rope, &request.text, request.offset, request.encoding, shown)),
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
        let budget = Duration::from_millis(request.config.latency_budget_ms);
        let deadline = started + budget;
        let cancel = ticket.flag();
        let builder = request.clone();
        // Background work gives way from now, not only once the job is sent.
        let incoming = request.model.generator.engine().map(|engine| engine.expect_interactive());
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
        let cached = [Some(&full), quick.as_ref()].into_iter().flatten().find_map(|b| lock(&self.lru).get(b.key));
        if let Some(hit) = cached {
            tracing::debug!("completion from cache");
            if quick.is_some() {
                self.warm_full_prompt(uri, &request.model, &full.request);
            }
            lock(&self.typed).shown(uri, &request.text, request.offset, &hit);
            return if hit.is_empty() { None } else { place(hit) };
        }
        let full_request = quick.is_some().then(|| full.request.clone());
        let chosen = quick.unwrap_or(full);
        let embedded = request.model.generator.finishes_late();
        let options = JobOptions {
            slot: SlotChoice::Auto,
            priority: Priority::Interactive,
            // Nobody waits on a late answer: it gets time enough to finish.
            late_budget: embedded.then_some(budget.max(LATE_DECODE_BUDGET)),
            key: Some(uri.to_string()),
            written: Some(ticket.written()),
        };
        let pending = request.model.generator.submit(chosen.request.clone(), options);
        drop(incoming);
        tracing::debug!(%uri, build_ms = started.elapsed().as_millis() as u64, prompt = chosen.request.prompt.len(), "job submitted");
        if let Some(full_request) = &full_request {
            self.warm_full_prompt(uri, &request.model, full_request);
        }
        self.warm_next_anchor(uri, &request.model, next_anchor.as_ref());
        let superseded = ticket.superseded();
        let (answered, answer) = tokio::sync::oneshot::channel();
        let state = self.clone();
        let job_request = request.clone();
        let job_uri = uri.to_string();
        tokio::spawn(async move {
            let shown = state.finish(pending.await, &job_request, &chosen, started).await;
            // The answer goes before the ticket: dropping it sets the flag
            // the waiter reads as "superseded".
            let unanswered = answered.send(shown);
            drop(ticket);
            if let Err(Some(shown)) = unanswered {
                // The request was answered empty meanwhile: the answer is
                // cached, a newer request typing through it may use it, and
                // the status tells the editor to ask again.
                tracing::info!(uri = %job_uri, ms = started.elapsed().as_millis() as u64, "late suggestion ready in the cache");
                lock(&state.typed).late(&job_uri, &job_request.text, job_request.offset, &shown);
                state.late_ready.notify_waiters();
                state.publish_status_with(true, None).await;
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
            }
        };
        match outcome {
            Ok(Ok(Some(shown))) => {
                lock(&self.typed).shown(uri, &request.text, request.offset, &shown);
                place(shown)
            }
            Ok(_) => None,
            Err(_) if embedded => {
                tracing::info!(%uri, "not ready within the latency budget; finishing in the background");
                self.publish_status_with(false, Some(uri)).await;
                None
            }
            Err(_) => {
                tracing::info!(%uri, "no answer from the engine within the latency budget");
                *lock(&self.generation_error) = Some("the remote engine did not answer within the latency budget".into());
                self.publish_status().await;
                None
            }
        }
    }

    /// Turns a generation's answer into what is shown (post-processed,
    /// cached when complete); `None` when there is nothing to show.
    async fn finish(
        &self,
        answer: Result<Result<Completion, crate::completion::GenerateError>, tokio::sync::oneshot::error::RecvError>,
        request: &CursorRequest,
        built: &BuiltPrompt,
        started: Instant,
    ) -> Option<String> {
        let completion = match answer {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let Some(suppressed) = GENERATION_PROBLEM.check() {
                    tracing::warn!(suppressed, "generation: {e}");
                }
                *lock(&self.generation_error) = Some(e.to_string());
                self.publish_status().await;
                return None;
            }
            Err(_) => return None,
        };
        self.record(&completion, started.elapsed()).await;
        if completion.stop_reason == StopReason::Cancelled {
            return None;
        }
        let place = request.place(request.anchor);
        let shown = request.pipeline().shown_text(&place, &built.cursor, &completion);
        tracing::debug!(raw = ?completion.text, shown = ?shown, "postprocessed");
        // Only whole answers are cached for their prompt (one that ended
        // with `Enough` served a newer request's line, not this request).
        if matches!(completion.stop_reason, StopReason::Eos | StopReason::Stop | StopReason::Length) {
            lock(&self.lru).put(built.key, shown.clone());
        }
        (!shown.trim().is_empty()).then_some(shown)
    }

    async fn record(&self, completion: &Completion, latency: Duration) {
        *lock(&self.generation_error) = None;
        {
            let mut last = lock(&self.last);
            last.last_latency_ms = Some(latency.as_millis() as u64);
            last.prompt_tokens = Some(completion.prompt_tokens);
            last.reused_tokens = Some(completion.reused_tokens);
            let decode = completion.decode.as_secs_f64();
            last.tokens_per_second = (decode > 0.0).then(|| completion.tokens.len() as f64 / decode);
        }
        tracing::info!(
            latency_ms = latency.as_millis() as u64,
            prompt = completion.prompt_tokens,
            reused = completion.reused_tokens,
            generated = completion.tokens.len(),
            stop = completion.stop_reason.as_str(),
            superseded_total = self.scheduler.superseded(),
            "completion"
        );
        self.publish_status().await;
    }
}

/// The snippets a document's prompt used, and the cursor block they were
/// chosen for (see `State::context_memo`).
type ContextMemo = (usize, Arc<Vec<ContextChunk>>);

/// Queues a warm-up of `request`'s prompt for `uri`: background priority,
/// nothing generated, stopped by `flag`.
fn queue_warm_up(engine: &crate::engine::EngineHandle, uri: &str, request: &GenerationRequest, flag: &CancelFlag) {
    queue_warm_up_in(engine, Some(uri), SlotChoice::Auto, request, flag);
}

/// The key of a document's warm-up of its next anchor in `State::warm_ups`.
fn anchor_warm_up_key(uri: &str) -> String {
    format!("{uri}\u{0}anchor")
}

/// Queues a warm-up in the slot `slot` chooses; with a `key`, it reports
/// progress as that document's warming and a request for it drops the
/// warm-up if still queued.
fn queue_warm_up_in(
    engine: &crate::engine::EngineHandle,
    key: Option<&str>,
    slot: SlotChoice,
    request: &GenerationRequest,
    flag: &CancelFlag,
) {
    let request = GenerationRequest { max_new_tokens: 0, deadline: None, cancel: flag.clone(), ..request.clone() };
    let options = JobOptions { slot, priority: Priority::Background, late_budget: None, key: key.map(str::to_string), written: None };
    drop(engine.submit(request, options, None));
}

/// Everything a request at a cursor needs, taken from the server's state at
/// once, so prompts are built off the async threads.
struct CursorRequest {
    /// The quick prompt size this document used last (see `State::quick_sizes`).
    quick_size: Option<usize>,
    /// Where the text after the middle marker starts (`completion::anchor`).
    anchor: Option<usize>,
    /// A line start whose prompt should be warmed for the next anchor.
    warm_anchor: Option<usize>,
    uri: String,
    /// The cursor's 16-line block (see `State::context_memo`).
    block: usize,
    /// The snippets chosen earlier for this block.
    memo: Option<Arc<Vec<ContextChunk>>>,
    rope: ropey::Rope,
    language: Language,
    tree: Option<tree_sitter::Tree>,
    text: String,
    offset: usize,
    encoding: PositionEncoding,
    mode: CompletionMode,
    path: String,
    others: Vec<(String, DocumentSnapshot)>,
    recent: Vec<(String, usize)>,
    index: Arc<Vec<Definition>>,
    roots: Vec<PathBuf>,
    config: ServerConfig,
    model: Model,
}

/// The prompts for a request: the full one, and a quick one when the full
/// one is not cached and would not fit the budget.
struct Prepared {
    full: BuiltPrompt,
    quick: Option<BuiltPrompt>,
    /// The full prompt with the middle from the next anchor, to warm.
    next_anchor: Option<BuiltPrompt>,
}

impl CursorRequest {
    fn build(&self, budget: Duration, deadline: Option<Instant>, cancel: CancelFlag) -> Option<Prepared> {
        let full = self.build_one(None, self.anchor, deadline, cancel.clone())?;
        let quick = self.model.generator.engine().and_then(|engine| {
            let cached = engine.cached_prefix(&full.request.prompt);
            match plan_prompt(full.request.prompt.len(), cached, engine.prefill_rate(), budget) {
                PromptPlan::Quick { prompt_tokens } => {
                    self.build_one(Some(self.quick_size.unwrap_or(prompt_tokens)), self.anchor, deadline, cancel.clone())
                }
                PromptPlan::Full => None,
            }
        });
        // The prompt the next anchor will use, to warm beside this one.
        let embedded = self.model.generator.engine().is_some();
        let next_anchor = self.warm_anchor.filter(|_| embedded).and_then(|at| self.build_one(None, Some(at), None, cancel));
        Some(Prepared { full, quick, next_anchor })
    }

    /// The completion pipeline with this request's model and settings.
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline { model: &self.model, settings: &self.config.suggestion, backend: &self.config.backend }
    }

    /// The cursor as the pipeline takes it, the middle from `anchor`.
    fn place(&self, anchor: Option<usize>) -> CursorPlace<'_> {
        CursorPlace {
            text: &self.text,
            offset: self.offset,
            tree: self.tree.as_ref(),
            language: &self.language,
            mode: self.mode,
            path: &self.path,
            anchor,
        }
    }

    /// One prompt: full, or quick of `quick` tokens; the middle from the
    /// line start `anchor` (see `completion::anchor`). A full prompt uses
    /// the snippets chosen earlier for the cursor's block, or gathers them.
    fn build_one(&self, quick: Option<usize>, anchor: Option<usize>, deadline: Option<Instant>, cancel: CancelFlag) -> Option<BuiltPrompt> {
        let size = quick.map_or(PromptSize::Full, PromptSize::Quick);
        let mut snippets = |cursor: &CursorText| match &self.memo {
            Some(memo) => memo.clone(),
            None => Arc::new(gather_context(cursor, &self.path, &self.others, &self.recent, &self.index, &self.roots)),
        };
        let place = self.place(anchor);
        match self.pipeline().build(&place, size, &mut snippets, deadline, cancel) {
            Ok(built) => Some(built),
            Err(e) => {
                if let Some(suppressed) = PROMPT_PROBLEM.check() {
                    tracing::warn!(suppressed, "prompt: {e}");
                }
                None
            }
        }
    }
}

/// The rest of the cursor's line, and the identifier characters just before
/// the cursor.
fn around_cursor(text: &str, offset: usize) -> (String, String) {
    let rest_of_line = text[offset..].split(['\n', '\r']).next().unwrap_or("").to_string();
    let word: String = {
        let tail: Vec<char> = text[..offset].chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        tail.into_iter().rev().collect()
    };
    (rest_of_line, word)
}

/// A URI as a path relative to the workspace folder that holds it.
fn display_path(uri: &str, roots: &[PathBuf]) -> String {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    roots
        .iter()
        .find_map(|r| Path::new(path).strip_prefix(r).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// Snippets from other files: definitions of identifiers near the cursor
/// (workspace index and open documents), then similar regions of open
/// documents and recent edits.
fn gather_context(
    cursor: &CursorText,
    path: &str,
    others: &[(String, DocumentSnapshot)],
    recent: &[(String, usize)],
    index: &[Definition],
    roots: &[PathBuf],
) -> Vec<ContextChunk> {
    let wanted = neighbourhood(&cursor.prefix, &cursor.suffix);
    let texts: Vec<(String, String)> = others.iter().map(|(u, s)| (display_path(u, roots), s.text())).collect();
    let files: Vec<SourceFile> =
        others.iter().zip(&texts).map(|((_, s), (p, t))| SourceFile { path: p, text: t, tree: s.tree(), language: s.language() }).collect();
    let mut all: Vec<Definition> = index.to_vec();
    for file in &files {
        all.extend(definitions(file));
    }
    let recent: Vec<(String, usize)> = recent.iter().map(|(u, l)| (display_path(u, roots), *l)).collect();
    let mut chunks = relevant_definitions(&wanted, &all, path, 4);
    chunks.extend(similar_chunks(&wanted, &files, &recent, 3));
    chunks
}

/// A suggestion placed in the document: positions in the negotiated
/// encoding, and the closing characters after the cursor it also covers.
fn placed(rope: &ropey::Rope, text: &str, offset: usize, encoding: PositionEncoding, shown: String) -> Suggestion {
    let (rest_of_line, word) = around_cursor(text, offset);
    let cursor = byte_to_position(rope, offset, encoding).value;
    let covers_rest = !rest_of_line.trim().is_empty()
        && rest_of_line.trim().chars().all(|c| ")]}\"'`;,>".contains(c))
        && shown.lines().next().is_some_and(|first| first.trim_end().ends_with(rest_of_line.trim()));
    let replace_end = covers_rest.then(|| byte_to_position(rope, offset + rest_of_line.len(), encoding).value);
    let word_start = byte_to_position(rope, offset - word.len(), encoding).value;
    Suggestion { text: shown, cursor, replace_end, word_start, word }
}
