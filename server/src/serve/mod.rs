//! `cria serve`: the resident model behind an OpenAI-compatible HTTP API,
//! so that many editors share one machine's model (each running cria with a
//! remote backend pointed here, or any OpenAI client), and behind
//! llama.cpp's `/infill`, so that editors speaking llama.cpp's protocol
//! (llama.vim, llama.vscode) get cria's suggestions.
//!
//! Endpoints: `POST /v1/completions` (streamed as server-sent events or
//! not; the raw model text, with a `suffix` as a fill-in-the-middle prompt
//! in the model's layout), `POST /infill` (the whole completion pipeline,
//! windows to post-processing, server-side: see `infill.rs`),
//! `GET /v1/models`, and `GET /health` (public, like llama.cpp's).
//! With a token, every other endpoint needs `Authorization: Bearer TOKEN`,
//! checked before the body is read. Connections are capped and timed out
//! ([`listen`]); a request body is at most [`max_body_bytes`], a prompt is
//! refused for its length before it is tokenized when it cannot fit the
//! context, and tokenizing runs off the async threads, so one client's
//! request never holds up `/health` or the others.
//! Requests from different clients are queued fairly and each client keeps
//! its own KV cache slot (see [`queue`]). This module and `remote` are the
//! only places besides `protocol` that build JSON for the wire.

mod handlers;
mod infill;
pub mod listen;
pub mod prompt;
pub mod queue;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::completion::Model;
use crate::remote::wire::{ErrorBody, ErrorDetail, ModelCard, ModelList};
pub use listen::Limits;
use prompt::SpecialTokens;
use queue::Queued;

/// How `cria serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The bearer token clients must send; `None` lets anyone in.
    pub token: Option<String>,
    /// KV cache slots the engine was started with (one prefix per client).
    pub slots: usize,
    /// Connection limits and timeouts.
    pub limits: Limits,
}

/// The largest request body taken for a context of `context` tokens: 32
/// bytes per token (a token of code is about 4 bytes of text; JSON escapes
/// and token-id lists stay well under 32), plus 16 KiB for the other fields.
pub fn max_body_bytes(context: usize) -> usize {
    context.saturating_mul(32).saturating_add(16 << 10)
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model runs remotely; `cria serve` serves a resident model only.
    #[error("cria serve needs the model resident in this process (the embedded backend)")]
    NotEmbedded,
    /// Accepting connections failed.
    #[error("the HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler shares.
struct Shared {
    model: Model,
    token: Option<String>,
    specials: SpecialTokens,
    queue: mpsc::UnboundedSender<Queued>,
    created: u64,
    limits: Limits,
}

/// Serves `model` on `listener` until the process ends. The engine must
/// have been started with `options.slots` slots.
pub async fn serve(model: Model, listener: TcpListener, options: ServeOptions) -> Result<(), ServeError> {
    let engine = model.generator.engine().cloned().ok_or(ServeError::NotEmbedded)?;
    let (queue, incoming) = mpsc::unbounded_channel();
    tokio::spawn(queue::dispatch(engine, options.slots, incoming));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let specials = SpecialTokens::new(&model.loaded.tokenizer);
    let shared = Arc::new(Shared { model, token: options.token, specials, queue, created, limits: options.limits });
    let app = Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(handlers::completions))
        .route("/infill", post(infill::infill))
        .fallback(not_found)
        .with_state(shared);
    listen::run(listener, app, options.limits).await;
    Ok(())
}

/// An OpenAI-style error answer.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { error: ErrorDetail { message: message.into(), kind: kind.into(), code: Some(status.as_u16().into()) } };
    json(status, &body)
}

/// A request refused before it reaches the engine: status, error type, why.
struct Refused {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl Refused {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind: "invalid_request_error", message: message.into() }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = error(self.status, self.kind, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A JSON answer.
fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the answer: {e}")).into_response(),
    }
}

/// Compares in time independent of where the inputs differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Err` (a 401) unless the request carries the token.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Refused> {
    let Some(token) = &shared.token else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, value)| value.trim());
    if given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
        return Ok(());
    }
    Err(Refused { status: StatusCode::UNAUTHORIZED, kind: "authentication_error", message: "missing or wrong API key: send `Authorization: Bearer <token>`".into() })
}

/// `ok`, or 503 with the reason while the engine's last job failed (a
/// caught panic; the engine was reset and serves the next request).
async fn health(axum::extract::State(shared): axum::extract::State<Arc<Shared>>) -> Response {
    match shared.model.generator.engine().map(|engine| engine.health()) {
        Some(Err(reason)) => json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "status": "error", "message": reason })),
        _ => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
    }
}

async fn models(axum::extract::State(shared): axum::extract::State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&shared, &headers) {
        return denied.into_response();
    }
    let card = ModelCard { id: shared.model.name.clone(), object: "model".into(), created: shared.created, owned_by: "cria".into() };
    json(StatusCode::OK, &ModelList { object: "list".into(), data: vec![card] })
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found_error", "no such endpoint (cria serve has /v1/completions, /infill, /v1/models and /health)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
