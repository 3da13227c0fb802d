//! The model catalogue: which models cria knows, how to prompt each of them, and
//! where their weights are.
//!
//! A model is described by a TOML config (`model-configs/`, schema in its
//! README): architecture, rope settings, special tokens, prompt templates, stop
//! tokens and the GGUF file. The engine reads the architecture and rope settings,
//! the prompt builder the tokens and templates; `resolve` finds the file and
//! `pull` downloads it. Only `resolve`, `pull`, `load_catalogue` and
//! `kept_prefill_rate` (the machine's prefill rate, kept in cria's folder)
//! touch the file system.

mod catalogue;
mod config;
mod error;
mod home;
mod locate;
mod pull;
mod rates;
mod resolve;

pub use catalogue::{builtin, builtin_names, load_catalogue, Catalogue, ConfigSource};
pub use config::{
    Architecture, FileConfig, FimConfig, FimOrder, ModelConfig, RopeConfig, RopeScaling,
    SpecialToken, StopConfig, SuffixEncoding, TemplatePart,
};
pub use error::{ConfigError, Location, Problem};
pub use home::{CriaHome, NoHome};
pub use pull::{download_url, pull, sha256_file, PullError};
pub use rates::kept_prefill_rate;
pub use resolve::{resolve, ResolveError, ResolvedModel, SearchPaths};

#[cfg(test)]
mod tests {
    /// No two files here import each other: the catalogue finds user configs
    /// in the home folder without the resolver (which takes a catalogue), and
    /// a config's errors name no config type (the config builds them).
    #[test]
    fn no_two_file_import_cycles() {
        let files = [
            ("catalogue.rs", include_str!("catalogue.rs"), "resolve::"),
            ("error.rs", include_str!("error.rs"), "config::"),
            ("home.rs", include_str!("home.rs"), "super::"),
        ];
        for (file, source, forbidden) in files {
            assert!(!source.contains(forbidden), "{file} uses {forbidden}");
        }
    }
}
