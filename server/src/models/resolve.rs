//! Turns what the user typed after `--model` into a GGUF file on disk and, when
//! cria knows the model, its config.
//!
//! A name is looked up in cria's own models folder and then in the Hugging Face
//! hub cache, because many users already have the file from another tool. The
//! environment is read only by the `from_env` constructors, so that tests (and
//! callers with their own settings) pass every folder explicitly.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::catalogue::Catalogue;
use super::config::ModelConfig;
use super::home::{non_empty, CriaHome, NoHome};

/// The folders a model name is looked up in, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPaths {
    /// cria's models folder (`$CRIA_HOME/models`).
    pub cria_models: PathBuf,
    /// The Hugging Face hub cache (`models--ORG--REPO/snapshots/*/FILE`).
    pub hf_hub: PathBuf,
}

impl SearchPaths {
    /// The usual places: `home`'s models folder and the hub cache the
    /// environment names.
    pub fn from_env(home: &CriaHome) -> Result<SearchPaths, ResolveError> {
        SearchPaths::from_vars(home, |name| std::env::var_os(name))
    }

    /// As `from_env`, with the variables `var` returns. The hub cache follows
    /// huggingface_hub: `$HF_HUB_CACHE`, `$HUGGINGFACE_HUB_CACHE`,
    /// `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`.
    pub fn from_vars(
        home: &CriaHome,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<SearchPaths, ResolveError> {
        let var = non_empty(var);
        let hf_hub = if let Some(hub) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        {
            PathBuf::from(hub)
        } else if let Some(hf_home) = var("HF_HOME") {
            Path::new(&hf_home).join("hub")
        } else if let Some(cache) = var("XDG_CACHE_HOME") {
            Path::new(&cache).join("huggingface").join("hub")
        } else {
            let user_home = var("HOME").ok_or(NoHome)?;
            Path::new(&user_home)
                .join(".cache")
                .join("huggingface")
                .join("hub")
        };
        Ok(SearchPaths {
            cria_models: home.models_dir(),
            hf_hub,
        })
    }
}

/// A model ready to load: its weights and, when cria knows the model, its config.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// The GGUF file.
    pub gguf: PathBuf,
    /// The config; `None` for a file no catalogue entry names.
    pub config: Option<ModelConfig>,
}

/// Why a model could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Neither the variable naming a folder nor `HOME` is set.
    #[error(transparent)]
    NoHome(#[from] NoHome),
    /// A path was given and nothing is there.
    #[error("model file {} does not exist", path.display())]
    NoSuchFile {
        /// The path given.
        path: PathBuf,
    },
    /// A path was given and it is a folder or something else that is not a file.
    #[error("{} is not a file; give the path of a .gguf file", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// A path could not be inspected.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A name that no config has.
    #[error("unknown model `{name}`; known models: {}. Or give the path of a .gguf file.", known.join(", "))]
    UnknownModel {
        /// The name given.
        name: String,
        /// The catalogue's names.
        known: Vec<String>,
    },
    /// A known model whose file is in none of the places looked in.
    #[error("{}", NotFoundMessage(self))]
    NotFound {
        /// The model's name.
        name: String,
        /// The file looked for.
        gguf: String,
        /// Every place looked in; `*` stands for any hub snapshot.
        looked: Vec<PathBuf>,
        /// The config's advice on getting the file.
        get: Option<String>,
    },
}

struct NotFoundMessage<'a>(&'a ResolveError);

impl fmt::Display for NotFoundMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ResolveError::NotFound {
            name,
            gguf,
            looked,
            get,
        } = self.0
        else {
            return Ok(());
        };
        writeln!(
            f,
            "the file of model `{name}` ({gguf}) was not found; looked in:"
        )?;
        for place in looked {
            writeln!(f, "  {}", place.display())?;
        }
        write!(f, "To get it, run `cria pull {name}`")?;
        match get {
            Some(get) => write!(f, ", or {get}"),
            None => Ok(()),
        }
    }
}

/// Finds the model `spec` names. A spec with a `/` or ending in `.gguf` is a
/// path, which must be a file; its config is the catalogue entry for that file
/// name, if any. Anything else is a model name from `catalogue`, whose file is
/// looked for in `search.cria_models`, then in the hub cache under the config's
/// `hf_repo`.
pub fn resolve(
    spec: &str,
    search: &SearchPaths,
    catalogue: &Catalogue,
) -> Result<ResolvedModel, ResolveError> {
    if spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(".gguf") {
        return resolve_path(Path::new(spec), catalogue);
    }
    let config = catalogue
        .get(spec)
        .ok_or_else(|| ResolveError::UnknownModel {
            name: spec.to_owned(),
            known: catalogue.names().into_iter().map(str::to_owned).collect(),
        })?;
    let gguf = &config.file.gguf;
    let mut looked = Vec::new();
    let in_cria = search.cria_models.join(gguf);
    if in_cria.is_file() {
        return Ok(found(in_cria, config));
    }
    looked.push(in_cria);
    if let Some(repo) = &config.file.hf_repo {
        let repo_dir = search
            .hf_hub
            .join(format!("models--{}", repo.replace('/', "--")));
        for snapshot in snapshots(&repo_dir) {
            let candidate = snapshot.join(gguf);
            if candidate.is_file() {
                return Ok(found(candidate, config));
            }
        }
        looked.push(repo_dir.join("snapshots").join("*").join(gguf));
    }
    Err(ResolveError::NotFound {
        name: config.name.clone(),
        gguf: gguf.clone(),
        looked,
        get: config.file.get.clone(),
    })
}

fn found(gguf: PathBuf, config: &ModelConfig) -> ResolvedModel {
    ResolvedModel {
        gguf,
        config: Some(config.clone()),
    }
}

fn resolve_path(path: &Path, catalogue: &Catalogue) -> Result<ResolvedModel, ResolveError> {
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ResolveError::NoSuchFile {
            path: path.to_owned(),
        },
        _ => ResolveError::Unreadable {
            path: path.to_owned(),
            source,
        },
    })?;
    if !metadata.is_file() {
        return Err(ResolveError::NotAFile {
            path: path.to_owned(),
        });
    }
    let config = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| catalogue.by_gguf_file(name))
        .cloned();
    Ok(ResolvedModel {
        gguf: path.to_owned(),
        config,
    })
}

/// A hub repository's snapshot folders: the one `refs/main` points at first,
/// then the others in name order. Unreadable folders count as empty.
fn snapshots(repo_dir: &Path) -> Vec<PathBuf> {
    let snapshots_dir = repo_dir.join("snapshots");
    let mut others: Vec<PathBuf> = std::fs::read_dir(&snapshots_dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    let main = std::fs::read_to_string(repo_dir.join("refs").join("main"))
        .ok()
        .map(|commit| snapshots_dir.join(commit.trim()))
        .filter(|main| others.contains(main));
    match main {
        Some(main) => {
            others.retain(|other| *other != main);
            std::iter::once(main).chain(others).collect()
        }
        None => others,
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
