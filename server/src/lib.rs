//! cria: a code-completion language server that keeps a code model resident in
//! its own process.
//!
//! The modules follow the data's way from the editor to the suggestion; see
//! ARCHITECTURE.md for the map and the rules on which module may use which.

pub mod completion;
pub mod context;
pub mod documents;
pub mod engine;
mod locks;
pub mod models;
pub mod postprocess;
pub mod prompt;
pub mod protocol;
pub mod remote;
pub mod serve;
mod throttle;
pub mod workspace;
