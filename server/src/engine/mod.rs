//! The resident model: GGUF loading, the tokenizer read from the file, the
//! transformer forward pass (on the CPU with cria's own kernels, or on a GPU
//! with candle's), the rewindable KV cache, sampling, and the thread the
//! model lives on.
//!
//! This layer knows nothing of editors, documents or prompts: it turns token
//! ids into more token ids, fast, and stops when told.

pub mod dedent;
pub mod device_model;
mod error;
mod generate;
pub mod gguf;
pub mod gguf_check;
pub mod healing;
pub mod kv_cache;
pub mod model;
pub mod network;
mod ops;
pub mod quant;
pub mod sampling;
pub mod speculate;
pub mod tokenizer;
mod worker;

pub use error::EngineError;
pub use generate::{
    choose_slot, default_threads, CancelFlag, Completion, Engine, EngineOptions, GenerationRequest, Ran, RunControl, SlotChoice, SlotInfo,
    StopReason, BACKGROUND_PREFILL_CHUNK, MAX_SLOTS,
};
pub use model::{Hyperparams, ModelFamily};
pub use network::{ComputeDevice, UnknownDevice};
pub use sampling::SamplingParams;
pub use speculate::SpeculationStats;
pub use tokenizer::{TokenKind, Tokenizer, VocabKind};
pub use worker::{EngineHandle, IncomingJob, JobOptions, KvUsage, LoadReceiver, LoadedModel, Priority, TextSink, Warming, WrittenSoFar};
