//! One request at a cursor, as the session gathered it (the document as of
//! the request, the settings and the model, snippets from other files or
//! the ones chosen earlier, the anchor), and its prompts: the full one, a
//! quick one when the full one would not be computed within the budget
//! (`warm::plan_prompt`), and the one the next anchor will use. Built off the
//! async threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{plan_prompt, Backend, BuiltPrompt, CursorPlace, Model, Pipeline, PromptPlan, PromptSize, SuggestionSettings};
use crate::context::{
    definitions, ends_a_written_line, neighbourhood, relevant_definitions, similar_chunks, CompletionMode, CursorText,
    Definition, SourceFile,
};
use crate::documents::{DocumentSnapshot, Language, PositionEncoding};
use crate::engine::CancelFlag;
use crate::prompt::ContextChunk;
use crate::throttle::Throttle;

pub(super) static PROMPT_PROBLEM: Throttle = Throttle::new();

/// What a request runs with, as the front end has it at the request: the
/// model, the settings that shape a suggestion, the latency budget and the
/// position encoding.
#[derive(Clone)]
pub struct Setup {
    /// The model, ready.
    pub model: Model,
    /// What shapes a suggestion.
    pub suggestion: SuggestionSettings,
    /// Where the model runs.
    pub backend: Backend,
    /// Every request is answered within this many milliseconds (an
    /// explicit request gets more: `Trigger::latency_budget_ms`).
    pub latency_budget_ms: u64,
    /// The encoding of the positions the front end passes and gets back.
    pub encoding: PositionEncoding,
}

/// Everything a request at a cursor needs, taken from the session's state
/// at once, so prompts are built off the async threads.
#[derive(Clone)]
pub(super) struct CursorRequest {
    /// The quick prompt size this document used last (see `Session::quick_sizes`).
    pub quick_size: Option<usize>,
    /// Where the text after the middle marker starts (`completion::anchor`).
    pub anchor: Option<usize>,
    /// A line start whose prompt should be warmed for the next anchor.
    pub warm_anchor: Option<usize>,
    pub uri: String,
    /// The cursor's 16-line block (see `Session::context_memo`).
    pub block: usize,
    /// The snippets chosen earlier for this block.
    pub memo: Option<Arc<Vec<ContextChunk>>>,
    pub rope: ropey::Rope,
    pub language: Language,
    pub tree: Option<tree_sitter::Tree>,
    pub text: String,
    pub offset: usize,
    pub mode: CompletionMode,
    pub path: String,
    pub others: Vec<(String, DocumentSnapshot)>,
    pub recent: Vec<(String, usize)>,
    pub index: Arc<Vec<Definition>>,
    pub roots: Vec<PathBuf>,
    pub setup: Setup,
}

/// The prompts for a request: the full one, and a quick one when the full
/// one is not cached and would not fit the budget.
pub(super) struct Prepared {
    pub full: BuiltPrompt,
    pub quick: Option<BuiltPrompt>,
    /// The full prompt with the middle from the next anchor, to warm.
    pub next_anchor: Option<BuiltPrompt>,
}

impl CursorRequest {
    pub fn build(&self, budget: Duration, deadline: Option<Instant>, cancel: CancelFlag) -> Option<Prepared> {
        let full = self.build_one(None, self.anchor, deadline, cancel.clone())?;
        let quick = self.setup.model.generator.engine().and_then(|engine| {
            let cached = engine.cached_prefix(&full.request.prompt);
            let going_quick = self.quick_size.is_some();
            match plan_prompt(full.request.prompt.len(), cached, engine.prefill_rate(), budget, going_quick) {
                PromptPlan::Quick { prompt_tokens } => {
                    self.build_one(Some(self.quick_size.unwrap_or(prompt_tokens)), self.anchor, deadline, cancel.clone())
                }
                PromptPlan::Full => None,
            }
        });
        // The prompt the next anchor will use, to warm beside this one.
        let embedded = self.setup.model.generator.engine().is_some();
        let next_anchor = self.warm_anchor.filter(|_| embedded).and_then(|at| self.build_one(None, Some(at), None, cancel));
        Some(Prepared { full, quick, next_anchor })
    }

    /// Whether the cursor ends a written line and a one-line suggestion is
    /// asked for: where an empty answer means the line is done, and the
    /// lines after it are worth computing at rest (`Session::suggest_at_rest`).
    pub fn ends_a_written_line(&self) -> bool {
        self.mode == CompletionMode::SingleLine && ends_a_written_line(&self.text, self.offset)
    }

    /// This request asking for the lines after the cursor's line instead
    /// (multi-line), and `built`'s prompt built again for it: the same size,
    /// windows and snippets, so the same tokens, which are warm. See
    /// `Session::suggest_at_rest`.
    pub fn next_lines(&self, built: &BuiltPrompt) -> Option<(CursorRequest, BuiltPrompt)> {
        let next = CursorRequest { mode: CompletionMode::MultiLine, memo: Some(built.context.clone()), ..self.clone() };
        let quick = match built.size {
            PromptSize::Quick(tokens) => Some(tokens),
            PromptSize::Full => None,
        };
        let prompt = next.build_one(quick, next.anchor, None, CancelFlag::new())?;
        Some((next, prompt))
    }

    /// The completion pipeline with this request's model and settings.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline { model: &self.setup.model, settings: &self.setup.suggestion, backend: &self.setup.backend }
    }

    /// The cursor as the pipeline takes it, the middle from `anchor`.
    pub fn place(&self, anchor: Option<usize>) -> CursorPlace<'_> {
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

/// A URI as a path relative to the workspace folder that holds it.
pub(super) fn display_path(uri: &str, roots: &[PathBuf]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_relative_to_the_workspace_folder_that_holds_them() {
        let roots = [PathBuf::from("/work/a"), PathBuf::from("/work/b")];
        assert_eq!(display_path("file:///work/b/src/lib.rs", &roots), "src/lib.rs");
        assert_eq!(display_path("file:///elsewhere/x.py", &roots), "/elsewhere/x.py");
        assert_eq!(display_path("untitled:Untitled-1", &roots), "untitled:Untitled-1");
    }
}
