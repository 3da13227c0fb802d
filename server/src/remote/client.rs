//! One remote completion: write the request for the flavour, send it, read
//! the streamed answer piece by piece, and stop at the end of the answer, a
//! stop string, the deadline or cancellation, whichever comes first.
//! Stopping early drops the response, which closes the connection.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::prompt::{prompt_text, split_infill};
use super::sse::SseReader;
use super::wire::{CompletionRequest, CompletionResponse, ErrorBody, InfillChunk, InfillExtra, InfillRequest, PromptValue, StopValue, StreamOptions};
use super::{Flavour, PromptFormat, RemoteClient, RemoteError};
use crate::engine::{CancelFlag, Completion, GenerationRequest, StopReason};

/// How often a waiting request looks at its cancellation flag.
const CANCEL_POLL: Duration = Duration::from_millis(10);
/// The limit for a request without a deadline (not from an editor).
const NO_DEADLINE_LIMIT: Duration = Duration::from_secs(120);
/// Error bodies are read up to this size for their message.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// A streamed answer may be at most this many bytes per token asked for
/// (events carry JSON around each piece of text)...
const STREAM_BYTES_PER_TOKEN: usize = 64 << 10;
/// ...and at least this many, and an answer sent as one JSON document at
/// most this many.
const MIN_ANSWER_BYTES: usize = 4 << 20;

/// The most bytes read of an answer to `request`: a flooding engine is cut
/// off there, whatever it sends.
pub(super) fn answer_limit(request: &GenerationRequest) -> usize {
    request.max_new_tokens.saturating_mul(STREAM_BYTES_PER_TOKEN).max(MIN_ANSWER_BYTES)
}

/// A network error on one line: its causes (the top message only repeats
/// the URL), or the error itself when it has none; user names and
/// passwords in URLs redacted.
pub(super) fn describe(error: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let text = if causes.is_empty() { error.to_string() } else { causes.join(": ") };
    super::redact_userinfo(&text)
}

enum Wait<T> {
    Done(T),
    Deadline,
    Cancelled,
}

/// Runs `future` until it finishes, the deadline passes or the flag is set.
async fn until<F: Future>(deadline: Instant, cancel: &CancelFlag, future: F) -> Wait<F::Output> {
    tokio::pin!(future);
    let mut tick = tokio::time::interval(CANCEL_POLL);
    loop {
        if cancel.is_cancelled() {
            return Wait::Cancelled;
        }
        tokio::select! {
            out = &mut future => return Wait::Done(out),
            () = tokio::time::sleep_until(deadline.into()) => return Wait::Deadline,
            _ = tick.tick() => {}
        }
    }
}

/// What has arrived of an answer so far.
struct Answer {
    text: String,
    finish: Option<StopReason>,
    cached_tokens: Option<usize>,
    first_text: Option<Instant>,
    done: bool,
    /// The stop strings, found in one pass (`None` without any).
    stops: Option<aho_corasick::AhoCorasick>,
    /// Bytes of the longest stop string.
    longest_stop: usize,
    /// No stop string starts before this byte of `text`.
    scanned: usize,
}

impl Answer {
    fn new(stops: &[String]) -> Self {
        let stops: Vec<&str> = stops.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
        let longest_stop = stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let matcher = if stops.is_empty() { None } else { aho_corasick::AhoCorasick::new(&stops).ok() };
        Self { text: String::new(), finish: None, cached_tokens: None, first_text: None, done: false, stops: matcher, longest_stop, scanned: 0 }
    }

    fn add_text(&mut self, piece: &str) {
        if !piece.is_empty() && self.first_text.is_none() {
            self.first_text = Some(Instant::now());
        }
        self.text.push_str(piece);
    }

    /// Cuts the text at the first stop string; true when one was found.
    /// Only text that came since the last call (and the tail a stop string
    /// could straddle) is searched, so the scan is linear in the answer.
    fn cut_at_stop(&mut self) -> bool {
        let Some(stops) = &self.stops else { return false };
        let mut from = self.scanned.saturating_sub(self.longest_stop.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let at = stops.find(&self.text[from..]).map(|m| from + m.start());
        self.scanned = self.text.len();
        if let Some(at) = at {
            self.text.truncate(at);
            self.finish = Some(StopReason::Stop);
            self.done = true;
        }
        at.is_some()
    }
}

fn finish_reason(reason: &str) -> StopReason {
    match reason {
        "length" | "limit" => StopReason::Length,
        "word" => StopReason::Stop,
        _ => StopReason::Eos,
    }
}

impl RemoteClient {
    /// The endpoint as shown in messages: without a user name or password.
    fn url(&self) -> String {
        super::redact_userinfo(self.endpoint.as_str())
    }

    fn malformed(&self, detail: impl Into<String>) -> RemoteError {
        RemoteError::Malformed { url: self.url(), detail: detail.into() }
    }

    /// The request body for the flavour.
    fn body(&self, request: &GenerationRequest) -> Result<Vec<u8>, RemoteError> {
        let sampling = &request.sampling;
        let seed = (sampling.temperature > 0.0).then_some(sampling.seed);
        let stop = request.stop_strings.clone();
        let json = match self.config.flavour {
            Flavour::OpenAi => serde_json::to_vec(&CompletionRequest {
                model: self.config.served_model.clone(),
                prompt: Some(match self.config.prompt {
                    PromptFormat::Tokens => PromptValue::Tokens(request.prompt.clone()),
                    PromptFormat::Text => PromptValue::Text(prompt_text(&self.tokenizer, &request.prompt)),
                }),
                max_tokens: Some(request.max_new_tokens),
                temperature: Some(sampling.temperature),
                top_p: (sampling.temperature > 0.0).then_some(sampling.top_p),
                seed,
                stop: (!stop.is_empty()).then_some(StopValue::Many(stop)),
                stream: true,
                stream_options: Some(StreamOptions { include_usage: true }),
                user: Some(self.client_id.clone()),
                ..CompletionRequest::default()
            }),
            Flavour::LlamaCppInfill => {
                let text = split_infill(&self.template, &self.tokenizer, &request.prompt).ok_or(RemoteError::Prompt)?;
                serde_json::to_vec(&InfillRequest {
                    input_prefix: text.prefix,
                    input_suffix: text.suffix,
                    input_extra: text.extra.into_iter().map(|(filename, text)| InfillExtra { filename, text }).collect(),
                    prompt: text.middle,
                    n_predict: request.max_new_tokens,
                    temperature: sampling.temperature,
                    seed,
                    stop,
                    stream: true,
                    cache_prompt: true,
                })
            }
        };
        json.map_err(|e| self.malformed(format!("cannot write the request: {e}")))
    }

    /// Runs one completion to its end (see [`RemoteClient::generate`]).
    pub(super) async fn run(&self, request: &GenerationRequest) -> Result<Completion, RemoteError> {
        let started = Instant::now();
        let deadline = request.deadline.unwrap_or(started + NO_DEADLINE_LIMIT);
        let cancel = &request.cancel;
        let mut builder = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream")
            .body(self.body(request)?);
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.0))
                .map_err(|_| RemoteError::Client("the API key contains characters not allowed in an HTTP header".into()))?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        let timeout = || RemoteError::Timeout { url: self.url(), ms: started.elapsed().as_millis() as u64 };
        let mut answer = Answer::new(&request.stop_strings);
        let limit = answer_limit(request);
        let mut response = match until(deadline, cancel, builder.send()).await {
            Wait::Done(Ok(response)) => response,
            Wait::Done(Err(e)) => return Err(RemoteError::Connect { url: self.url(), reason: describe(&e) }),
            Wait::Deadline => return Err(timeout()),
            Wait::Cancelled => return Ok(self.completion(request, answer, StopReason::Cancelled, started).await),
        };
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(status.as_u16(), response, deadline, cancel).await);
        }
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let limit = if is_json { MIN_ANSWER_BYTES } else { limit };
        let mut sse = SseReader::with_line_limit(limit);
        let mut whole = Vec::new();
        let mut read = 0usize;
        while !answer.done {
            let chunk = match until(deadline, cancel, response.chunk()).await {
                Wait::Done(Ok(chunk)) => chunk,
                Wait::Done(Err(e)) => return Err(RemoteError::Transport { url: self.url(), reason: describe(&e) }),
                Wait::Deadline if answer.finish.is_some() => break,
                Wait::Deadline if answer.first_text.is_none() => return Err(timeout()),
                Wait::Deadline => return Ok(self.completion(request, answer, StopReason::Deadline, started).await),
                Wait::Cancelled => return Ok(self.completion(request, answer, StopReason::Cancelled, started).await),
            };
            let Some(chunk) = chunk else { break };
            read = read.saturating_add(chunk.len());
            if read > limit {
                // Dropping the response closes the connection.
                return Err(self.malformed(format!(
                    "the answer is longer than {} MiB for {} tokens asked for; stopped reading",
                    limit >> 20,
                    request.max_new_tokens
                )));
            }
            if is_json {
                whole.extend_from_slice(&chunk);
                continue;
            }
            let events = sse.push(&chunk).map_err(|e| self.malformed(e.to_string()))?;
            for event in events {
                self.read_event(&event, &mut answer)?;
                if answer.cut_at_stop() || answer.done {
                    break;
                }
            }
        }
        if is_json {
            self.read_whole(&whole, &mut answer)?;
            answer.cut_at_stop();
        }
        match answer.finish {
            Some(reason) => Ok(self.completion(request, answer, reason, started).await),
            None => Err(self.malformed("the answer ended without saying why generation stopped (no finish reason)")),
        }
    }

    /// Reads one event of a streamed answer.
    fn read_event(&self, data: &str, answer: &mut Answer) -> Result<(), RemoteError> {
        if data.trim() == "[DONE]" {
            answer.done = true;
            answer.finish.get_or_insert(StopReason::Eos);
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_str(data).map_err(|e| self.malformed(format!("an event is not JSON ({e}): {}", excerpt(data))))?;
        if let Some(error) = value.get("error") {
            let message = error.get("message").and_then(|m| m.as_str()).map_or_else(|| error.to_string(), str::to_string);
            return Err(RemoteError::Status { url: self.url(), status: 200, message: excerpt(&message) });
        }
        self.read_value(value, answer)
    }

    /// Reads an answer that came as one JSON document.
    fn read_whole(&self, body: &[u8], answer: &mut Answer) -> Result<(), RemoteError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| self.malformed(format!("the answer is not JSON ({e}): {}", excerpt(&String::from_utf8_lossy(body)))))?;
        self.read_value(value, answer)?;
        answer.finish.get_or_insert(StopReason::Eos);
        Ok(())
    }

    fn read_value(&self, value: serde_json::Value, answer: &mut Answer) -> Result<(), RemoteError> {
        match self.config.flavour {
            Flavour::OpenAi => {
                let chunk: CompletionResponse = serde_json::from_value(value).map_err(|e| self.malformed(format!("unexpected completion format: {e}")))?;
                if chunk.choices.is_empty() && chunk.usage.is_none() {
                    return Err(self.malformed("an answer with neither choices nor usage"));
                }
                if let Some(choice) = chunk.choices.first() {
                    answer.add_text(&choice.text);
                    if let Some(reason) = &choice.finish_reason {
                        answer.finish = Some(finish_reason(reason));
                    }
                }
                if let Some(usage) = chunk.usage {
                    answer.cached_tokens = usage.prompt_tokens_details.map(|d| d.cached_tokens).or(answer.cached_tokens);
                }
            }
            Flavour::LlamaCppInfill => {
                let chunk: InfillChunk = serde_json::from_value(value).map_err(|e| self.malformed(format!("unexpected infill format: {e}")))?;
                answer.add_text(&chunk.content);
                if chunk.tokens_cached.is_some() {
                    answer.cached_tokens = chunk.tokens_cached;
                }
                if chunk.stop {
                    answer.finish = Some(finish_reason(chunk.stop_type.as_deref().unwrap_or("eos")));
                    answer.done = true;
                }
            }
        }
        Ok(())
    }

    /// The error for a non-success status, with the engine's message.
    async fn status_error(&self, status: u16, mut response: reqwest::Response, deadline: Instant, cancel: &CancelFlag) -> RemoteError {
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_LIMIT {
            match until(deadline, cancel, response.chunk()).await {
                Wait::Done(Ok(Some(chunk))) => body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY_LIMIT - body.len())]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body);
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(parsed) if !parsed.error.message.is_empty() => parsed.error.message,
            _ if text.trim().is_empty() => "no message".to_string(),
            _ => text.trim().to_string(),
        };
        let message = excerpt(&message);
        let url = self.url();
        match status {
            401 | 403 => {
                let key_hint = match &self.config.api_key_env {
                    Some(name) => name.clone(),
                    None => "named by backend `apiKeyEnv` (none is set)".to_string(),
                };
                RemoteError::Unauthorized { url, status, message, key_hint }
            }
            _ => RemoteError::Status { url, status, message },
        }
    }

    async fn completion(&self, request: &GenerationRequest, answer: Answer, stop_reason: StopReason, started: Instant) -> Completion {
        let now = Instant::now();
        let first = answer.first_text.unwrap_or(now);
        // The engine does not send token ids; the model's own tokenizer
        // gives the same count for counting and statistics, on a blocking
        // thread (a long answer must not hold up the async ones).
        let text = without_healed_text(&answer.text, &request.healed_text).to_string();
        let (tokenizer, counted) = (self.tokenizer.clone(), text.clone());
        let tokens = tokio::task::spawn_blocking(move || tokenizer.encode_continuation(&counted).unwrap_or_default()).await.unwrap_or_default();
        Completion {
            tokens,
            text,
            stop_reason,
            prompt_tokens: request.prompt.len(),
            reused_tokens: answer.cached_tokens.unwrap_or(0).min(request.prompt.len()),
            prefill: first - started,
            decode: now - first,
            drafted_tokens: 0,
            accepted_tokens: 0,
        }
    }
}

/// The answer without what it writes of the prompt's healed text. A remote
/// engine cannot be held to it (only indentation is healed for one:
/// `prompt::Healing::Indentation`), so the answer may write all of it (` return`
/// after a prompt that ends in three of four spaces), part of it, or none
/// (`return`, three spaces deep by the model's count); what it shares with the
/// healed text is already in the document, as the resident engine leaves it out.
fn without_healed_text<'a>(answer: &'a str, healed: &str) -> &'a str {
    let shared: usize = answer.chars().zip(healed.chars()).take_while(|(a, h)| a == h).map(|(a, _)| a.len_utf8()).sum();
    &answer[shared..]
}

/// At most 300 characters of a message from the network, on one line.
fn excerpt(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_answer_writes_of_the_healed_indentation_is_dropped() {
        assert_eq!(without_healed_text(" return x", " "), "return x", "all of it");
        assert_eq!(without_healed_text("     return x", " "), "    return x", "a deeper line keeps the rest");
        assert_eq!(without_healed_text(" return x", "   "), "return x", "part of it");
        assert_eq!(without_healed_text("return x", " "), "return x", "none of it");
        assert_eq!(without_healed_text("\n    x", " "), "\n    x");
        assert_eq!(without_healed_text("anything", ""), "anything", "nothing healed");
        assert_eq!(without_healed_text("", " "), "");
    }

    #[test]
    fn stop_strings_are_found_across_pieces() {
        let mut answer = Answer::new(&["\n\n".into(), "END".into(), String::new()]);
        answer.add_text("abc\n");
        assert!(!answer.cut_at_stop());
        answer.add_text("\nxyz");
        assert!(answer.cut_at_stop());
        assert_eq!((answer.text.as_str(), answer.finish), ("abc", Some(StopReason::Stop)));
        let mut answer = Answer::new(&["é!".into()]);
        answer.add_text("aé");
        assert!(!answer.cut_at_stop());
        answer.add_text("!b");
        assert!(answer.cut_at_stop());
        assert_eq!(answer.text, "a");
        let mut answer = Answer::new(&[]);
        answer.add_text("anything");
        assert!(!answer.cut_at_stop());
    }

    #[test]
    fn a_long_answer_in_small_pieces_is_scanned_in_linear_time() {
        let mut answer = Answer::new(&["never".into(), "not here either".into()]);
        let started = Instant::now();
        // 3.2 MB in 16-byte pieces: a search of the whole text per piece
        // would read 250 GB.
        for _ in 0..200_000 {
            answer.add_text("xxxxxxxxxxxxxxxx");
            assert!(!answer.cut_at_stop());
        }
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}
