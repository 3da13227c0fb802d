//! The pipeline from a cursor to a suggestion, shared by the CLI and the
//! language server: find and start the model, then turn cursor text into an
//! engine request (context → prompt → engine).
//!
//! Starting a model resolves its file, spawns the engine thread, waits for the
//! load, checks the config's special tokens against the real vocabulary and
//! resolves the FIM template. After that, building a request is pure and
//! cheap; running it is the engine thread's business.

mod cache;
mod scheduler;

pub use cache::{Shown, SuggestionLru};
pub use scheduler::{Scheduler, Ticket};

use std::time::{Duration, Instant};

use crate::context::CursorText;
use crate::engine::{
    CancelFlag, EngineError, EngineHandle, EngineOptions, GenerationRequest, LoadReceiver, LoadedModel, SamplingParams,
};
use crate::models::{load_catalogue, resolve, ConfigError, CriaHome, FimOrder, ResolveError, ResolvedModel, SearchPaths};
use crate::prompt::{build_prompt, ContextChunk, FimTemplate, Prompt, PromptInput, TemplateError};

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
}

/// Finds a model by name or path in the user's catalogue and search paths.
pub fn resolve_model(spec: &str, home: &CriaHome) -> Result<ResolvedModel, StartError> {
    let catalogue = load_catalogue(home)?;
    let search = SearchPaths::from_env(home)?;
    Ok(resolve(spec, &search, &catalogue)?)
}

/// A resident model, ready for requests.
#[derive(Clone)]
pub struct Model {
    /// The config name, or the file name for a model without config.
    pub name: String,
    /// The engine thread.
    pub engine: EngineHandle,
    /// Tokenizer and shape.
    pub loaded: LoadedModel,
    /// How prompts are laid out for this model.
    pub template: FimTemplate,
    /// How long loading took.
    pub load_time: Duration,
}

/// A model whose engine thread is loading it.
pub struct Starting {
    resolved: ResolvedModel,
    order: Option<FimOrder>,
    engine: EngineHandle,
    loading: LoadReceiver,
    started: Instant,
}

/// Spawns the engine thread for a resolved model; loading begins at once.
pub fn start(
    resolved: ResolvedModel,
    options: EngineOptions,
    order: Option<FimOrder>,
    progress: Box<dyn FnMut(f32) + Send>,
) -> Result<Starting, StartError> {
    let started = Instant::now();
    let (engine, loading) = EngineHandle::spawn(resolved.gguf.clone(), options, progress)?;
    Ok(Starting { resolved, order, engine, loading, started })
}

impl Starting {
    /// Waits for the load on an async runtime.
    pub async fn finish(self) -> Result<Model, StartError> {
        let loaded = self.loading.await.map_err(|_| EngineError::WorkerGone)?;
        finish_start(self.resolved, self.order, self.engine, loaded, self.started)
    }

    /// Waits for the load on a plain thread (the CLI).
    pub fn finish_blocking(self) -> Result<Model, StartError> {
        let loaded = self.loading.blocking_recv().map_err(|_| EngineError::WorkerGone)?;
        finish_start(self.resolved, self.order, self.engine, loaded, self.started)
    }
}

fn finish_start(
    resolved: ResolvedModel,
    order: Option<FimOrder>,
    engine: EngineHandle,
    loaded: Result<LoadedModel, EngineError>,
    started: Instant,
) -> Result<Model, StartError> {
    let loaded = loaded?;
    let label = resolved.gguf.display().to_string();
    let (name, template) = match &resolved.config {
        Some(config) => {
            let label = format!("model config `{}` checked against {label}", config.name);
            config.check_vocabulary(&label, |id| loaded.tokenizer.piece(id).map(str::to_string))?;
            (config.name.clone(), FimTemplate::from_config(config, order)?)
        }
        None => {
            let name = resolved
                .gguf
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| label.clone());
            (name, FimTemplate::infer(&loaded.tokenizer))
        }
    };
    Ok(Model { name, engine, loaded, template, load_time: started.elapsed() })
}

/// How suggestions are generated and how the prompt is budgeted.
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
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_new_tokens: 64, sampling: SamplingParams::default(), prompt_budget: None, suffix_share: 0.25, context_share: 0.2, stop_strings: Vec::new(), cursor_line_after_middle: false }
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
            },
        )?;
        let mut stop_tokens = self.template.stop_tokens.clone();
        if stop_tokens.is_empty() {
            stop_tokens = self.loaded.tokenizer.control_tokens();
        }
        let request = GenerationRequest {
            prompt: prompt.tokens.clone(),
            max_new_tokens: settings.max_new_tokens,
            sampling: settings.sampling.clone(),
            stop_tokens,
            stop_strings: self.template.stop_strings.iter().chain(&settings.stop_strings).cloned().collect(),
            deadline,
            cancel,
            speculative: true,
        };
        Ok((request, prompt))
    }
}
