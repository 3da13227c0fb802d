//! The pipeline from a cursor to a suggestion, shared by the CLI and the
//! language server: find and start the model, then turn cursor text into an
//! engine request (context → prompt → engine) and its answer into what is
//! shown ([`pipeline`]); for a front end that stays up, an editor session's
//! requests keystroke by keystroke, with their caches, scheduling, warm-ups
//! and deadline ([`session`]).
//!
//! Starting a model resolves its file, spawns the engine thread, waits for the
//! load, checks the config's special tokens against the real vocabulary and
//! resolves the FIM template. After that, building a request is pure and
//! cheap; running it is the [`Generator`]'s business: the engine thread, or
//! a remote engine (then only the file's tokenizer is read, to build and
//! measure prompts exactly as for the resident model).

pub mod anchor;
mod cache;
mod generator;
pub mod pipeline;
mod placement;
mod request;
mod scheduler;
mod scripted;
pub mod session;
pub mod warm;

pub use cache::{Shown, SuggestionLru, TypedThrough};
pub use generator::{Backend, GenerateError, Generator, Pending};
pub use pipeline::{
    mode_at, Ablation, Trigger, BuiltPrompt, CursorPlace, Pipeline, PromptSize, SuggestionSettings, DEFAULT_CONTEXT_SHARE,
    DEFAULT_MAX_SUFFIX_TOKENS, DEFAULT_MAX_TOKENS, DEFAULT_PROMPT_TOKENS, DEFAULT_SUFFIX_SHARE,
};
pub use placement::{SelectedItem, Suggestion};
pub use request::Setup;
pub use scheduler::{Scheduler, Superseded, Ticket};
pub use session::{Event, Generated, Host, Session};
pub use scripted::{Script, ScriptedGenerator, ScriptedRun};
pub use warm::{full_prompt_tokens, plan_prompt, PromptPlan};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::CursorText;
use crate::engine::gguf::GgufFile;
use crate::engine::{
    CancelFlag, EngineError, EngineHandle, EngineOptions, GenerationRequest, Hyperparams, LoadReceiver, LoadedModel, SamplingParams,
    Tokenizer,
};
use crate::models::{load_catalogue, resolve, ConfigError, CriaHome, FimOrder, ResolveError, ResolvedModel, SearchPaths};
use crate::prompt::{build_prompt, ContextChunk, FimTemplate, Healing, Prompt, PromptInput, TemplateError};
use crate::remote::{RemoteClient, RemoteConfig, RemoteError};

/// Why a model could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model's file or name could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A model config is malformed or does not fit the file's vocabulary.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file could not be loaded.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The requested prompt layout is not available for this model.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The remote backend cannot be set up.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Finds a model by name or path in the user's catalogue and search paths.
pub fn resolve_model(spec: &str, home: &CriaHome) -> Result<ResolvedModel, StartError> {
    let catalogue = load_catalogue(home)?;
    let search = SearchPaths::from_env(home)?;
    Ok(resolve(spec, &search, &catalogue)?)
}

/// A model ready for requests: resident, or served remotely.
#[derive(Clone)]
pub struct Model {
    /// The config name, or the file name for a model without config.
    pub name: String,
    /// Runs generations: the engine thread or a remote engine.
    pub generator: Generator,
    /// Tokenizer and shape.
    pub loaded: LoadedModel,
    /// How prompts are laid out for this model.
    pub template: FimTemplate,
    /// How long loading took.
    pub load_time: Duration,
}

/// A model being started: an engine thread loading it, or a remote backend
/// whose tokenizer was read.
pub struct Starting {
    resolved: ResolvedModel,
    order: Option<FimOrder>,
    started: Instant,
    kind: StartingKind,
}

enum StartingKind {
    Engine { engine: EngineHandle, loading: LoadReceiver, rate_key: String },
    Remote { config: RemoteConfig, loaded: Result<LoadedModel, EngineError> },
    Given { generator: Generator, loaded: Result<LoadedModel, EngineError> },
}

/// Spawns the engine thread for a resolved model; loading begins at once.
pub fn start(
    resolved: ResolvedModel,
    options: EngineOptions,
    order: Option<FimOrder>,
    progress: Box<dyn FnMut(f32) + Send>,
) -> Result<Starting, StartError> {
    start_with_slots(resolved, options, 1, order, progress)
}

/// Like [`start`], with `slots` KV caches, for a server whose clients each
/// keep their own prompt prefix (`cria serve`).
pub fn start_with_slots(
    resolved: ResolvedModel,
    options: EngineOptions,
    slots: usize,
    order: Option<FimOrder>,
    progress: Box<dyn FnMut(f32) + Send>,
) -> Result<Starting, StartError> {
    let started = Instant::now();
    let rate_key = prefill_rate_key(&options);
    let (engine, loading) = EngineHandle::spawn_with_slots(resolved.gguf.clone(), options, slots, progress)?;
    Ok(Starting { resolved, order, started, kind: StartingKind::Engine { engine, loading, rate_key } })
}

/// What a measured prefill rate holds for besides the model file: the
/// device, the CPU kernels, the threads, and this build of cria (a debug
/// build's tests must not size a release build's prompts, nor an older
/// version's kernels a newer one's; see `models::kept_prefill_rate`).
fn prefill_rate_key(options: &EngineOptions) -> String {
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let version = env!("CARGO_PKG_VERSION");
    format!("{:?}|{:?}|threads {}|cria {version} {build}", options.device, crate::engine::quant::Isa::detect(), options.threads)
}

/// The model as loaded, its prefill rate the one kept for this machine
/// (see `models::kept_prefill_rate`): the same in every process on it.
fn with_kept_rate(mut loaded: LoadedModel, model_file: &std::path::Path, runs_on: &str) -> LoadedModel {
    if let (Some(measured), Ok(home)) = (loaded.prefill_rate, CriaHome::from_env()) {
        loaded.prefill_rate = Some(crate::models::kept_prefill_rate(&home, model_file, runs_on, measured));
    }
    loaded
}

/// Starts the model on the backend the settings choose. For a remote
/// backend only the GGUF file's metadata is read (tokenizer and shape, which
/// the prompt builder needs); the weights stay on disk. Blocks for that
/// read, so call it off the async threads.
pub fn start_backend(
    resolved: ResolvedModel,
    backend: &Backend,
    options: EngineOptions,
    progress: Box<dyn FnMut(f32) + Send>,
) -> Result<Starting, StartError> {
    match backend {
        Backend::Embedded => start(resolved, options, None, progress),
        Backend::Remote(config) => {
            let started = Instant::now();
            let loaded = read_tokenizer(&resolved, &options);
            Ok(Starting { resolved, order: None, started, kind: StartingKind::Remote { config: config.clone(), loaded } })
        }
    }
}

/// Starts the model with generations run by `generator` (a
/// [`ScriptedGenerator`] in tests) instead of the backend the settings
/// choose: like a remote backend, only the GGUF file's tokenizer and shape
/// are read, so prompts are built and measured exactly as for that model.
/// Blocks for that read.
pub fn start_with_generator(resolved: ResolvedModel, generator: Generator, options: &EngineOptions) -> Starting {
    let started = Instant::now();
    let loaded = read_tokenizer(&resolved, options);
    Starting { resolved, order: None, started, kind: StartingKind::Given { generator, loaded } }
}

/// The tokenizer and shape of a model file, without its weights.
fn read_tokenizer(resolved: &ResolvedModel, options: &EngineOptions) -> Result<LoadedModel, EngineError> {
    let file = GgufFile::open(&resolved.gguf)?;
    let hyperparams = Hyperparams::from_gguf(&file)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let context_length = options.context_length.min(hyperparams.trained_context).max(16);
    Ok(LoadedModel { tokenizer: Arc::new(tokenizer), hyperparams, context_length, prefill_rate: None })
}

impl Starting {
    /// Waits for the load on an async runtime.
    pub async fn finish(self) -> Result<Model, StartError> {
        match self.kind {
            StartingKind::Engine { engine, loading, rate_key } => {
                let loaded = loading.await.map_err(|_| EngineError::WorkerGone)?;
                finish_start(self.resolved, self.order, Backing::Engine { engine, rate_key }, loaded, self.started)
            }
            StartingKind::Remote { config, loaded } => {
                finish_start(self.resolved, self.order, Backing::Remote(config), loaded, self.started)
            }
            StartingKind::Given { generator, loaded } => {
                finish_start(self.resolved, self.order, Backing::Given(generator), loaded, self.started)
            }
        }
    }

    /// Waits for the load on a plain thread (the CLI).
    pub fn finish_blocking(self) -> Result<Model, StartError> {
        match self.kind {
            StartingKind::Engine { engine, loading, rate_key } => {
                let loaded = loading.blocking_recv().map_err(|_| EngineError::WorkerGone)?;
                finish_start(self.resolved, self.order, Backing::Engine { engine, rate_key }, loaded, self.started)
            }
            StartingKind::Remote { config, loaded } => {
                finish_start(self.resolved, self.order, Backing::Remote(config), loaded, self.started)
            }
            StartingKind::Given { generator, loaded } => {
                finish_start(self.resolved, self.order, Backing::Given(generator), loaded, self.started)
            }
        }
    }
}

enum Backing {
    /// The resident engine, and what its prefill rate is kept for.
    Engine { engine: EngineHandle, rate_key: String },
    Remote(RemoteConfig),
    Given(Generator),
}

fn finish_start(
    resolved: ResolvedModel,
    order: Option<FimOrder>,
    backing: Backing,
    loaded: Result<LoadedModel, EngineError>,
    started: Instant,
) -> Result<Model, StartError> {
    let mut loaded = loaded?;
    if let Backing::Engine { rate_key, .. } = &backing {
        loaded = with_kept_rate(loaded, &resolved.gguf, rate_key);
    }
    let label = resolved.gguf.display().to_string();
    let (name, template) = match &resolved.config {
        Some(config) => {
            let label = format!("model config `{}` checked against {label}", config.name);
            config.check_vocabulary(&label, |id| loaded.tokenizer.piece(id).map(str::to_string))?;
            (config.name.clone(), FimTemplate::from_config(config, order)?)
        }
        None => {
            let name = resolved.gguf.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| label.clone());
            (name, FimTemplate::infer(&loaded.tokenizer))
        }
    };
    let generator = match backing {
        Backing::Engine { engine, .. } => Generator::Embedded(engine),
        Backing::Remote(config) => {
            let env = |name: &str| std::env::var(name).ok();
            Generator::Remote(Arc::new(RemoteClient::new(config, loaded.tokenizer.clone(), template.clone(), env)?))
        }
        Backing::Given(generator) => generator,
    };
    Ok(Model { name, generator, loaded, template, load_time: started.elapsed() })
}

/// One engine request's generation and prompt settings, as
/// [`SuggestionSettings`] and the cursor's mode make them (see
/// [`pipeline`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// Sampling (greedy by default).
    pub sampling: SamplingParams,
    /// Prompt tokens allowed; `None` = context length − max new tokens.
    pub prompt_budget: Option<usize>,
    /// Share of the prompt budget for the text after the cursor.
    pub suffix_share: f32,
    /// Share of the prompt budget for snippets from other files.
    pub context_share: f32,
    /// Text that ends generation, besides the model's own stop strings
    /// (a newline for single-line suggestions).
    pub stop_strings: Vec<String>,
    /// Put the cursor line after the middle marker in prefix-suffix-middle
    /// prompts (see `prompt::PromptInput::cursor_line_after_middle`).
    pub cursor_line_after_middle: bool,
    /// Token healing at the cursor (see `prompt::Prompt::healed_text`); only
    /// the resident engine can hold generation to the healed text, so a
    /// remote backend gets the whole text before the cursor instead, except
    /// indentation (`prompt::Healing::Indentation`: the remote client drops
    /// what the answer writes of it).
    pub token_healing: bool,
    /// Bytes before the cursor that go after the middle marker, from the
    /// document's anchor (see [`anchor`]); `None`: the cursor line's head.
    pub middle_bytes: Option<usize>,
    /// A multi-line answer's generation ends where it leaves the cursor's
    /// block (the indentation of the cursor's line; see
    /// `engine::dedent`), which post-processing would cut anyway.
    pub block_indent: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: SamplingParams::default(),
            prompt_budget: None,
            suffix_share: DEFAULT_SUFFIX_SHARE,
            context_share: DEFAULT_CONTEXT_SHARE,
            stop_strings: Vec::new(),
            cursor_line_after_middle: false,
            token_healing: true,
            middle_bytes: None,
            block_indent: None,
        }
    }
}

/// One completion to compute.
pub struct CompletionInput<'a> {
    /// Text around the cursor.
    pub cursor: &'a CursorText,
    /// Snippets from elsewhere.
    pub context: &'a [ContextChunk],
    /// The language's line-comment marker.
    pub line_comment: &'a str,
    /// The document's path, for repository-level prompt formats.
    pub path: Option<&'a str>,
}

impl Model {
    /// Builds the engine request for a cursor: prompt within budget, stops.
    pub fn request(
        &self,
        input: &CompletionInput,
        settings: &Settings,
        deadline: Option<Instant>,
        cancel: CancelFlag,
    ) -> Result<(GenerationRequest, Prompt), EngineError> {
        let room = self.loaded.context_length.saturating_sub(settings.max_new_tokens);
        let budget = settings.prompt_budget.map_or(room, |b| b.min(room));
        let prompt = build_prompt(
            &self.template,
            &self.loaded.tokenizer,
            &PromptInput {
                prefix: &input.cursor.prefix,
                suffix: &input.cursor.suffix,
                context: input.context,
                line_comment: input.line_comment,
                budget,
                suffix_share: settings.suffix_share,
                context_share: settings.context_share,
                current_path: input.path,
                cursor_line_after_middle: settings.cursor_line_after_middle,
                middle_bytes: settings.middle_bytes,
                heal: if settings.token_healing { self.generator.healing() } else { Healing::Off },
            },
        )?;
        let mut stop_tokens = self.template.stop_tokens.clone();
        if stop_tokens.is_empty() {
            stop_tokens = self.loaded.tokenizer.control_tokens();
        }
        let request = GenerationRequest {
            prompt: prompt.tokens.clone(),
            // The healed tokens are written again before anything new.
            max_new_tokens: settings.max_new_tokens + prompt.healed_tokens,
            sampling: settings.sampling.clone(),
            stop_tokens,
            stop_strings: self.template.stop_strings.iter().chain(&settings.stop_strings).cloned().collect(),
            deadline,
            cancel,
            speculative: true,
            healed_text: prompt.healed_text.clone(),
            block_indent: settings.block_indent,
        };
        Ok((request, prompt))
    }
}

#[cfg(test)]
mod tests {
    /// The language server's glue is a front end of this module, never a
    /// part of it: no file here names `protocol`, an LSP type or JSON. And
    /// the session's parts import one way: the session uses a request and
    /// its placement, never the other way round.
    #[test]
    fn no_protocol_here_and_the_session_imports_one_way() {
        let files = [
            ("anchor.rs", include_str!("anchor.rs")),
            ("cache.rs", include_str!("cache.rs")),
            ("generator.rs", include_str!("generator.rs")),
            ("mod.rs", include_str!("mod.rs")),
            ("pipeline.rs", include_str!("pipeline.rs")),
            ("placement.rs", include_str!("placement.rs")),
            ("request.rs", include_str!("request.rs")),
            ("scheduler.rs", include_str!("scheduler.rs")),
            ("scripted.rs", include_str!("scripted.rs")),
            ("session.rs", include_str!("session.rs")),
            ("session/warming.rs", include_str!("session/warming.rs")),
            ("warm.rs", include_str!("warm.rs")),
        ];
        for (file, source) in files {
            for forbidden in [concat!("crate::", "protocol"), concat!("tower_", "lsp"), concat!("serde_", "json")] {
                assert!(!source.contains(forbidden), "{file} uses {forbidden}");
            }
        }
        let one_way = [
            ("placement.rs", include_str!("placement.rs"), "request::"),
            ("placement.rs", include_str!("placement.rs"), "session::"),
            ("request.rs", include_str!("request.rs"), "session::"),
        ];
        for (file, source, forbidden) in one_way {
            assert!(!source.contains(forbidden), "{file} uses {forbidden}");
        }
    }
}
