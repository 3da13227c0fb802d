//! One model's config: the facts cria needs to load a GGUF file and to prompt the
//! model inside it, read from a TOML file (schema: `model-configs/README.md`).
//!
//! Parsing is strict (`deny_unknown_fields`, then semantic checks) because a typo
//! in a config does not fail loudly later: a misspelt stop token or a wrong token
//! id just makes completions silently worse. Every error names the file and the
//! key so that a user can fix their own config without reading this code.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::error::{ConfigError, Location, Problem};
use super::locate;

/// The transformer family, which picks the engine's model code: the GGUF files
/// of different families name and lay out their tensors differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama and its relatives (Code Llama, DeepSeek-Coder, SmolLM2).
    Llama,
    /// Qwen2 (Qwen2.5-Coder): Llama-like, with biases on the q/k/v projections.
    Qwen2,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        })
    }
}

/// How a prompt arranges the text around the cursor. A model only completes well
/// in the orders it was trained on, so each config lists its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FimOrder {
    /// Prefix, suffix, middle: the model sees both sides, prefix first.
    Psm,
    /// Suffix, prefix, middle: the prefix comes last, next to the generated text.
    Spm,
    /// No infilling: the model just continues the prefix (models without FIM).
    Prefix,
}

impl FimOrder {
    /// The order's name as written in configs, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FimOrder::Psm => "psm",
            FimOrder::Spm => "spm",
            FimOrder::Prefix => "prefix",
        }
    }
}

impl fmt::Display for FimOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the suffix is tokenized, because SentencePiece models add a leading space
/// to every encoded text and Code Llama was trained without it on the suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuffixEncoding {
    /// Encode the suffix like any other text.
    #[default]
    Plain,
    /// Encode the suffix without the tokenizer's leading space (Code Llama).
    Infill,
}

/// A special token by its text in the GGUF vocabulary and its id. Both are
/// stored so that the config can be checked against the file it describes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialToken {
    /// The token's text exactly as the vocabulary spells it.
    pub text: String,
    /// The token's id in the vocabulary.
    pub id: u32,
}

/// One piece of a prompt template, so that the prompt builder can lay out any
/// model's format without knowing the model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum TemplatePart {
    /// A special token, by its name in the config's `[tokens]`.
    Token(String),
    /// The text before the cursor (`$prefix`).
    Prefix,
    /// The text after the cursor (`$suffix`).
    Suffix,
}

impl From<String> for TemplatePart {
    /// Any other text is a token name; `parse` rejects names that are not in
    /// `[tokens]`, misspelt placeholders among them.
    fn from(part: String) -> Self {
        match part.as_str() {
            "$prefix" => TemplatePart::Prefix,
            "$suffix" => TemplatePart::Suffix,
            _ => TemplatePart::Token(part),
        }
    }
}

/// Rotary position embedding settings: they are not always in the GGUF metadata
/// (older conversions lack the scaling), and a wrong value garbles long prompts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeConfig {
    /// The frequency base.
    pub theta: f64,
    /// How positions were stretched past the pre-training length, if they were.
    #[serde(default)]
    pub scaling: Option<RopeScaling>,
}

/// A rope scaling scheme, tagged by `kind` so that others can be added.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RopeScaling {
    /// Positions are divided by `factor` (DeepSeek-Coder).
    Linear {
        /// How many times longer than the pre-training context.
        factor: f64,
    },
}

/// Which prompt orders the model supports and how each is laid out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FimConfig {
    /// Supported orders, the preferred one first.
    pub orders: Vec<FimOrder>,
    /// The prefix-suffix-middle template.
    #[serde(default)]
    pub psm: Option<Vec<TemplatePart>>,
    /// The suffix-prefix-middle template.
    #[serde(default)]
    pub spm: Option<Vec<TemplatePart>>,
    /// The plain-continuation template.
    #[serde(default)]
    pub prefix: Option<Vec<TemplatePart>>,
    /// How to tokenize the suffix.
    #[serde(default)]
    pub suffix_encoding: SuffixEncoding,
}

/// When generation ends: a completion must stop where the model would close the
/// hole, or it runs on into text that duplicates the suffix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    /// Token names from `[tokens]` that end generation.
    pub tokens: Vec<String>,
    /// Texts that end generation (not included in the completion).
    #[serde(default)]
    pub strings: Vec<String>,
}

/// Where the model's weights live and how to get them, so that a missing file
/// can be found in the usual caches or downloaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The GGUF file's name (a bare name, no directories).
    pub gguf: String,
    /// The Hugging Face repository (`owner/name`) that serves the file.
    #[serde(default)]
    pub hf_repo: Option<String>,
    /// The file's SHA-256 in lowercase hex, when one exact file is expected.
    #[serde(default)]
    pub sha256: Option<String>,
    /// A sentence for people: where users get the file.
    #[serde(default)]
    pub get: Option<String>,
}

/// Everything cria knows about one model beyond what its GGUF file says.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's name in the catalogue; equal to the config file's stem.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// The transformer family.
    pub architecture: Architecture,
    /// The context length, in tokens, the model was trained for.
    pub context_length: u32,
    /// Rotary embedding settings.
    pub rope: RopeConfig,
    /// Named special tokens.
    #[serde(default)]
    pub tokens: BTreeMap<String, SpecialToken>,
    /// Prompt orders and templates.
    pub fim: FimConfig,
    /// When to stop generating.
    pub stop: StopConfig,
    /// The weights file.
    pub file: FileConfig,
}

impl FimConfig {
    /// The template for `order`, if the config defines one.
    pub fn template(&self, order: FimOrder) -> Option<&[TemplatePart]> {
        match order {
            FimOrder::Psm => self.psm.as_deref(),
            FimOrder::Spm => self.spm.as_deref(),
            FimOrder::Prefix => self.prefix.as_deref(),
        }
    }
}

impl ModelConfig {
    /// Parses and checks a config. `file_label` names the file in errors; when it
    /// ends in `.toml`, the config's `name` must equal its stem.
    pub fn parse(file_label: &str, text: &str) -> Result<ModelConfig, ConfigError> {
        let config: ModelConfig =
            toml::from_str(text).map_err(|err| syntax_error(file_label, text, &err))?;
        config
            .validate()
            .map_err(|(key, problem)| ConfigError::Invalid {
                at: Location {
                    file: file_label.to_owned(),
                    line: locate::line_of_key(text, &key),
                },
                key,
                problem,
            })?;
        if let Some(stem) = toml_stem(file_label) {
            if stem != config.name {
                return Err(ConfigError::Invalid {
                    at: Location {
                        file: file_label.to_owned(),
                        line: locate::line_of_key(text, "name"),
                    },
                    key: "name".to_owned(),
                    problem: Problem::NameMismatch {
                        name: config.name,
                        stem: stem.to_owned(),
                    },
                });
            }
        }
        Ok(config)
    }

    /// The template for `order`, if the config defines one.
    pub fn template(&self, order: FimOrder) -> Option<&[TemplatePart]> {
        self.fim.template(order)
    }

    /// The order to use when the user has not asked for one.
    pub fn preferred_order(&self) -> FimOrder {
        // `parse` rejects an empty list; a hand-built config falls back to the
        // one order every model can do.
        self.fim.orders.first().copied().unwrap_or(FimOrder::Prefix)
    }

    /// The special token called `name` in `[tokens]`.
    pub fn token(&self, name: &str) -> Option<&SpecialToken> {
        self.tokens.get(name)
    }

    /// The ids of the stop tokens, in the config's order.
    pub fn stop_token_ids(&self) -> Vec<u32> {
        self.stop
            .tokens
            .iter()
            .filter_map(|name| self.token(name))
            .map(|token| token.id)
            .collect()
    }

    /// Checks every special token against the model's vocabulary, because a
    /// config written for one conversion of a model may not fit another.
    /// `token_text` returns the vocabulary's text for an id, or `None` past its end.
    pub fn check_vocabulary(
        &self,
        file_label: &str,
        token_text: impl Fn(u32) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (name, token) in &self.tokens {
            let problem = match token_text(token.id) {
                None => Problem::NotInVocabulary {
                    id: token.id,
                    text: token.text.clone(),
                },
                Some(found) if found != token.text => Problem::WrongVocabularyText {
                    id: token.id,
                    expected: token.text.clone(),
                    found,
                },
                Some(_) => continue,
            };
            return Err(ConfigError::Invalid {
                at: Location {
                    file: file_label.to_owned(),
                    line: None,
                },
                key: format!("tokens.{name}"),
                problem,
            });
        }
        Ok(())
    }

    /// The semantic checks serde cannot do; the error is the key and the problem.
    fn validate(&self) -> Result<(), (String, Problem)> {
        if self.context_length == 0 {
            return Err(("context_length".into(), Problem::ZeroContextLength));
        }
        if !(self.rope.theta.is_finite() && self.rope.theta > 0.0) {
            return Err((
                "rope.theta".into(),
                Problem::NotPositive {
                    value: self.rope.theta,
                },
            ));
        }
        if let Some(RopeScaling::Linear { factor }) = self.rope.scaling {
            if !(factor.is_finite() && factor > 0.0) {
                return Err((
                    "rope.scaling.factor".into(),
                    Problem::NotPositive { value: factor },
                ));
            }
        }
        self.validate_fim()?;
        for (i, name) in self.stop.tokens.iter().enumerate() {
            if !self.tokens.contains_key(name) {
                return Err((
                    format!("stop.tokens[{i}]"),
                    Problem::UndefinedToken { name: name.clone() },
                ));
            }
        }
        self.validate_file()
    }

    fn validate_fim(&self) -> Result<(), (String, Problem)> {
        if self.fim.orders.is_empty() {
            return Err(("fim.orders".into(), Problem::NoOrders));
        }
        for (i, &order) in self.fim.orders.iter().enumerate() {
            if self.fim.orders[..i].contains(&order) {
                return Err((
                    format!("fim.orders[{i}]"),
                    Problem::DuplicateOrder { order: order.as_str() },
                ));
            }
            if self.template(order).is_none() {
                return Err((
                    format!("fim.orders[{i}]"),
                    Problem::MissingTemplate { order: order.as_str() },
                ));
            }
        }
        for order in [FimOrder::Psm, FimOrder::Spm, FimOrder::Prefix] {
            let Some(template) = self.template(order) else {
                continue;
            };
            let key = format!("fim.{order}");
            for (i, part) in template.iter().enumerate() {
                let TemplatePart::Token(name) = part else {
                    continue;
                };
                if name.starts_with('$') {
                    return Err((
                        format!("{key}[{i}]"),
                        Problem::UnknownPlaceholder { name: name.clone() },
                    ));
                }
                if !self.tokens.contains_key(name) {
                    return Err((
                        format!("{key}[{i}]"),
                        Problem::UndefinedToken { name: name.clone() },
                    ));
                }
            }
            let count =
                |wanted: &TemplatePart| template.iter().filter(|part| *part == wanted).count();
            let suffixes_wanted = if order == FimOrder::Prefix { 0 } else { 1 };
            for (placeholder, part, expected) in [
                ("$prefix", TemplatePart::Prefix, 1),
                ("$suffix", TemplatePart::Suffix, suffixes_wanted),
            ] {
                let found = count(&part);
                if found != expected {
                    let problem = Problem::PlaceholderCount {
                        placeholder,
                        expected,
                        found,
                    };
                    return Err((key, problem));
                }
            }
        }
        Ok(())
    }

    fn validate_file(&self) -> Result<(), (String, Problem)> {
        let gguf = &self.file.gguf;
        let bare = !gguf.contains(['/', '\\']);
        if !(bare && gguf.len() > ".gguf".len() && gguf.ends_with(".gguf")) {
            return Err((
                "file.gguf".into(),
                Problem::BadFileName {
                    value: gguf.clone(),
                },
            ));
        }
        if let Some(repo) = &self.file.hf_repo {
            let mut parts = repo.split('/');
            let well_formed = matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(owner), Some(name), None) if is_repo_segment(owner) && is_repo_segment(name)
            );
            if !well_formed {
                return Err((
                    "file.hf_repo".into(),
                    Problem::BadHfRepo {
                        value: repo.clone(),
                    },
                ));
            }
        }
        if let Some(sha) = &self.file.sha256 {
            if sha.len() != 64
                || !sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err((
                    "file.sha256".into(),
                    Problem::BadSha256 { value: sha.clone() },
                ));
            }
        }
        Ok(())
    }
}

/// Whether `segment` can be one half of `owner/name` on the Hugging Face hub.
fn is_repo_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The stem of a label that names a `.toml` file, for the name check.
fn toml_stem(file_label: &str) -> Option<&str> {
    let file_name = file_label.rsplit(['/', '\\']).next()?;
    file_name.strip_suffix(".toml")
}

/// Turns toml's error into one that names the file, the key path and the line.
fn syntax_error(file_label: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    // Errors about the document as a whole (a missing top-level field) come
    // with the empty span at its start: they have neither a key nor a line.
    let span = err.span().filter(|span| *span != (0..0));
    ConfigError::Syntax {
        at: Location {
            file: file_label.to_owned(),
            line: span.as_ref().map(|span| locate::line_at(text, span.start)),
        },
        key: span
            .map(|span| locate::key_at(text, span))
            .unwrap_or_default(),
        message: err.message().trim_end().to_owned(),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
