//! cria's own folder, where downloaded models and user configs live. Apart
//! from `resolve` because the catalogue reads user configs from it too, and the
//! resolver takes a catalogue.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// cria's own folder: downloaded models (`models/`) and user configs
/// (`model-configs/`). `$CRIA_HOME`, else `~/.cache/cria`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriaHome(PathBuf);

impl CriaHome {
    /// A home at `root`, for tests and for callers that were told where it is.
    pub fn new(root: impl Into<PathBuf>) -> CriaHome {
        CriaHome(root.into())
    }

    /// The home from `$CRIA_HOME`, else `$HOME/.cache/cria`.
    pub fn from_env() -> Result<CriaHome, NoHome> {
        CriaHome::from_vars(|name| std::env::var_os(name))
    }

    /// The home from the variables `var` returns (`from_env` with the process
    /// environment); an empty variable counts as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<CriaHome, NoHome> {
        let var = non_empty(var);
        if let Some(root) = var("CRIA_HOME") {
            return Ok(CriaHome(PathBuf::from(root)));
        }
        let home = var("HOME").ok_or(NoHome)?;
        Ok(CriaHome(Path::new(&home).join(".cache").join("cria")))
    }

    /// The home folder itself.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// Where `cria pull` puts models and where names are looked up first.
    pub fn models_dir(&self) -> PathBuf {
        self.0.join("models")
    }

    /// Where user configs live.
    pub fn model_configs_dir(&self) -> PathBuf {
        self.0.join("model-configs")
    }
}

/// Neither the variable naming a folder nor `HOME` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot find the home folder: set HOME (or CRIA_HOME and HF_HUB_CACHE)")]
pub struct NoHome;

/// `var`, with an empty variable counted as unset.
pub(super) fn non_empty(var: impl Fn(&str) -> Option<OsString>) -> impl Fn(&str) -> Option<OsString> {
    move |name| var(name).filter(|value| !value.is_empty())
}
