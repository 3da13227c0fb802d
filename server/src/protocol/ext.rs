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
//! - `cria/prefetch` (client → server notification, `{ "textDocument":
//!   { "uri" }, "position" }`): the user's cursor is here; warm the prompt
//!   for it in the background, so the first suggestion there is fast.

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

/// Method name of the prefetch notification.
pub const PREFETCH_METHOD: &str = "cria/prefetch";

/// Parameters of `cria/prefetch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefetchParams {
    /// The document.
    pub text_document: PrefetchDocument,
    /// The cursor, in the negotiated position encoding.
    pub position: PrefetchPosition,
}

/// The document of a `cria/prefetch`.
#[derive(Debug, Clone, Deserialize)]
pub struct PrefetchDocument {
    /// The document's URI as the editor sent it in `didOpen`.
    pub uri: String,
}

/// A position in a `cria/prefetch` (an LSP position).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PrefetchPosition {
    /// Zero-based line.
    pub line: u32,
    /// Zero-based character, in the negotiated encoding's units.
    pub character: u32,
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
    /// `loading`, `ready`, `warming` (ready, and a document's prompt is
    /// being computed in the background: suggestions for it may come back
    /// empty until it is done, then the editor may ask again) or `error`.
    pub state: String,
    /// While `warming`: whose prompt, and how far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warming: Option<WarmingStatus>,
    /// Memory the KV caches of recent documents take, in MiB: what the
    /// operating system backs for them (a slot keeps the pages of every
    /// position it ever held), not only the positions held now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_mb: Option<f64>,
    /// The same, slot by slot (slots that never held a prompt take 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_slots_mb: Option<Vec<f64>>,
    /// KV cache slots holding a prompt (one per recent document or place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_slots: Option<usize>,
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
    /// Only in the status sent when it happened: a whole answer for this
    /// document came after its request was answered (empty while warming,
    /// or with the first lines of a block while the rest was written) and
    /// is cached. An editor whose cursor and document have not changed
    /// since that answer may ask again at the same place and get it at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_answer: Option<LateAnswerStatus>,
}

/// The late-answer part of [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LateAnswerStatus {
    /// The document the answer is for.
    pub uri: String,
}

/// The warm-up part of [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WarmingStatus {
    /// The document whose prompt is being computed.
    pub uri: String,
    /// How far, in percent.
    pub percentage: u32,
}
