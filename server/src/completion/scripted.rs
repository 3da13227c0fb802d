//! A generator that plays back scripted answers instead of running a model.
//!
//! Why it exists: the server's hardest paths (a newer keystroke cancelling
//! an older request, a generation left running because the user typed what
//! it writes, the latency budget's deadline and the backstop timeout around
//! it, the caches) depend on *when* an answer arrives, and a real model's
//! timing cannot be chosen. With a [`ScriptedGenerator`] a test says what
//! the answer is and how long each part takes, and runs the whole language
//! server in milliseconds without a model (see `server/tests/harness.rs`).
//! It is part of the library, not of the tests, so integration tests and
//! benchmarks can hand it to a session (`protocol::run_session_with_generator`).
//!
//! It behaves like the engine thread where the server can tell: one job at
//! a time in arrival order (a job cancelled while it waits ends at once),
//! the cancellation flag and the deadline checked between pieces (every few
//! milliseconds while a piece is due), a job with a late budget carrying on
//! past its deadline, `max_new_tokens` counted in pieces, stop strings (and
//! a line that leaves the block, `GenerationRequest::block_indent`)
//! cutting the text, the text written so far shared with the scheduler, and
//! the same [`Completion`] with the [`StopReason`] the engine would give.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::engine::{Completion, EngineError, GenerationRequest, JobOptions, StopReason, WrittenSoFar};
use crate::locks::lock;

/// How often a piece's wait looks at the cancellation flag and the deadline.
const TICK: Duration = Duration::from_millis(2);

/// One scripted answer: the time its prompt takes, then its text in pieces
/// (one piece counts as one token), each written after a delay.
#[derive(Debug, Clone)]
pub struct Script {
    /// Time before the first piece: the prompt's prefill.
    pub prefill: Duration,
    /// The answer's text, piece by piece.
    pub pieces: Vec<String>,
    /// Time each piece takes: the decoding of a token.
    pub per_piece: Duration,
    /// How the generation ends once every piece is written: `Eos` (the
    /// model's end token, the usual end) or `Length`.
    pub end: StopReason,
    /// Whether the generation stops at its deadline, as the engine and the
    /// remote client do; `false` imitates a backend that does not (a stuck
    /// connection), so only the server's backstop timeout answers.
    pub honours_deadline: bool,
}

impl Script {
    /// An answer of one piece, written at once, ended by the end token.
    pub fn answer(text: &str) -> Self {
        Self::pieces(&[text])
    }

    /// An answer written in the given pieces, at once.
    pub fn pieces(pieces: &[&str]) -> Self {
        Self {
            prefill: Duration::ZERO,
            pieces: pieces.iter().map(|p| p.to_string()).collect(),
            per_piece: Duration::ZERO,
            end: StopReason::Eos,
            honours_deadline: true,
        }
    }

    /// An answer written one character per piece, each taking `per_piece`.
    pub fn per_char(text: &str, per_piece: Duration) -> Self {
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        Self { per_piece, pieces, ..Self::answer("") }
    }

    /// The same answer, after a prefill of `prefill`.
    pub fn after(self, prefill: Duration) -> Self {
        Self { prefill, ..self }
    }

    /// The same answer, each piece taking `per_piece`.
    pub fn every(self, per_piece: Duration) -> Self {
        Self { per_piece, ..self }
    }

    /// The same answer, never stopped by its deadline.
    pub fn ignoring_deadline(self) -> Self {
        Self { honours_deadline: false, ..self }
    }
}

/// One generation the scripted generator was asked for.
#[derive(Debug, Clone)]
pub struct ScriptedRun {
    /// The request as the server built it.
    pub request: GenerationRequest,
    /// Why it ended; `None` while it waits or runs.
    pub stop: Option<StopReason>,
}

type ScriptFn = dyn Fn(&GenerationRequest) -> Script + Send + Sync;

struct Job {
    index: usize,
    request: GenerationRequest,
    script: Script,
    /// Past the deadline, how long the job may still decode.
    late_budget: Option<Duration>,
    written: Option<WrittenSoFar>,
    answer: oneshot::Sender<Result<Completion, EngineError>>,
}

/// Plays back a [`Script`] per request (chosen by a function of the
/// request), on one worker thread, and records every request
/// ([`Self::runs`]). Cloning shares the worker and the record.
#[derive(Clone)]
pub struct ScriptedGenerator(Arc<Shared>);

/// One pointer's worth in [`super::Generator`], like the other generators.
struct Shared {
    jobs: mpsc::Sender<Job>,
    script: Arc<ScriptFn>,
    runs: Arc<Mutex<Vec<ScriptedRun>>>,
    finishes_late: bool,
}

impl ScriptedGenerator {
    /// A generator answering each request with `script(request)`. Like the
    /// resident engine, a job whose prompt outlives its deadline finishes
    /// late when the caller gives it a late budget.
    pub fn new(script: impl Fn(&GenerationRequest) -> Script + Send + Sync + 'static) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let runs: Arc<Mutex<Vec<ScriptedRun>>> = Arc::new(Mutex::new(Vec::new()));
        let record = runs.clone();
        std::thread::Builder::new()
            .name("cria-scripted".into())
            .spawn(move || {
                for job in queue {
                    let completion = play(&job);
                    if let Some(run) = lock(&record).get_mut(job.index) {
                        run.stop = Some(completion.stop_reason);
                    }
                    let _ = job.answer.send(Ok(completion));
                }
            })
            .expect("a thread for the scripted generator");
        Self(Arc::new(Shared { jobs, script: Arc::new(script), runs, finishes_late: true }))
    }

    /// A generator giving every request the same answer.
    pub fn always(script: Script) -> Self {
        Self::new(move |_| script.clone())
    }

    /// The same generator imitating a remote engine instead: no late
    /// finishing, whatever the caller asks (the server then answers a
    /// request past its budget with an error status).
    pub fn as_remote(self) -> Self {
        let Shared { jobs, script, runs, .. } = &*self.0;
        Self(Arc::new(Shared { jobs: jobs.clone(), script: script.clone(), runs: runs.clone(), finishes_late: false }))
    }

    /// Whether a job past its deadline may go on with a late budget.
    pub fn finishes_late(&self) -> bool {
        self.0.finishes_late
    }

    /// Every request so far, in arrival order.
    pub fn runs(&self) -> Vec<ScriptedRun> {
        lock(&self.0.runs).clone()
    }

    /// Queues a request; the receiver gets its answer.
    pub fn submit(&self, request: GenerationRequest, options: Option<JobOptions>) -> oneshot::Receiver<Result<Completion, EngineError>> {
        let (answer, receiver) = oneshot::channel();
        let script = (self.0.script)(&request);
        let index = {
            let mut runs = lock(&self.0.runs);
            runs.push(ScriptedRun { request: request.clone(), stop: None });
            runs.len() - 1
        };
        let late_budget = options.as_ref().and_then(|o| o.late_budget).filter(|_| self.0.finishes_late);
        let written = options.and_then(|o| o.written);
        let _ = self.0.jobs.send(Job { index, request, script, late_budget, written, answer });
        receiver
    }
}

/// Why a wait ended early.
enum Interrupted {
    Cancelled,
    Deadline,
}

/// Waits `length`, looking at the flag and the deadline every [`TICK`].
fn wait(length: Duration, request: &GenerationRequest, deadline: Option<Instant>) -> Result<(), Interrupted> {
    let until = Instant::now() + length;
    loop {
        if request.cancel.is_cancelled() {
            return Err(Interrupted::Cancelled);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Interrupted::Deadline);
        }
        if now >= until {
            return Ok(());
        }
        std::thread::sleep(TICK.min(until - now));
    }
}

/// Runs one job as the engine would: the prefill, then the pieces.
fn play(job: &Job) -> Completion {
    let (request, script) = (&job.request, &job.script);
    let started = Instant::now();
    let mut completion = Completion {
        text: String::new(),
        tokens: Vec::new(),
        stop_reason: StopReason::Eos,
        prompt_tokens: request.prompt.len(),
        reused_tokens: 0,
        prefill: Duration::ZERO,
        decode: Duration::ZERO,
        drafted_tokens: 0,
        accepted_tokens: 0,
    };
    let finish = |mut completion: Completion, reason: StopReason, prefill_done: Option<Instant>| {
        let prefill_done = prefill_done.unwrap_or_else(Instant::now);
        completion.stop_reason = reason;
        completion.prefill = prefill_done - started;
        completion.decode = prefill_done.elapsed();
        completion
    };
    let mut deadline = request.deadline.filter(|_| script.honours_deadline);
    // A job with a late budget finishes its prefill past the deadline, then
    // decodes for that budget (the engine's `RunControl::late_budget`).
    let prefill_deadline = deadline.filter(|_| job.late_budget.is_none());
    match wait(script.prefill, request, prefill_deadline) {
        Ok(()) => {}
        Err(Interrupted::Cancelled) => return finish(completion, StopReason::Cancelled, None),
        Err(Interrupted::Deadline) => return finish(completion, StopReason::Deadline, None),
    }
    let prefill_done = Instant::now();
    if let (Some(budget), Some(d)) = (job.late_budget, deadline) {
        if prefill_done >= d {
            deadline = Some(prefill_done + budget);
        }
    }
    // The healed text is written first and is not part of the answer.
    let answer: String = script.pieces.concat();
    let Some(mut owed) = answer.starts_with(&request.healed_text).then_some(request.healed_text.len()) else {
        return finish(completion, StopReason::Stop, Some(prefill_done));
    };
    let mut text = String::new();
    for (index, piece) in script.pieces.iter().enumerate() {
        if index >= request.max_new_tokens {
            completion.text = text;
            return finish(completion, StopReason::Length, Some(prefill_done));
        }
        if let Err(why) = wait(script.per_piece, request, deadline) {
            completion.text = text;
            let reason = match why {
                Interrupted::Cancelled => StopReason::Cancelled,
                Interrupted::Deadline => StopReason::Deadline,
            };
            return finish(completion, reason, Some(prefill_done));
        }
        completion.tokens.push(index as u32);
        let skip = owed.min(piece.len());
        owed -= skip;
        let new = &piece[skip..];
        let before = text.len();
        text.push_str(new);
        let left_block = request.block_indent.and_then(|indent| crate::engine::dedent::leaves_block(&text, indent));
        if let Some(cut) = [first_stop(&text, &request.stop_strings, before), left_block].into_iter().flatten().min() {
            text.truncate(cut);
            if let Some(written) = &job.written {
                written.push(&text[before.min(cut)..]);
            }
            completion.text = text;
            return finish(completion, StopReason::Stop, Some(prefill_done));
        }
        if let Some(written) = &job.written {
            written.push(new);
            // As the engine: a newer request typing on wanted only this line.
            if written.has_the_wanted_line() {
                completion.text = text;
                return finish(completion, StopReason::Enough, Some(prefill_done));
            }
        }
    }
    completion.text = text;
    finish(completion, script.end, Some(prefill_done))
}

/// Where the first stop string starts in `text`, looking only at matches
/// that end after `before` (the text before it was already checked).
fn first_stop(text: &str, stops: &[String], before: usize) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|stop| {
            let from = before.saturating_sub(stop.len() - 1);
            let from = (0..=from).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            text[from..].find(stop.as_str()).map(|at| from + at)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CancelFlag;

    fn request(max_new_tokens: usize) -> GenerationRequest {
        GenerationRequest::new(vec![1, 2, 3], max_new_tokens, Vec::new())
    }

    fn run(generator: &ScriptedGenerator, request: GenerationRequest, options: Option<JobOptions>) -> Completion {
        generator.submit(request, options).blocking_recv().expect("an answer").expect("no error")
    }

    #[test]
    fn answers_the_script_and_records_the_run() {
        let generator = ScriptedGenerator::always(Script::pieces(&["foo", "(bar", ")"]));
        let done = run(&generator, request(64), None);
        assert_eq!((done.text.as_str(), done.stop_reason, done.tokens.len()), ("foo(bar)", StopReason::Eos, 3));
        assert_eq!(done.prompt_tokens, 3);
        let runs = generator.runs();
        assert_eq!((runs.len(), runs[0].stop), (1, Some(StopReason::Eos)));
    }

    #[test]
    fn stops_at_a_stop_string_and_at_max_new_tokens() {
        let generator = ScriptedGenerator::always(Script::pieces(&["a = 1", "\nb", " = 2"]));
        let mut single_line = request(64);
        single_line.stop_strings = vec!["\n".into()];
        let done = run(&generator, single_line, None);
        assert_eq!((done.text.as_str(), done.stop_reason), ("a = 1", StopReason::Stop));
        let done = run(&generator, request(2), None);
        assert_eq!((done.text.as_str(), done.stop_reason), ("a = 1\nb", StopReason::Length));
    }

    #[test]
    fn writes_the_healed_text_first_and_leaves_it_out() {
        let generator = ScriptedGenerator::always(Script::pieces(&["de", "f main"]));
        let mut healed = request(64);
        healed.healed_text = "d".into();
        assert_eq!(run(&generator, healed.clone(), None).text, "ef main");
        healed.healed_text = "x".into();
        let done = run(&generator, healed, None);
        assert_eq!((done.text.as_str(), done.stop_reason), ("", StopReason::Stop));
    }

    #[test]
    fn a_cancelled_or_late_job_stops_between_pieces() {
        let generator = ScriptedGenerator::always(Script::per_char("abcdefgh", Duration::from_millis(20)));
        let mut late = request(64);
        late.deadline = Some(Instant::now() + Duration::from_millis(50));
        let done = run(&generator, late, None);
        assert_eq!(done.stop_reason, StopReason::Deadline);
        assert!((1..8).contains(&done.text.len()), "{:?}", done.text);

        let cancel = CancelFlag::new();
        cancel.cancel();
        let cancelled = GenerationRequest { cancel, ..request(64) };
        let done = run(&generator, cancelled, None);
        assert_eq!((done.text.as_str(), done.stop_reason), ("", StopReason::Cancelled));
    }

    #[test]
    fn a_late_budget_carries_a_slow_prefill_past_the_deadline() {
        let script = Script::answer("late answer").after(Duration::from_millis(80));
        let mut late = request(64);
        late.deadline = Some(Instant::now() + Duration::from_millis(20));
        let options = JobOptions { late_budget: Some(Duration::from_secs(2)), ..JobOptions::in_slot(0) };
        let engine_like = ScriptedGenerator::always(script.clone());
        let done = run(&engine_like, late.clone(), Some(options.clone()));
        assert_eq!((done.text.as_str(), done.stop_reason), ("late answer", StopReason::Eos));
        let remote_like = ScriptedGenerator::always(script).as_remote();
        let done = run(&remote_like, late, Some(options));
        assert_eq!((done.text.as_str(), done.stop_reason), ("", StopReason::Deadline));
    }

    #[test]
    fn shares_what_it_wrote_so_far() {
        let generator = ScriptedGenerator::always(Script::pieces(&["fn ", "main", "()\n", "{}"]));
        let written = WrittenSoFar::default();
        let mut single_line = request(64);
        single_line.stop_strings = vec!["\n".into()];
        let options = JobOptions { written: Some(written.clone()), ..JobOptions::in_slot(0) };
        run(&generator, single_line, Some(options));
        // Written: `fn main()`, not the line break the stop string cut.
        assert!(written.agrees_with("fn main() {"));
        assert!(!written.agrees_with("fn mai_"));
    }
}
