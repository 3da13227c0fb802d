//! `POST /v1/completions`: check the request, turn its prompt into token
//! ids (with a `suffix`, a fill-in-the-middle prompt in the model's layout),
//! queue it for the engine under its client's name, and answer with the
//! whole completion or stream it as server-sent events. A client that goes
//! away (the stream is dropped) cancels its generation. What every endpoint
//! shares (the body bound, client names, cancellation) is here too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::prompt::fim_tokens;
use super::queue::Queued;
use super::{authorize, error, json, Refused, Shared};
use crate::engine::{CancelFlag, Completion, EngineError, GenerationRequest, SamplingParams, StopReason};
use crate::remote::wire::{Choice, CompletionRequest, CompletionResponse, ErrorBody, ErrorDetail, PromptTokensDetails, PromptValue, Usage};

/// Tokens generated when a request does not say (OpenAI's default).
const DEFAULT_MAX_TOKENS: usize = 16;
/// Stop strings allowed per request.
const MAX_STOPS: usize = 16;
/// Characters of a request's `user` kept as its client's name.
const MAX_USER_CHARS: usize = 64;

/// Sets the flag when dropped: the client went away, stop generating.
pub(super) struct CancelOnDrop(pub(super) CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn bad_request(message: impl Into<String>) -> Refused {
    Refused::bad_request(message)
}

/// A checked request: what the engine runs and how to answer.
struct Checked {
    request: GenerationRequest,
    stream: bool,
    include_usage: bool,
    client: String,
}

/// A client's name for the queue and the log: its `user`, at most
/// [`MAX_USER_CHARS`] characters with control characters escaped (a newline
/// in it must not start a forged log line), or its address.
pub(super) fn client_name(user: Option<&str>, peer: SocketAddr) -> String {
    let user = user.unwrap_or("");
    if user.trim().is_empty() {
        return peer.ip().to_string();
    }
    let mut name: String = user.chars().take(MAX_USER_CHARS).flat_map(|c| c.escape_debug()).take(4 * MAX_USER_CHARS).collect();
    if user.chars().nth(MAX_USER_CHARS).is_some() {
        name.push('…');
    }
    name
}

fn check(shared: &Shared, body: &[u8], peer: SocketAddr) -> Result<Checked, Refused> {
    let parsed: CompletionRequest =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("the body is not a valid completion request: {e}")))?;
    if parsed.n.is_some_and(|n| n != 1) {
        return Err(bad_request("only n = 1 is supported"));
    }
    if parsed.echo == Some(true) {
        return Err(bad_request("echo is not supported"));
    }
    let max_tokens = parsed.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(bad_request("max_tokens must be at least 1"));
    }
    let tokenizer = &shared.model.loaded.tokenizer;
    let mut prompt = parsed.prompt.ok_or_else(|| bad_request("`prompt` is required"))?;
    if let PromptValue::Batch(mut batch) = prompt {
        if batch.len() != 1 {
            return Err(bad_request("a batch of prompts is not supported; send one prompt per request"));
        }
        prompt = batch.remove(0);
    }
    let context = shared.model.loaded.context_length;
    let too_long = |tokens: String| bad_request(format!("the prompt has {tokens} tokens; this server's context holds {context}"));
    let tokens = match (prompt, parsed.suffix) {
        (PromptValue::Text(text), Some(suffix)) => {
            // Refused before any per-token work when even the longest
            // tokens could not fit both texts in the context.
            let fewest = shared.specials.fewest_tokens(&text) + shared.specials.fewest_tokens(&suffix);
            if fewest >= context {
                return Err(too_long(format!("with its suffix at least {fewest}")));
            }
            let template = &shared.model.template;
            let budget = context.saturating_sub(max_tokens.min(context / 2));
            fim_tokens(template, tokenizer, &text, &suffix, budget).map_err(|e| bad_request(e.to_string()))?
        }
        (_, Some(_)) => return Err(bad_request("`suffix` needs a text `prompt` (the text before the insertion point)")),
        (PromptValue::Text(text), None) => {
            // Refused before any per-token work when even the longest
            // tokens could not fit it in the context.
            let fewest = shared.specials.fewest_tokens(&text);
            if fewest >= context {
                return Err(too_long(format!("at least {fewest}")));
            }
            shared.specials.encode(tokenizer, &text).map_err(|e| bad_request(format!("cannot tokenize the prompt: {e}")))?
        }
        (PromptValue::Tokens(ids), None) if ids.len() >= context => return Err(too_long(ids.len().to_string())),
        (PromptValue::Tokens(ids), None) => {
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= tokenizer.vocab_size()) {
                return Err(bad_request(format!("token id {bad} is outside the vocabulary (size {})", tokenizer.vocab_size())));
            }
            ids
        }
        (PromptValue::Batch(_), None) => return Err(bad_request("nested prompt batches are not supported")),
    };
    if tokens.is_empty() {
        return Err(bad_request("the prompt is empty"));
    }
    if tokens.len() >= context {
        return Err(too_long(tokens.len().to_string()));
    }
    let temperature = parsed.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad_request("temperature must be from 0 to 2"));
    }
    let top_p = parsed.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad_request("top_p must be above 0 and at most 1"));
    }
    let stop_strings = parsed.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop_strings.len() > MAX_STOPS {
        return Err(bad_request(format!("at most {MAX_STOPS} stop strings are allowed")));
    }
    let template = &shared.model.template;
    let stop_tokens = if template.stop_tokens.is_empty() { tokenizer.control_tokens() } else { template.stop_tokens.clone() };
    let sampling = SamplingParams { temperature, top_p, seed: parsed.seed.unwrap_or(0), ..SamplingParams::default() };
    let request = GenerationRequest {
        prompt: tokens,
        max_new_tokens: max_tokens.min(context),
        sampling,
        stop_tokens,
        stop_strings,
        deadline: None,
        cancel: CancelFlag::new(),
        speculative: true,
        healed_text: String::new(),
        block_indent: None,
    };
    let client = client_name(parsed.user.as_deref(), peer);
    let include_usage = parsed.stream_options.is_some_and(|o| o.include_usage);
    Ok(Checked { request, stream: parsed.stream, include_usage, client })
}

/// Reads a request's body, refusing one larger than the context can use
/// or slower than the body timeout.
pub(super) async fn read_body(shared: &Shared, body: Body) -> Result<Bytes, Refused> {
    let limit = super::max_body_bytes(shared.model.loaded.context_length);
    match tokio::time::timeout(shared.limits.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(bad_request(format!(
            "the request body is larger than {limit} bytes (or broken): a prompt that long cannot fit this server's context of {} tokens",
            shared.model.loaded.context_length
        ))),
        Err(_) => Err(Refused {
            status: StatusCode::REQUEST_TIMEOUT,
            kind: "invalid_request_error",
            message: format!("the request body did not arrive within {} s", shared.limits.body_timeout.as_secs()),
        }),
    }
}

/// What every endpoint does before its own work: the token first (before
/// the body is read), then the body (bounded), then `check` on a blocking
/// thread (parsing, tokenizing and prompt building stay off the async
/// threads). `Err` is the answer to send instead.
pub(super) async fn admit<T: Send + 'static>(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: Request,
    check: fn(&Shared, &[u8], SocketAddr) -> Result<T, Refused>,
) -> Result<T, Response> {
    authorize(shared, request.headers()).map_err(IntoResponse::into_response)?;
    let body = read_body(shared, request.into_body()).await.map_err(IntoResponse::into_response)?;
    let checking = shared.clone();
    match tokio::task::spawn_blocking(move || check(&checking, &body, peer)).await {
        Ok(checked) => checked.map_err(IntoResponse::into_response),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("checking the request failed: {e}"))),
    }
}

/// Handles `POST /v1/completions`: the token first, then the body (bounded),
/// then the checks and tokenizing on a blocking thread.
pub(super) async fn completions(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let checked = match admit(&shared, peer, request, check).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let guard = CancelOnDrop(checked.request.cancel.clone());
    let (reply_tx, reply) = oneshot::channel();
    let (text_tx, text) = mpsc::unbounded_channel();
    let meta = Meta::new(&shared, checked.request.prompt.len());
    tracing::info!(client = %checked.client, prompt = meta.prompt_tokens, stream = checked.stream, "completion request");
    let queued = Queued { client: checked.client, request: checked.request, text: checked.stream.then_some(text_tx), reply: reply_tx };
    if shared.queue.send(queued).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the engine has stopped");
    }
    if checked.stream {
        return stream(meta, checked.include_usage, text, reply, guard);
    }
    let answer = reply.await;
    drop(guard);
    match answer {
        Ok(Ok(completion)) => json(StatusCode::OK, &meta.whole(&completion)),
        Ok(Err(e)) => engine_error(&e),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the engine has stopped"),
    }
}

pub(super) fn engine_error(e: &EngineError) -> Response {
    let status = match e {
        EngineError::ContextOverflow { .. } | EngineError::EmptyPrompt => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, "server_error", e.to_string())
}

/// What every answer of one completion repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    prompt_tokens: usize,
}

impl Meta {
    fn new(shared: &Shared, prompt_tokens: usize) -> Self {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { id: format!("cmpl-{:016x}", rand::random::<u64>()), created, model: shared.model.name.clone(), prompt_tokens }
    }

    fn response(&self, choices: Vec<Choice>, usage: Option<Usage>) -> CompletionResponse {
        CompletionResponse {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    fn usage(&self, completion: &Completion) -> Usage {
        Usage {
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.tokens.len(),
            total_tokens: completion.prompt_tokens + completion.tokens.len(),
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: completion.reused_tokens }),
        }
    }

    fn whole(&self, completion: &Completion) -> CompletionResponse {
        let choice = Choice {
            text: completion.text.clone(),
            finish_reason: Some(finish_reason(completion.stop_reason).into()),
            ..Choice::default()
        };
        self.response(vec![choice], Some(self.usage(completion)))
    }
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Eos | StopReason::Stop | StopReason::Cancelled | StopReason::Enough => "stop",
        StopReason::Length | StopReason::Deadline => "length",
    }
}

fn event<T: serde::Serialize>(body: &T) -> Bytes {
    let json = serde_json::to_string(body).unwrap_or_else(|e| format!("{{\"error\":{{\"message\":\"cannot write the event: {e}\"}}}}"));
    Bytes::from(format!("data: {json}\n\n"))
}

enum Phase {
    Text,
    Finish,
    Done,
}

struct Streaming {
    meta: Meta,
    include_usage: bool,
    text: mpsc::UnboundedReceiver<String>,
    reply: Option<oneshot::Receiver<Result<Completion, EngineError>>>,
    phase: Phase,
    /// Cancels the generation when the stream is dropped (client gone).
    _guard: CancelOnDrop,
}

/// Streams the text as it is generated, then the finish reason, the usage
/// when asked for, and `[DONE]`.
fn stream(
    meta: Meta,
    include_usage: bool,
    text: mpsc::UnboundedReceiver<String>,
    reply: oneshot::Receiver<Result<Completion, EngineError>>,
    guard: CancelOnDrop,
) -> Response {
    let state = Streaming { meta, include_usage, text, reply: Some(reply), phase: Phase::Text, _guard: guard };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            match s.phase {
                Phase::Text => match s.text.recv().await {
                    Some(piece) => {
                        let bytes = event(&s.meta.response(vec![Choice { text: piece, ..Choice::default() }], None));
                        return Some((Ok::<Bytes, std::convert::Infallible>(bytes), s));
                    }
                    None => s.phase = Phase::Finish,
                },
                Phase::Finish => {
                    s.phase = Phase::Done;
                    let answer = s.reply.take()?.await;
                    let bytes = match answer {
                        Ok(Ok(completion)) => {
                            let last = Choice { finish_reason: Some(finish_reason(completion.stop_reason).into()), ..Choice::default() };
                            let mut bytes = event(&s.meta.response(vec![last], None)).to_vec();
                            if s.include_usage {
                                bytes.extend_from_slice(&event(&s.meta.response(Vec::new(), Some(s.meta.usage(&completion)))));
                            }
                            bytes.extend_from_slice(b"data: [DONE]\n\n");
                            Bytes::from(bytes)
                        }
                        Ok(Err(e)) => {
                            event(&ErrorBody { error: ErrorDetail { message: e.to_string(), kind: "server_error".into(), code: None } })
                        }
                        Err(_) => event(&ErrorBody {
                            error: ErrorDetail { message: "the engine has stopped".into(), kind: "server_error".into(), code: None },
                        }),
                    };
                    return Some((Ok(bytes), s));
                }
                Phase::Done => return None,
            }
        }
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(events),
    )
        .into_response()
}
