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
use super::ext::{Status, StatusNotification};
use crate::completion::{resolve_model, start_backend, CompletionInput, Generator, Model, Scheduler, Shown, SuggestionLru};
use crate::context::{
    completion_mode, definitions, line_comment, neighbourhood, relevant_definitions, similar_chunks, CompletionMode, CursorText,
    Definition, SourceFile,
};
use crate::documents::DocumentSnapshot;
use crate::prompt::ContextChunk;
use crate::documents::encoding::{byte_to_position, position_to_byte};
use crate::documents::{DocumentLimits, DocumentStore, Language, Position, PositionEncoding};
use crate::postprocess::{postprocess, Mode as PostMode, PostprocessInput};
use crate::engine::{Completion, EngineOptions, StopReason};
use crate::models::CriaHome;

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
    shown: Mutex<HashMap<String, Shown>>,
    /// The last edited places (document, line), newest last.
    recent_edits: Mutex<VecDeque<(String, usize)>>,
    /// Where each document's last edit ended: the cursor after accepting a
    /// suggestion, for speculative next suggestions.
    last_edit_end: Mutex<HashMap<String, Position>>,
    /// Definitions found in the workspace folders' files.
    workspace_definitions: RwLock<Arc<Vec<Definition>>>,
    workspace_roots: Mutex<Vec<PathBuf>>,
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
            shown: Mutex::new(HashMap::new()),
            recent_edits: Mutex::new(VecDeque::new()),
            last_edit_end: Mutex::new(HashMap::new()),
            workspace_definitions: RwLock::new(Arc::new(Vec::new())),
            workspace_roots: Mutex::new(Vec::new()),
        }
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
        lock(&self.shown).remove(uri);
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
            let found = state.suggest(&uri, position).await;
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
        let status = {
            let mut last = lock(&self.last);
            let (model, state, message) = match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
                ModelState::NotStarted => (String::new(), "loading", None),
                ModelState::Loading { name } => (name.clone(), "loading", None),
                ModelState::Ready(m) => match lock(&self.generation_error).clone() {
                    Some(error) => (m.name.clone(), "error", Some(error)),
                    None => (m.name.clone(), "ready", None),
                },
                ModelState::Failed { name, message } => (name.clone(), "error", Some(message.clone())),
            };
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
        lock(&self.shown).clear();
        let state = self.clone();
        tokio::spawn(async move { state.load(generation, config).await });
    }

    async fn load(self: Arc<Self>, generation: u64, config: ServerConfig) {
        self.publish_status().await;
        let token = lsp::ProgressToken::String(format!("cria/load/{generation}"));
        let progress = self.client.send_request::<lsp::WorkDoneProgressCreateRequest>(lsp::WorkDoneProgressCreateParams { token: token.clone() }).await.is_ok();
        let report = |value: serde_json::Value| {
            let client = self.client.clone();
            let token = token.clone();
            async move {
                if progress {
                    client.send_notification::<lsp::ProgressNotification>(lsp::ProgressParams { token, value }).await;
                }
            }
        };
        report(json!({"kind": "begin", "title": "cria: loading model", "message": config.model, "percentage": 0, "cancellable": false})).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let spec = config.model.clone();
        let options = EngineOptions { context_length: config.context_length, threads: config.threads, device: config.device, ..EngineOptions::default() };
        let backend = config.backend.clone();
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
            start_backend(resolved, &backend, options, progress).map_err(|e| e.to_string())
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
                if !self.set_model_state(generation, ModelState::Ready(model)) {
                    return;
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
            }
        }
        self.publish_status().await;
    }

    /// Computes the suggestion at a cursor, within the latency budget.
    /// `None` when there is nothing to show (model not ready, document
    /// unknown or skipped, superseded by a newer request, nothing useful).
    pub async fn suggest(self: &Arc<Self>, uri: &str, position: Position) -> Option<Suggestion> {
        let started = Instant::now();
        // Synchronous part first, so the snapshot is the text as of this
        // request, ordered with the edits before it.
        let snapshot = match self.documents().snapshot(uri) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("completion for {uri}: {e}");
                return None;
            }
        };
        if let Some(reason) = snapshot.skip_reason() {
            tracing::debug!("no completion for {uri}: {reason:?}");
            return None;
        }
        let config = lock(&self.config).clone();
        if !config.language_enabled(snapshot.language().id()) {
            return None;
        }
        let model = match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
            ModelState::Ready(m) => m.clone(),
            _ => return None,
        };
        let encoding = self.encoding();
        let offset = position_to_byte(snapshot.rope(), position, encoding);
        if !offset.clamp.is_exact() {
            tracing::debug!(?position, clamp = ?offset.clamp, "completion position clamped");
        }
        let text = snapshot.text();
        let offset = offset.value;
        let mode = completion_mode(&text, offset, snapshot.tree(), true);
        if mode == CompletionMode::Skip {
            return None;
        }
        let rope = snapshot.rope().clone();
        let place = |shown: String| Some(placed(&rope, &text, offset, encoding, shown));
        // Typed-through: the user typed the start of the suggestion shown.
        let shown = lock(&self.shown).get(uri).and_then(|s| s.typed_through(&text, offset));
        if let Some(rest) = shown {
            self.scheduler.cancel(uri);
            return place(rest);
        }
        let ticket = self.scheduler.begin(uri);
        let deadline = started + Duration::from_millis(config.latency_budget_ms);
        let cancel = ticket.flag();
        let language = snapshot.language().clone();
        let tree = snapshot.tree().cloned();
        let job_text = text.clone();
        let job_language = language.clone();
        let others = if config.context_share > 0.0 { self.other_documents(uri) } else { Vec::new() };
        let recent: Vec<(String, usize)> = lock(&self.recent_edits).iter().cloned().collect();
        let index = self.workspace_definitions.read().unwrap_or_else(|p| p.into_inner()).clone();
        let roots = lock(&self.workspace_roots).clone();
        let path = display_path(uri, &roots);
        let built = tokio::task::spawn_blocking(move || {
            let (cursor, settings) = config.prompt_text(&model, &job_text, offset, tree.as_ref(), mode);
            let context = if config.context_share > 0.0 { gather_context(&cursor, &path, &others, &recent, &index, &roots) } else { Vec::new() };
            let input = CompletionInput { cursor: &cursor, context: &context, line_comment: line_comment(job_language.id()), path: Some(&path) };
            model.request(&input, &settings, Some(deadline), cancel).map(|(request, _)| (model, request, cursor))
        })
        .await;
        let (model, request, cursor) = match built {
            Ok(Ok(built)) => built,
            Ok(Err(e)) => {
                tracing::warn!("prompt for {uri}: {e}");
                return None;
            }
            Err(e) => {
                tracing::error!("prompt building panicked: {e}");
                return None;
            }
        };
        let key = SuggestionLru::key(&request.prompt, if mode == CompletionMode::SingleLine { "single" } else { "multi" });
        let cached = lock(&self.lru).get(key);
        if let Some(hit) = cached {
            tracing::debug!("completion from cache");
            lock(&self.shown).insert(uri.to_string(), Shown::new(&text, offset, &hit));
            return if hit.is_empty() { None } else { place(hit) };
        }
        let reply = model.generator.generate(request);
        let answer = tokio::select! {
            answer = tokio::time::timeout_at((deadline + Duration::from_millis(50)).into(), reply) => answer,
            () = ticket.cancelled() => return None,
        };
        let completion = match answer {
            Ok(Ok(Ok(c))) => c,
            Ok(Ok(Err(e))) => {
                tracing::warn!("generation for {uri}: {e}");
                *lock(&self.generation_error) = Some(e.to_string());
                self.publish_status().await;
                return None;
            }
            Ok(Err(_)) => return None,
            Err(_) => {
                tracing::info!(%uri, "no answer from the engine within the latency budget");
                if matches!(model.generator, Generator::Remote(_)) {
                    *lock(&self.generation_error) = Some("the remote engine did not answer within the latency budget".into());
                    self.publish_status().await;
                }
                return None;
            }
        };
        drop(ticket);
        self.record(&completion, started.elapsed()).await;
        if completion.stop_reason == StopReason::Cancelled {
            return None;
        }
        let shown = shown_text(&completion, &cursor, &language, mode);
        tracing::debug!(raw = ?completion.text, shown = ?shown, "postprocessed");
        if matches!(completion.stop_reason, StopReason::Eos | StopReason::Stop | StopReason::Length) {
            lock(&self.lru).put(key, shown.clone());
        }
        if shown.trim().is_empty() {
            return None;
        }
        lock(&self.shown).insert(uri.to_string(), Shown::new(&text, offset, &shown));
        place(shown)
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

/// What is shown of a completion: post-processed against the text around
/// the cursor; cut back to complete lines when generation was cut short.
fn shown_text(completion: &Completion, cursor: &CursorText, language: &Language, mode: CompletionMode) -> String {
    let truncated = matches!(completion.stop_reason, StopReason::Deadline | StopReason::Length);
    let mode = if mode == CompletionMode::SingleLine { PostMode::SingleLine } else { PostMode::MultiLine };
    postprocess(&PostprocessInput {
        completion: &completion.text,
        prefix: &cursor.prefix,
        suffix: &cursor.suffix,
        language,
        mode,
        truncated,
    })
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
    let files: Vec<SourceFile> = others
        .iter()
        .zip(&texts)
        .map(|((_, s), (p, t))| SourceFile { path: p, text: t, tree: s.tree(), language: s.language() })
        .collect();
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
