//! The catalogue of models cria knows by name: the configs built into the binary
//! from `model-configs/`, overridden or extended by the user's own configs in
//! `$CRIA_HOME/model-configs/`.
//!
//! The builtins are embedded so that the binary works without the repository
//! beside it; the user's folder lets people add a model or fix a config without
//! rebuilding cria.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::config::ModelConfig;
use super::error::ConfigError;
use super::home::CriaHome;

/// Embeds `model-configs/NAME.toml` for each name, as (name, TOML text).
macro_rules! embed_configs {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../model-configs/", $name, ".toml")))),*]
    };
}

/// The builtin configs: (name, TOML text). A test checks that this list matches
/// the files in `model-configs/`, so a new file cannot be left out.
const BUILTIN: &[(&str, &str)] = embed_configs![
    "codellama-13b",
    "codellama-13b-instruct",
    "codellama-7b",
    "codellama-7b-instruct",
    "deepseek-coder-1.3b-base",
    "deepseek-coder-6.7b-base",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b",
    "qwen2.5-coder-7b",
    "smollm2-135m-instruct",
];

/// The label builtin configs carry in errors: their path in the repository.
fn builtin_label(name: &str) -> String {
    format!("model-configs/{name}.toml")
}

/// The builtin config called `name`. The builtins are checked by a unit test, so
/// `None` means only that no builtin has that name.
pub fn builtin(name: &str) -> Option<ModelConfig> {
    let (_, text) = BUILTIN.iter().find(|(builtin, _)| *builtin == name)?;
    ModelConfig::parse(&builtin_label(name), text).ok()
}

/// The names of the builtin configs, sorted.
pub fn builtin_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = BUILTIN.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names
}

/// Where a catalogue entry came from, so that listings and errors can say which
/// file to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Built into cria (from `model-configs/` in its repository).
    Builtin,
    /// A user's config file.
    User(PathBuf),
}

/// The models known by name, each with its config and where that came from.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    entries: BTreeMap<String, (ModelConfig, ConfigSource)>,
}

impl Catalogue {
    /// The builtin configs alone.
    pub fn builtin() -> Result<Catalogue, ConfigError> {
        let mut catalogue = Catalogue::default();
        for (name, text) in BUILTIN {
            let config = ModelConfig::parse(&builtin_label(name), text)?;
            catalogue.insert(config, ConfigSource::Builtin);
        }
        Ok(catalogue)
    }

    /// Adds `config`, replacing any entry of the same name.
    pub fn insert(&mut self, config: ModelConfig, source: ConfigSource) {
        self.entries.insert(config.name.clone(), (config, source));
    }

    /// The config called `name`.
    pub fn get(&self, name: &str) -> Option<&ModelConfig> {
        self.entries.get(name).map(|(config, _)| config)
    }

    /// Where the config called `name` came from.
    pub fn source(&self, name: &str) -> Option<&ConfigSource> {
        self.entries.get(name).map(|(_, source)| source)
    }

    /// The names of all models, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// All configs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &ModelConfig> {
        self.entries.values().map(|(config, _)| config)
    }

    /// The first config (by name) whose weights file is called `file_name`, so
    /// that a model given by path still gets its prompt format.
    pub fn by_gguf_file(&self, file_name: &str) -> Option<&ModelConfig> {
        self.iter().find(|config| config.file.gguf == file_name)
    }
}

/// The builtins plus the user's configs in `$CRIA_HOME/model-configs/*.toml`
/// (a user config replaces the builtin of the same name). A missing folder is
/// fine; a config that does not parse is an error, not silently skipped.
pub fn load_catalogue(home: &CriaHome) -> Result<Catalogue, ConfigError> {
    let mut catalogue = Catalogue::builtin()?;
    for path in user_config_files(&home.model_configs_dir())? {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config = ModelConfig::parse(&path.display().to_string(), &text)?;
        catalogue.insert(config, ConfigSource::User(path));
    }
    Ok(catalogue)
}

/// The `*.toml` files in `dir`, sorted; none when `dir` does not exist.
fn user_config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(read_error(err)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_error)?.path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_the_model_configs_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-configs");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        assert_eq!(builtin_names(), on_disk, "update BUILTIN in catalogue.rs");
    }

    #[test]
    fn every_builtin_parses() {
        for (name, text) in BUILTIN {
            if let Err(err) = ModelConfig::parse(&builtin_label(name), text) {
                panic!("{err}");
            }
        }
        assert_eq!(Catalogue::builtin().unwrap().names(), builtin_names());
        assert!(builtin("codellama-7b").is_some());
        assert!(builtin("no-such-model").is_none());
    }

    #[test]
    fn user_configs_override_and_extend_builtins() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("model-configs");
        std::fs::create_dir(&dir).unwrap();
        let mine = BUILTIN[0]
            .1
            .replace("Code Llama 13B base model", "My own 13B");
        std::fs::write(dir.join("codellama-13b.toml"), mine).unwrap();
        let extra = BUILTIN[0].1.replace("\"codellama-13b\"", "\"my-model\"");
        std::fs::write(dir.join("my-model.toml"), extra).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a config").unwrap();

        let catalogue = load_catalogue(&CriaHome::new(home.path())).unwrap();
        let overridden = catalogue.get("codellama-13b").unwrap();
        assert!(overridden.description.starts_with("My own 13B"));
        assert_eq!(
            catalogue.source("codellama-13b"),
            Some(&ConfigSource::User(dir.join("codellama-13b.toml")))
        );
        assert!(catalogue.get("my-model").is_some());
        assert_eq!(
            catalogue.source("codellama-7b"),
            Some(&ConfigSource::Builtin)
        );
        assert_eq!(catalogue.names().len(), BUILTIN.len() + 1);
    }

    #[test]
    fn a_broken_user_config_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("model-configs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("bad.toml"), "name = \"bad\"\n").unwrap();
        let err = load_catalogue(&CriaHome::new(home.path())).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
    }

    #[test]
    fn a_missing_user_folder_gives_the_builtins() {
        let home = tempfile::tempdir().unwrap();
        let catalogue = load_catalogue(&CriaHome::new(home.path())).unwrap();
        assert_eq!(catalogue.names(), builtin_names());
    }

    #[test]
    fn finds_a_config_by_its_file_name() {
        let catalogue = Catalogue::builtin().unwrap();
        let config = catalogue
            .by_gguf_file("SmolLM2-135M-Instruct.Q4_1.gguf")
            .unwrap();
        assert_eq!(config.name, "smollm2-135m-instruct");
        assert!(catalogue.by_gguf_file("unknown.gguf").is_none());
    }
}
