//! The engine's error type: everything that can go wrong between a GGUF file on
//! disk and a finished completion, phrased so a user can act on it.

use std::path::PathBuf;

/// Why the engine could not load a model or run a completion.
///
/// Each variant's message is shown to users as is (CLI error line, editor
/// `showMessage`), so it says what went wrong and, where possible, what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file does not exist or cannot be opened.
    #[error("cannot open model file {path}: {source}")]
    Open {
        /// The file that was asked for.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is not a readable GGUF (truncated, corrupt, or another format).
    #[error("{path} is not a valid GGUF model file ({reason}); fetch it again (scripts/fetch-models or `cria pull`)")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What the reader found wrong.
        reason: String,
    },
    /// A metadata key the architecture needs is missing or has the wrong type.
    #[error("{path}: metadata key `{key}` is missing or invalid: {reason}")]
    Metadata {
        /// The offending file.
        path: PathBuf,
        /// The GGUF metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file's architecture is not one cria runs.
    #[error("{path}: unsupported model architecture `{architecture}` (cria runs: llama, qwen2)")]
    UnsupportedArchitecture {
        /// The offending file.
        path: PathBuf,
        /// `general.architecture` as found in the file.
        architecture: String,
    },
    /// A tensor uses a quantization type the engine has no kernel for.
    #[error("{path}: tensor `{tensor}` uses unsupported type {dtype} (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)")]
    UnsupportedQuantization {
        /// The offending file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The type found.
        dtype: String,
    },
    /// The tokenizer described in the file's metadata cannot be built.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt does not fit the model's context window.
    #[error("prompt of {prompt} tokens plus {max_new} new tokens exceeds the context length {context}")]
    ContextOverflow {
        /// Prompt tokens.
        prompt: usize,
        /// Tokens the caller asked to generate.
        max_new: usize,
        /// The model's (or configured) context length.
        context: usize,
    },
    /// A generation asked for a KV cache slot the engine does not have.
    #[error("KV cache slot {slot} does not exist (the engine has {slots})")]
    NoSuchSlot {
        /// The slot asked for.
        slot: usize,
        /// How many slots there are.
        slots: usize,
    },
    /// The device the model was asked to run on cannot be used: this build
    /// lacks its support (a Cargo feature), or the device cannot be opened.
    #[error("cannot run the model on {device}: {reason}")]
    DeviceUnavailable {
        /// The device asked for, as the `device` setting spells it.
        device: String,
        /// Why, and what to do about it.
        reason: String,
    },
    /// A KV cache was handed to a forward pass that keeps its keys and
    /// values elsewhere. Caches come from the model's own `new_cache`, so this
    /// is a bug in the caller, reported instead of a panic.
    #[error("internal error: the {expected} forward pass was given a KV cache made for another device")]
    CacheMismatch {
        /// The kind of cache the forward pass needs.
        expected: &'static str,
    },
    /// The system would not give memory for a KV cache (the `kvCacheMb` or
    /// `contextLength` setting asks for more than the machine has).
    #[error("cannot allocate {bytes} bytes for a KV cache: {source}; lower kvCacheMb or contextLength")]
    CacheMemory {
        /// The size asked for.
        bytes: usize,
        /// What the system said.
        source: std::io::Error,
    },
    /// The prompt is empty: there is nothing to condition the model on.
    #[error("empty prompt")]
    EmptyPrompt,
    /// A tensor operation failed inside candle.
    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
    /// A job panicked inside the engine: a bug, reported rather than fatal.
    #[error("the model failed on this request (an internal error: {0}); it was reset and serves the next one")]
    Panicked(String),
    /// The engine worker thread is gone (it panicked or was shut down).
    #[error("the model worker has stopped")]
    WorkerGone,
}
