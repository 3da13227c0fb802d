//! `POST /infill`: llama.cpp's fill-in-the-middle endpoint, as llama.vim and
//! llama.vscode call it, answered by cria's own completion pipeline, so
//! those editors get the suggestion `cria lsp` and `cria complete` would
//! show at the same place: the syntax-aware windows within the prompt
//! budget, the single/multi-line decision, the model's FIM layout, token
//! healing and the post-processing.
//!
//! The request describes a document: `input_prefix + prompt + input_suffix`
//! with the cursor after `prompt` (llama.vim sends the lines before the
//! cursor's line, the cursor line's head and the rest). `input_extra`
//! chunks become snippets from other files. Its language comes from
//! `filename` (a cria extension; llama.cpp's clients send none), else it is
//! plain text. The job runs through the same fair queue and per-client KV
//! slot as `/v1/completions`.
//!
//! The answer is llama.cpp's: `content`, `stop`, `stop_type`,
//! `tokens_cached`, `tokens_evaluated`, `truncated`, `timings` and
//! `generation_settings` (llama.vscode reads its `n_ctx`), narrowed and
//! flattened by `response_fields` as llama.cpp does (llama.vim asks for
//! `timings/prompt_n`...). With `stream`, the same as server-sent events
//! once the suggestion is known (post-processing needs the whole answer):
//! one chunk with the content, then a last one with `stop: true`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::handlers::{admit, client_name, engine_error, CancelOnDrop};
use super::queue::Queued;
use super::{error, json, Refused, Shared};
use crate::completion::anchor::choose_anchor;
use crate::completion::{
    mode_at, Backend, CursorPlace, Pipeline, PromptSize, SuggestionSettings, Trigger, DEFAULT_MAX_TOKENS, DEFAULT_PROMPT_TOKENS,
};
use crate::context::{CompletionMode, CursorText};
use crate::documents::{Document, Language};
use crate::engine::{CancelFlag, Completion, GenerationRequest, StopReason};
use crate::prompt::ContextChunk;
use crate::remote::wire::InfillExtra;

/// Fields a request may name in `response_fields`.
const MAX_RESPONSE_FIELDS: usize = 64;

/// The body of `POST /infill` as llama.cpp documents it, read leniently:
/// fields llama.cpp's clients send that do not apply to cria (`samplers`,
/// `top_k`, `top_p`, `n_indent`, `id_slot`, `cache_prompt`,
/// `t_max_prompt_ms`, `t_max_predict_ms`, `n_cmpl`, `model`...) are
/// ignored. Its own type rather than the remote client's `InfillRequest`,
/// since reading needs "not sent" apart from zero (`n_predict: 0` asks
/// only to cache the prompt) and llama.cpp's negative `n_predict`.
#[derive(Debug, Default)]
struct InfillBody {
    /// The text before the cursor's line (or before the cursor).
    input_prefix: String,
    /// The text after the cursor.
    input_suffix: String,
    /// The cursor line's head, between the prefix and the cursor.
    prompt: String,
    /// Snippets of other files, most relevant last.
    input_extra: Vec<InfillExtra>,
    /// Most tokens to generate; negative: the pipeline's default; 0: only
    /// compute and cache the prompt.
    n_predict: Option<i64>,
    /// Sampling temperature; not sent: greedy, as the pipeline's default.
    temperature: Option<f32>,
    /// Random seed (used when sampling).
    seed: Option<i64>,
    /// Answer as server-sent events.
    stream: bool,
    /// Only these fields of the answer, `a/b` paths brought to the top.
    response_fields: Option<Vec<String>>,
    /// cria's extension: the document's file name, for its language.
    filename: Option<String>,
    /// cria's extension, as in `/v1/completions`: the client's name for the
    /// queue and its KV slot (else its address).
    user: Option<String>,
}

impl InfillBody {
    /// Reads the body field by field, so that a refusal names the field.
    fn parse(body: &[u8]) -> Result<Self, Refused> {
        let value: Value = serde_json::from_slice(body).map_err(|e| bad_request(format!("the body is not JSON: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(bad_request("the body must be a JSON object (input_prefix, input_suffix, prompt...)"));
        };
        let mut field = |name: &str| map.remove(name).filter(|v| !v.is_null());
        fn read<T: serde::de::DeserializeOwned>(name: &str, value: Option<Value>) -> Result<Option<T>, Refused> {
            value.map(|v| serde_json::from_value(v).map_err(|e| bad_request(format!("`{name}`: {e}")))).transpose()
        }
        Ok(Self {
            input_prefix: read("input_prefix", field("input_prefix"))?.unwrap_or_default(),
            input_suffix: read("input_suffix", field("input_suffix"))?.unwrap_or_default(),
            prompt: read("prompt", field("prompt"))?.unwrap_or_default(),
            input_extra: read("input_extra", field("input_extra"))?.unwrap_or_default(),
            n_predict: read("n_predict", field("n_predict"))?,
            temperature: read("temperature", field("temperature"))?,
            seed: read("seed", field("seed"))?,
            stream: read("stream", field("stream"))?.unwrap_or_default(),
            response_fields: read("response_fields", field("response_fields"))?,
            filename: read("filename", field("filename"))?,
            user: read("user", field("user"))?,
        })
    }
}

/// The document an infill request describes, owned so that its answer can
/// be post-processed after the generation.
struct Hole {
    text: String,
    offset: usize,
    document: Document,
    language: Language,
    mode: CompletionMode,
    path: String,
    anchor: usize,
}

impl Hole {
    fn place(&self) -> CursorPlace<'_> {
        CursorPlace {
            text: &self.text,
            offset: self.offset,
            tree: self.document.tree(),
            language: &self.language,
            mode: self.mode,
            path: &self.path,
            anchor: Some(self.anchor),
        }
    }
}

/// A checked request: the pipeline's job (none where no suggestion is
/// wanted, as mid-word) and how to answer.
struct Checked {
    hole: Hole,
    settings: SuggestionSettings,
    job: Option<(GenerationRequest, CursorText)>,
    stream: bool,
    fields: Option<Vec<String>>,
    client: String,
}

fn bad_request(message: impl Into<String>) -> Refused {
    Refused::bad_request(message)
}

/// The language named by a file name (its extension), else plain text.
fn language_of(path: &str) -> Language {
    Language::from_path(path).unwrap_or_else(|| {
        let extension = path.rsplit_once('.').map_or("", |(_, e)| e);
        Language::PlainText(if extension.is_empty() { "plaintext" } else { extension }.to_string())
    })
}

fn check(shared: &Shared, body: &[u8], peer: SocketAddr) -> Result<Checked, Refused> {
    let parsed = InfillBody::parse(body)?;
    let context = shared.model.loaded.context_length;
    // At most half the context, so the prompt keeps the other half.
    let max_tokens = match parsed.n_predict {
        Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX).min(context / 2),
        _ => DEFAULT_MAX_TOKENS,
    };
    let temperature = parsed.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad_request("temperature must be from 0 to 2"));
    }
    if parsed.response_fields.as_ref().is_some_and(|f| f.len() > MAX_RESPONSE_FIELDS) {
        return Err(bad_request(format!("at most {MAX_RESPONSE_FIELDS} response_fields are allowed")));
    }
    let offset = parsed.input_prefix.len() + parsed.prompt.len();
    let text = [parsed.input_prefix, parsed.prompt, parsed.input_suffix].concat();
    let path = parsed.filename.filter(|f| !f.trim().is_empty()).unwrap_or_else(|| "untitled".to_string());
    let language = language_of(&path);
    // Parsed as the language server parses an opened document.
    let document = Document::new(&text, language.clone(), 0);
    let warm_only = max_tokens == 0;
    let mode = if warm_only { CompletionMode::MultiLine } else { mode_at(&text, offset, document.tree(), Trigger::Automatic) };
    let anchor = choose_anchor(&text, offset, None).0.offset;
    let hole = Hole { text, offset, document, language, mode, path, anchor };
    let settings = SuggestionSettings {
        max_tokens,
        temperature,
        prompt_tokens: DEFAULT_PROMPT_TOKENS.min(context.saturating_sub(max_tokens)),
        ..SuggestionSettings::default()
    };
    let client = client_name(parsed.user.as_deref(), peer);
    let (stream, fields) = (parsed.stream, parsed.response_fields);
    if mode == CompletionMode::Skip {
        // The editor would ask for nothing here (mid-identifier).
        return Ok(Checked { hole, settings, job: None, stream, fields, client });
    }
    let snippets: Arc<Vec<ContextChunk>> = Arc::new(
        parsed
            .input_extra
            .into_iter()
            .filter(|c| !c.text.trim().is_empty())
            .map(|c| ContextChunk { path: c.filename, text: c.text })
            .collect(),
    );
    let pipeline = Pipeline { model: &shared.model, settings: &settings, backend: &Backend::Embedded };
    let built = pipeline
        .build(&hole.place(), PromptSize::Full, &mut |_| snippets.clone(), None, CancelFlag::new())
        .map_err(|e| bad_request(format!("cannot build the prompt: {e}")))?;
    let mut request = built.request;
    request.sampling.seed = parsed.seed.map_or(0, |s| s.unsigned_abs());
    if warm_only {
        request.max_new_tokens = 0;
    }
    Ok(Checked { hole, settings, job: Some((request, built.cursor)), stream, fields, client })
}

/// Handles `POST /infill`: the token first, then the body (bounded), the
/// checks and the prompt on a blocking thread, the queue, and the
/// post-processing on a blocking thread again.
pub(super) async fn infill(State(shared): State<Arc<Shared>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request) -> Response {
    let mut checked = match admit(&shared, peer, request, check).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let Some((request, cursor)) = checked.job.take() else {
        return answer(&shared, &checked, "", None);
    };
    // Dropped with this future when the client goes away: the job stops.
    let _guard = CancelOnDrop(request.cancel.clone());
    let (reply_tx, reply) = oneshot::channel();
    tracing::info!(client = %checked.client, prompt = request.prompt.len(), "infill request");
    let queued = Queued { client: checked.client.clone(), request, text: None, reply: reply_tx };
    if shared.queue.send(queued).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the engine has stopped");
    }
    let completion = match reply.await {
        Ok(Ok(completion)) => completion,
        Ok(Err(e)) => return engine_error(&e),
        Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the engine has stopped"),
    };
    let showing = shared.clone();
    let shown = tokio::task::spawn_blocking(move || {
        let pipeline = Pipeline { model: &showing.model, settings: &checked.settings, backend: &Backend::Embedded };
        let shown = pipeline.shown_text(&checked.hole.place(), &cursor, &completion);
        // A blank suggestion is none: the editor shows nothing.
        let shown = if shown.trim().is_empty() { String::new() } else { shown };
        (checked, completion, shown)
    })
    .await;
    match shown {
        Ok((checked, completion, shown)) => answer(&shared, &checked, &shown, Some(&completion)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("post-processing the answer failed: {e}")),
    }
}

/// llama.cpp's `timings`: prompt tokens computed (not reused) and tokens
/// generated, their times and rates.
#[derive(Debug, Default, Serialize)]
struct Timings {
    prompt_n: usize,
    prompt_ms: f64,
    prompt_per_token_ms: f64,
    prompt_per_second: f64,
    predicted_n: usize,
    predicted_ms: f64,
    predicted_per_token_ms: f64,
    predicted_per_second: f64,
}

/// Milliseconds, per token and tokens per second (0 where undefined, as
/// JSON has no infinity).
fn rates(n: usize, time: Duration) -> (f64, f64, f64) {
    let ms = time.as_secs_f64() * 1e3;
    let per_token = if n > 0 { ms / n as f64 } else { 0.0 };
    let per_second = if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    (ms, per_token, per_second)
}

impl Timings {
    fn of(completion: &Completion) -> Self {
        let (prompt_n, predicted_n) = (completion.computed_tokens(), completion.tokens.len());
        let (prompt_ms, prompt_per_token_ms, prompt_per_second) = rates(prompt_n, completion.prefill);
        let (predicted_ms, predicted_per_token_ms, predicted_per_second) = rates(predicted_n, completion.decode);
        Self {
            prompt_n,
            prompt_ms,
            prompt_per_token_ms,
            prompt_per_second,
            predicted_n,
            predicted_ms,
            predicted_per_token_ms,
            predicted_per_second,
        }
    }
}

/// What the request was run with (llama.vscode shows `n_ctx`).
#[derive(Debug, Serialize)]
struct GenerationSettings<'a> {
    n_ctx: usize,
    n_predict: usize,
    temperature: f32,
    model: &'a str,
}

/// The whole answer, as llama.cpp's `/infill` gives it.
#[derive(Debug, Serialize)]
struct InfillAnswer<'a> {
    /// The suggestion (post-processed; empty when there is none).
    content: &'a str,
    /// Always true: generation has ended.
    stop: bool,
    /// `eos`, `word` (a stop string: one line was asked for), `limit`
    /// (`n_predict` or the deadline), `none` (nothing was generated).
    stop_type: &'static str,
    stopping_word: &'static str,
    model: &'a str,
    tokens_predicted: usize,
    tokens_evaluated: usize,
    tokens_cached: usize,
    /// Always false: a prompt is fitted into the context, never overflows it.
    truncated: bool,
    timings: Timings,
    generation_settings: GenerationSettings<'a>,
}

fn stop_type(completion: Option<&Completion>) -> &'static str {
    match completion.map(|c| c.stop_reason) {
        Some(StopReason::Eos) => "eos",
        Some(StopReason::Stop | StopReason::Enough) => "word",
        Some(StopReason::Length | StopReason::Deadline) => "limit",
        Some(StopReason::Cancelled) | None => "none",
    }
}

/// Only the fields named, each `a/b` path brought to the top under its
/// path (as llama.cpp does); a missing one is left out.
fn pick_fields(whole: &Value, fields: &[String]) -> Value {
    let mut picked = Map::new();
    for field in fields {
        if let Some(value) = field.split('/').try_fold(whole, |v, key| v.get(key)) {
            picked.insert(field.clone(), value.clone());
        }
    }
    Value::Object(picked)
}

/// The answer: whole (narrowed by `response_fields`), or as events.
fn answer(shared: &Shared, checked: &Checked, content: &str, completion: Option<&Completion>) -> Response {
    let model = shared.model.name.as_str();
    let whole = InfillAnswer {
        content,
        stop: true,
        stop_type: stop_type(completion),
        stopping_word: "",
        model,
        tokens_predicted: completion.map_or(0, |c| c.tokens.len()),
        tokens_evaluated: completion.map_or(0, |c| c.prompt_tokens),
        tokens_cached: completion.map_or(0, |c| c.reused_tokens),
        truncated: false,
        timings: completion.map(Timings::of).unwrap_or_default(),
        generation_settings: GenerationSettings {
            n_ctx: shared.model.loaded.context_length,
            n_predict: checked.settings.max_tokens,
            temperature: checked.settings.temperature,
            model,
        },
    };
    if checked.stream {
        let last = InfillAnswer { content: "", ..whole };
        let mut events = String::new();
        if !content.is_empty() {
            events.push_str(&format!("data: {}\n\n", serde_json::json!({ "content": content, "stop": false })));
        }
        match serde_json::to_string(&last) {
            Ok(last) => events.push_str(&format!("data: {last}\n\n")),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("cannot write the answer: {e}")),
        }
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        return (StatusCode::OK, headers, Body::from(Bytes::from(events))).into_response();
    }
    match (&checked.fields, serde_json::to_value(&whole)) {
        (Some(fields), Ok(value)) => json(StatusCode::OK, &pick_fields(&value, fields)),
        (None, Ok(value)) => json(StatusCode::OK, &value),
        (_, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("cannot write the answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_fields_are_picked_and_flattened_as_llama_cpp_does() {
        let whole = serde_json::json!({"content": "x", "timings": {"prompt_n": 3, "predicted_ms": 1.5}, "stop": true});
        let fields: Vec<String> = ["content", "timings/prompt_n", "timings/predicted_ms", "timings/missing", "", "truncated"]
            .iter()
            .map(|f| f.to_string())
            .collect();
        let picked = pick_fields(&whole, &fields);
        assert_eq!(picked, serde_json::json!({"content": "x", "timings/prompt_n": 3, "timings/predicted_ms": 1.5}));
        // llama.vim's request that only warms the cache asks for `[""]`.
        assert_eq!(pick_fields(&whole, &[String::new()]), serde_json::json!({}));
    }

    #[test]
    fn rates_are_finite_whatever_the_counts() {
        assert_eq!(rates(0, Duration::ZERO), (0.0, 0.0, 0.0));
        assert_eq!(rates(4, Duration::from_millis(200)), (200.0, 50.0, 20.0));
        assert_eq!(rates(4, Duration::ZERO), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_language_comes_from_the_file_name_or_is_plain_text() {
        assert_eq!(language_of("src/shapes.py").id(), "python");
        assert_eq!(language_of("untitled"), Language::PlainText("plaintext".into()));
        assert_eq!(language_of("notes.weird"), Language::PlainText("weird".into()));
    }
}
