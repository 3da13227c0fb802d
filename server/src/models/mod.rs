//! The model catalogue: which models cria knows, how to prompt each of them, and
//! where their weights are.
//!
//! A model is described by a TOML config (`model-configs/`, schema in its
//! README): architecture, rope settings, special tokens, prompt templates, stop
//! tokens and the GGUF file. The engine reads the architecture and rope settings,
//! the prompt builder the tokens and templates; `resolve` finds the file and
//! `pull` downloads it. Only `resolve`, `pull` and `load_catalogue` touch the
//! file system.

mod catalogue;
mod config;
mod error;
mod locate;
mod pull;
mod resolve;

pub use catalogue::{builtin, builtin_names, load_catalogue, Catalogue, ConfigSource};
pub use config::{
    Architecture, FileConfig, FimConfig, FimOrder, ModelConfig, RopeConfig, RopeScaling,
    SpecialToken, StopConfig, SuffixEncoding, TemplatePart,
};
pub use error::{ConfigError, Location, Problem};
pub use pull::{download_url, pull, sha256_file, PullError};
pub use resolve::{resolve, CriaHome, ResolveError, ResolvedModel, SearchPaths};
