//! The server's state and the work behind the handlers: documents, settings,
//! the model's life cycle (load with progress, errors shown to the user), and
//! one suggestion from a cursor under the latency budget.
//!
//! Locks here are std mutexes held for short, synchronous sections only:
//! never across an `.await`, never while the model runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tower_lsp_server::gen_lsp_types as lsp;
use tower_lsp_server::Client;

use super::config::{ConfigProblem, ServerConfig};
use super::ext::{Status, StatusNotification};
use crate::completion::{resolve_model, start_backend, CompletionInput, Model, Scheduler};
use crate::context::{line_comment, CursorText};
use crate::documents::encoding::{byte_to_position, position_to_byte};
use crate::documents::{DocumentLimits, DocumentSnapshot, DocumentStore, Position, PositionEncoding};
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
    pub fn cancel_pending(&self, uri: &str) {
        self.scheduler.cancel(uri);
    }

    /// Applies settings; returns the problems and whether the model changed.
    pub fn apply_settings(&self, settings: &serde_json::Value) -> (Vec<ConfigProblem>, bool) {
        let mut config = lock(&self.config);
        let before = (config.model.clone(), config.context_length, config.backend.clone());
        let problems = config.apply(settings);
        if let Some(control) = &self.log_control {
            if let Err(e) = control(&config.log_level) {
                tracing::warn!("logLevel: {e}");
            }
        }
        let changed = before != (config.model.clone(), config.context_length, config.backend.clone());
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
        let options = EngineOptions { context_length: config.context_length };
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
        let ticket = self.scheduler.begin(uri);
        let deadline = started + Duration::from_millis(config.latency_budget_ms);
        let cancel = ticket.flag();
        let (cursor, rest_of_line, word) = cursor_text(&snapshot, offset.value, config.prompt_tokens * 8);
        let language = snapshot.language().id().to_string();
        let settings = config.settings();
        let built = tokio::task::spawn_blocking(move || {
            let input = CompletionInput { cursor: &cursor, context: &[], line_comment: line_comment(&language) };
            model.request(&input, &settings, Some(deadline), cancel).map(|(request, _)| (model, request))
        })
        .await;
        let (model, request) = match built {
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
        let reply = model.generator.generate(request);
        let answer = tokio::time::timeout_at((deadline + Duration::from_millis(150)).into(), reply).await;
        let completion = match answer {
            Ok(Ok(Ok(c))) => c,
            Ok(Ok(Err(e))) => {
                tracing::warn!("generation for {uri}: {e}");
                *lock(&self.generation_error) = Some(e.to_string());
                self.publish_status().await;
                return None;
            }
            Ok(Err(_)) | Err(_) => return None,
        };
        drop(ticket);
        let latency = started.elapsed();
        self.record(&completion, latency).await;
        if completion.stop_reason == StopReason::Cancelled {
            return None;
        }
        let text = shown_text(&completion);
        if text.trim().is_empty() {
            return None;
        }
        let rope = snapshot.rope();
        let cursor_pos = byte_to_position(rope, offset.value, encoding).value;
        let covers_rest = !rest_of_line.trim().is_empty()
            && rest_of_line.trim().chars().all(|c| ")]}\"'`;,>".contains(c))
            && text.lines().next().is_some_and(|first| first.trim_end().ends_with(rest_of_line.trim()));
        let replace_end = covers_rest.then(|| byte_to_position(rope, offset.value + rest_of_line.len(), encoding).value);
        let word_start = byte_to_position(rope, offset.value - word.len(), encoding).value;
        Some(Suggestion { text, cursor: cursor_pos, replace_end, word_start, word })
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

/// Text around the cursor (bounded windows), the rest of the cursor's line,
/// and the identifier characters just before the cursor.
fn cursor_text(snapshot: &DocumentSnapshot, offset: usize, window: usize) -> (CursorText, String, String) {
    let rope = snapshot.rope();
    let len = rope.len_bytes();
    let start = rope.char_to_byte(rope.byte_to_char(offset.saturating_sub(window)));
    let end = rope.char_to_byte(rope.byte_to_char((offset + window).min(len)));
    let prefix = rope.byte_slice(start..offset).to_string();
    let suffix = rope.byte_slice(offset..end).to_string();
    let rest_of_line = suffix.split(['\n', '\r']).next().unwrap_or("").to_string();
    let word: String = {
        let tail: Vec<char> = prefix.chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        tail.into_iter().rev().collect()
    };
    (CursorText { prefix, suffix }, rest_of_line, word)
}

/// What is shown of a completion: cut back to the last complete line when
/// generation was cut short, trailing whitespace removed.
fn shown_text(completion: &Completion) -> String {
    let text = completion.text.as_str();
    let truncated = matches!(completion.stop_reason, StopReason::Deadline | StopReason::Length);
    // A line cut short is not shown: it could be half an identifier.
    let text = if truncated { &text[..text.rfind('\n').unwrap_or(0)] } else { text };
    text.trim_end().to_string()
}
