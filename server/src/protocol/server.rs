//! The `LanguageServer` implementation: thin handlers that convert LSP
//! parameters, call into [`State`] or its completion session
//! (`completion::Session`: suggestions, prefetches, what edits and accepts
//! tell it), and convert the answer back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use tower_lsp_server::gen_lsp_types as lsp;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::LanguageServer;

use super::convert::{encoding_kind, language_id, negotiate_encoding, position, text_change, to_lsp_position};
use super::ext::ACCEPTED_COMMAND;
use super::state::State;
use crate::completion::{SelectedItem, Suggestion, Trigger};
use crate::throttle::Throttle;

/// The server object tower-lsp-server drives: the LSP handlers, over
/// [`State`]. Not called `Backend` (tower-lsp's examples' name): in cria a
/// backend is where a model runs, `completion::Backend`.
pub struct LspServer {
    pub(super) state: Arc<State>,
    /// Set by `shutdown`: the session then ends cleanly (exit code 0).
    pub(super) shutdown_requested: Arc<AtomicBool>,
}

static REFUSED_CHANGE: Throttle = Throttle::new();
static CHANGE_PROBLEM: Throttle = Throttle::new();
static STALE_REQUEST: Throttle = Throttle::new();

/// Parameters of the internal [`super::transport::REFUSED_CHANGE_METHOD`].
#[derive(Debug, serde::Deserialize)]
pub struct RefusedChangeParams {
    uri: String,
    reason: String,
}

impl LspServer {
    /// `cria/documentText`: the server's copy of a document, so editors'
    /// tests (and curious users) can check it equals the editor's text.
    pub async fn document_text(&self, params: super::ext::DocumentTextParams) -> Result<Option<String>> {
        Ok(self.state.documents().get(&params.uri).map(|d| d.text()))
    }

    /// `cria/prefetch`: the cursor is here; warm its prompt in the background.
    pub async fn prefetch(&self, params: super::ext::PrefetchParams) {
        let position = crate::documents::Position { line: params.position.line, character: params.position.character };
        self.state.session.prefetch(&params.text_document.uri, position);
    }

    /// A `didChange` the transport refused (its ranges are not ranges):
    /// the document keeps its text and is marked stale; the log and the
    /// client's log say so.
    pub async fn refused_change(&self, params: RefusedChangeParams) {
        let known = self.state.documents().mark_stale(&params.uri).is_ok();
        if !known {
            return;
        }
        let uri = crate::throttle::excerpt(params.uri.as_bytes());
        let text = format!(
            "cria: a change to {uri} was refused ({}); no suggestions in it until the editor sends its whole text (reopen the file)",
            params.reason
        );
        if let Some(suppressed) = REFUSED_CHANGE.check() {
            tracing::warn!(suppressed, "{text}");
            self.state.client.log_message(lsp::MessageType::Warning, text).await;
        }
    }

    /// Whether a document may get suggestions: it is open, and not stale.
    /// Says why not in the log, now and then (a client may ask for
    /// thousands).
    fn can_suggest(&self, uri: &str) -> bool {
        let stale = match self.state.documents().get(uri) {
            Some(doc) => doc.is_stale(),
            None => {
                if let Some(suppressed) = CHANGE_PROBLEM.check() {
                    tracing::warn!(suppressed, uri = %crate::throttle::excerpt(uri.as_bytes()), "no suggestions: the document is not open");
                }
                return false;
            }
        };
        if stale {
            note_stale(uri);
        }
        !stale
    }
}

/// Says in the log, now and then, that a document gets no suggestions and
/// ignores edits because a change to it was refused.
fn note_stale(uri: &str) {
    if let Some(suppressed) = STALE_REQUEST.check() {
        tracing::info!(suppressed, uri = %crate::throttle::excerpt(uri.as_bytes()), "no suggestions and edits ignored: a change to the document was refused; waiting for its whole text");
    }
}

/// Where the cursor is after `text` was inserted at `start` (positions in
/// `encoding`'s units; line breaks counted as LSP counts them).
fn end_after_insert(
    start: crate::documents::Position,
    text: &str,
    encoding: crate::documents::PositionEncoding,
) -> crate::documents::Position {
    let mut line = start.line;
    let mut character = start.character;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                line += 1;
                character = 0;
            }
            '\n' => {
                line += 1;
                character = 0;
            }
            c => character += encoding.units_of(c) as u32,
        }
    }
    crate::documents::Position { line, character }
}

/// The workspace folders (or the root URI) as local paths.
fn workspace_roots(params: &lsp::InitializeParams) -> Vec<std::path::PathBuf> {
    let mut uris: Vec<String> = match &params.workspace_folders_initialize_params.workspace_folders {
        Some(lsp::WorkspaceFolders::WorkspaceFolderList(folders)) => folders.iter().map(|f| f.uri.0.clone()).collect(),
        _ => Vec::new(),
    };
    if uris.is_empty() {
        #[allow(deprecated)]
        uris.extend(params.root_uri.clone().map(|u| u.0));
    }
    uris.iter().filter_map(|u| u.strip_prefix("file://")).map(std::path::PathBuf::from).filter(|p| p.is_dir()).collect()
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    // Only used on literals built in this file, whose shape matches the type.
    serde_json::from_value(value).expect("protocol literal matches its LSP type")
}

impl LanguageServer for LspServer {
    async fn initialize(&self, params: lsp::InitializeParams) -> Result<lsp::InitializeResult> {
        let encoding = negotiate_encoding(&params);
        self.state.set_encoding(encoding);
        super::progress::set_client_support(&params.capabilities);
        if let Some(options) = &params.initialization_options {
            let (problems, _) = self.state.apply_settings(options);
            for problem in &problems {
                tracing::warn!("initializationOptions: {problem:?}");
            }
            // Bad values are shown once the client can receive messages.
            let state = self.state.clone();
            tokio::spawn(async move { state.report_settings_problems(problems).await });
        }
        self.state.index_workspace(workspace_roots(&params));
        let kind: String = encoding_kind(encoding).into();
        Ok(from_json(json!({
            "capabilities": {
                "positionEncoding": kind,
                "textDocumentSync": { "openClose": true, "change": 2 },
                "inlineCompletionProvider": {},
                "completionProvider": { "resolveProvider": false, "triggerCharacters": [".", "(", "[", "{", ",", " ", ":", "=", "\n"] },
                "executeCommandProvider": { "commands": [ACCEPTED_COMMAND] },
            },
            "serverInfo": { "name": "cria", "version": env!("CARGO_PKG_VERSION") },
        })))
    }

    async fn initialized(&self, _: lsp::InitializedParams) {
        self.state.start_loading();
    }

    async fn shutdown(&self) -> Result<()> {
        self.shutdown_requested.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn did_open(&self, params: lsp::DidOpenTextDocumentParams) {
        let item = params.text_document;
        let language = language_id(&item.language_id);
        self.state.documents().open(item.uri.0.as_str(), &language, item.version, &item.text);
        self.state.session.document_activity(item.uri.0.as_str());
    }

    async fn did_change(&self, params: lsp::DidChangeTextDocumentParams) {
        let uri = params.text_document.text_document_identifier.uri.0.clone();
        let changes: Vec<_> = params.content_changes.into_iter().map(text_change).collect();
        let encoding = self.state.encoding();
        let result = self.state.documents().change(&uri, params.text_document.version, &changes, encoding);
        match result {
            Ok(report) => {
                if !report.clamped.is_empty() {
                    tracing::debug!(%uri, clamped = ?report.clamped, "edit positions clamped");
                }
                if report.ignored_while_stale > 0 {
                    note_stale(&uri);
                    return;
                }
                // Only edits that were applied, to documents that are open,
                // are remembered (per-document state never outgrows the
                // documents).
                if let Some(range) = changes.iter().find_map(|c| c.range) {
                    self.state.session.record_edit(&uri, range.start.line as usize);
                }
                if let Some(end) = changes.last().and_then(|c| c.range.map(|r| end_after_insert(r.start, &c.text, encoding))) {
                    self.state.session.record_edit_end(&uri, end);
                }
                self.state.session.document_activity(&uri);
            }
            Err(e) => {
                if let Some(suppressed) = CHANGE_PROBLEM.check() {
                    tracing::warn!(suppressed, "didChange: {}", crate::throttle::excerpt(e.to_string().as_bytes()));
                }
            }
        }
    }

    async fn did_close(&self, params: lsp::DidCloseTextDocumentParams) {
        let uri = params.text_document.uri.0.as_str();
        self.state.session.forget(uri);
        if let Err(e) = self.state.documents().close(uri) {
            if let Some(suppressed) = CHANGE_PROBLEM.check() {
                tracing::warn!(suppressed, "didClose: {}", crate::throttle::excerpt(e.to_string().as_bytes()));
            }
        }
    }

    async fn did_change_configuration(&self, params: lsp::DidChangeConfigurationParams) {
        let (problems, model_changed) = self.state.apply_settings(&params.settings);
        self.state.report_settings_problems(problems).await;
        if model_changed {
            self.state.start_loading();
        }
    }

    async fn inline_completion(&self, params: lsp::InlineCompletionParams) -> Result<Option<lsp::InlineCompletionResponse>> {
        let at = params.text_document_position_params;
        let uri = at.text_document.uri.0.as_str();
        let selected = params.context.selected_completion_info.map(|item| SelectedItem {
            start: position(item.range.start),
            end: position(item.range.end),
            text: item.text,
        });
        let trigger = match params.context.trigger_kind {
            lsp::InlineCompletionTriggerKind::Invoked => Trigger::Invoked,
            _ => Trigger::Automatic,
        };
        let suggestion =
            if self.can_suggest(uri) { self.state.session.suggest(uri, position(at.position), selected, trigger).await } else { None };
        // Always a list object and always a range (the cursor's, when nothing
        // after it is replaced): both are optional in LSP, but lsp-mode
        // (Emacs) fails on a bare empty array and on an item without one.
        let Some(s) = suggestion else {
            return Ok(Some(lsp::InlineCompletionResponse::InlineCompletionList(lsp::InlineCompletionList { items: Vec::new() })));
        };
        let end = s.replace_end.unwrap_or(s.cursor);
        let item = json!({ "insertText": s.text, "range": { "start": to_lsp_position(s.cursor), "end": to_lsp_position(end) } });
        Ok(Some(lsp::InlineCompletionResponse::InlineCompletionList(lsp::InlineCompletionList { items: vec![from_json(item)] })))
    }

    async fn completion(&self, params: lsp::CompletionParams) -> Result<Option<lsp::CompletionResponse>> {
        let at = params.text_document_position_params;
        let uri = at.text_document.uri.0.as_str();
        let suggestion = if self.can_suggest(uri) {
            self.state.session.suggest(uri, position(at.position), None, Trigger::Automatic).await
        } else {
            None
        };
        let items = suggestion.map(|s| vec![completion_item(&s)]).unwrap_or_default();
        Ok(Some(lsp::CompletionResponse::CompletionList(lsp::CompletionList {
            is_incomplete: true,
            item_defaults: None,
            apply_kind: None,
            items,
        })))
    }

    async fn execute_command(&self, params: lsp::ExecuteCommandParams) -> Result<Option<lsp::LspAny>> {
        if params.command == ACCEPTED_COMMAND {
            tracing::info!("suggestion accepted");
            let uri = params.arguments.as_ref().and_then(|a| a.first()).and_then(|a| a.get("uri")).and_then(|u| u.as_str());
            if let Some(uri) = uri {
                self.state.session.speculate_after_accept(uri);
            }
            return Ok(None);
        }
        Err(tower_lsp_server::jsonrpc::Error::invalid_params(format!("unknown command `{}`", params.command)))
    }
}

/// One completion item carrying the whole suggestion, for clients without
/// inline completion (Helix first of all). Its edit starts at the identifier
/// being typed, so clients that filter items by it keep showing it.
fn completion_item(s: &Suggestion) -> lsp::CompletionItem {
    let new_text = format!("{}{}", s.word, s.text);
    let label = s.text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    let end = s.replace_end.unwrap_or(s.cursor);
    from_json(json!({
        "label": format!("{}{}", s.word, label),
        "kind": 1,
        "detail": "cria",
        "documentation": { "kind": "markdown", "value": format!("```\n{new_text}\n```") },
        "filterText": new_text,
        "insertTextFormat": 1,
        "textEdit": { "range": { "start": to_lsp_position(s.word_start), "end": to_lsp_position(end) }, "newText": new_text },
        "sortText": "0",
        "preselect": true,
    }))
}
