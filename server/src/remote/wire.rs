//! The JSON that crosses the network: OpenAI's `/v1/completions` (request,
//! answer, streamed chunk, error) and llama.cpp's `/infill`. The remote
//! client writes requests and reads answers; `cria serve` does the reverse,
//! so every type here both serializes and deserializes.
//!
//! Reading is lenient (unknown fields ignored, missing ones defaulted) since
//! engines differ in the extras they add; writing leaves out what is unset,
//! since engines differ in the fields they accept.

use serde::{Deserialize, Serialize};

/// A prompt as OpenAI's API accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PromptValue {
    /// Text, tokenized by the server (control-token texts become control tokens).
    Text(String),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
    /// A batch of prompts; cria serves batches of exactly one.
    Batch(Vec<PromptValue>),
}

/// Stop strings: one, or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopValue {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl StopValue {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a last chunk with token counts.
    #[serde(default)]
    pub include_usage: bool,
}

/// The body of `POST /v1/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompletionRequest {
    /// The served model's name (some engines require it, others ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The prompt.
    pub prompt: Option<PromptValue>,
    /// Most tokens to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Random seed for sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Text that ends generation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopValue>,
    /// Answer with server-sent events, one per piece of text.
    pub stream: bool,
    /// Streaming options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Who is asking: `cria serve` keeps one KV cache slot per user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Completions per prompt; cria serves only 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Echo the prompt back; not supported by cria serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Text after the insertion point; not supported by cria serve (send a FIM prompt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// One choice of an answer or of a streamed chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Choice {
    /// The (piece of) generated text.
    pub text: String,
    /// Which prompt of the batch it answers.
    pub index: usize,
    /// Always null: cria does not compute log-probabilities.
    pub logprobs: Option<serde_json::Value>,
    /// `stop` or `length` on the last chunk; null before.
    pub finish_reason: Option<String>,
}

/// Details of the prompt's token count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV cache entries were reused.
    pub cached_tokens: usize,
}

/// Token counts of a completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
    /// How much of the prompt came from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// An answer of `/v1/completions`, or one chunk of a streamed answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompletionResponse {
    /// Identifies the completion (the same in every chunk).
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix time the completion started.
    pub created: u64,
    /// The model's name.
    pub model: String,
    /// The generated text (one choice).
    pub choices: Vec<Choice>,
    /// Token counts (the last chunk only, when streaming).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One entry of `/v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelCard {
    /// The name to pass as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix time the model was loaded.
    pub created: u64,
    /// Who serves it.
    pub owned_by: String,
}

/// The answer of `/v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models served.
    pub data: Vec<ModelCard>,
}

/// The detail of an error answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    /// What went wrong, for people.
    pub message: String,
    /// A category (`invalid_request_error`, `authentication_error`...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status, as some engines repeat it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<serde_json::Value>,
}

/// An error answer: `{"error": {"message": ..., "type": ...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A snippet of another file for llama.cpp's `/infill`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InfillExtra {
    /// The file's name.
    pub filename: String,
    /// The snippet.
    pub text: String,
}

/// The body of llama.cpp's `POST /infill`: the server lays out the FIM
/// prompt itself from the model's FIM tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InfillRequest {
    /// Text before the cursor.
    pub input_prefix: String,
    /// Text after the cursor.
    pub input_suffix: String,
    /// Snippets of other files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_extra: Vec<InfillExtra>,
    /// Text after the middle marker: the start of the cursor's line.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// Most tokens to generate.
    pub n_predict: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Random seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Text that ends generation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Stream the answer.
    pub stream: bool,
    /// Keep the KV cache of the prompt for the next request.
    pub cache_prompt: bool,
}

/// One streamed chunk (or the whole answer) of llama.cpp's native endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InfillChunk {
    /// The next piece of text.
    pub content: String,
    /// Whether generation ended with this chunk.
    pub stop: bool,
    /// Why it ended: `eos`, `word` (a stop string), `limit`.
    pub stop_type: Option<String>,
    /// Prompt tokens reused from the KV cache.
    pub tokens_cached: Option<usize>,
    /// Prompt tokens in total.
    pub tokens_evaluated: Option<usize>,
}
