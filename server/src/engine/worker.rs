//! The model's own thread. The engine is loaded and runs there; callers send
//! jobs over a channel and get answers on one-shot channels they can await
//! (the language server) or block on (the CLI). Nothing here blocks an async
//! runtime, and no lock is held while the model runs.
//!
//! Jobs run one at a time, each in the KV cache slot it names or that the
//! engine chooses, and may stream their text as it is generated. Interactive
//! jobs (a keystroke's request) run in arrival order, ahead of background
//! jobs (warming a document's prompt before anyone asks, or finishing a
//! request that ran out of time); a background job gives way to an
//! interactive one within half a prefill chunk (a chunk less than half done
//! is dropped between two layers) and resumes after it, from what it had
//! already put in the cache. The newest document's warm-ups run first: a
//! warm-up of another document gives way to them the same way. A panic in a job is caught: the job is
//! answered with an error, the caches are emptied, and the thread goes on.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::sync::{mpsc as async_mpsc, oneshot, watch};

use super::generate::{CancelFlag, Completion, Engine, EngineOptions, GenerationRequest, Ran, RunControl, SlotChoice};
use super::model::Hyperparams;
use super::tokenizer::Tokenizer;
use super::EngineError;

/// What the rest of cria learns about a model once it is loaded.
#[derive(Clone)]
pub struct LoadedModel {
    /// Shared tokenizer, for building prompts off the model thread.
    pub tokenizer: Arc<Tokenizer>,
    /// The network's shape.
    pub hyperparams: Hyperparams,
    /// Usable context window.
    pub context_length: usize,
    /// Prompt tokens per second of one prefill chunk measured when the
    /// model was loaded (`None` when it could not be measured, or for a
    /// remote backend): what a cold prompt costs on this machine, measured
    /// once, so that prompt sizes chosen from it stay the same all session
    /// (see `completion::full_prompt_tokens`).
    pub prefill_rate: Option<f64>,
}

/// Where a job's text goes while it is generated, piece by piece.
pub type TextSink = async_mpsc::UnboundedSender<String>;

/// How urgent a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Someone waits for it: runs before any background job.
    Interactive,
    /// Nobody waits yet (warming a prompt): runs when nothing interactive
    /// is queued, and gives way to interactive jobs.
    Background,
}

/// How to run a job, besides its request.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Which KV cache.
    pub slot: SlotChoice,
    /// Interactive or background.
    pub priority: Priority,
    /// For interactive jobs: finish a prefill that outlives the deadline in
    /// the background, then decode for this long (see [`RunControl::late_budget`]).
    pub late_budget: Option<Duration>,
    /// What the job is for (a document's URI): a newer interactive job with
    /// the same key drops queued warm-up jobs for it, and warm-up progress
    /// names it.
    pub key: Option<String>,
    /// Where the job's text goes as it is written, for a caller that
    /// decides while the job runs whether it is still worth running.
    pub written: Option<WrittenSoFar>,
}

impl JobOptions {
    /// An interactive job in a given slot, as jobs always were.
    pub fn in_slot(slot: usize) -> Self {
        Self { slot: SlotChoice::Fixed(slot), priority: Priority::Interactive, late_budget: None, key: None, written: None }
    }
}

/// The text a job has written so far (what the model wrote past any healed
/// text, less what a stop string may still claim), shared with the caller
/// while the job runs: the scheduler keeps a generation running while the
/// user types what it writes, and stops it once they disagree.
#[derive(Debug, Clone, Default)]
pub struct WrittenSoFar(Arc<Mutex<Written>>);

#[derive(Debug, Default)]
struct Written {
    text: String,
    /// Only the line that holds this byte of `text` is still wanted.
    wanted_line_at: Option<usize>,
    /// What the user typed since the job's cursor, as of the newest request
    /// it may serve, and the job's flag: once `text` disagrees with it, the
    /// job is stopped (nobody wants the rest).
    typed: Option<(String, CancelFlag)>,
}

impl WrittenSoFar {
    /// Appends the next piece of text the job wrote (and stops the job if
    /// it now disagrees with what was typed: [`Self::typed_since`]).
    pub fn push(&self, piece: &str) {
        let mut written = self.lock();
        written.text.push_str(piece);
        written.stop_if_disagreeing();
    }

    /// Whether the text written so far and `typed` agree: one starts with
    /// the other (nothing written yet agrees with anything).
    pub fn agrees_with(&self, typed: &str) -> bool {
        agree(&self.lock().text, typed)
    }

    /// The whole lines written so far: the text up to and with its last
    /// line break (empty before the first one).
    pub fn whole_lines(&self) -> String {
        let written = self.lock();
        let end = written.text.rfind('\n').map_or(0, |at| at + 1);
        written.text[..end].to_string()
    }

    /// Says that of the whole answer only the line holding byte `at` is
    /// still wanted (`None`: all of it): the user typed `at` bytes of it and
    /// the request that serves them wants one line. The job ends once that
    /// line is written ([`Self::has_the_wanted_line`]) instead of writing
    /// lines nobody waits for while the keystrokes wait behind it.
    pub fn want_only_the_line_at(&self, at: Option<usize>) {
        self.lock().wanted_line_at = at;
    }

    /// Whether the line wanted ([`Self::want_only_the_line_at`]) is written
    /// to its end.
    pub fn has_the_wanted_line(&self) -> bool {
        let written = self.lock();
        written.wanted_line_at.is_some_and(|at| written.text.as_bytes().get(at..).is_some_and(|rest| rest.contains(&b'\n')))
    }

    /// Says what the user typed since the job's cursor (the newest request
    /// it may serve): once what it writes disagrees with that, `flag` (the
    /// job's) is cancelled, instead of the job keeping that request waiting
    /// for an answer it cannot use.
    pub fn typed_since(&self, typed: &str, flag: &CancelFlag) {
        let mut written = self.lock();
        written.typed = Some((typed.to_string(), flag.clone()));
        written.stop_if_disagreeing();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Written {
    fn stop_if_disagreeing(&self) {
        if let Some((typed, flag)) = &self.typed {
            if !agree(&self.text, typed) {
                flag.cancel();
            }
        }
    }
}

/// Whether what a job wrote and what the user typed agree: one starts with
/// the other (nothing written yet agrees with anything).
fn agree(written: &str, typed: &str) -> bool {
    written.starts_with(typed) || typed.starts_with(written)
}

/// A warm-up in progress: whose prompt, and how far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warming {
    /// The job's key (a document's URI).
    pub key: String,
    /// Prompt tokens in the cache so far.
    pub done: usize,
    /// The prompt's length.
    pub total: usize,
}

impl Warming {
    /// Progress in percent.
    pub fn percentage(&self) -> u32 {
        (self.done * 100 / self.total.max(1)).min(100) as u32
    }
}

struct Job {
    request: GenerationRequest,
    options: JobOptions,
    text: Option<TextSink>,
    reply: oneshot::Sender<Result<Completion, EngineError>>,
}

impl Job {
    /// A job that only fills the cache (nothing to generate).
    fn is_warm_up(&self) -> bool {
        self.options.priority == Priority::Background && self.request.max_new_tokens == 0
    }

    fn same_key(&self, key: &Option<String>) -> bool {
        key.is_some() && self.options.key == *key
    }
}

/// What the engine thread shares with handles: what the caches hold, how
/// fast prefill runs, and the warm-up under way.
struct Shared {
    /// Interactive jobs sent but not yet taken by the thread.
    waiting: AtomicUsize,
    /// Token ids each slot holds, as of the last prefill chunk or job.
    slots: Mutex<Vec<Vec<u32>>>,
    /// Prompt tokens per second (`f64` bits; 0 = not measured yet).
    prefill_rate: std::sync::atomic::AtomicU64,
    /// Bytes one cached position takes.
    bytes_per_position: AtomicUsize,
    /// Bytes of memory each slot's keys and values take, as of the last job
    /// (`KvCache::resident_bytes`).
    resident: Mutex<Vec<usize>>,
    /// The warm-up being run, if any.
    warming: watch::Sender<Option<Warming>>,
    /// The last panic caught in a job, for status reports.
    last_panic: Mutex<Option<String>>,
    /// Jobs run so far (for the debug-build test hook).
    jobs_run: AtomicUsize,
    /// The newest background job with a key: how many were sent, and its
    /// key. A warm-up of another document gives way to it (see `admit`).
    newest_keyed_warm_up: Mutex<(u64, Option<String>)>,
}

/// A handle to the model thread; cloning it shares the same thread.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

/// Receives the load result once the model is resident (or failed to load).
pub type LoadReceiver = oneshot::Receiver<Result<LoadedModel, EngineError>>;

/// What the KV caches hold and the memory they take, for status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvUsage {
    /// Slots the engine has.
    pub slots: usize,
    /// Slots holding a prompt.
    pub used: usize,
    /// Bytes of memory the slots take (the sum of `per_slot`).
    pub bytes: usize,
    /// Bytes of memory each slot takes: what the operating system backs
    /// (every position it ever held, in whole pages; see
    /// `KvCache::resident_bytes`), at least what its held positions take.
    pub per_slot: Vec<usize>,
}

impl EngineHandle {
    /// Starts the model thread, which loads `path` at once. `progress` is
    /// called on that thread with the loaded fraction.
    pub fn spawn(path: PathBuf, options: EngineOptions, progress: Box<dyn FnMut(f32) + Send>) -> Result<(Self, LoadReceiver), EngineError> {
        Self::spawn_with_slots(path, options, 1, progress)
    }

    /// Like [`Self::spawn`], with `slots` KV caches (see [`Engine::set_slots`]),
    /// for a server that keeps one prompt prefix per client.
    pub fn spawn_with_slots(
        path: PathBuf,
        options: EngineOptions,
        slots: usize,
        mut progress: Box<dyn FnMut(f32) + Send>,
    ) -> Result<(Self, LoadReceiver), EngineError> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (loaded_tx, loaded_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            waiting: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
            prefill_rate: std::sync::atomic::AtomicU64::new(0),
            bytes_per_position: AtomicUsize::new(0),
            resident: Mutex::new(Vec::new()),
            warming: watch::channel(None).0,
            last_panic: Mutex::new(None),
            jobs_run: AtomicUsize::new(0),
            newest_keyed_warm_up: Mutex::new((0, None)),
        });
        let thread_shared = shared.clone();
        thread::Builder::new()
            .name("cria-engine".into())
            .spawn(move || {
                let loaded = Engine::load(&path, &options, &mut *progress).and_then(|mut engine| {
                    if engine.slots() < slots {
                        engine.set_slots(slots)?;
                    }
                    Ok(engine)
                });
                let engine = match loaded {
                    Ok(engine) => engine,
                    Err(err) => {
                        let _ = loaded_tx.send(Err(err));
                        // Answer every later job with the same failure.
                        for job in jobs_rx {
                            let _ = job.reply.send(Err(EngineError::WorkerGone));
                        }
                        return;
                    }
                };
                let mut engine = engine;
                if let Err(e) = engine.calibrate_prefill() {
                    tracing::warn!("prefill calibration: {e}");
                }
                thread_shared.publish(&engine);
                let _ = loaded_tx.send(Ok(LoadedModel {
                    tokenizer: engine.tokenizer(),
                    hyperparams: engine.hyperparams().clone(),
                    context_length: engine.context_length(),
                    prefill_rate: engine.prefill_rate(),
                }));
                serve_jobs(engine, &jobs_rx, &thread_shared);
            })
            .map_err(|_| EngineError::WorkerGone)?;
        Ok((Self { jobs: jobs_tx, shared }, loaded_rx))
    }

    /// Queues a generation in slot 0; the answer arrives on the returned receiver.
    pub fn generate(&self, request: GenerationRequest) -> oneshot::Receiver<Result<Completion, EngineError>> {
        self.submit(request, JobOptions::in_slot(0), None)
    }

    /// Queues a generation in KV cache `slot`, sending its text to `text`
    /// (if given) piece by piece as it is generated; the full answer arrives
    /// on the receiver. The sink is dropped once the job is done.
    pub fn generate_in(&self, request: GenerationRequest, slot: usize, text: Option<TextSink>) -> oneshot::Receiver<Result<Completion, EngineError>> {
        self.submit(request, JobOptions::in_slot(slot), text)
    }

    /// Queues a job with explicit options (priority, slot choice, late
    /// finishing, key); a request with `max_new_tokens: 0` only warms the
    /// cache with its prompt.
    pub fn submit(&self, request: GenerationRequest, options: JobOptions, text: Option<TextSink>) -> oneshot::Receiver<Result<Completion, EngineError>> {
        let (tx, rx) = oneshot::channel();
        let interactive = options.priority == Priority::Interactive;
        if interactive {
            self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        } else if options.key.is_some() {
            let mut newest = self.shared.newest_keyed_warm_up.lock().unwrap_or_else(|p| p.into_inner());
            *newest = (newest.0 + 1, options.key.clone());
        }
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { request, options, text, reply: tx }) {
            if interactive {
                self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            let _ = job.reply.send(Err(EngineError::WorkerGone));
        }
        rx
    }

    /// Tells the engine that an interactive job is on its way (a keystroke's
    /// prompt is being built): until the returned guard is dropped, background
    /// work gives way as if the job were queued, so a warm-up chunk started
    /// in the gap between a keystroke and its job cannot delay that job.
    /// Drop the guard once the job is submitted, or abandoned.
    pub fn expect_interactive(&self) -> IncomingJob {
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        IncomingJob { shared: self.shared.clone() }
    }

    /// How many leading tokens of `prompt` some slot's cache already holds
    /// (as of the last prefill chunk): what a request with it would not
    /// have to compute.
    pub fn cached_prefix(&self, prompt: &[u32]) -> usize {
        let slots = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().map(|held| super::kv_cache::common_prefix(held, prompt)).max().unwrap_or(0)
    }

    /// Whether some slot's cache holds all of `prompt` but its last token
    /// (which every job runs, for fresh logits): a job with it prefills
    /// nothing more.
    pub fn holds(&self, prompt: &[u32]) -> bool {
        self.cached_prefix(prompt) + 1 >= prompt.len()
    }

    /// Prompt tokens per second the engine's prefill runs at (`None` until
    /// it has run a chunk).
    pub fn prefill_rate(&self) -> Option<f64> {
        let rate = f64::from_bits(self.shared.prefill_rate.load(Ordering::Relaxed));
        (rate > 0.0).then_some(rate)
    }

    /// The KV caches' slots and memory. During a job its slot's memory is
    /// at least what its held positions take (published per prefill chunk;
    /// the pages are counted when the job ends).
    pub fn kv_usage(&self) -> KvUsage {
        let slots = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        let resident = self.shared.resident.lock().unwrap_or_else(|p| p.into_inner());
        let per = self.shared.bytes_per_position.load(Ordering::Relaxed);
        let per_slot: Vec<usize> =
            slots.iter().enumerate().map(|(i, held)| resident.get(i).copied().unwrap_or(0).max(held.len() * per)).collect();
        KvUsage { slots: slots.len(), used: slots.iter().filter(|s| !s.is_empty()).count(), bytes: per_slot.iter().sum(), per_slot }
    }

    /// The warm-up under way; changes are signalled on the receiver.
    pub fn warming(&self) -> watch::Receiver<Option<Warming>> {
        self.shared.warming.subscribe()
    }

    /// The panic the engine thread caught in its last job that ended, if
    /// that job panicked (a later job that succeeds clears it).
    pub fn last_panic(&self) -> Option<String> {
        self.shared.last_panic.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `Err` with the reason while the last job that ended panicked: for
    /// health checks (`cria serve`'s `/health` answers 503 with it).
    pub fn health(&self) -> Result<(), String> {
        match self.last_panic() {
            Some(message) => Err(format!("the model failed on its last job ({message}); it was reset and serves the next one")),
            None => Ok(()),
        }
    }
}

/// An interactive job being prepared (see [`EngineHandle::expect_interactive`]).
pub struct IncomingJob {
    shared: Arc<Shared>,
}

impl Drop for IncomingJob {
    fn drop(&mut self) {
        self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn publish(&self, engine: &Engine) {
        *self.slots.lock().unwrap_or_else(|p| p.into_inner()) = engine.slot_tokens();
        *self.resident.lock().unwrap_or_else(|p| p.into_inner()) = engine.slot_resident_bytes();
        self.bytes_per_position.store(engine.kv_bytes_per_position(), Ordering::Relaxed);
        if let Some(rate) = engine.prefill_rate() {
            self.prefill_rate.store(rate.to_bits(), Ordering::Relaxed);
        }
    }

    fn set_warming(&self, warming: Option<Warming>) {
        self.warming.send_if_modified(|now| {
            let changed = now.as_ref().map(|w| (&w.key, w.percentage())) != warming.as_ref().map(|w| (&w.key, w.percentage()));
            *now = warming;
            changed
        });
    }
}

/// How often the engine thread looks again while an interactive job is
/// being prepared (it wakes at once when the job arrives).
const INCOMING_POLL: Duration = Duration::from_millis(5);

/// The engine thread's loop: interactive jobs first, in arrival order, then
/// background jobs, until every handle is gone.
fn serve_jobs(mut engine: Engine, jobs: &mpsc::Receiver<Job>, shared: &Shared) {
    let mut interactive: VecDeque<Job> = VecDeque::new();
    let mut background: VecDeque<Job> = VecDeque::new();
    let mut open = true;
    loop {
        while open {
            match jobs.try_recv() {
                Ok(job) => admit(job, &mut interactive, &mut background, shared),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        // A keystroke's job is being prepared: wait for it rather than start
        // background work it would have to wait behind.
        if interactive.is_empty() && open && shared.waiting.load(Ordering::SeqCst) > 0 {
            match jobs.recv_timeout(INCOMING_POLL) {
                Ok(job) => admit(job, &mut interactive, &mut background, shared),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
            continue;
        }
        let job = match interactive.pop_front().or_else(|| background.pop_front()) {
            Some(job) => job,
            None if open => match jobs.recv() {
                Ok(job) => {
                    admit(job, &mut interactive, &mut background, shared);
                    continue;
                }
                Err(_) => return,
            },
            None => return,
        };
        if job.request.cancel.is_cancelled() || (job.options.priority == Priority::Interactive && job.reply.is_closed()) {
            let _ = job.reply.send(Ok(cancelled(&job.request)));
            continue;
        }
        if let Some(job) = run_one(&mut engine, job, shared) {
            // It gave way: it resumes first among the background jobs.
            background.push_front(job);
        }
        if background.is_empty() {
            shared.set_warming(None);
        }
    }
}

/// Queues a job that just arrived: an interactive job drops the queued
/// warm-ups for its key (its own prompt is the fresher one; it queues the
/// warm-up it still wants after itself). Warm-ups replace each other by
/// their cancellation flags, set by whoever queued them.
fn admit(job: Job, interactive: &mut VecDeque<Job>, background: &mut VecDeque<Job>, shared: &Shared) {
    if job.options.priority == Priority::Interactive {
        let stale = |queued: &Job| queued.is_warm_up() && queued.same_key(&job.options.key);
        let (dropped, kept): (Vec<Job>, Vec<Job>) = background.drain(..).partition(stale);
        background.extend(kept);
        for old in dropped {
            let _ = old.reply.send(Ok(cancelled(&old.request)));
        }
    }
    match job.options.priority {
        Priority::Interactive => {
            shared.waiting.fetch_sub(1, Ordering::SeqCst);
            interactive.push_back(job);
        }
        // The document whose warm-up came last is the one the user is on:
        // its jobs go first, in the order they came; jobs without a key
        // (the next anchor's warm-up) wait at the back.
        Priority::Background if job.options.key.is_some() => {
            let (mut first, rest): (VecDeque<Job>, VecDeque<Job>) = background.drain(..).partition(|queued| queued.same_key(&job.options.key));
            first.push_back(job);
            first.extend(rest);
            *background = first;
        }
        Priority::Background => background.push_back(job),
    }
}

/// Runs a job; gives it back if it gave way (to an interactive job, or a
/// background one to the warm-up of another document).
fn run_one(engine: &mut Engine, job: Job, shared: &Shared) -> Option<Job> {
    let Job { request, options, text, reply } = job;
    let background = options.priority == Priority::Background;
    // Background work gives way to a keystroke's job, and to a warm-up of
    // another document sent since it started (the user moved there).
    let newest_at_start = shared.newest_keyed_warm_up.lock().unwrap_or_else(|p| p.into_inner()).0;
    let newer_warm_up_elsewhere = || {
        let newest = shared.newest_keyed_warm_up.lock().unwrap_or_else(|p| p.into_inner());
        newest.0 != newest_at_start && newest.1 != options.key
    };
    let should_yield = || shared.waiting.load(Ordering::SeqCst) > 0 || (background && newer_warm_up_elsewhere());
    let warm_key = options.key.clone().filter(|_| background || options.late_budget.is_some());
    if let (true, Some(key)) = (background, &warm_key) {
        shared.set_warming(Some(Warming { key: key.clone(), done: 0, total: request.prompt.len() }));
    }
    let mut on_prefill = |slot: usize, held: &[u32], total: usize| {
        if let Some(published) = shared.slots.lock().unwrap_or_else(|p| p.into_inner()).get_mut(slot) {
            published.clear();
            published.extend_from_slice(held);
        }
        if let Some(key) = &warm_key {
            if background || held.len() < total {
                shared.set_warming(Some(Warming { key: key.clone(), done: held.len().min(total), total }));
            }
        }
    };
    let mut on_text = |piece: &str| {
        if let Some(written) = &options.written {
            written.push(piece);
        }
        if let Some(sink) = &text {
            let _ = sink.send(piece.to_string());
        }
    };
    let has_enough = || options.written.as_ref().is_some_and(WrittenSoFar::has_the_wanted_line);
    let mut control = RunControl {
        background,
        should_yield: &should_yield,
        late_budget: options.late_budget,
        on_prefill: Some(&mut on_prefill),
        has_enough: &has_enough,
    };
    let started = std::time::Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        test_hook_panic(shared);
        engine.run_job(options.slot, &request, &mut control, &mut on_text)
    }));
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!("the model panicked in a job: {message}; its caches were emptied");
            engine.clear_caches();
            *shared.last_panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
            Err(EngineError::Panicked(message))
        }
    };
    shared.publish(engine);
    tracing::debug!(
        priority = ?options.priority,
        slot = ?options.slot,
        prompt = request.prompt.len(),
        max_new = request.max_new_tokens,
        ms = started.elapsed().as_millis() as u64,
        reused = match &outcome {
            Ok(Ran::Done(c)) => c.reused_tokens,
            Ok(Ran::Yielded { reused }) => *reused,
            Err(_) => 0,
        },
        outcome = match &outcome {
            Ok(Ran::Yielded { .. }) => "yielded",
            Ok(Ran::Done(c)) => c.stop_reason.as_str(),
            Err(_) => "error",
        },
        "engine job ran"
    );
    match outcome {
        Ok(Ran::Yielded { .. }) => Some(Job { request, options, text, reply }),
        Ok(Ran::Done(completion)) => {
            *shared.last_panic.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let _ = reply.send(Ok(completion));
            None
        }
        Err(e) => {
            let _ = reply.send(Err(e));
            None
        }
    }
}

/// Debug builds only: `CRIA_TEST_ENGINE_PANIC_ON_JOB=N` makes the N-th job
/// panic, so tests can check that a failing job is reported and survived.
fn test_hook_panic(shared: &Shared) {
    if cfg!(debug_assertions) {
        let n = shared.jobs_run.fetch_add(1, Ordering::SeqCst) + 1;
        if std::env::var("CRIA_TEST_ENGINE_PANIC_ON_JOB").ok().and_then(|v| v.parse::<usize>().ok()) == Some(n) {
            panic!("test hook: job {n} panics on purpose");
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The answer for a request cancelled before it reached the model.
fn cancelled(request: &GenerationRequest) -> Completion {
    Completion {
        text: String::new(),
        tokens: Vec::new(),
        stop_reason: super::StopReason::Cancelled,
        prompt_tokens: request.prompt.len(),
        reused_tokens: 0,
        prefill: Default::default(),
        decode: Default::default(),
        drafted_tokens: 0,
        accepted_tokens: 0,
    }
}
