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
use super::healing::ForcedText;
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
    /// Token healing: text taken off the end of the prompt that generation
    /// must write first, in any tokens (see `engine/healing.rs`). It is not
    /// part of [`Completion::text`], which continues the text after it.
    pub healed_text: String,
    /// Code written at a cursor whose line is indented this much: the text
    /// ends, as at a stop string, before a line that leaves that block (see
    /// [`super::dedent::leaves_block`]). `None`: not code, or one line.
    pub block_indent: Option<usize>,
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
            healed_text: String::new(),
            block_indent: None,
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
    /// Whoever waits had all it needed before the answer ended: a newer
    /// request that typed on needed only the rest of its line, and that
    /// line was written ([`RunControl::has_enough`]). The text is complete
    /// up to there, but shorter than what was asked for.
    Enough,
}

impl StopReason {
    /// Whether the text is the whole answer to its request (the model
    /// ended it, a stop string did, or it is as long as was asked): such
    /// an answer is worth caching for its prompt, unlike one cut short by
    /// time, cancellation or a newer request's needs.
    pub fn is_whole(self) -> bool {
        matches!(self, Self::Eos | Self::Stop | Self::Length)
    }

    /// The name used in JSON output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Deadline => "deadline",
            Self::Cancelled => "cancelled",
            Self::Enough => "enough",
        }
    }
}

/// The generated text and what it cost.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Generated text (stop token or stop string excluded), after the
    /// request's `healed_text`.
    pub text: String,
    /// Generated token ids (stop token excluded), the healed text's included.
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
    /// Memory for KV caches, in MiB: as many slots as fit (at most
    /// [`MAX_SLOTS`], at least the slots asked for), so that the prompts of
    /// several documents stay cached. 0: only the slots asked for.
    pub kv_cache_mb: usize,
}

/// The most KV cache slots a memory budget buys: more slots than recent
/// documents and cursor places a user goes back to only cost memory.
pub const MAX_SLOTS: usize = 8;

impl Default for EngineOptions {
    fn default() -> Self {
        Self { context_length: 4096, threads: 0, speculative: true, device: ComputeDevice::Cpu, kv_cache_mb: 0 }
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
    /// When each slot was last used (a counter), for choosing which to reuse.
    last_used: Vec<u64>,
    /// Per slot, how many of the tokens it holds its last job generated
    /// (the rest were prompt): generated tokens are cheap to lose.
    generated: Vec<usize>,
    /// Ticks of `last_used`.
    clock: u64,
    /// Prompt tokens per second measured on recent prefill chunks (0 until
    /// the first), so callers can tell what a cold prompt would cost.
    prefill_rate: f64,
}

/// Which KV cache a job runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotChoice {
    /// This slot (`cria serve` keeps one per client).
    Fixed(usize),
    /// The slot that already holds the longest start of the prompt, or a
    /// free or least recently used one (the language server: each document
    /// and cursor region keeps its prefix in a slot of its own).
    Auto,
    /// Like `Auto`, but never in the slot holding the longest start of the
    /// prompt unless it holds nearly all of it: a warm-up of another layout
    /// of the prompt in use (`completion::anchor`) must not evict the one
    /// the keystrokes use now.
    Beside,
}

/// Told after each prefill chunk: the slot, the tokens its cache holds, and
/// the prompt's length.
pub type PrefillProgress<'a> = dyn FnMut(usize, &[u32], usize) + Send + 'a;

/// How a job runs besides what its request says; set by whoever schedules
/// jobs (the engine thread).
pub struct RunControl<'a> {
    /// A background job gives way: it is asked between prefill chunks and
    /// between tokens whether a more urgent job waits, and then stops with
    /// [`Ran::Yielded`] (what it computed stays in the cache, so running it
    /// again resumes where it stopped).
    pub background: bool,
    /// Asked when the job may give way (background, or late): whether a
    /// more urgent job is waiting.
    pub should_yield: &'a (dyn Fn() -> bool + Sync),
    /// When set, a deadline that passes during the prefill does not end the
    /// job: the prefill goes on at background priority (giving way as above),
    /// and decoding after a late prefill gets this much time. The answer then
    /// comes late, for whoever still wants it (the server caches it).
    pub late_budget: Option<Duration>,
    /// Called after each prefill chunk with the slot, the tokens in its
    /// cache and the prompt's length (progress, and what other requests can reuse).
    pub on_prefill: Option<&'a mut PrefillProgress<'a>>,
    /// Asked after each token written: whether the caller already has all
    /// the text it needs; the job then ends with [`StopReason::Enough`].
    pub has_enough: &'a (dyn Fn() -> bool + Sync),
}

impl RunControl<'_> {
    /// An interactive job: never gives way, ends at its deadline.
    pub fn interactive() -> RunControl<'static> {
        RunControl { background: false, should_yield: &|| false, late_budget: None, on_prefill: None, has_enough: &|| false }
    }
}

/// How a job ended.
#[derive(Debug)]
pub enum Ran {
    /// It finished (or was cancelled, or ran out of time): the answer.
    Done(Completion),
    /// It gave way to a more urgent job; run it again to resume. `reused`:
    /// the prompt tokens its cache held when it started (for the log).
    Yielded { reused: usize },
}

/// Prompt tokens per forward pass in background prefill, at most: a
/// keystroke's request waits for at most one such chunk.
pub const BACKGROUND_PREFILL_CHUNK: usize = 64;
/// The smallest background chunk: smaller batches waste the kernels (on
/// AVX2, 16-token chunks prefilled at less than half the rate of 64-token
/// ones, so a warm-up took twice as long), and the rate they measure would
/// keep the chunks small.
const MIN_BACKGROUND_CHUNK: usize = 32;
/// A KV prefix shared with another slot is copied from this many tokens up:
/// copying a position's keys and values is far cheaper than computing them.
const MIN_COPIED_PREFIX: usize = 16;
/// How long one background chunk should take, so that a keystroke arriving
/// during a warm-up waits about this long for the engine.
const BACKGROUND_CHUNK_SECONDS: f64 = 0.1;

/// Background chunk size for the measured prefill rate (tokens per second):
/// what takes [`BACKGROUND_CHUNK_SECONDS`], in steps of 16 tokens, between
/// [`MIN_BACKGROUND_CHUNK`] and [`BACKGROUND_PREFILL_CHUNK`]. A slow or busy
/// machine gets smaller chunks, so its keystrokes wait no longer.
pub fn background_chunk(prefill_rate: f64) -> usize {
    if prefill_rate <= 0.0 {
        return MIN_BACKGROUND_CHUNK;
    }
    let fitting = (prefill_rate * BACKGROUND_CHUNK_SECONDS) as usize / 16 * 16;
    fitting.clamp(MIN_BACKGROUND_CHUNK, BACKGROUND_PREFILL_CHUNK)
}

/// A slot is reused for a prompt when it holds at least this share of the
/// prompt's start; below it the prompt belongs elsewhere (another document,
/// a far part of the file) and gets a slot of its own.
const REUSE_SHARE: f32 = 0.5;

/// Code the engine runs on its own at load: to load a device's kernels and
/// to measure the prefill rate.
const LOAD_FILLER: &str = "def value(x):\n    return x + 1\n\n\n";

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
        let mut engine = Self {
            model,
            tokenizer: Arc::new(tokenizer),
            caches: vec![cache],
            pool: Arc::new(pool),
            speculative,
            device: options.device,
            speculation_stats: SpeculationStats::default(),
            last_used: vec![0],
            generated: vec![0],
            clock: 0,
            prefill_rate: 0.0,
        };
        if options.device.uses_candle() {
            engine.load_device_kernels()?;
        }
        if options.kv_cache_mb > 0 {
            let slot_bytes = engine.caches[0].bytes_per_position() * context;
            let fit = (options.kv_cache_mb << 20) / slot_bytes.max(1);
            engine.set_slots(fit.clamp(1, MAX_SLOTS))?;
        }
        Ok(engine)
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
        self.last_used.resize(self.caches.len(), 0);
        self.generated.resize(self.caches.len(), 0);
        Ok(())
    }

    /// Measures the prefill rate on one chunk of filler text, so the first
    /// requests can already size their prompts to the budget; the cache is
    /// left empty.
    pub fn calibrate_prefill(&mut self) -> Result<(), EngineError> {
        let filler = self.tokenizer.encode(&LOAD_FILLER.repeat(16))?;
        let chunk = &filler[..filler.len().min(PREFILL_CHUNK).min(self.context_length())];
        if chunk.len() < 16 {
            return Ok(());
        }
        let Self { model, caches, pool, prefill_rate, .. } = self;
        let cache = &mut caches[0];
        cache.truncate(0);
        let started = Instant::now();
        pool.install(|| model.forward(chunk, cache))?;
        *prefill_rate = chunk.len() as f64 / started.elapsed().as_secs_f64().max(1e-6);
        cache.truncate(0);
        Ok(())
    }

    /// Runs the device pass once over a batch of many rows and once over the
    /// one row of decoding, the two ways candle multiplies by quantized
    /// weights, and leaves the cache empty.
    ///
    /// Why: a GPU's driver compiles each of candle's kernel modules from PTX
    /// the first time one of its kernels runs: seconds per module, 31 s in all
    /// for the first request of a fresh process on a fresh H200. Here that
    /// cost moves into the load, whose progress the editor already shows,
    /// and out of the first request and the prefill rate measured after
    /// the load (which would otherwise size every full prompt for a machine
    /// a hundred times slower). The driver keeps what it compiled on disk
    /// (`~/.nv/ComputeCache`), so later processes load faster.
    fn load_device_kernels(&mut self) -> Result<(), EngineError> {
        let filler = self.tokenizer.encode(&LOAD_FILLER.repeat(4))?;
        let batch = &filler[..filler.len().min(16).min(self.context_length().saturating_sub(1))];
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let Self { model, caches, pool, .. } = self;
        let cache = &mut caches[0];
        cache.truncate(0);
        pool.install(|| -> Result<(), EngineError> {
            model.forward(batch, cache)?.to_vec1::<f32>()?;
            model.forward(&batch[..1], cache)?.to_vec1::<f32>()?;
            Ok(())
        })?;
        cache.truncate(0);
        tracing::info!(device = %self.device, ms = started.elapsed().as_millis() as u64, "device kernels loaded");
        Ok(())
    }

    /// Forgets what every slot holds (after a failure left them unknown).
    pub fn clear_caches(&mut self) {
        for cache in &mut self.caches {
            cache.truncate(0);
        }
    }

    /// Token ids each slot holds, slot by slot.
    pub fn slot_tokens(&self) -> Vec<Vec<u32>> {
        self.caches.iter().map(|c| c.tokens().to_vec()).collect()
    }

    /// Bytes of memory each slot's keys and values take, slot by slot
    /// (see `KvCache::resident_bytes`).
    pub fn slot_resident_bytes(&self) -> Vec<usize> {
        self.caches.iter().map(KvCache::resident_bytes).collect()
    }

    /// Bytes of keys and values one cached position takes.
    pub fn kv_bytes_per_position(&self) -> usize {
        self.caches[0].bytes_per_position()
    }

    /// Prompt tokens per second of recent prefill chunks (`None` before the first).
    pub fn prefill_rate(&self) -> Option<f64> {
        (self.prefill_rate > 0.0).then_some(self.prefill_rate)
    }

    /// The slot a prompt runs in under [`SlotChoice::Auto`]: see [`choose_slot`].
    /// When the chosen slot is a fresh one and another slot holds a usable
    /// start of the prompt (the file's head, after a far jump), that start is
    /// copied over instead of being computed again.
    fn auto_slot(&mut self, prompt: &[u32], beside: bool) -> usize {
        let infos: Vec<SlotInfo> = self
            .caches
            .iter()
            .zip(self.last_used.iter().zip(&self.generated))
            .map(|(c, (&last_used, &generated))| SlotInfo {
                common: c.common_prefix(prompt),
                len: c.len(),
                generated: generated.min(c.len()),
                last_used,
            })
            .collect();
        let slot = choose_slot(&infos, prompt.len(), beside);
        let (donor, shared) = infos.iter().enumerate().map(|(i, s)| (i, s.common)).max_by_key(|&(_, c)| c).unwrap_or((slot, 0));
        if donor != slot && shared >= infos[slot].common + MIN_COPIED_PREFIX {
            let (to, from) = if slot < donor {
                let (a, b) = self.caches.split_at_mut(donor);
                (&mut a[slot], &b[0])
            } else {
                let (a, b) = self.caches.split_at_mut(slot);
                (&mut b[0], &a[donor])
            };
            let copied = to.copy_prefix_from(from, shared);
            self.generated[slot] = 0;
            tracing::debug!(slot, donor, copied, "KV prefix copied from another slot");
        }
        slot
    }

    /// Runs one job: the request in the slot `slot` chooses, under `control`
    /// (see [`RunControl`]), streaming text to `on_text`.
    pub fn run_job(
        &mut self,
        slot: SlotChoice,
        request: &GenerationRequest,
        control: &mut RunControl,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Ran, EngineError> {
        let slot = match slot {
            SlotChoice::Fixed(slot) => slot,
            SlotChoice::Auto | SlotChoice::Beside if request.prompt.is_empty() => 0,
            SlotChoice::Auto => self.auto_slot(&request.prompt, false),
            SlotChoice::Beside => self.auto_slot(&request.prompt, true),
        };
        let slots = self.caches.len();
        self.clock += 1;
        if let Some(used) = self.last_used.get_mut(slot) {
            *used = self.clock;
        }
        let Self { model, tokenizer, caches, pool, speculative, speculation_stats, prefill_rate, generated, .. } = self;
        let cache = caches.get_mut(slot).ok_or(EngineError::NoSuchSlot { slot, slots })?;
        let speculative = *speculative;
        let ran =
            pool.install(|| run(model, tokenizer, cache, speculative, speculation_stats, prefill_rate, slot, request, control, on_text));
        generated[slot] = cache.len().saturating_sub(request.prompt.len());
        ran
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
    pub fn generate_in(
        &mut self,
        slot: usize,
        request: &GenerationRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, EngineError> {
        let slots = self.caches.len();
        let Self { model, tokenizer, caches, pool, speculative, speculation_stats, .. } = self;
        let cache = caches.get_mut(slot).ok_or(EngineError::NoSuchSlot { slot, slots })?;
        let speculative = *speculative;
        let mut control = RunControl::interactive();
        let mut rate = 0.0;
        match pool
            .install(|| run(model, tokenizer, cache, speculative, speculation_stats, &mut rate, slot, request, &mut control, on_text))?
        {
            Ran::Done(completion) => Ok(completion),
            // An interactive job never gives way; answered as cancelled if it did.
            Ran::Yielded { .. } => Ok(Outcome::new(request.prompt.len(), 0).finish(StopReason::Cancelled, Instant::now(), None)),
        }
    }
}

/// What [`choose_slot`] knows of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// Leading tokens the slot shares with the prompt.
    pub common: usize,
    /// Tokens the slot holds.
    pub len: usize,
    /// How many of them its last job generated (the others were prompt).
    pub generated: usize,
    /// When it was last used (larger is more recent).
    pub last_used: u64,
}

/// Picks the slot for a prompt of `prompt_len` tokens: the one sharing the
/// longest start with it, if that covers at least half the prompt or all of
/// what the slot holds (typing on, or a warmed prefix being extended), and
/// reusing it would not throw away more prompt tokens than it keeps; else
/// an empty slot, else the least recently used one (another document, or a
/// far part of the same one, gets its own slot and the others stay warm).
/// The second condition keeps a warm-up's progress from a quick prompt
/// that shares only its first tokens (`<|fim_prefix|>` and the imports):
/// reusing that slot would cut 300 warmed tokens back to 49; in another
/// slot the 49 are copied over and the warm-up goes on where it was.
///
/// With `beside` (see [`SlotChoice::Beside`]) a slot is reused only if all
/// it holds is a start of the prompt (the job itself, resumed after giving
/// way); otherwise an empty slot is taken, else the least recently used of
/// those that share less than half the prompt (not the ones the document's
/// keystrokes use), and the engine copies the shared start into it.
pub fn choose_slot(slots: &[SlotInfo], prompt_len: usize, beside: bool) -> usize {
    if beside {
        let extendable = slots.iter().enumerate().filter(|(_, s)| s.len > 0 && s.common == s.len).max_by_key(|(_, s)| s.len);
        let in_use = |s: &SlotInfo| s.common as f32 >= prompt_len as f32 * REUSE_SHARE;
        let chosen = extendable
            .or_else(|| slots.iter().enumerate().find(|(_, s)| s.len == 0))
            .or_else(|| slots.iter().enumerate().filter(|(_, s)| !in_use(s)).min_by_key(|(_, s)| s.last_used))
            .or_else(|| slots.iter().enumerate().min_by_key(|(_, s)| s.last_used));
        return chosen.map_or(0, |(i, _)| i);
    }
    let best = slots.iter().enumerate().max_by_key(|(_, s)| (s.common, s.last_used)).map(|(i, _)| i).unwrap_or(0);
    let Some(b) = slots.get(best) else { return 0 };
    let prompt_thrown_away = b.len.saturating_sub(b.generated).saturating_sub(b.common);
    if b.common > 0 && (b.common == b.len || (b.common as f32 >= prompt_len as f32 * REUSE_SHARE && prompt_thrown_away <= b.common)) {
        return best;
    }
    if let Some(empty) = slots.iter().position(|s| s.len == 0) {
        return empty;
    }
    slots.iter().enumerate().min_by_key(|(_, s)| s.last_used).map(|(i, _)| i).unwrap_or(0)
}

#[allow(clippy::too_many_arguments)] // the engine's parts, borrowed apart
fn run(
    model: &Network,
    tokenizer: &Tokenizer,
    cache: &mut KvCache,
    speculative: bool,
    stats: &mut SpeculationStats,
    prefill_rate: &mut f64,
    slot: usize,
    request: &GenerationRequest,
    control: &mut RunControl,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<Ran, EngineError> {
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
    // Past the deadline a job with a late budget carries on, giving way.
    let mut deadline = request.deadline;
    let mut late = false;
    let mut next = reused;
    while next < prompt.len() {
        if let Some(reason) = interrupted(&request.cancel, deadline) {
            match (reason, control.late_budget) {
                (StopReason::Deadline, Some(_)) => {
                    late = true;
                    deadline = None;
                }
                _ => return Ok(Ran::Done(outcome.finish(reason, started, None))),
            }
        }
        if (control.background || late) && (control.should_yield)() {
            return Ok(Ran::Yielded { reused: outcome.reused_tokens });
        }
        // Work that may have to give way runs in chunks a keystroke can wait
        // for; a chunk less than half done gives up for one (a keystroke
        // then waits at most half a chunk, and at most half a chunk is lost).
        // A cancelled warm-up finishes its chunk: the warm-up that replaced
        // it most often shares the prompt's start.
        let gives_way = control.background || late;
        let size = if gives_way { background_chunk(*prefill_rate) } else { PREFILL_CHUNK };
        let chunk = &prompt[next..(next + size).min(prompt.len())];
        let chunk_started = Instant::now();
        if gives_way {
            let give_up = |done: f32| done < 0.5 && (control.should_yield)();
            match model.forward_unless(chunk, cache, &give_up)? {
                Some(chunk_logits) => logits = Some(chunk_logits),
                // Stopped: the loop's checks above say why.
                None => continue,
            }
        } else {
            logits = Some(model.forward(chunk, cache)?);
        }
        next += chunk.len();
        if chunk.len() >= 16 {
            let rate = chunk.len() as f64 / chunk_started.elapsed().as_secs_f64().max(1e-6);
            *prefill_rate = if *prefill_rate > 0.0 { 0.7 * *prefill_rate + 0.3 * rate } else { rate };
        }
        if let Some(on_prefill) = control.on_prefill.as_mut() {
            on_prefill(slot, cache.tokens(), prompt.len());
        }
    }
    let prefill_done = Instant::now();
    if late || request.deadline.is_some_and(|d| prefill_done >= d) {
        // The answer is late anyway: decoding gets its own budget.
        if let Some(budget) = control.late_budget {
            late = true;
            deadline = Some(prefill_done + budget);
        }
    }
    let mut sampler = Sampler::new(request.sampling.clone());
    let mut logits = match logits {
        Some(l) => l.to_vec1::<f32>()?,
        None => return Ok(Ran::Done(outcome.finish(StopReason::Cancelled, started, Some(prefill_done)))),
    };
    let max_new = request.max_new_tokens.min(context - cache.len());
    let mut text = StreamingText::new(&request.stop_strings);
    let greedy = request.sampling.temperature <= 0.0;
    let enabled = speculative && request.speculative && greedy;
    let mut speculator = Speculator::new(enabled);
    let mut forced = ForcedText::new(&request.healed_text);
    tracing::trace!(?stats, enabled, "speculation: learnt so far");
    loop {
        if outcome.tokens.len() >= max_new {
            outcome.text = text.finish(on_text);
            return Ok(Ran::Done(outcome.finish(StopReason::Length, started, Some(prefill_done))));
        }
        if forced.is_active() && !forced.mask(&mut logits, tokenizer) {
            // No token of this vocabulary writes the healed text: no answer.
            return Ok(Ran::Done(outcome.finish(StopReason::Stop, started, Some(prefill_done))));
        }
        let next = sampler.sample(&logits);
        if request.stop_tokens.contains(&next) {
            outcome.text = text.finish(on_text);
            return Ok(Ran::Done(outcome.finish(StopReason::Eos, started, Some(prefill_done))));
        }
        outcome.tokens.push(next);
        text.push(forced.consume(tokenizer.token_bytes(next)));
        let left_block = request.block_indent.and_then(|indent| super::dedent::leaves_block(text.valid(), indent));
        if let Some(cut) = [text.find_stop(&request.stop_strings), left_block].into_iter().flatten().min() {
            outcome.text = text.finish_at(cut, on_text);
            return Ok(Ran::Done(outcome.finish(StopReason::Stop, started, Some(prefill_done))));
        }
        text.stream(on_text);
        if (control.has_enough)() {
            outcome.text = text.finish(on_text);
            return Ok(Ran::Done(outcome.finish(StopReason::Enough, started, Some(prefill_done))));
        }
        if (control.background || late) && (control.should_yield)() {
            return Ok(Ran::Yielded { reused: outcome.reused_tokens });
        }
        if let Some(reason) = interrupted(&request.cancel, deadline) {
            outcome.text = text.finish(on_text);
            return Ok(Ran::Done(outcome.finish(reason, started, Some(prefill_done))));
        }
        if outcome.tokens.len() >= max_new {
            continue;
        }
        let cached = prompt.len() + outcome.tokens.len() - 1;
        logits = speculator.step(model, cache, stats, next, cached, max_new - outcome.tokens.len())?;
        (outcome.drafted, outcome.accepted) = (speculator.drafted, speculator.accepted);
    }
}

fn interrupted(cancel: &CancelFlag, deadline: Option<Instant>) -> Option<StopReason> {
    if cancel.is_cancelled() {
        return Some(StopReason::Cancelled);
    }
    match deadline {
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
    #[test]
    fn background_chunks_take_about_a_tenth_of_a_second_within_bounds() {
        use super::background_chunk;
        assert_eq!(background_chunk(0.0), 32, "not measured yet: the smallest");
        assert_eq!(background_chunk(100.0), 32, "a slow machine: never below the smallest");
        assert_eq!(background_chunk(480.0), 48);
        assert_eq!(background_chunk(10_000.0), 64, "never above the most");
        assert!((1..2000).map(|r| background_chunk(r as f64)).all(|c| c % 16 == 0));
    }

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

    fn slot(common: usize, len: usize, last_used: u64) -> SlotInfo {
        SlotInfo { common, len, generated: 0, last_used }
    }

    #[test]
    fn a_quick_prompt_leaves_a_warm_up_in_progress_alone() {
        // Slot 0 holds 300 warmed tokens of the full prompt; a 65-token quick
        // prompt shares its first 49 (the file's head).
        let slots = [slot(49, 300, 9), slot(0, 0, 0)];
        assert_eq!(choose_slot(&slots, 65, false), 1, "a free slot: the 49 are copied, the 251 others kept");
        let full = [slot(49, 300, 9), slot(0, 900, 3), slot(0, 500, 4)];
        assert_eq!(choose_slot(&full, 65, false), 1, "else the least recently used other slot");
        // Typing on in the quick prompt's own slot: what it generated last
        // time is no loss, so the slot is reused.
        let typing = [slot(64, 65 + 33, 9), slot(49, 300, 8)];
        assert_eq!(choose_slot(&[SlotInfo { generated: 33, ..typing[0] }, typing[1]], 66, false), 0);
        // A short prompt that once generated a long answer: still its slot.
        let long_answer = SlotInfo { common: 64, len: 65 + 120, generated: 120, last_used: 9 };
        assert_eq!(choose_slot(&[long_answer, slot(0, 0, 0)], 66, false), 0);
    }

    #[test]
    fn a_prompt_goes_to_the_slot_holding_most_of_it() {
        let slots = [slot(10, 1500, 5), slot(1490, 1500, 1), slot(0, 0, 0)];
        assert_eq!(choose_slot(&slots, 1500, false), 1, "typing on: the slot with the document");
        let warmed = [slot(3, 900, 9), slot(600, 600, 2)];
        assert_eq!(choose_slot(&warmed, 1500, false), 1, "a warmed start of the prompt is extended even if under half");
    }

    #[test]
    fn another_document_gets_a_free_slot_then_the_least_recently_used() {
        let free = [slot(2, 1500, 5), slot(0, 1400, 3), slot(0, 0, 0)];
        assert_eq!(choose_slot(&free, 1500, false), 2, "sharing only the first tokens is not enough");
        let full = [slot(2, 1500, 5), slot(0, 1400, 3), slot(300, 1500, 9)];
        assert_eq!(choose_slot(&full, 1500, false), 1, "the least recently used goes; a far jump keeps the slot it left");
        assert_eq!(choose_slot(&[slot(0, 0, 0)], 10, false), 0);
        assert_eq!(choose_slot(&[slot(0, 0, 0)], 10, true), 0);
        assert_eq!(choose_slot(&[], 10, false), 0);
    }

    #[test]
    fn a_warm_up_beside_leaves_the_slot_in_use_alone() {
        // Slot 1 holds the layout in use; the warm-up shares 1,200 of 1,500.
        let slots = [slot(10, 1500, 5), slot(1200, 1500, 9), slot(0, 0, 0)];
        assert_eq!(choose_slot(&slots, 1500, false), 1);
        assert_eq!(choose_slot(&slots, 1500, true), 2, "a free slot, not the one in use");
        let full = [slot(10, 1500, 5), slot(1200, 1500, 3), slot(0, 900, 4)];
        assert_eq!(choose_slot(&full, 1500, true), 2, "the least recently used slot not in use");
        // Resumed after giving way, it goes on where it is, even while the
        // slot in use shares as much and was used later.
        let resumed = [slot(10, 1500, 5), slot(1200, 1500, 9), slot(1200, 1200, 6)];
        assert_eq!(choose_slot(&resumed, 1500, true), 2);
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
