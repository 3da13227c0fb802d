//! cria's own protocol extensions, defined once here and documented in the
//! README for editor authors.
//!
//! - `cria/status` (server → client notification): the model's state and the
//!   numbers of the last completion. Sent on every model state change and
//!   after every completion.
//! - `cria.accepted` (`workspace/executeCommand`): the editor reports that a
//!   suggestion was accepted (reserved; acknowledged and logged for now).
//! - `cria/documentText` (client → server request, `{ "uri": ... }`): the
//!   server's copy of a document (`null` if it is not open), for checking
//!   that it equals the editor's.

use serde::{Deserialize, Serialize};
use tower_lsp_server::gen_lsp_types::{LspNotificationMethod, MessageDirection, Notification};

/// Method name of the document text request.
pub const DOCUMENT_TEXT_METHOD: &str = "cria/documentText";

/// Parameters of `cria/documentText`.
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentTextParams {
    /// The document's URI as the editor sent it in `didOpen`.
    pub uri: String,
}

/// Method name of the status notification.
pub const STATUS_METHOD: &str = "cria/status";
/// Command editors run when a suggestion was accepted.
pub const ACCEPTED_COMMAND: &str = "cria.accepted";

/// The `cria/status` notification.
pub enum StatusNotification {}

impl Notification for StatusNotification {
    type Params = Status;
    const METHOD: LspNotificationMethod<'static> = LspNotificationMethod::Custom(STATUS_METHOD);
    const MESSAGE_DIRECTION: MessageDirection = MessageDirection::ServerToClient;
}

/// What editors show in their status bar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Model name (config name or file name).
    pub model: String,
    /// `loading`, `ready` or `error`.
    pub state: String,
    /// The error, when `state` is `error`; the progress text while loading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Milliseconds from request to answer of the last completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<u64>,
    /// Prompt tokens of the last completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<usize>,
    /// Prompt tokens reused from the KV cache in the last completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_tokens: Option<usize>,
    /// Generated tokens per second in the last completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
}
