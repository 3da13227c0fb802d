//! One completion from a prompt of token ids: reuse the cached prefix, prefill
//! the rest in chunks, then decode token by token until a stop condition.
//!
//! Between chunks and between tokens the loop checks the cancellation flag and
//! the deadline, so a newer keystroke or an expired latency budget ends the
//! work within one forward pass, keeping what was generated so far.
//!
//! An engine may hold several KV caches ("slots"): `cria serve` gives each
//! client its own, so two people typing do not wipe each other's prefix. The
//! language server uses slot 0 only. Generated text can be streamed as it
//! grows (never past what the final text keeps), for servers that answer
//! token by token.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gguf::GgufFile;
use super::kv_cache::KvCache;
use super::model::Hyperparams;
use super::network::{ComputeDevice, Network};
use super::sampling::{Sampler, SamplingParams};
use super::speculate::{SpeculationStats, Speculator};
use super::tokenizer::Tokenizer;
use super::EngineError;

/// Prompt tokens run per forward pass during prefill: large enough for
/// efficient matrix products, small enough to notice cancellation quickly.
const PREFILL_CHUNK: usize = 128;

/// Shared flag a newer request (or `$/cancelRequest`) sets to stop older work.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the generation holding this flag to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Everything one generation needs besides the model.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The whole prompt, control tokens included.
    pub prompt: Vec<u32>,
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Tokens that end generation (the model's end-of-text, Code Llama's EOT...).
    pub stop_tokens: Vec<u32>,
    /// Text that ends generation; the text is cut before it.
    pub stop_strings: Vec<String>,
    /// When to give up and return what was generated so far.
    pub deadline: Option<Instant>,
    /// Checked between forward passes.
    pub cancel: CancelFlag,
    /// Guess tokens from the prompt and verify them in batches (speculative
    /// decoding) when the engine allows it and sampling is greedy. The output
    /// is the same either way; only the speed differs.
    pub speculative: bool,
}

impl GenerationRequest {
    /// A greedy request with no deadline and no stops besides `stop_tokens`.
    pub fn new(prompt: Vec<u32>, max_new_tokens: usize, stop_tokens: Vec<u32>) -> Self {
        Self {
            prompt,
            max_new_tokens,
            sampling: SamplingParams::default(),
            stop_tokens,
            stop_strings: Vec::new(),
            deadline: None,
            cancel: CancelFlag::new(),
            speculative: true,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_new_tokens` were generated.
    Length,
    /// The deadline passed.
    Deadline,
    /// The cancellation flag was set.
    Cancelled,
}

impl StopReason {
    /// The name used in JSON output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Deadline => "deadline",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The generated text and what it cost.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Generated text (stop token or stop string excluded).
    pub text: String,
    /// Generated token ids (stop token excluded).
    pub tokens: Vec<u32>,
    /// Why generation ended.
    pub stop_reason: StopReason,
    /// Length of the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were reused from the cache.
    pub reused_tokens: usize,
    /// Time spent on the prompt.
    pub prefill: Duration,
    /// Time spent generating.
    pub decode: Duration,
    /// Tokens guessed by prompt lookup and run through the model in batches.
    pub drafted_tokens: usize,
    /// Guessed tokens the model agreed with (each saved a forward pass).
    pub accepted_tokens: usize,
}

impl Completion {
    /// Prompt tokens actually run through the model.
    pub fn computed_tokens(&self) -> usize {
        self.prompt_tokens - self.reused_tokens
    }
}

/// How the engine is set up at load time.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Positions in the KV cache (bounded by the model's trained context).
    pub context_length: usize,
    /// Threads for the forward pass; 0 means [`default_threads`].
    pub threads: usize,
    /// Whether greedy requests may use speculative decoding (see
    /// [`GenerationRequest::speculative`]); models with a weight type that
    /// has no kernel of cria's own never do, nor does any device but
    /// [`ComputeDevice::Cpu`], as candle's products could give a batch
    /// different bits.
    pub speculative: bool,
    /// Where the forward pass runs: the CPU (cria's own kernels, the
    /// default) or a GPU.
    pub device: ComputeDevice,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { context_length: 4096, threads: 0, speculative: true, device: ComputeDevice::Cpu }
    }
}

/// The physical cores this process may run on: one thread per core is what
/// memory-bound matrix products want (hyper-threads share a core's units).
pub fn default_threads() -> usize {
    let allowed = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    allowed.min(num_cpus::get_physical().max(1))
}

/// A loaded model with its tokenizer and KV caches. Lives on one thread (the
/// worker); the tokenizer is shared with the rest of the server.
pub struct Engine {
    model: Network,
    tokenizer: Arc<Tokenizer>,
    /// One KV cache per slot; slot 0 always exists.
    caches: Vec<KvCache>,
    /// The threads the forward pass runs on.
    pool: Arc<rayon::ThreadPool>,
    /// Whether this model may decode speculatively (see [`EngineOptions::speculative`]).
    speculative: bool,
    /// Where the forward pass runs.
    device: ComputeDevice,
    /// What forward passes cost here, for deciding when guessing pays.
    speculation_stats: SpeculationStats,
}

impl Engine {
    /// Loads a GGUF file: tokenizer first (cheap, and the most common reason a
    /// file is unusable), then the weights. `progress` receives `0..=1`.
    pub fn load(path: &Path, options: &EngineOptions, progress: &mut dyn FnMut(f32)) -> Result<Self, EngineError> {
        let mut file = GgufFile::open(path)?;
        let hp = Hyperparams::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let context = options.context_length.min(hp.trained_context).max(16);
        let threads = if options.threads == 0 { default_threads() } else { options.threads };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cria-compute-{i}"))
            .build()
            .map_err(|e| EngineError::Compute(candle_core::Error::Msg(format!("cannot start {threads} compute threads: {e}"))))?;
        let model = Network::load(&mut file, context, options.device, progress)?;
        let cache = model.new_cache(context)?;
        // Speculation must not change the output: only with products that give
        // a row the same bits whatever the batch (cria's own CPU kernels, not
        // candle's products on any device).
        let speculative = options.speculative && model.batch_invariant();
        Ok(Self { model, tokenizer: Arc::new(tokenizer), caches: vec![cache], pool: Arc::new(pool), speculative, device: options.device, speculation_stats: SpeculationStats::default() })
    }

    /// Threads the forward pass runs on (on a GPU, the host's share of it).
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Where the forward pass runs.
    pub fn device(&self) -> ComputeDevice {
        self.device
    }

    /// Whether greedy requests may decode speculatively with this model on
    /// this device.
    pub fn speculative(&self) -> bool {
        self.speculative
    }

    /// Allocates KV caches until there are `slots` (at least one), each the
    /// size of the first. Every slot keeps its own prompt prefix.
    pub fn set_slots(&mut self, slots: usize) -> Result<(), EngineError> {
        let capacity = self.context_length();
        self.caches.truncate(slots.max(1));
        while self.caches.len() < slots {
            self.caches.push(self.model.new_cache(capacity)?);
        }
        Ok(())
    }

    /// Number of KV cache slots.
    pub fn slots(&self) -> usize {
        self.caches.len()
    }

    /// The tokenizer, to build prompts off the model thread.
    pub fn tokenizer(&self) -> Arc<Tokenizer> {
        self.tokenizer.clone()
    }

    /// The network's shape.
    pub fn hyperparams(&self) -> &Hyperparams {
        self.model.hyperparams()
    }

    /// The usable context window (prompt plus generated tokens).
    pub fn context_length(&self) -> usize {
        self.caches[0].capacity()
    }

    /// Token ids currently held in slot 0's KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        self.caches[0].tokens()
    }

    /// Token ids currently held in a slot's KV cache (empty for a slot that
    /// does not exist).
    pub fn cached_tokens_in(&self, slot: usize) -> &[u32] {
        self.caches.get(slot).map(KvCache::tokens).unwrap_or(&[])
    }

    /// What the engine has learnt about speculation so far (for logs and
    /// benchmarks).
    pub fn speculation_stats(&self) -> SpeculationStats {
        self.speculation_stats
    }

    /// Replaces what the engine has learnt about speculation: tests
    /// that check speculation's output make guessing always look worth it,
    /// whatever this machine's speed.
    pub fn set_speculation_stats(&mut self, stats: SpeculationStats) {
        self.speculation_stats = stats;
    }

    /// Logits of the last prompt token, computed from scratch (no reuse). For
    /// tests that compare against a reference implementation.
    pub fn prompt_logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>, EngineError> {
        let Self { model, caches, pool, .. } = self;
        let cache = &mut caches[0];
        cache.truncate(0);
        let logits = pool.install(|| model.forward(prompt, cache))?;
        Ok(logits.to_vec1::<f32>()?)
    }

    /// Runs one generation in slot 0. The cache keeps the prompt and
    /// generated tokens afterwards, so the next prompt that shares a prefix
    /// starts from there.
    pub fn generate(&mut self, request: &GenerationRequest) -> Result<Completion, EngineError> {
        self.generate_in(0, request, &mut |_| {})
    }

    /// Runs one generation in `slot`'s KV cache, calling `on_text` with each
    /// new piece of text as it becomes final (the pieces concatenated are the
    /// completion's text). The result is the same whichever slot runs it.
    pub fn generate_in(&mut self, slot: usize, request: &GenerationRequest, on_text: &mut (dyn FnMut(&str) + Send)) -> Result<Completion, EngineError> {
        let slots = self.caches.len();
        let Self { model, tokenizer, caches, pool, speculative, speculation_stats, .. } = self;
        let cache = caches.get_mut(slot).ok_or(EngineError::NoSuchSlot { slot, slots })?;
        let speculative = *speculative;
        pool.install(|| run(model, tokenizer, cache, speculative, speculation_stats, request, on_text))
    }
}

fn run(
    model: &Network,
    tokenizer: &Tokenizer,
    cache: &mut KvCache,
    speculative: bool,
    stats: &mut SpeculationStats,
    request: &GenerationRequest,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<Completion, EngineError> {
    let prompt = &request.prompt;
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    let context = cache.capacity();
    if prompt.len() + request.max_new_tokens.min(1) > context {
        return Err(EngineError::ContextOverflow { prompt: prompt.len(), max_new: request.max_new_tokens, context });
    }
    let started = Instant::now();
    // At least one prompt token is always run, to get fresh logits.
    let reused = cache.common_prefix(prompt).min(prompt.len() - 1);
    cache.truncate(reused);
    let mut outcome = Outcome::new(prompt.len(), reused);
    let mut logits = None;
    for chunk in prompt[reused..].chunks(PREFILL_CHUNK) {
        if let Some(reason) = interrupted(request) {
            return Ok(outcome.finish(reason, started, None));
        }
        logits = Some(model.forward(chunk, cache)?);
    }
    let prefill_done = Instant::now();
    let mut sampler = Sampler::new(request.sampling.clone());
    let mut logits = match logits {
        Some(l) => l.to_vec1::<f32>()?,
        None => return Ok(outcome.finish(StopReason::Cancelled, started, Some(prefill_done))),
    };
    let max_new = request.max_new_tokens.min(context - cache.len());
    let mut text = StreamingText::new(&request.stop_strings);
    let greedy = request.sampling.temperature <= 0.0;
    let enabled = speculative && request.speculative && greedy;
    let mut speculator = Speculator::new(enabled);
    tracing::debug!(?stats, enabled, "speculation: learnt so far");
    loop {
        if outcome.tokens.len() >= max_new {
            outcome.text = text.finish(on_text);
            return Ok(outcome.finish(StopReason::Length, started, Some(prefill_done)));
        }
        let next = sampler.sample(&logits);
        if request.stop_tokens.contains(&next) {
            outcome.text = text.finish(on_text);
            return Ok(outcome.finish(StopReason::Eos, started, Some(prefill_done)));
        }
        outcome.tokens.push(next);
        text.push(tokenizer.token_bytes(next));
        if let Some(cut) = text.find_stop(&request.stop_strings) {
            outcome.text = text.finish_at(cut, on_text);
            return Ok(outcome.finish(StopReason::Stop, started, Some(prefill_done)));
        }
        text.stream(on_text);
        if let Some(reason) = interrupted(request) {
            outcome.text = text.finish(on_text);
            return Ok(outcome.finish(reason, started, Some(prefill_done)));
        }
        if outcome.tokens.len() >= max_new {
            continue;
        }
        let cached = prompt.len() + outcome.tokens.len() - 1;
        logits = speculator.step(model, cache, stats, next, cached, max_new - outcome.tokens.len())?;
        (outcome.drafted, outcome.accepted) = (speculator.drafted, speculator.accepted);
    }
}

fn interrupted(request: &GenerationRequest) -> Option<StopReason> {
    if request.cancel.is_cancelled() {
        return Some(StopReason::Cancelled);
    }
    match request.deadline {
        Some(deadline) if Instant::now() >= deadline => Some(StopReason::Deadline),
        _ => None,
    }
}

/// The parts of a [`Completion`] gathered while the loop runs.
struct Outcome {
    prompt_tokens: usize,
    reused_tokens: usize,
    tokens: Vec<u32>,
    text: String,
    drafted: usize,
    accepted: usize,
}

impl Outcome {
    fn new(prompt_tokens: usize, reused_tokens: usize) -> Self {
        Self { prompt_tokens, reused_tokens, tokens: Vec::new(), text: String::new(), drafted: 0, accepted: 0 }
    }

    fn finish(self, stop_reason: StopReason, started: Instant, prefill_done: Option<Instant>) -> Completion {
        let now = Instant::now();
        let prefill_done = prefill_done.unwrap_or(now);
        Completion {
            text: self.text,
            tokens: self.tokens,
            stop_reason,
            prompt_tokens: self.prompt_tokens,
            reused_tokens: self.reused_tokens,
            prefill: prefill_done - started,
            decode: now - prefill_done,
            drafted_tokens: self.drafted,
            accepted_tokens: self.accepted,
        }
    }
}

/// Generated bytes, decoded to text as far as they form whole characters,
/// and how much of that text was already streamed.
struct StreamingText {
    bytes: Vec<u8>,
    /// Bytes of text already given to the stream.
    streamed: usize,
    /// Bytes held back from the stream: a stop string could still begin there.
    hold: usize,
}

impl StreamingText {
    fn new(stops: &[String]) -> Self {
        Self { bytes: Vec::new(), streamed: 0, hold: stops.iter().map(String::len).max().unwrap_or(0) }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// The longest prefix that is valid UTF-8.
    fn valid(&self) -> &str {
        match std::str::from_utf8(&self.bytes) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    }

    /// Where the first stop string begins, if one appeared.
    fn find_stop(&self, stops: &[String]) -> Option<usize> {
        let text = self.valid();
        stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
    }

    /// Streams the text that no later stop string can take back: a stop
    /// string found later ends in bytes not generated yet, so it begins
    /// less than its length before the current end.
    fn stream(&mut self, on_text: &mut dyn FnMut(&str)) {
        let text = self.valid();
        let mut end = text.len().saturating_sub(self.hold);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end > self.streamed {
            on_text(&text[self.streamed..end]);
            self.streamed = end;
        }
    }

    /// The final text, cut at `end`; streams what was not streamed yet.
    fn finish_at(&mut self, end: usize, on_text: &mut dyn FnMut(&str)) -> String {
        let text = self.valid()[..end].to_string();
        if end > self.streamed {
            on_text(&text[self.streamed..]);
            self.streamed = end;
        }
        text
    }

    fn finish(&mut self, on_text: &mut dyn FnMut(&str)) -> String {
        // A character cut in half by the end of generation is dropped.
        let end = self.valid().len();
        self.finish_at(end, on_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(pieces: &[&str], stops: &[&str]) -> (String, Vec<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut text = StreamingText::new(&stops);
        let mut streamed = Vec::new();
        let mut sink = |t: &str| streamed.push(t.to_string());
        for piece in pieces {
            text.push(piece.as_bytes());
            if let Some(cut) = text.find_stop(&stops) {
                return (text.finish_at(cut, &mut sink), streamed);
            }
            text.stream(&mut sink);
        }
        (text.finish(&mut sink), streamed)
    }

    #[test]
    fn streamed_pieces_add_up_to_the_final_text() {
        let (text, pieces) = generate(&["fn ", "main", "() {", "\n\n", "fn x"], &["\n\n"]);
        assert_eq!(text, "fn main() {");
        assert_eq!(pieces.concat(), text);
        let (text, pieces) = generate(&["a", "b", "c"], &[]);
        assert_eq!((text.as_str(), pieces.len()), ("abc", 3), "without stops every token streams at once");
    }

    #[test]
    fn a_split_character_is_never_streamed_in_halves() {
        let stops = Vec::new();
        let mut text = StreamingText::new(&stops);
        let mut streamed = String::new();
        let bytes = "é".as_bytes();
        text.push(&bytes[..1]);
        text.stream(&mut |t| streamed.push_str(t));
        assert_eq!(streamed, "");
        text.push(&bytes[1..]);
        text.stream(&mut |t| streamed.push_str(t));
        assert_eq!(streamed, "é");
    }
}
