//! Remote inference backends: the model runs on another machine (vLLM, TGI,
//! llama.cpp's server, Ollama, or `cria serve`) and cria sends it the prompt
//! it built itself, then reads the answer as a stream so that the latency
//! budget, cancellation and stop strings can end it early. Ending it early
//! drops the connection, which tells the engine to stop.
//!
//! Two wire flavours: OpenAI's `/v1/completions` (the prompt as token ids,
//! or as text for engines that only take text) and llama.cpp's `/infill`
//! (prefix and suffix as text; llama.cpp lays out the FIM prompt and keeps
//! its KV prefix with `cache_prompt`).
//!
//! This module and `serve` are the only places besides `protocol` that
//! build JSON for the wire. The API key is read from an environment
//! variable, sent only in the `Authorization` header (marked sensitive) and
//! never logged or shown. A user name and password in the URL are sent as
//! the URL says, but never shown: every message, error and `Debug` output
//! shows the URL with them redacted ([`redact_userinfo`]).
//!
//! An answer is read within bounds: at most 64 KiB per token asked for
//! (and at least 4 MiB), 4 MiB for an answer sent as one JSON document,
//! stop strings found in one pass, the deadline checked between pieces.

mod client;
pub mod prompt;
pub mod sse;
pub mod wire;

use std::fmt;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::engine::{Completion, GenerationRequest, Tokenizer};
use crate::prompt::FimTemplate;

/// Which API the remote engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    /// OpenAI-compatible `POST /v1/completions` (vLLM, TGI, llama.cpp, Ollama, `cria serve`).
    #[default]
    OpenAi,
    /// llama.cpp's native `POST /infill`.
    LlamaCppInfill,
}

impl Flavour {
    /// The name used in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::LlamaCppInfill => "llamacpp-infill",
        }
    }

    /// Reads a settings name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::OpenAi),
            "llamacpp-infill" => Some(Self::LlamaCppInfill),
            _ => None,
        }
    }
}

/// How an OpenAI-flavoured request carries the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptFormat {
    /// Token ids: exactly the prompt the resident model would run (vLLM,
    /// llama.cpp, `cria serve`).
    #[default]
    Tokens,
    /// Text, with control tokens written as their vocabulary text (TGI,
    /// Ollama, which take only text).
    Text,
}

impl PromptFormat {
    /// The name used in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Text => "text",
        }
    }

    /// Reads a settings name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tokens" => Some(Self::Tokens),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

/// `text` with the user name and password of every URL in it replaced by
/// `<redacted>` (`http://alice:secret@gpu/` becomes `http://<redacted>@gpu/`).
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let end = rest.find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()).unwrap_or(rest.len());
        if let Some(userinfo_end) = rest[..end].rfind('@') {
            out.push_str("<redacted>");
            rest = &rest[userinfo_end..];
        }
    }
    out.push_str(rest);
    out
}

/// Where a remote engine is and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Base URL (`http://gpu-box:8000`; a trailing `/v1` is allowed).
    pub url: String,
    /// The API it speaks.
    pub flavour: Flavour,
    /// The environment variable holding the API key, if the engine wants one.
    pub api_key_env: Option<String>,
    /// The model name the engine serves, sent as `model` (vLLM needs it).
    pub served_model: Option<String>,
    /// How the prompt travels (OpenAI flavour only).
    pub prompt: PromptFormat,
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &redact_userinfo(&self.url))
            .field("flavour", &self.flavour)
            .field("api_key_env", &self.api_key_env)
            .field("served_model", &self.served_model)
            .field("prompt", &self.prompt)
            .finish()
    }
}

impl RemoteConfig {
    /// A config for `url` with every other choice at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), flavour: Flavour::default(), api_key_env: None, served_model: None, prompt: PromptFormat::default() }
    }

    /// The URL requests go to, checked: http or https with a host.
    pub fn endpoint(&self) -> Result<reqwest::Url, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl { url: redact_userinfo(&self.url), reason: redact_userinfo(reason) };
        let base = reqwest::Url::parse(self.url.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad("expected an http:// or https:// URL with a host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("a query or fragment is not allowed"));
        }
        let path = base.path().trim_end_matches('/');
        let root = path.strip_suffix("/v1").unwrap_or(path);
        let path = match self.flavour {
            Flavour::OpenAi => format!("{root}/v1/completions"),
            Flavour::LlamaCppInfill => format!("{root}/infill"),
        };
        let mut url = base.clone();
        url.set_path(&path);
        Ok(url)
    }
}

/// Why a remote completion failed. Messages are shown to users (in
/// `cria/status`) as they are, and never contain the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The backend URL is not usable.
    #[error("backend url `{url}`: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The variable meant to hold the API key is not set.
    #[error("the environment variable {name} (backend `apiKeyEnv`) is not set or empty; set it to the remote engine's API key before starting the editor")]
    MissingKey {
        /// The variable's name.
        name: String,
    },
    /// The HTTP client could not be set up (TLS roots, for instance).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// No connection could be made.
    #[error("cannot reach the remote engine at {url}: {reason}")]
    Connect {
        /// The endpoint.
        url: String,
        /// What the network said.
        reason: String,
    },
    /// Nothing was generated within the latency budget.
    #[error("the remote engine at {url} sent nothing within the latency budget ({ms} ms)")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The time waited.
        ms: u64,
    },
    /// The engine refused the API key.
    #[error("the remote engine at {url} refused the request ({status}): {message}; check the API key in the environment variable {key_hint}")]
    Unauthorized {
        /// The endpoint.
        url: String,
        /// 401 or 403.
        status: u16,
        /// The engine's message.
        message: String,
        /// The variable the key came from, or a hint to set `apiKeyEnv`.
        key_hint: String,
    },
    /// The engine answered with another error status.
    #[error("the remote engine at {url} answered {status}: {message}")]
    Status {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// The answer could not be read as the flavour's format.
    #[error("the remote engine at {url} sent a malformed answer: {detail}")]
    Malformed {
        /// The endpoint.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The connection broke while the answer was read.
    #[error("the connection to the remote engine at {url} broke: {reason}")]
    Transport {
        /// The endpoint.
        url: String,
        /// What the network said.
        reason: String,
    },
    /// The prompt does not follow the model's template (a bug, reported plainly).
    #[error("the prompt does not follow the template of the model; cannot send it as llama.cpp infill")]
    Prompt,
    /// Remote completion was asked for outside an async runtime.
    #[error("the remote backend needs an async runtime (use it from the language server)")]
    NoRuntime,
}

/// An API key, kept out of `Debug` output and logs.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A remote engine, ready for completions. Cheap to share (`Arc`); the HTTP
/// client inside keeps connections alive between requests.
pub struct RemoteClient {
    http: reqwest::Client,
    config: RemoteConfig,
    endpoint: reqwest::Url,
    api_key: Option<ApiKey>,
    tokenizer: Arc<Tokenizer>,
    template: FimTemplate,
    /// Sent as `user`, so that `cria serve` keeps this editor's KV prefix.
    client_id: String,
}

impl fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteClient")
            .field("endpoint", &redact_userinfo(self.endpoint.as_str()))
            .field("flavour", &self.config.flavour)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// How long connecting may take when a request has no deadline of its own;
/// requests with a deadline (every editor request) connect within it.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl RemoteClient {
    /// Sets up a client for `config`, reading the API key with `env` (the
    /// process environment in practice; a map in tests). The tokenizer and
    /// template are the model's, to lay out and measure prompts.
    pub fn new(
        config: RemoteConfig,
        tokenizer: Arc<Tokenizer>,
        template: FimTemplate,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RemoteError> {
        let endpoint = config.endpoint()?;
        let api_key = match &config.api_key_env {
            Some(name) => match env(name) {
                Some(key) if !key.trim().is_empty() => Some(ApiKey(key.trim().to_string())),
                _ => return Err(RemoteError::MissingKey { name: name.clone() }),
            },
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(concat!("cria/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteError::Client(client::describe(&e)))?;
        let client_id = format!("cria-{:016x}", rand::random::<u64>());
        Ok(Self { http, config, endpoint, api_key, tokenizer, template, client_id })
    }

    /// Where completions are sent.
    pub fn endpoint(&self) -> &reqwest::Url {
        &self.endpoint
    }

    /// Starts a completion on the current async runtime; the answer arrives
    /// on the receiver. The request's deadline and cancellation flag end it
    /// early (closing the connection); what was generated by then is kept.
    pub fn generate(self: &Arc<Self>, request: GenerationRequest) -> oneshot::Receiver<Result<Completion, RemoteError>> {
        let (tx, rx) = oneshot::channel();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let this = self.clone();
                runtime.spawn(async move {
                    let result = this.run(&request).await;
                    let _ = tx.send(result);
                });
            }
            Err(_) => {
                let _ = tx.send(Err(RemoteError::NoRuntime));
            }
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, flavour: Flavour) -> Result<String, RemoteError> {
        RemoteConfig { flavour, ..RemoteConfig::new(url) }.endpoint().map(|u| u.to_string())
    }

    #[test]
    fn endpoints_accept_a_base_url_with_or_without_v1() {
        assert_eq!(endpoint("http://gpu:8000", Flavour::OpenAi).unwrap(), "http://gpu:8000/v1/completions");
        assert_eq!(endpoint("https://gpu/v1/", Flavour::OpenAi).unwrap(), "https://gpu/v1/completions");
        assert_eq!(endpoint("http://gpu:8080/llm/v1", Flavour::LlamaCppInfill).unwrap(), "http://gpu:8080/llm/infill");
        assert!(matches!(endpoint("ftp://gpu", Flavour::OpenAi), Err(RemoteError::BadUrl { .. })));
        assert!(matches!(endpoint("gpu:8000", Flavour::OpenAi), Err(RemoteError::BadUrl { .. })));
        assert!(matches!(endpoint("http://gpu/?a=1", Flavour::OpenAi), Err(RemoteError::BadUrl { .. })));
    }

    #[test]
    fn user_names_and_passwords_in_urls_are_redacted() {
        assert_eq!(redact_userinfo("http://alice:s3cret@gpu:8000/v1"), "http://<redacted>@gpu:8000/v1");
        assert_eq!(redact_userinfo("at https://tok@h and http://u:p@x:1?q=a@b"), "at https://<redacted>@h and http://<redacted>@x:1?q=a@b");
        assert_eq!(redact_userinfo("http://gpu:8000/a@b"), "http://gpu:8000/a@b");
        assert_eq!(redact_userinfo("no url, user@host"), "no url, user@host");
        let config = RemoteConfig::new("http://alice:s3cret@gpu:8000");
        assert!(!format!("{config:?}").contains("s3cret"));
        let bad = RemoteConfig::new("ftp://alice:s3cret@gpu").endpoint().unwrap_err().to_string();
        assert!(bad.contains("<redacted>") && !bad.contains("s3cret"), "{bad}");
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let key = ApiKey("sk-secret".into());
        assert!(!format!("{key:?}").contains("secret"));
    }
}
