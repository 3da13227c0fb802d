//! Work-done progress (`$/progress`) for the model load, on the client's
//! terms: only when it advertised `window.workDoneProgress` at initialize,
//! and never waited on. The `window/workDoneProgress/create` request goes
//! out on a task of its own; reports queue behind its answer and are sent
//! once the client accepted the token, or dropped if it refused it or did
//! not answer within [`CREATE_TIMEOUT`]. Loading never waits on any of it.
//!
//! The client's capability is kept per process: `cria lsp` serves one
//! client over stdio.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tower_lsp_server::gen_lsp_types as lsp;
use tower_lsp_server::Client;

/// How long the client may take to accept a progress token.
pub(super) const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

static CLIENT_SUPPORTS_PROGRESS: AtomicBool = AtomicBool::new(false);

/// Records, at initialize, whether the client takes work-done progress.
pub(super) fn set_client_support(capabilities: &lsp::ClientCapabilities) {
    let supported = capabilities.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false);
    CLIENT_SUPPORTS_PROGRESS.store(supported, Ordering::Relaxed);
}

/// Whether the client advertised `window.workDoneProgress`.
pub(super) fn client_supports_progress() -> bool {
    CLIENT_SUPPORTS_PROGRESS.load(Ordering::Relaxed)
}

/// One progress token's reports; reporting never blocks.
pub(super) struct Progress {
    reports: Option<mpsc::UnboundedSender<Value>>,
    /// The task that sends the reports.
    sender: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Creates the token with the client if it supports progress (see the
    /// module docs); otherwise every report is dropped.
    pub(super) fn start(client: &Client, token: lsp::ProgressToken) -> Self {
        if !client_supports_progress() {
            return Self { reports: None, sender: None };
        }
        let create = {
            let (client, token) = (client.clone(), token.clone());
            async move { client.send_request::<lsp::WorkDoneProgressCreateRequest>(lsp::WorkDoneProgressCreateParams { token }).await.is_ok() }
        };
        let client = client.clone();
        let send = move |value: Value| {
            let (client, token) = (client.clone(), token.clone());
            async move { client.send_notification::<lsp::ProgressNotification>(lsp::ProgressParams { token, value }).await }
        };
        Self::spawn(create, send, CREATE_TIMEOUT)
    }

    fn spawn<C, S, F>(create: C, send: S, timeout: Duration) -> Self
    where
        C: Future<Output = bool> + Send + 'static,
        S: Fn(Value) -> F + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sender = tokio::spawn(async move {
            let accepted = matches!(tokio::time::timeout(timeout, create).await, Ok(true));
            if !accepted {
                tracing::debug!("the client did not accept a progress token; loading is not reported as progress");
                return;
            }
            while let Some(value) = rx.recv().await {
                send(value).await;
            }
        });
        Self { reports: Some(tx), sender: Some(sender) }
    }

    /// Resolves once every report is sent (or dropped): something sent after
    /// it reaches the client after the progress's `end`. A status the
    /// client shows from both (VS Code's status bar) must come last, or a
    /// late `begin` would cover a load's error.
    pub(super) async fn finished(mut self) {
        self.reports = None;
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
    }

    /// Sends a `$/progress` value (`begin`, `report`, `end`), in order,
    /// once the token is accepted.
    pub(super) fn report(&self, value: Value) {
        if let Some(tx) = &self.reports {
            let _ = tx.send(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;

    fn recorder() -> (Arc<Mutex<Vec<Value>>>, impl Fn(Value) -> std::future::Ready<()> + Send + 'static) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        (sent, move |v| {
            log.lock().unwrap().push(v);
            std::future::ready(())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn reports_follow_an_accepted_token_in_order() {
        let (sent, send) = recorder();
        let progress = Progress::spawn(async { true }, send, CREATE_TIMEOUT);
        for kind in ["begin", "report", "end"] {
            progress.report(json!({ "kind": kind }));
        }
        drop(progress);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let kinds: Vec<Value> = sent.lock().unwrap().iter().map(|v| v["kind"].clone()).collect();
        assert_eq!(kinds, vec![json!("begin"), json!("report"), json!("end")]);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_resolves_after_the_last_report_is_sent() {
        let (sent, send) = recorder();
        let progress = Progress::spawn(
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                true
            },
            send,
            CREATE_TIMEOUT,
        );
        progress.report(json!({ "kind": "begin" }));
        progress.report(json!({ "kind": "end" }));
        progress.finished().await;
        assert_eq!(sent.lock().unwrap().len(), 2, "both reports went out before `finished` resolved");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_answers_blocks_nothing_and_gets_no_reports() {
        let (sent, send) = recorder();
        let progress = Progress::spawn(std::future::pending(), send, CREATE_TIMEOUT);
        // Reporting returns at once, however long the client takes.
        for _ in 0..1000 {
            progress.report(json!({ "kind": "report" }));
        }
        tokio::time::sleep(CREATE_TIMEOUT * 2).await;
        progress.report(json!({ "kind": "end" }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(sent.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_gets_no_reports() {
        let (sent, send) = recorder();
        let progress = Progress::spawn(async { false }, send, CREATE_TIMEOUT);
        progress.report(json!({ "kind": "begin" }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(sent.lock().unwrap().is_empty());
    }
}
