//! Prompts: FIM templates resolved to token ids and filled with prefix,
//! suffix and context within a token budget.
//!
//! Control tokens are always inserted by id; user text is always encoded as
//! text, so nothing in a file can forge a control token.

mod build;
mod template;

pub use build::{build_prompt, ContextChunk, Healing, Prompt, PromptInput};
pub use template::{FimTemplate, Segment, TemplateError};
