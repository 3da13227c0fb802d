//! The server's state and the work behind the handlers that is not
//! completion logic: documents, settings, the position encoding, the
//! model's life cycle (load with progress, errors shown to the user), the
//! workspace index, and `cria/status`. A suggestion at a cursor is the
//! completion session's (`completion::Session`): this state is its host,
//! giving it the documents, the settings and the model, and turning what
//! it reports (`completion::Event`) into `cria/status`.
//!
//! Locks here are std mutexes held for short, synchronous sections only:
//! never across an `.await`, never while the model runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Instant;

use futures_util::future::BoxFuture;
use serde_json::json;
use tower_lsp_server::gen_lsp_types as lsp;
use tower_lsp_server::Client;

use super::config::{ConfigProblem, ServerConfig};
use super::ext::{LateAnswerStatus, Status, StatusNotification, WarmingStatus};
use crate::completion::{resolve_model, start_backend, start_with_generator, Event, Generator, Host, Model, Session, Setup};
use crate::documents::{DocumentLimits, DocumentStore, PositionEncoding};
use crate::engine::EngineOptions;
use crate::locks::lock;
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
    /// Resident and answering (boxed: far bigger than the other states).
    Ready(Box<Model>),
    /// Loading failed; the message says how to fix it.
    Failed {
        /// The model that failed.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// Everything the handlers share.
pub struct State {
    pub(super) client: Client,
    /// The suggestions: requests at a cursor, prefetches, what is kept
    /// across keystrokes.
    pub(super) session: Arc<Session>,
    documents: Mutex<DocumentStore>,
    encoding: Mutex<PositionEncoding>,
    config: Mutex<ServerConfig>,
    model: RwLock<ModelState>,
    log_control: Option<LogControl>,
    load_generation: AtomicU64,
    last: Mutex<Status>,
    /// The last generation's failure (remote engine down, 401...), shown
    /// as an `error` status until a generation succeeds again.
    generation_error: Mutex<Option<String>>,
    /// Runs the generations instead of the backend the settings choose
    /// (the model-free tests' scripted generator); the model file is still
    /// read for its tokenizer.
    given_generator: Option<Generator>,
}

impl State {
    /// Fresh state for a new connection; with a `given_generator`, its
    /// generations run on it (see `State::given_generator`).
    pub fn new(client: Client, config: ServerConfig, log_control: Option<LogControl>, given_generator: Option<Generator>) -> Arc<Self> {
        Arc::new_cyclic(|state: &Weak<Self>| {
            let host: Weak<dyn Host> = state.clone();
            Self {
                client,
                session: Arc::new(Session::new(host)),
                documents: Mutex::new(DocumentStore::new(DocumentLimits::default())),
                encoding: Mutex::new(PositionEncoding::Utf16),
                config: Mutex::new(config),
                model: RwLock::new(ModelState::NotStarted),
                log_control,
                load_generation: AtomicU64::new(0),
                last: Mutex::new(Status::default()),
                generation_error: Mutex::new(None),
                given_generator,
            }
        })
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
    pub fn documents(&self) -> MutexGuard<'_, DocumentStore> {
        lock(&self.documents)
    }

    /// Indexes the definitions in the workspace folders in the background,
    /// for the session's snippets from other files.
    pub fn index_workspace(&self, roots: Vec<PathBuf>) {
        self.session.set_workspace_roots(roots.clone());
        if roots.is_empty() {
            return;
        }
        let session = self.session.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let found = crate::workspace::index_definitions(&roots);
            tracing::info!(definitions = found.len(), ms = started.elapsed().as_millis() as u64, "workspace indexed");
            session.set_workspace_definitions(found);
        });
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
        self.publish_status_with(StatusOccasion::Change).await;
    }

    /// Sends `cria/status` on `occasion` (see [`StatusOccasion`]).
    async fn publish_status_with(&self, occasion: StatusOccasion<'_>) {
        let (answer_ready, answered_warming, late_answer) = match occasion {
            StatusOccasion::Change => (false, None, None),
            StatusOccasion::AnsweredWarming(uri) => (false, Some(uri), None),
            StatusOccasion::LateAnswer { cached_for } => (true, None, cached_for),
        };
        let mut status = {
            let mut last = lock(&self.last);
            let (model, state, message) = match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
                ModelState::NotStarted => (String::new(), "loading", None),
                ModelState::Loading { name } => (name.clone(), "loading", None),
                ModelState::Ready(m) => {
                    let engine = m.generator.engine();
                    last.warming =
                        engine.and_then(|e| e.warming().borrow().clone()).map(|w| WarmingStatus { percentage: w.percentage(), uri: w.key });
                    if let Some(uri) = answered_warming {
                        if last.warming.as_ref().is_none_or(|w| w.uri != uri) {
                            last.warming = Some(WarmingStatus { uri: uri.to_string(), percentage: 0 });
                        }
                    }
                    if let Some(usage) = engine.map(|e| e.kv_usage()) {
                        let mib = |bytes: usize| (bytes as f64 / (1 << 20) as f64 * 10.0).round() / 10.0;
                        last.kv_cache_mb = Some(mib(usage.bytes));
                        last.kv_slots_mb = Some(usage.per_slot.iter().copied().map(mib).collect());
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
        // Said once, in this status only.
        status.late_answer = late_answer.map(|uri| LateAnswerStatus { uri: uri.to_string() });
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
        self.session.forget_answers();
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
        .unwrap_or_else(|e| {
            // Cancelled: the runtime is going away (the server shuts down), not a panic.
            Err(if e.is_cancelled() {
                "model start-up stopped: the server is shutting down".into()
            } else {
                format!("model start-up panicked: {e}")
            })
        });
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
                let pipeline = crate::completion::Pipeline { model: &model, settings: &config.suggestion, backend: &config.backend };
                tracing::info!(
                    model = %model.name,
                    load_ms = model.load_time.as_millis() as u64,
                    prefill_tokens_per_s = model.loaded.prefill_rate.map(|r| r.round() as u64),
                    full_prompt_tokens = pipeline.full_prompt_tokens(),
                    "model ready"
                );
                report(json!({"kind": "end", "message": format!("{} ready", model.name)})).await;
                let warming = model.generator.engine().map(|e| e.warming());
                if !self.set_model_state(generation, ModelState::Ready(Box::new(model))) {
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
}

/// The session's host: the documents as the handlers keep them, the
/// settings and model as of a request, and its events as `cria/status`.
impl Host for State {
    fn documents(&self) -> MutexGuard<'_, DocumentStore> {
        State::documents(self)
    }

    fn setup(&self, language_id: &str) -> Option<Setup> {
        let config = lock(&self.config).clone();
        if !config.language_enabled(language_id) {
            return None;
        }
        let model = match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
            ModelState::Ready(m) => Model::clone(m),
            _ => return None,
        };
        Some(Setup {
            model,
            suggestion: config.suggestion,
            backend: config.backend,
            latency_budget_ms: config.latency_budget_ms,
            encoding: self.encoding(),
        })
    }

    fn notify(&self, event: Event) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match event {
                Event::Generated(numbers) => {
                    *lock(&self.generation_error) = None;
                    {
                        let mut last = lock(&self.last);
                        last.last_latency_ms = Some(numbers.latency.as_millis() as u64);
                        last.prompt_tokens = Some(numbers.prompt_tokens);
                        last.reused_tokens = Some(numbers.reused_tokens);
                        last.tokens_per_second = numbers.tokens_per_second;
                    }
                    self.publish_status().await;
                }
                Event::Failed(message) => {
                    *lock(&self.generation_error) = Some(message);
                    self.publish_status().await;
                }
                Event::Warming(uri) => self.publish_status_with(StatusOccasion::AnsweredWarming(&uri)).await,
                Event::LateAnswer { uri, ask_again } => {
                    self.publish_status_with(StatusOccasion::LateAnswer { cached_for: ask_again.then_some(uri.as_str()) }).await
                }
            }
        })
    }
}

/// Why a `cria/status` is sent, besides the state it reports.
enum StatusOccasion<'a> {
    /// Something changed (the model's state, a generation's numbers, a
    /// warm-up's progress).
    Change,
    /// A request in this document was just answered empty because its
    /// prompt is still being computed: `warming` for it.
    AnsweredWarming(&'a str),
    /// An answer came late: `ready` even while a warm-up goes on, since an
    /// editor that got an empty answer while warming asks again on `ready`;
    /// `cached_for` the document whose whole late answer is now cached
    /// (`lateAnswer`: an editor whose cursor has not moved since its last
    /// answer there, empty or its first lines, may ask again and get it).
    LateAnswer { cached_for: Option<&'a str> },
}
