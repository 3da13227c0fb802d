//! The server's settings, read from `initializationOptions` and
//! `workspace/didChangeConfiguration`.
//!
//! Each key is read on its own: an unknown key is reported as a warning, a
//! bad value as an error, and in both cases every other key still applies and
//! the bad key keeps its previous value.

use serde_json::Value;

use crate::completion::{Ablation, Backend, SuggestionSettings};
use crate::engine::ComputeDevice;
use crate::remote::{Flavour, PromptFormat, RemoteConfig};

/// Every setting the server understands, with its default.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Model config name or path to a `.gguf` file.
    pub model: String,
    /// What shapes a suggestion: tokens, sampling, prompt budget and its
    /// split (kept in `completion`, so every front end shares the defaults).
    pub suggestion: SuggestionSettings,
    /// Every request is answered within this many milliseconds.
    pub latency_budget_ms: u64,
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
    /// tracing filter for the server's log (stderr).
    pub log_level: String,
    /// Where the model runs: here, or on a remote serving engine.
    pub backend: Backend,
    /// MiB of KV caches kept for recent documents and cursor places (each
    /// keeps its prompt computed, so going back costs nothing); 0 = one.
    pub kv_cache_mb: usize,
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

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model: "qwen2.5-coder-0.5b-instruct".into(),
            suggestion: SuggestionSettings { ablation: Ablation::from_env(), ..SuggestionSettings::default() },
            latency_budget_ms: DEFAULT_LATENCY_BUDGET_MS,
            context_length: 4096,
            threads: 0,
            device: ComputeDevice::Cpu,
            enabled_languages: None,
            disabled_languages: Vec::new(),
            log_level: "warn".into(),
            backend: Backend::Embedded,
            kv_cache_mb: DEFAULT_KV_CACHE_MB,
        }
    }
}

/// One setting as clients send it: the single list the server, the editors'
/// settings and every settings table in the docs follow (checked by
/// `tests/settings_schema.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key, as sent (`maxTokens`); editors prefix it (`cria.maxTokens`).
    pub name: &'static str,
    /// The default as JSON; applying it leaves [`ServerConfig::default`] as it is.
    pub default_json: &'static str,
    /// The default as the docs' tables write it (without backticks).
    pub default_shown: &'static str,
}

const fn setting(name: &'static str, default_json: &'static str, default_shown: &'static str) -> Setting {
    Setting { name, default_json, default_shown }
}

/// Every setting the server reads, in the order the docs list them.
pub const SETTINGS: &[Setting] = &[
    setting("model", "\"qwen2.5-coder-0.5b-instruct\"", "qwen2.5-coder-0.5b-instruct"),
    setting("maxTokens", "64", "64"),
    setting("latencyBudgetMs", "2000", "2000"),
    setting("promptTokens", "1536", "1536"),
    setting("suffixShare", "0.25", "0.25"),
    setting("maxSuffixTokens", "128", "128"),
    setting("contextShare", "0.15", "0.15"),
    setting("contextLength", "4096", "4096"),
    setting("threads", "0", "0"),
    setting("device", "\"cpu\"", "cpu"),
    setting("enabledLanguages", "{\"*\": true}", "all"),
    setting("temperature", "0", "0"),
    setting("logLevel", "\"warn\"", "warn"),
    setting("backend", "{\"kind\": \"embedded\"}", "{ \"kind\": \"embedded\" }"),
    setting("kvCacheMb", "512", "512"),
];

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
            return vec![ConfigProblem::BadValue { key: "settings".into(), message: "expected an object".into() }];
        };
        let mut problems = Vec::new();
        for (key, value) in map {
            if !SETTINGS.iter().any(|s| s.name == key) {
                problems.push(ConfigProblem::UnknownKey(key.clone()));
                continue;
            }
            let result = match key.as_str() {
                "model" => string(value).map(|v| self.model = v),
                "maxTokens" => integer(value, 1, 2048).map(|v| self.suggestion.max_tokens = v as usize),
                "latencyBudgetMs" => integer(value, 50, 600_000).map(|v| self.latency_budget_ms = v),
                "promptTokens" => integer(value, 16, 1 << 20).map(|v| self.suggestion.prompt_tokens = v as usize),
                "suffixShare" => fraction(value).map(|v| self.suggestion.suffix_share = v),
                "maxSuffixTokens" => integer(value, 0, 1 << 20).map(|v| self.suggestion.max_suffix_tokens = v as usize),
                "contextShare" => fraction(value).map(|v| self.suggestion.context_share = v),
                "contextLength" => integer(value, 128, 1 << 20).map(|v| self.context_length = v as usize),
                "threads" => integer(value, 0, 1024).map(|v| self.threads = v as usize),
                "device" => device(value).map(|v| self.device = v),
                "enabledLanguages" => languages(value).map(|(on, off)| {
                    self.enabled_languages = on;
                    self.disabled_languages = off;
                }),
                "temperature" => number(value, 0.0, 2.0).map(|v| self.suggestion.temperature = v),
                "logLevel" => string(value).map(|v| self.log_level = v),
                "backend" => backend(value).map(|v| self.backend = v),
                "kvCacheMb" => integer(value, 0, 1 << 16).map(|v| self.kv_cache_mb = v as usize),
                _ => {
                    problems.push(ConfigProblem::UnknownKey(key.clone()));
                    continue;
                }
            };
            if let Err(message) = result {
                problems.push(ConfigProblem::BadValue { key: key.clone(), message });
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
        _ => Err(format!("expected an integer from {min} to {max}, got {value}")),
    }
}

fn number(value: &Value, min: f64, max: f64) -> Result<f32, String> {
    match value.as_f64() {
        Some(v) if (min..=max).contains(&v) => Ok(v as f32),
        _ => Err(format!("expected a number from {min} to {max}, got {value}")),
    }
}

fn fraction(value: &Value) -> Result<f32, String> {
    number(value, 0.0, 1.0)
}

/// `"cpu"`, `"cuda"`, `"cuda:N"`, `"metal"`, `"metal:N"` (or `"candle-cpu"`).
/// Whether this build can use it is found out when the model loads.
fn device(value: &Value) -> Result<ComputeDevice, String> {
    match value {
        Value::String(s) => s.parse().map_err(|e: crate::engine::UnknownDevice| e.to_string()),
        _ => Err(format!("expected a device name such as \"cpu\", \"cuda\" or \"cuda:1\", got {value}")),
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
    let text =
        |key: &str| -> Result<Option<String>, String> { map.get(key).map(|v| string(v).map_err(|e| format!("`{key}`: {e}"))).transpose() };
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
                return Err(format!("unknown key `{key}` (expected one of {})", KEYS.join(", ")));
            }
            let url = text("url")?.ok_or("a remote backend needs `url`")?;
            let flavour = match text("flavour")? {
                None => Flavour::default(),
                Some(f) => {
                    Flavour::parse(&f).ok_or_else(|| format!("`flavour`: expected \"openai\" or \"llamacpp-infill\", got \"{f}\""))?
                }
            };
            let prompt = match text("prompt")? {
                None => PromptFormat::default(),
                Some(p) => PromptFormat::parse(&p).ok_or_else(|| format!("`prompt`: expected \"tokens\" or \"text\", got \"{p}\""))?,
            };
            let config = RemoteConfig { url, flavour, api_key_env: text("apiKeyEnv")?, served_model: text("model")?, prompt };
            config.endpoint().map_err(|e| e.to_string())?;
            Ok(Backend::Remote(config))
        }
        Some(other) => Err(format!("`kind`: expected \"embedded\" or \"remote\", got \"{other}\"")),
        None => Err("`kind` is missing (\"embedded\" or \"remote\")".into()),
    }
}

/// A list of language ids, or an object `{ "python": true, "markdown": false, "*": true }`.
fn languages(value: &Value) -> Result<(Option<Vec<String>>, Vec<String>), String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("expected language ids, got {i}")))
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
        _ => Err(format!("expected a list of language ids or an object of booleans, got {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::DEFAULT_MAX_SUFFIX_TOKENS;
    use serde_json::json;

    #[test]
    fn every_listed_setting_applies_and_its_default_is_the_servers() {
        let mut c = ServerConfig::default();
        for setting in SETTINGS {
            let value: Value = serde_json::from_str(setting.default_json).unwrap_or_else(|e| panic!("{}: {e}", setting.name));
            assert_eq!(c.apply(&json!({ setting.name: value })), vec![], "{}", setting.name);
        }
        assert_eq!(c, ServerConfig::default(), "a listed default differs from the server's");
        let names: std::collections::HashSet<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), SETTINGS.len(), "a setting is listed twice");
    }

    #[test]
    fn good_values_apply_and_bad_ones_keep_the_previous_value() {
        let mut c = ServerConfig::default();
        let problems = c.apply(&json!({"maxTokens": 32, "latencyBudgetMs": "fast", "colour": "red", "temperature": 0.2}));
        assert_eq!(c.suggestion.max_tokens, 32);
        assert_eq!(c.latency_budget_ms, DEFAULT_LATENCY_BUDGET_MS);
        assert_eq!(c.suggestion.temperature, 0.2);
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
        assert_eq!(c.suggestion.max_suffix_tokens, DEFAULT_MAX_SUFFIX_TOKENS);
        assert!(c.apply(&json!({"maxSuffixTokens": 0})).is_empty());
        assert_eq!(c.suggestion.max_suffix_tokens, 0);
        assert_eq!(c.apply(&json!({"maxSuffixTokens": 1.5})).len(), 1);
        assert_eq!(c.suggestion.max_suffix_tokens, 0);
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
            assert!(matches!(&problems[..], [ConfigProblem::BadValue { key, .. }] if key == "device"), "{bad}: {problems:?}");
            assert_eq!(c.device, ComputeDevice::Metal(0), "a bad device keeps the previous one");
        }
        assert!(c.apply(&json!({"device": "cpu"})).is_empty());
        assert_eq!(c.device, ComputeDevice::Cpu);
    }

    #[test]
    fn settings_nested_under_cria_are_read() {
        let mut c = ServerConfig::default();
        assert!(c.apply(&json!({"cria": {"model": "smollm2-135m-instruct"}})).is_empty());
        assert_eq!(c.model, "smollm2-135m-instruct");
    }

    #[test]
    fn backends_embedded_or_remote_and_bad_ones_refused() {
        let mut c = ServerConfig::default();
        let problems = c.apply(&json!({"backend": {"kind": "remote", "url": "http://gpu:8000/v1", "flavour": "llamacpp-infill", "apiKeyEnv": "GPU_KEY", "model": "qwen"}}));
        assert!(problems.is_empty(), "{problems:?}");
        let Backend::Remote(remote) = &c.backend else { panic!("remote expected") };
        assert_eq!(
            (remote.flavour, remote.api_key_env.as_deref(), remote.served_model.as_deref()),
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
            assert!(matches!(&problems[..], [ConfigProblem::BadValue { key, .. }] if key == "backend"), "{bad}: {problems:?}");
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
