//! The Language Server Protocol glue: the only module that knows LSP types
//! and JSON. Handlers convert, call the inner layers, and convert back.
//!
//! Capabilities: incremental text sync, `textDocument/inlineCompletion`
//! (LSP 3.18), `textDocument/completion` (one item with the whole
//! suggestion), the position encoding negotiated at initialize, the
//! `cria/status` notification and `$/progress` while the model loads.

mod config;
mod convert;
mod ext;
mod progress;
mod server;
mod state;
mod transport;

pub use config::{ConfigProblem, ServerConfig, Setting, DEFAULT_LATENCY_BUDGET_MS, SETTINGS};
pub use ext::{Status, ACCEPTED_COMMAND, DOCUMENT_TEXT_METHOD, PREFETCH_METHOD, STATUS_METHOD};
pub use state::LogControl;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::completion::Generator;
use tower_lsp_server::{LspService, Server};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// `shutdown` came first, then `exit` (or the editor closed the stream).
    Clean,
    /// `exit` without `shutdown`, or the stream closed without either: the
    /// LSP specification asks for exit code 1.
    WithoutShutdown,
}

/// Runs one client's LSP session over a pair of streams (stdio in the binary,
/// an in-memory pipe in tests) until it exits. Not called `serve`: that is
/// `cria serve`, the HTTP front end (`crate::serve`).
pub async fn run_session<I, O>(input: I, output: O, config: ServerConfig, log_control: Option<LogControl>) -> SessionEnd
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    session(input, output, config, log_control, None).await
}

/// [`run_session`] with every generation run by `generator` instead of the
/// backend the settings choose; the `model` setting's file is still read
/// for its tokenizer and prompt layout. This is how tests run the whole
/// server without a model: a `completion::ScriptedGenerator` answers with
/// chosen text at chosen times (see `server/tests/harness.rs`).
pub async fn run_session_with_generator<I, O>(input: I, output: O, config: ServerConfig, generator: Generator) -> SessionEnd
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    session(input, output, config, None, Some(generator)).await
}

async fn session<I, O>(input: I, output: O, config: ServerConfig, log_control: Option<LogControl>, generator: Option<Generator>) -> SessionEnd
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let shutdown_requested = Arc::new(AtomicBool::new(false));
    let flag = shutdown_requested.clone();
    let (service, socket) = LspService::build(move |client| {
        server::LspServer { state: state::State::new(client, config, log_control, generator), shutdown_requested: flag }
    })
    .custom_method(ext::DOCUMENT_TEXT_METHOD, server::LspServer::document_text)
    .custom_method(ext::PREFETCH_METHOD, server::LspServer::prefetch)
    .custom_method(transport::REFUSED_CHANGE_METHOD, server::LspServer::refused_change)
    .finish();
    let (server_in, server_out, pump) = transport::guard(input, output);
    // Many requests may wait on the model at once; keep reading edits and
    // cancellations meanwhile.
    let server = Server::new(server_in, server_out, socket).concurrency_level(256).serve(service);
    tokio::select! {
        () = server => {}
        () = pump => {}
    }
    if shutdown_requested.load(Ordering::SeqCst) {
        SessionEnd::Clean
    } else {
        SessionEnd::WithoutShutdown
    }
}
