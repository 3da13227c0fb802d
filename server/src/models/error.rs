//! The errors a model config can have. Each names the file, the key and, where
//! the text is at hand, the line, because the reader is a user editing a TOML file.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where in a config a problem is: the file as the user knows it and, when the
/// config's text was at hand, the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file's label: its path, or a name for a builtin.
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or the folder of user configs) could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The TOML is malformed or does not fit the schema (unknown key, missing
    /// field, wrong type): toml's own message, placed.
    #[error("{at}: {}{message}", key_prefix(key))]
    Syntax {
        /// The file and line.
        at: Location,
        /// The dotted key path, such as `fim.psm[2]`; empty for the whole file.
        key: String,
        /// What toml said.
        message: String,
    },
    /// The TOML fits the schema but says something impossible.
    #[error("{at}: {}{problem}", key_prefix(key))]
    Invalid {
        /// The file and line.
        at: Location,
        /// The dotted key path, such as `stop.tokens[0]`.
        key: String,
        /// What is wrong.
        problem: Problem,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("`{key}`: ")
    }
}

/// What is wrong with a value that parsed, one variant per rule, so that callers
/// and tests can tell the rules apart without reading messages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// `name` differs from the file's stem, so the config could not be found by name.
    #[error("the name is `{name}` but the file is `{stem}.toml`; they must be equal")]
    NameMismatch {
        /// The `name` in the file.
        name: String,
        /// The file's stem.
        stem: String,
    },
    /// `context_length` is zero.
    #[error("must be greater than 0")]
    ZeroContextLength,
    /// A rope number is zero, negative or not finite.
    #[error("must be a positive number, not {value}")]
    NotPositive {
        /// The value given.
        value: f64,
    },
    /// `fim.orders` is empty.
    #[error("lists no order; give at least one of \"psm\", \"spm\", \"prefix\"")]
    NoOrders,
    /// An order is listed twice.
    #[error("`{order}` is listed twice")]
    DuplicateOrder {
        /// The order, as configs write it (`psm`, `spm`, `prefix`).
        order: &'static str,
    },
    /// An order is listed but its template is not defined.
    #[error("order `{order}` is listed but `fim.{order}` is not defined")]
    MissingTemplate {
        /// The order, as configs write it (`psm`, `spm`, `prefix`).
        order: &'static str,
    },
    /// A token name is not a key of `[tokens]`.
    #[error("`{name}` is not defined in [tokens]")]
    UndefinedToken {
        /// The name used.
        name: String,
    },
    /// A template part starts with `$` but is not a placeholder.
    #[error("unknown placeholder `{name}`; the placeholders are `$prefix` and `$suffix`")]
    UnknownPlaceholder {
        /// The part given.
        name: String,
    },
    /// A template has the wrong number of a placeholder.
    #[error("must contain `{placeholder}` {}, found it {}", times(*expected), times(*found))]
    PlaceholderCount {
        /// `$prefix` or `$suffix`.
        placeholder: &'static str,
        /// How many times it must appear.
        expected: usize,
        /// How many times it does.
        found: usize,
    },
    /// `file.gguf` is not a bare `.gguf` file name.
    #[error("must be a bare file name ending in `.gguf`, not {value:?}")]
    BadFileName {
        /// The value given.
        value: String,
    },
    /// `file.hf_repo` is not `owner/name`.
    #[error("must be a Hugging Face repository as `owner/name`, not {value:?}")]
    BadHfRepo {
        /// The value given.
        value: String,
    },
    /// `file.sha256` is not 64 lowercase hex digits.
    #[error("must be 64 lowercase hexadecimal digits, not {value:?}")]
    BadSha256 {
        /// The value given.
        value: String,
    },
    /// A special token's id is past the end of the model's vocabulary.
    #[error("id {id} ({text:?}) is not in the model's vocabulary")]
    NotInVocabulary {
        /// The id in the config.
        id: u32,
        /// The text in the config.
        text: String,
    },
    /// A special token's id has another text in the model's vocabulary.
    #[error("id {id} is {found:?} in the model's vocabulary, but the config says {expected:?}")]
    WrongVocabularyText {
        /// The id in the config.
        id: u32,
        /// The text in the config.
        expected: String,
        /// The text in the vocabulary.
        found: String,
    },
}

fn times(n: usize) -> String {
    match n {
        0 => "never".to_owned(),
        1 => "once".to_owned(),
        n => format!("{n} times"),
    }
}
