//! The way from a cursor to the text an editor shows, one step per
//! function, shared by every front end (`cria lsp`, `cria complete`, the
//! benchmarks): the completion mode at the cursor, the windows of text
//! around it within the prompt budget, the engine request (with the
//! suggestion cache's key), and what is shown of the model's answer.
//!
//! Plain data in and out: the front ends gather the state (documents,
//! snippets from other files, anchors, caches) and call these, so a
//! suggestion on the command line is the one an editor shows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::{Backend, Model, Settings, SuggestionLru};
use crate::context::{completion_mode, cursor_line_indent, cursor_windows, whole_prefix_fits, CompletionMode, CursorText, WindowBudget};
use crate::documents::Language;
use crate::engine::StopReason;
use crate::engine::{CancelFlag, Completion, EngineError, GenerationRequest, SamplingParams};
use crate::models::FimOrder;
use crate::postprocess::rules::drop_retyped_cursor_text;
use crate::postprocess::{postprocess, Extent, PostprocessInput};
use crate::prompt::{ContextChunk, Healing};

/// The prompt share for the text after the cursor, unless a setting says
/// otherwise (one default for every front end).
pub const DEFAULT_SUFFIX_SHARE: f32 = 0.25;

/// The prompt share for snippets from other files, unless a setting says
/// otherwise (one default for every front end).
pub const DEFAULT_CONTEXT_SHARE: f32 = 0.15;

/// The default cap on suffix tokens in prefix-suffix-middle prompts: long
/// enough for the model to see where the hole ends (the next statements of
/// the block), short enough that recomputing it on each keystroke stays a
/// small part of the latency. Measured trade-off: README, "Latency".
pub const DEFAULT_MAX_SUFFIX_TOKENS: usize = 128;

/// The default prompt size in tokens: room for a file's surroundings of
/// the cursor while a cold prompt still computes in a few seconds on a
/// laptop CPU (see README, "Latency").
pub const DEFAULT_PROMPT_TOKENS: usize = 1536;

/// The default limit on generated tokens per suggestion.
pub const DEFAULT_MAX_TOKENS: usize = 64;

/// Most tokens of a single-line suggestion: one line never needs more, and
/// a model that will not stop costs no more than this.
const SINGLE_LINE_MAX_TOKENS: usize = 48;

/// The settings that shape a suggestion, one default each, whatever the
/// front end: `cria lsp` reads them from the editor's settings, `cria
/// complete` uses the defaults, so both show the same suggestion.
#[derive(Debug, Clone, PartialEq)]
pub struct SuggestionSettings {
    /// Most tokens generated per suggestion.
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    pub temperature: f32,
    /// Prompt tokens at most (the rest of the context is for generation).
    pub prompt_tokens: usize,
    /// Share of the prompt for the text after the cursor.
    pub suffix_share: f32,
    /// Most suffix tokens in prefix-suffix-middle prompts, where the whole
    /// suffix comes after the cursor in token order and is recomputed on
    /// every keystroke (see README, "Latency").
    pub max_suffix_tokens: usize,
    /// Share of the prompt for snippets from other files (0 turns it off).
    pub context_share: f32,
    /// Pipeline ingredients switched off for measurement (`CRIA_ABLATE`).
    pub ablation: Ablation,
}

impl Default for SuggestionSettings {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 0.0,
            prompt_tokens: DEFAULT_PROMPT_TOKENS,
            suffix_share: DEFAULT_SUFFIX_SHARE,
            max_suffix_tokens: DEFAULT_MAX_SUFFIX_TOKENS,
            context_share: DEFAULT_CONTEXT_SHARE,
            ablation: Ablation::default(),
        }
    }
}

/// Ingredients of the pipeline that a quality measurement may switch off,
/// one at a time, to see what each one gains or costs (`benches/quality
/// --ablate`). Read from the environment variable `CRIA_ABLATE`, a
/// comma-separated list of names; not a user setting: every ingredient is on
/// for users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ablation {
    /// `heal`: no token healing at the cursor.
    pub no_healing: bool,
    /// `cursor-line-after-middle`: the cursor line ends the prefix instead.
    pub no_cursor_line_after_middle: bool,
    /// `suffix-cap`: the suffix gets its share of the budget, uncapped.
    pub no_suffix_cap: bool,
    /// `postprocess`: the raw completion is shown (first line only for a
    /// single-line request, as its stop string cuts it).
    pub no_postprocess: bool,
    /// `windows`: the text before and after the cursor is cut only by the
    /// prompt builder's line-wise budget, without syntax-aware windows.
    pub no_windows: bool,
    /// `prompt-cap`: the full prompt takes `promptTokens` whatever this
    /// machine's prefill rate (see [`Pipeline::full_prompt_tokens`]).
    pub no_prompt_cap: bool,
    /// `at-rest`: no suggestion is computed at a resting cursor (see
    /// `Session::suggest_at_rest`); a prefetch only warms prompts.
    pub no_suggestion_at_rest: bool,
    /// `reserve-to-prefix`: the snippets' share of a full prompt stays
    /// empty when no snippet was found, instead of going to the text
    /// before the cursor where all of it then fits (see [`Pipeline::build`]).
    pub no_reserve_to_prefix: bool,
    /// `stable-head`: a prefix that does not fit whole opens with the file's
    /// imports, not its head (see `context::cursor_windows`).
    pub no_stable_head: bool,
}

impl Ablation {
    /// The names `CRIA_ABLATE` accepts.
    pub const NAMES: [&'static str; 9] = [
        "heal",
        "cursor-line-after-middle",
        "suffix-cap",
        "postprocess",
        "windows",
        "prompt-cap",
        "at-rest",
        "reserve-to-prefix",
        "stable-head",
    ];

    /// Parses a comma-separated list of names; an unknown name is an error.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut ablation = Self::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "heal" => ablation.no_healing = true,
                "cursor-line-after-middle" => ablation.no_cursor_line_after_middle = true,
                "suffix-cap" => ablation.no_suffix_cap = true,
                "postprocess" => ablation.no_postprocess = true,
                "windows" => ablation.no_windows = true,
                "prompt-cap" => ablation.no_prompt_cap = true,
                "at-rest" => ablation.no_suggestion_at_rest = true,
                "reserve-to-prefix" => ablation.no_reserve_to_prefix = true,
                "stable-head" => ablation.no_stable_head = true,
                other => return Err(format!("unknown ingredient `{other}` in CRIA_ABLATE (known: {})", Self::NAMES.join(", "))),
            }
        }
        Ok(ablation)
    }

    /// From `CRIA_ABLATE`; nothing switched off when it is unset or wrong
    /// (a wrong list is logged).
    pub fn from_env() -> Self {
        match std::env::var("CRIA_ABLATE") {
            Ok(list) => Self::parse(&list).unwrap_or_else(|e| {
                tracing::error!("{e}");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }
}

/// Whether a suggestion is wanted at byte `offset` of `text`, and of which
/// kind (one line, several, none), as every front end decides it.
pub fn mode_at(text: &str, offset: usize, tree: Option<&tree_sitter::Tree>, trigger: Trigger) -> CompletionMode {
    match (completion_mode(text, offset, tree, true), trigger) {
        // Asked for explicitly: an answer even mid-word, and several lines
        // where nothing but closing characters follows the cursor.
        (CompletionMode::Skip, Trigger::Invoked) => CompletionMode::SingleLine,
        (CompletionMode::SingleLine, Trigger::Invoked) if rest_of_line_closes(text, offset) => CompletionMode::MultiLine,
        (mode, _) => mode,
    }
}

/// How a suggestion was asked for (LSP's `InlineCompletionTriggerKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// While typing: the usual budget and mode.
    Automatic,
    /// Explicitly (VS Code's Alt+\\, `:CriaSuggest`): the user waits for
    /// it, so it gets a longer budget and may be several lines.
    Invoked,
}

impl Trigger {
    /// An invoked request's latency budget, in multiples of the setting.
    const INVOKED_BUDGET_FACTOR: u64 = 3;

    /// The latency budget for a request asked this way.
    pub fn latency_budget_ms(self, setting: u64) -> u64 {
        match self {
            Trigger::Automatic => setting,
            Trigger::Invoked => setting.saturating_mul(Self::INVOKED_BUDGET_FACTOR),
        }
    }
}

/// Whether only closing characters (or nothing) follow `offset` on its line.
fn rest_of_line_closes(text: &str, offset: usize) -> bool {
    let rest = text.get(offset..).unwrap_or("");
    crate::documents::closing_only(&rest[..rest.find(['\n', '\r']).unwrap_or(rest.len())])
}

/// Where a suggestion is asked for: the document as the front end has it
/// and the cursor in it.
#[derive(Clone, Copy)]
pub struct CursorPlace<'a> {
    /// The document's whole text.
    pub text: &'a str,
    /// The cursor, a byte offset into `text`.
    pub offset: usize,
    /// The document's syntax tree, if its language has a grammar.
    pub tree: Option<&'a tree_sitter::Tree>,
    /// The document's language (line comments, post-processing).
    pub language: &'a Language,
    /// What kind of suggestion is wanted (see [`mode_at`]).
    pub mode: CompletionMode,
    /// The document's path as prompts name it (repository-level formats).
    pub path: &'a str,
    /// The line start the text after the middle marker begins at (see
    /// `completion::anchor`); `None`: the cursor line's start.
    pub anchor: Option<usize>,
}

/// How large a prompt to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptSize {
    /// The settings' whole budget, with snippets from other files.
    Full,
    /// A quick prompt of this many tokens, without snippets, for a cold
    /// cursor (see `completion::warm`).
    Quick(usize),
}

/// One prompt, ready to run.
#[derive(Clone)]
pub struct BuiltPrompt {
    /// The engine request.
    pub request: GenerationRequest,
    /// How large a prompt it was built as (to build it again in another
    /// mode: the same windows make the same tokens).
    pub size: PromptSize,
    /// The token budget it was built with.
    pub prompt_tokens: usize,
    /// The snippets from other files it holds.
    pub context: Arc<Vec<ContextChunk>>,
    /// The windows of text before and after the cursor it holds, against
    /// which the answer is post-processed.
    pub cursor: CursorText,
    /// The suggestion cache's key: the prompt's tokens and every setting
    /// that shapes the answer.
    pub key: u64,
}

/// What a front end asks with: the model, the settings and the backend the
/// model runs on (part of the cache key: a remote engine may answer
/// differently).
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    /// The started model.
    pub model: &'a Model,
    /// The suggestion settings.
    pub settings: &'a SuggestionSettings,
    /// Where the model runs.
    pub backend: &'a Backend,
}

impl Pipeline<'_> {
    /// Builds the engine request at `place`: the windows around the cursor
    /// within the budget of `size`, snippets from `snippets` (asked only for
    /// a full prompt that has a share for them, with the windows chosen),
    /// the anchor's middle, single-line stops, and the cache key.
    ///
    /// Where no snippet is found (a single file open, no workspace) and
    /// the text before the cursor fits whole without the snippets' share,
    /// the share goes to it (see `SuggestionSettings::windows_with_snippets`).
    pub fn build(
        &self,
        place: &CursorPlace,
        size: PromptSize,
        snippets: &mut dyn FnMut(&CursorText) -> Arc<Vec<ContextChunk>>,
        deadline: Option<Instant>,
        cancel: CancelFlag,
    ) -> Result<BuiltPrompt, EngineError> {
        let counts = SliceCounts::new(place.text, token_counter(self.model));
        let count = |piece: &str| counts.count(piece);
        let (cursor, mut settings, context, prompt_tokens) = match size {
            PromptSize::Full => {
                let full = SuggestionSettings { prompt_tokens: self.full_prompt_tokens(), ..self.settings.clone() };
                let (cursor, settings, context) = full.windows_with_snippets(self.model, place, snippets, &count);
                (cursor, settings, context, full.prompt_tokens)
            }
            PromptSize::Quick(tokens) => {
                let (cursor, settings) = self.settings.quick_windows(tokens, self.model, place, &count);
                (cursor, settings, Arc::new(Vec::new()), tokens)
            }
        };
        settings.middle_bytes = place.anchor.and_then(|at| place.offset.checked_sub(at));
        let input = super::CompletionInput {
            cursor: &cursor,
            context: &context,
            line_comment: place.language.line_comment(),
            path: Some(place.path),
        };
        let (request, _) = self.model.request(&input, &settings, deadline, cancel)?;
        let key = SuggestionLru::key(&request.prompt, &self.cache_variant(&request, place.mode));
        Ok(BuiltPrompt { request, size, prompt_tokens, context, cursor, key })
    }

    /// The most tokens a full prompt takes with this model on this machine:
    /// the `promptTokens` setting, or less where the prefill rate the
    /// resident engine measured at load would take more than
    /// `warm::FULL_PROMPT_SECONDS` to compute it cold (a remote backend,
    /// or an engine that measured nothing: the setting). The same for every
    /// front end, so `cria complete` shows what the editor gets.
    pub fn full_prompt_tokens(&self) -> usize {
        if self.settings.ablation.no_prompt_cap {
            return self.settings.prompt_tokens;
        }
        super::full_prompt_tokens(self.settings.prompt_tokens, self.model.loaded.prefill_rate)
    }

    /// Everything that shapes the answer besides the prompt's tokens: the
    /// mode (stops, cuts), the healed text (one prompt serves `= d` and
    /// `= de`), the model, the token limit, sampling, the backend and what
    /// is switched off.
    fn cache_variant(&self, request: &GenerationRequest, mode: CompletionMode) -> String {
        let mode = if mode == CompletionMode::SingleLine { "single" } else { "multi" };
        format!(
            "{mode}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{:?}",
            request.healed_text, self.model.name, request.max_new_tokens, request.sampling, self.backend, self.settings.ablation
        )
    }

    /// What is shown of a model's answer to the prompt built at `place`
    /// (`cursor` is that prompt's windows): post-processed against the
    /// text around the cursor and cut back to complete lines when
    /// generation was cut short; for an answer not held to healed text (remote), a
    /// re-typed space or word start dropped first. May be blank: then
    /// there is nothing to show.
    pub fn shown_text(&self, place: &CursorPlace, cursor: &CursorText, completion: &Completion) -> String {
        let text = if self.model.generator.healing() != Healing::Full {
            drop_retyped_cursor_text(&completion.text, &cursor.prefix)
        } else {
            &completion.text
        };
        if self.settings.ablation.no_postprocess {
            return text.to_string();
        }
        // Cut short: the last line may be unfinished (`Enough` ends a line,
        // but the token that ended it may have started the next one).
        let truncated = matches!(completion.stop_reason, StopReason::Deadline | StopReason::Length | StopReason::Enough);
        let extent = if place.mode == CompletionMode::SingleLine { Extent::SingleLine } else { Extent::MultiLine };
        postprocess(&PostprocessInput {
            completion: text,
            prefix: &cursor.prefix,
            suffix: suffix_with_the_cursor_line(place, &cursor.suffix),
            language: place.language,
            extent,
            truncated,
        })
    }
}

/// The text after the cursor an answer is post-processed against: the
/// prompt's suffix window, or at least the rest of the cursor's line with
/// its line break. A model without a suffix in its prompt (no FIM tokens)
/// has an empty window, yet what stays on the cursor's line decides what
/// the suggestion may be: joined to it, or lines inserted above it.
fn suffix_with_the_cursor_line<'a>(place: &CursorPlace<'a>, window: &'a str) -> &'a str {
    let after = place.text.get(place.offset..).unwrap_or("");
    let line_end = match after.find(['\n', '\r']) {
        Some(at) if after[at..].starts_with("\r\n") => at + 2,
        Some(at) => at + 1,
        None => after.len(),
    };
    if window.len() >= line_end {
        window
    } else {
        &after[..line_end]
    }
}

impl SuggestionSettings {
    /// The engine request's settings before windows, mode and anchor.
    pub fn request_settings(&self) -> Settings {
        Settings {
            max_new_tokens: self.max_tokens,
            sampling: SamplingParams { temperature: self.temperature, ..SamplingParams::default() },
            prompt_budget: Some(self.prompt_tokens),
            suffix_share: self.suffix_share,
            context_share: self.context_share,
            stop_strings: Vec::new(),
            cursor_line_after_middle: !self.ablation.no_cursor_line_after_middle,
            token_healing: !self.ablation.no_healing,
            middle_bytes: None,
            block_indent: None,
        }
    }

    /// The windows, settings and snippets of a full prompt at `place`:
    /// the token budget split between prefix, suffix and other files'
    /// snippets (asked of `snippets` with the windows chosen).
    ///
    /// Where the text before the cursor fits whole in the prompt without
    /// the snippets' share, that window comes first and the snippets are
    /// asked with it; only if some come is the window rebuilt to give them
    /// their share. A single file open, or no workspace, then never holds
    /// back a share nobody takes, and its window's start never moves while
    /// the user types (a moved start loses the warmed prompt). A longer
    /// file keeps the smaller window: where the prompt cap binds (a slow
    /// machine), a larger one would take longer to warm after every move.
    fn windows_with_snippets(
        &self,
        model: &Model,
        place: &CursorPlace,
        snippets: &mut dyn FnMut(&CursorText) -> Arc<Vec<ContextChunk>>,
        count: &dyn Fn(&str) -> usize,
    ) -> (CursorText, Settings, Arc<Vec<ContextChunk>>) {
        let with_share = self.context_share > 0.0;
        let mut found = None;
        let unreserved = SuggestionSettings { context_share: 0.0, ..self.clone() };
        let room = unreserved.window_budget(self.prompt_tokens, model).prefix_tokens;
        if with_share && !self.ablation.no_reserve_to_prefix && whole_prefix_fits(place.text, place.offset, room, count) {
            let (cursor, settings) = unreserved.windows_within(self.prompt_tokens, model, place, count);
            let context = snippets(&cursor);
            if context.is_empty() {
                return (cursor, settings, context);
            }
            found = Some(context);
        }
        let (cursor, settings) = self.windows_within(self.prompt_tokens, model, place, count);
        let context = match found {
            Some(context) => context,
            None if with_share => snippets(&cursor),
            None => Arc::new(Vec::new()),
        };
        (cursor, settings, context)
    }

    /// The windows and settings of a prompt of at most `prompt_tokens`: a
    /// small prompt answers a cold cursor (nothing cached) within the
    /// budget while the full one is computed in the background. It keeps
    /// the suffix to a third and leaves out other files' snippets.
    fn quick_windows(
        &self,
        prompt_tokens: usize,
        model: &Model,
        place: &CursorPlace,
        count: &dyn Fn(&str) -> usize,
    ) -> (CursorText, Settings) {
        let quick =
            SuggestionSettings { max_suffix_tokens: self.max_suffix_tokens.min(prompt_tokens / 3), context_share: 0.0, ..self.clone() };
        let (cursor_text, mut settings) = quick.windows_within(prompt_tokens, model, place, count);
        settings.prompt_budget = Some(prompt_tokens);
        (cursor_text, settings)
    }

    /// The tokens of a prompt of `prompt_tokens` for the text before and
    /// after the cursor with this model's layout: what the control tokens,
    /// the suffix's share (capped) and the snippets' share leave.
    fn window_budget(&self, prompt_tokens: usize, model: &Model) -> WindowBudget {
        let template = &model.template;
        let room = text_room(prompt_tokens, model);
        let share = (room as f32 * self.suffix_share) as usize;
        let suffix_tokens = match template.order {
            _ if !template.uses_suffix() => 0,
            // The suffix follows the cursor in token order: all of it is
            // recomputed on every keystroke, so it is capped.
            FimOrder::Psm if !self.ablation.no_suffix_cap => share.min(self.max_suffix_tokens),
            _ => share,
        };
        let context_tokens = (room as f32 * self.context_share) as usize;
        WindowBudget { prefix_tokens: room.saturating_sub(suffix_tokens + context_tokens), suffix_tokens }
    }

    /// The text windows around the cursor and the settings for one request
    /// in `place.mode`: the token budget split between prefix and suffix
    /// for this model's layout, and single-line stops.
    fn windows_within(
        &self,
        prompt_tokens: usize,
        model: &Model,
        place: &CursorPlace,
        count: &dyn Fn(&str) -> usize,
    ) -> (CursorText, Settings) {
        let (text, cursor) = (place.text, place.offset);
        let budget = self.window_budget(prompt_tokens, model);
        let mut settings = self.request_settings();
        let cursor_text = if self.ablation.no_windows {
            let room = text_room(prompt_tokens, model);
            settings.suffix_share = budget.suffix_tokens as f32 / room.max(1) as f32;
            CursorText { prefix: text[..cursor].to_string(), suffix: text[cursor..].to_string() }
        } else {
            // The windows already fit; the prompt builder only guards the budget.
            settings.suffix_share = 1.0;
            cursor_windows(text, cursor, place.anchor, place.tree, budget, !self.ablation.no_stable_head, count)
        };
        if place.mode == CompletionMode::SingleLine {
            settings.max_new_tokens = settings.max_new_tokens.min(SINGLE_LINE_MAX_TOKENS);
            settings.stop_strings.push("\n".into());
        } else {
            settings.block_indent = Some(cursor_line_indent(text, cursor));
        }
        (cursor_text, settings)
    }
}

/// The tokens of a prompt of `prompt_tokens` left for text once this
/// model's control tokens are in.
fn text_room(prompt_tokens: usize, model: &Model) -> usize {
    prompt_tokens.saturating_sub(model.template.control_token_count())
}

/// The token count of a piece of text with `model`'s tokenizer, which the
/// windows are measured in (a text that does not encode counts as too long).
fn token_counter(model: &Model) -> impl Fn(&str) -> usize + '_ {
    let tokenizer = &model.loaded.tokenizer;
    move |text: &str| tokenizer.encode(text).map(|t| t.len()).unwrap_or(usize::MAX)
}

/// Token counts of slices of one text, each counted once: building a
/// prompt counts the same pieces more than once (the fit of the whole text
/// before the cursor, then its window; the suffix for each window tried),
/// and tokenizing a few kilobytes on every keystroke is the window's main
/// cost. Only slices of `text` are remembered (by where they start and
/// end in it, which says what they hold); other strings are counted anew.
struct SliceCounts<'t, F> {
    text: &'t str,
    count: F,
    counted: RefCell<HashMap<(usize, usize), usize>>,
}

impl<'t, F: Fn(&str) -> usize> SliceCounts<'t, F> {
    fn new(text: &'t str, count: F) -> Self {
        SliceCounts { text, count, counted: RefCell::new(HashMap::new()) }
    }

    /// The token count of `piece`.
    fn count(&self, piece: &str) -> usize {
        let base = self.text.as_ptr() as usize;
        let start = (piece.as_ptr() as usize).wrapping_sub(base);
        let inside = start <= self.text.len() && piece.len() <= self.text.len() - start;
        if !inside {
            return (self.count)(piece);
        }
        let key = (start, start + piece.len());
        if let Some(&n) = self.counted.borrow().get(&key) {
            return n;
        }
        let n = (self.count)(piece);
        self.counted.borrow_mut().insert(key, n);
        n
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_invoked_request_answers_mid_word_and_may_take_several_lines() {
        use super::{mode_at, Trigger};
        use crate::context::CompletionMode;
        let at = |marked: &str, trigger| mode_at(&marked.replace("$0", ""), marked.find("$0").unwrap(), None, trigger);
        assert_eq!(at("x = comp$0ute(1)\n", Trigger::Automatic), CompletionMode::Skip);
        assert_eq!(at("x = comp$0ute(1)\n", Trigger::Invoked), CompletionMode::SingleLine, "explicit: even mid-word");
        assert_eq!(at("x = f(total + $0)\n", Trigger::Automatic), CompletionMode::SingleLine);
        assert_eq!(at("x = f(total + $0)\n", Trigger::Invoked), CompletionMode::MultiLine, "only closing characters follow");
        assert_eq!(at("x = $0compute(1)\n", Trigger::Invoked), CompletionMode::SingleLine, "code follows on the line");
        assert_eq!(Trigger::Automatic.latency_budget_ms(2000), 2000);
        assert_eq!(Trigger::Invoked.latency_budget_ms(2000), 6000);
    }

    use super::*;

    #[test]
    fn ablation_names_parse_and_unknown_ones_are_refused() {
        let all = Ablation::parse(&Ablation::NAMES.join(",")).unwrap();
        assert!(
            all.no_healing
                && all.no_cursor_line_after_middle
                && all.no_suffix_cap
                && all.no_postprocess
                && all.no_windows
                && all.no_prompt_cap
                && all.no_suggestion_at_rest
                && all.no_reserve_to_prefix
                && all.no_stable_head
        );
        assert_eq!(Ablation::parse(" , ").unwrap(), Ablation::default());
        assert!(Ablation::parse("heal,colour").unwrap_err().contains("colour"));
    }

    #[test]
    fn request_settings_follow_the_suggestion_settings() {
        let settings = SuggestionSettings {
            max_tokens: 7,
            temperature: 0.5,
            ablation: Ablation { no_healing: true, ..Ablation::default() },
            ..SuggestionSettings::default()
        };
        let request = settings.request_settings();
        assert_eq!(request.max_new_tokens, 7);
        assert_eq!(request.sampling.temperature, 0.5);
        assert_eq!(request.prompt_budget, Some(DEFAULT_PROMPT_TOKENS));
        assert!(!request.token_healing && request.cursor_line_after_middle);
    }

    #[test]
    fn a_slice_of_the_text_is_counted_once_and_other_strings_every_time() {
        use std::cell::Cell;
        let text = String::from("def f(x):\n    return x + 1\n");
        let calls = Cell::new(0);
        let counts = SliceCounts::new(&text, |piece: &str| {
            calls.set(calls.get() + 1);
            piece.split_whitespace().count()
        });
        assert_eq!(counts.count(&text[..10]), 2);
        assert_eq!(counts.count(&text[..10]), 2);
        assert_eq!(calls.get(), 1, "the same slice again: remembered");
        assert_eq!(counts.count(&text[10..]), 4, "another slice: counted");
        assert_eq!(counts.count(&text[..]), 6);
        assert_eq!(counts.count(&text[10..10]), 0);
        assert_eq!(calls.get(), 4);
        // A string elsewhere with the same length and place in its own
        // buffer is not taken for the slice.
        let other = String::from("a b c d e ");
        assert_eq!(counts.count(&other), 5);
        assert_eq!(counts.count(&other), 5);
        assert_eq!(calls.get(), 6, "strings outside the text are never remembered");
    }
}
