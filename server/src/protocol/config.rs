//! The server's settings, read from `initializationOptions` and
//! `workspace/didChangeConfiguration`.
//!
//! Each key is read on its own: an unknown key is reported as a warning, a
//! bad value as an error, and in both cases every other key still applies and
//! the bad key keeps its previous value.

use serde_json::Value;

use crate::completion::{Backend, Model, Settings, DEFAULT_CONTEXT_SHARE, DEFAULT_SUFFIX_SHARE};
use crate::context::{cursor_windows, CompletionMode, CursorText, WindowBudget};
use crate::engine::{ComputeDevice, SamplingParams};
use crate::models::FimOrder;
use crate::remote::{Flavour, PromptFormat, RemoteConfig};

/// Every setting the server understands, with its default.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Model config name or path to a `.gguf` file.
    pub model: String,
    /// Most tokens generated per suggestion.
    pub max_tokens: usize,
    /// Every request is answered within this many milliseconds.
    pub latency_budget_ms: u64,
    /// Prompt tokens at most (the rest of the context is for generation).
    pub prompt_tokens: usize,
    /// Share of the prompt for the text after the cursor.
    pub suffix_share: f32,
    /// Most suffix tokens in prefix-suffix-middle prompts, where the whole
    /// suffix comes after the cursor in token order and is recomputed on
    /// every keystroke (see README, "Latency").
    pub max_suffix_tokens: usize,
    /// Share of the prompt for snippets from other files (0 turns it off).
    pub context_share: f32,
    /// Context window allocated for the model (KV cache size).
    pub context_length: usize,
    /// Threads for the model; 0 = the physical cores the server may use.
    pub threads: usize,
    /// Where the embedded model runs: the CPU, or a GPU (`cuda`, `metal`).
    pub device: ComputeDevice,
    /// Languages (LSP ids) to complete in; `None` = all.
    pub enabled_languages: Option<Vec<String>>,
    /// Languages explicitly turned off.
    pub disabled_languages: Vec<String>,
    /// Sampling temperature; 0 = greedy.
    pub temperature: f32,
    /// tracing filter for the server's log (stderr).
    pub log_level: String,
    /// Where the model runs: here, or on a remote serving engine.
    pub backend: Backend,
    /// MiB of KV caches kept for recent documents and cursor places (each
    /// keeps its prompt computed, so going back costs nothing); 0 = one.
    pub kv_cache_mb: usize,
    /// Pipeline ingredients switched off for measurement (`CRIA_ABLATE`).
    pub ablation: Ablation,
}

/// Ingredients of the pipeline that a quality measurement may switch off,
/// one at a time, to see what each one gains or costs (`benches/quality
/// --ablate`). Read from the environment variable `CRIA_ABLATE`, a
/// comma-separated list of names; not a user setting: every ingredient is on
/// for users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ablation {
    /// `heal`: no token healing at the cursor.
    pub no_healing: bool,
    /// `cursor-line-after-middle`: the cursor line ends the prefix instead.
    pub no_cursor_line_after_middle: bool,
    /// `suffix-cap`: the suffix gets its share of the budget, uncapped.
    pub no_suffix_cap: bool,
    /// `postprocess`: the raw completion is shown (first line only for a
    /// single-line request, as its stop string cuts it).
    pub no_postprocess: bool,
    /// `windows`: the text before and after the cursor is cut only by the
    /// prompt builder's line-wise budget, without syntax-aware windows.
    pub no_windows: bool,
}

impl Ablation {
    /// The names `CRIA_ABLATE` accepts.
    pub const NAMES: [&'static str; 5] = [
        "heal",
        "cursor-line-after-middle",
        "suffix-cap",
        "postprocess",
        "windows",
    ];

    /// Parses a comma-separated list of names; an unknown name is an error.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut ablation = Self::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "heal" => ablation.no_healing = true,
                "cursor-line-after-middle" => ablation.no_cursor_line_after_middle = true,
                "suffix-cap" => ablation.no_suffix_cap = true,
                "postprocess" => ablation.no_postprocess = true,
                "windows" => ablation.no_windows = true,
                other => {
                    return Err(format!(
                        "unknown ingredient `{other}` in CRIA_ABLATE (known: {})",
                        Self::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(ablation)
    }

    /// From `CRIA_ABLATE`; nothing switched off when it is unset or wrong
    /// (a wrong list is logged).
    pub fn from_env() -> Self {
        match std::env::var("CRIA_ABLATE") {
            Ok(list) => Self::parse(&list).unwrap_or_else(|e| {
                tracing::error!("{e}");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }
}

/// The default KV cache memory: about five prompts of Qwen2.5-Coder-0.5B at
/// a 4,096-token context (each holds ~100 MB of address space, of which a
/// 1,600-token prompt touches ~40 MB).
pub const DEFAULT_KV_CACHE_MB: usize = 512;

/// The default latency budget. Measured on a 2-core laptop-class CPU with
/// Qwen2.5-Coder-0.5B: a keystroke with the prompt prefix cached costs a few
/// hundred milliseconds of prefill plus about 30 ms per generated token, so
/// 2 s leaves room for a useful multi-line suggestion while still answering
/// before a user gives up on it. See README ("Latency").
pub const DEFAULT_LATENCY_BUDGET_MS: u64 = 2000;

/// The default cap on suffix tokens in prefix-suffix-middle prompts: long
/// enough for the model to see where the hole ends (the next statements of
/// the block), short enough that recomputing it on each keystroke stays a
/// small part of the latency. Measured trade-off: README, "Latency".
pub const DEFAULT_MAX_SUFFIX_TOKENS: usize = 128;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model: "qwen2.5-coder-0.5b-instruct".into(),
            max_tokens: 64,
            latency_budget_ms: DEFAULT_LATENCY_BUDGET_MS,
            prompt_tokens: 1536,
            suffix_share: DEFAULT_SUFFIX_SHARE,
            max_suffix_tokens: DEFAULT_MAX_SUFFIX_TOKENS,
            context_share: DEFAULT_CONTEXT_SHARE,
            context_length: 4096,
            threads: 0,
            device: ComputeDevice::Cpu,
            enabled_languages: None,
            disabled_languages: Vec::new(),
            temperature: 0.0,
            log_level: "warn".into(),
            backend: Backend::Embedded,
            kv_cache_mb: DEFAULT_KV_CACHE_MB,
            ablation: Ablation::from_env(),
        }
    }
}

/// Something wrong in a settings object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigProblem {
    /// A key the server does not know (a typo, or a newer client).
    UnknownKey(String),
    /// A known key with a value of the wrong type or range.
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ServerConfig {
    /// Applies a settings object (flat, or nested under `"cria"`), returning
    /// what was wrong with it.
    pub fn apply(&mut self, settings: &Value) -> Vec<ConfigProblem> {
        let settings = match settings.get("cria") {
            Some(inner @ Value::Object(_)) => inner,
            _ => settings,
        };
        let Value::Object(map) = settings else {
            if settings.is_null() {
                return Vec::new();
            }
            return vec![ConfigProblem::BadValue {
                key: "settings".into(),
                message: "expected an object".into(),
            }];
        };
        let mut problems = Vec::new();
        for (key, value) in map {
            let result = match key.as_str() {
                "model" => string(value).map(|v| self.model = v),
                "maxTokens" => integer(value, 1, 2048).map(|v| self.max_tokens = v as usize),
                "latencyBudgetMs" => {
                    integer(value, 50, 600_000).map(|v| self.latency_budget_ms = v)
                }
                "promptTokens" => {
                    integer(value, 16, 1 << 20).map(|v| self.prompt_tokens = v as usize)
                }
                "suffixShare" => fraction(value).map(|v| self.suffix_share = v),
                "maxSuffixTokens" => {
                    integer(value, 0, 1 << 20).map(|v| self.max_suffix_tokens = v as usize)
                }
                "contextShare" => fraction(value).map(|v| self.context_share = v),
                "contextLength" => {
                    integer(value, 128, 1 << 20).map(|v| self.context_length = v as usize)
                }
                "threads" => integer(value, 0, 1024).map(|v| self.threads = v as usize),
                "device" => device(value).map(|v| self.device = v),
                "enabledLanguages" => languages(value).map(|(on, off)| {
                    self.enabled_languages = on;
                    self.disabled_languages = off;
                }),
                "temperature" => number(value, 0.0, 2.0).map(|v| self.temperature = v),
                "logLevel" => string(value).map(|v| self.log_level = v),
                "backend" => backend(value).map(|v| self.backend = v),
                "kvCacheMb" => integer(value, 0, 1 << 16).map(|v| self.kv_cache_mb = v as usize),
                _ => {
                    problems.push(ConfigProblem::UnknownKey(key.clone()));
                    continue;
                }
            };
            if let Err(message) = result {
                problems.push(ConfigProblem::BadValue {
                    key: key.clone(),
                    message,
                });
            }
        }
        problems
    }

    /// Whether suggestions are wanted in a language (LSP language id).
    pub fn language_enabled(&self, language_id: &str) -> bool {
        if self.disabled_languages.iter().any(|l| l == language_id) {
            return false;
        }
        match &self.enabled_languages {
            None => true,
            Some(list) => list.iter().any(|l| l == language_id || l == "*"),
        }
    }

    /// The completion pipeline's settings.
    pub fn settings(&self) -> Settings {
        Settings {
            max_new_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                ..SamplingParams::default()
            },
            prompt_budget: Some(self.prompt_tokens),
            suffix_share: self.suffix_share,
            context_share: self.context_share,
            stop_strings: Vec::new(),
            cursor_line_after_middle: !self.ablation.no_cursor_line_after_middle,
            token_healing: !self.ablation.no_healing,
            middle_bytes: None,
        }
    }

    /// The text windows around the cursor (byte offset `cursor` of `text`)
    /// and the settings for one request in `mode`: the token budget split
    /// between prefix and suffix for this model's layout, and single-line
    /// stops. Public so that benchmarks build the server's very prompts.
    pub fn prompt_text(
        &self,
        model: &Model,
        text: &str,
        cursor: usize,
        tree: Option<&tree_sitter::Tree>,
        mode: CompletionMode,
    ) -> (CursorText, Settings) {
        self.prompt_text_within(self.prompt_tokens, model, text, cursor, tree, mode)
    }

    /// Like [`Self::prompt_text`], for a prompt of at most `prompt_tokens`:
    /// a small prompt answers a cold cursor (nothing cached) within the
    /// budget while the full one is computed in the background. It keeps
    /// the suffix to a third and leaves out other files' snippets.
    pub fn quick_prompt_text(
        &self,
        prompt_tokens: usize,
        model: &Model,
        text: &str,
        cursor: usize,
        tree: Option<&tree_sitter::Tree>,
        mode: CompletionMode,
    ) -> (CursorText, Settings) {
        let quick = ServerConfig {
            max_suffix_tokens: self.max_suffix_tokens.min(prompt_tokens / 3),
            context_share: 0.0,
            ..self.clone()
        };
        let (cursor_text, mut settings) =
            quick.prompt_text_within(prompt_tokens, model, text, cursor, tree, mode);
        settings.prompt_budget = Some(prompt_tokens);
        (cursor_text, settings)
    }

    fn prompt_text_within(
        &self,
        prompt_tokens: usize,
        model: &Model,
        text: &str,
        cursor: usize,
        tree: Option<&tree_sitter::Tree>,
        mode: CompletionMode,
    ) -> (CursorText, Settings) {
        let tokenizer = &model.loaded.tokenizer;
        let count = |s: &str| tokenizer.encode(s).map(|t| t.len()).unwrap_or(usize::MAX);
        let template = &model.template;
        let room = prompt_tokens.saturating_sub(template.control_token_count());
        let share = (room as f32 * self.suffix_share) as usize;
        let suffix_tokens = match template.order {
            _ if !template.uses_suffix() => 0,
            // The suffix follows the cursor in token order: all of it is
            // recomputed on every keystroke, so it is capped.
            FimOrder::Psm if !self.ablation.no_suffix_cap => share.min(self.max_suffix_tokens),
            _ => share,
        };
        let context_tokens = (room as f32 * self.context_share) as usize;
        let budget = WindowBudget {
            prefix_tokens: room.saturating_sub(suffix_tokens + context_tokens),
            suffix_tokens,
        };
        let mut settings = self.settings();
        let cursor_text = if self.ablation.no_windows {
            settings.suffix_share = suffix_tokens as f32 / room.max(1) as f32;
            CursorText {
                prefix: text[..cursor].to_string(),
                suffix: text[cursor..].to_string(),
            }
        } else {
            // The windows already fit; the prompt builder only guards the budget.
            settings.suffix_share = 1.0;
            cursor_windows(text, cursor, tree, budget, &count)
        };
        if mode == CompletionMode::SingleLine {
            settings.max_new_tokens = settings.max_new_tokens.min(48);
            settings.stop_strings.push("\n".into());
        }
        (cursor_text, settings)
    }
}

fn string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(format!("expected a non-empty string, got {value}")),
    }
}

fn integer(value: &Value, min: u64, max: u64) -> Result<u64, String> {
    match value.as_u64() {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected an integer from {min} to {max}, got {value}"
        )),
    }
}

fn number(value: &Value, min: f64, max: f64) -> Result<f32, String> {
    match value.as_f64() {
        Some(v) if (min..=max).contains(&v) => Ok(v as f32),
        _ => Err(format!(
            "expected a number from {min} to {max}, got {value}"
        )),
    }
}

fn fraction(value: &Value) -> Result<f32, String> {
    number(value, 0.0, 1.0)
}

/// `"cpu"`, `"cuda"`, `"cuda:N"`, `"metal"`, `"metal:N"` (or `"candle-cpu"`).
/// Whether this build can use it is found out when the model loads.
fn device(value: &Value) -> Result<ComputeDevice, String> {
    match value {
        Value::String(s) => s
            .parse()
            .map_err(|e: crate::engine::UnknownDevice| e.to_string()),
        _ => Err(format!(
            "expected a device name such as \"cpu\", \"cuda\" or \"cuda:1\", got {value}"
        )),
    }
}

/// `{ "kind": "embedded" }`, or `{ "kind": "remote", "url": ..., "flavour":
/// "openai" | "llamacpp-infill", "apiKeyEnv": ..., "model": ..., "prompt":
/// "tokens" | "text" }`; `"embedded"` alone also works.
fn backend(value: &Value) -> Result<Backend, String> {
    let map = match value {
        Value::String(kind) if kind == "embedded" => return Ok(Backend::Embedded),
        Value::Object(map) => map,
        _ => {
            let got = crate::remote::redact_userinfo(&value.to_string());
            return Err(format!("expected {{ \"kind\": \"embedded\" }} or {{ \"kind\": \"remote\", \"url\": ... }}, got {got}"));
        }
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        map.get(key)
            .map(|v| string(v).map_err(|e| format!("`{key}`: {e}")))
            .transpose()
    };
    match text("kind")?.as_deref() {
        Some("embedded") => {
            if let Some(key) = map.keys().find(|k| *k != "kind") {
                return Err(format!("`{key}` does not apply to the embedded backend"));
            }
            Ok(Backend::Embedded)
        }
        Some("remote") => {
            const KEYS: [&str; 6] = ["kind", "url", "flavour", "apiKeyEnv", "model", "prompt"];
            if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
                return Err(format!(
                    "unknown key `{key}` (expected one of {})",
                    KEYS.join(", ")
                ));
            }
            let url = text("url")?.ok_or("a remote backend needs `url`")?;
            let flavour = match text("flavour")? {
                None => Flavour::default(),
                Some(f) => Flavour::parse(&f).ok_or_else(|| {
                    format!("`flavour`: expected \"openai\" or \"llamacpp-infill\", got \"{f}\"")
                })?,
            };
            let prompt = match text("prompt")? {
                None => PromptFormat::default(),
                Some(p) => PromptFormat::parse(&p).ok_or_else(|| {
                    format!("`prompt`: expected \"tokens\" or \"text\", got \"{p}\"")
                })?,
            };
            let config = RemoteConfig {
                url,
                flavour,
                api_key_env: text("apiKeyEnv")?,
                served_model: text("model")?,
                prompt,
            };
            config.endpoint().map_err(|e| e.to_string())?;
            Ok(Backend::Remote(config))
        }
        Some(other) => Err(format!(
            "`kind`: expected \"embedded\" or \"remote\", got \"{other}\""
        )),
        None => Err("`kind` is missing (\"embedded\" or \"remote\")".into()),
    }
}

/// A list of language ids, or an object `{ "python": true, "markdown": false, "*": true }`.
fn languages(value: &Value) -> Result<(Option<Vec<String>>, Vec<String>), String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("expected language ids, got {i}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|list| (Some(list), Vec::new())),
        Value::Object(map) => {
            let mut on = Vec::new();
            let mut off = Vec::new();
            for (lang, enabled) in map {
                match enabled.as_bool() {
                    Some(true) => on.push(lang.clone()),
                    Some(false) => off.push(lang.clone()),
                    None => return Err(format!("`{lang}`: expected true or false, got {enabled}")),
                }
            }
            let all = map.get("*").and_then(Value::as_bool).unwrap_or(true);
            Ok((if all { None } else { Some(on) }, off))
        }
        _ => Err(format!(
            "expected a list of language ids or an object of booleans, got {value}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn good_values_apply_and_bad_ones_keep_the_previous_value() {
        let mut c = ServerConfig::default();
        let problems = c.apply(&json!({"maxTokens": 32, "latencyBudgetMs": "fast", "colour": "red", "temperature": 0.2}));
        assert_eq!(c.max_tokens, 32);
        assert_eq!(c.latency_budget_ms, DEFAULT_LATENCY_BUDGET_MS);
        assert_eq!(c.temperature, 0.2);
        assert_eq!(problems.len(), 2);
        assert!(problems.contains(&ConfigProblem::UnknownKey("colour".into())));
        assert!(
            matches!(&problems[..], [ConfigProblem::BadValue { key, .. }, _] | [_, ConfigProblem::BadValue { key, .. }] if key == "latencyBudgetMs")
        );
    }

    #[test]
    fn threads_take_a_count_or_zero_for_the_default() {
        let mut c = ServerConfig::default();
        assert_eq!(c.threads, 0);
        assert!(c.apply(&json!({"threads": 3})).is_empty());
        assert_eq!(c.threads, 3);
        assert_eq!(c.apply(&json!({"threads": -1})).len(), 1);
        assert_eq!(c.threads, 3);
    }

    #[test]
    fn the_suffix_cap_takes_a_token_count() {
        let mut c = ServerConfig::default();
        assert_eq!(c.max_suffix_tokens, DEFAULT_MAX_SUFFIX_TOKENS);
        assert!(c.apply(&json!({"maxSuffixTokens": 0})).is_empty());
        assert_eq!(c.max_suffix_tokens, 0);
        assert_eq!(c.apply(&json!({"maxSuffixTokens": 1.5})).len(), 1);
        assert_eq!(c.max_suffix_tokens, 0);
    }

    #[test]
    fn device_takes_a_known_name_and_refuses_others() {
        let mut c = ServerConfig::default();
        assert_eq!(c.device, ComputeDevice::Cpu);
        assert!(c.apply(&json!({"device": "cuda:1"})).is_empty());
        assert_eq!(c.device, ComputeDevice::Cuda(1));
        assert!(c.apply(&json!({"device": "metal"})).is_empty());
        assert_eq!(c.device, ComputeDevice::Metal(0));
        for bad in [json!("gpu"), json!("cuda:x"), json!(1), json!(null)] {
            let problems = c.apply(&json!({ "device": bad }));
            assert!(
                matches!(&problems[..], [ConfigProblem::BadValue { key, .. }] if key == "device"),
                "{bad}: {problems:?}"
            );
            assert_eq!(
                c.device,
                ComputeDevice::Metal(0),
                "a bad device keeps the previous one"
            );
        }
        assert!(c.apply(&json!({"device": "cpu"})).is_empty());
        assert_eq!(c.device, ComputeDevice::Cpu);
    }

    #[test]
    fn settings_nested_under_cria_are_read() {
        let mut c = ServerConfig::default();
        assert!(c
            .apply(&json!({"cria": {"model": "smollm2-135m-instruct"}}))
            .is_empty());
        assert_eq!(c.model, "smollm2-135m-instruct");
    }

    #[test]
    fn backends_embedded_or_remote_and_bad_ones_refused() {
        let mut c = ServerConfig::default();
        let problems = c.apply(&json!({"backend": {"kind": "remote", "url": "http://gpu:8000/v1", "flavour": "llamacpp-infill", "apiKeyEnv": "GPU_KEY", "model": "qwen"}}));
        assert!(problems.is_empty(), "{problems:?}");
        let Backend::Remote(remote) = &c.backend else {
            panic!("remote expected")
        };
        assert_eq!(
            (
                remote.flavour,
                remote.api_key_env.as_deref(),
                remote.served_model.as_deref()
            ),
            (Flavour::LlamaCppInfill, Some("GPU_KEY"), Some("qwen"))
        );
        assert_eq!(remote.prompt, PromptFormat::Tokens);
        for bad in [
            json!({"kind": "remote"}),
            json!({"kind": "remote", "url": "gpu:8000"}),
            json!({"kind": "remote", "url": "http://gpu", "flavor": "openai"}),
            json!({"kind": "remote", "url": "http://gpu", "flavour": "tgi"}),
            json!({"kind": "cloud"}),
            json!({"kind": "embedded", "url": "http://gpu"}),
            json!(42),
        ] {
            let before = c.backend.clone();
            let problems = c.apply(&json!({ "backend": bad }));
            assert!(
                matches!(&problems[..], [ConfigProblem::BadValue { key, .. }] if key == "backend"),
                "{bad}: {problems:?}"
            );
            assert_eq!(c.backend, before, "a bad backend keeps the previous one");
        }
        assert!(c.apply(&json!({"backend": "embedded"})).is_empty());
        assert_eq!(c.backend, Backend::Embedded);
    }

    #[test]
    fn languages_as_list_or_object() {
        let mut c = ServerConfig::default();
        c.apply(&json!({"enabledLanguages": ["python", "rust"]}));
        assert!(c.language_enabled("python") && !c.language_enabled("go"));
        c.apply(&json!({"enabledLanguages": {"markdown": false}}));
        assert!(c.language_enabled("go") && !c.language_enabled("markdown"));
        c.apply(&json!({"enabledLanguages": {"*": false, "rust": true}}));
        assert!(c.language_enabled("rust") && !c.language_enabled("go"));
    }
}
