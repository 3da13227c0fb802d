//! The model's own thread. The engine is loaded and runs there; callers send
//! jobs over a channel and get answers on one-shot channels they can await
//! (the language server) or block on (the CLI). Nothing here blocks an async
//! runtime, and no lock is held while the model runs.
//!
//! Jobs run one at a time in arrival order, each in the KV cache slot it
//! names (slot 0 unless a server with several clients chose another), and
//! may stream their text as it is generated.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use tokio::sync::{mpsc as async_mpsc, oneshot};

use super::generate::{Completion, Engine, EngineOptions, GenerationRequest};
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
}

/// Where a job's text goes while it is generated, piece by piece.
pub type TextSink = async_mpsc::UnboundedSender<String>;

struct Job {
    request: GenerationRequest,
    slot: usize,
    text: Option<TextSink>,
    reply: oneshot::Sender<Result<Completion, EngineError>>,
}

/// A handle to the model thread; cloning it shares the same thread.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
}

/// Receives the load result once the model is resident (or failed to load).
pub type LoadReceiver = oneshot::Receiver<Result<LoadedModel, EngineError>>;

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
        thread::Builder::new()
            .name("cria-engine".into())
            .spawn(move || {
                let loaded = Engine::load(&path, &options, &mut *progress).and_then(|mut engine| {
                    engine.set_slots(slots)?;
                    Ok(engine)
                });
                let mut engine = match loaded {
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
                let _ = loaded_tx.send(Ok(LoadedModel {
                    tokenizer: engine.tokenizer(),
                    hyperparams: engine.hyperparams().clone(),
                    context_length: engine.context_length(),
                }));
                for job in jobs_rx {
                    let Job { request, slot, text, reply } = job;
                    if reply.is_closed() || request.cancel.is_cancelled() {
                        let _ = reply.send(Ok(cancelled(&request)));
                        continue;
                    }
                    let mut on_text = |piece: &str| {
                        if let Some(sink) = &text {
                            let _ = sink.send(piece.to_string());
                        }
                    };
                    let result = engine.generate_in(slot, &request, &mut on_text);
                    let _ = reply.send(result);
                }
            })
            .map_err(|_| EngineError::WorkerGone)?;
        Ok((Self { jobs: jobs_tx }, loaded_rx))
    }

    /// Queues a generation in slot 0; the answer arrives on the returned receiver.
    pub fn generate(&self, request: GenerationRequest) -> oneshot::Receiver<Result<Completion, EngineError>> {
        self.submit(request, 0, None)
    }

    /// Queues a generation in KV cache `slot`, sending its text to `text`
    /// (if given) piece by piece as it is generated; the full answer arrives
    /// on the receiver. The sink is dropped once the job is done.
    pub fn generate_in(&self, request: GenerationRequest, slot: usize, text: Option<TextSink>) -> oneshot::Receiver<Result<Completion, EngineError>> {
        self.submit(request, slot, text)
    }

    fn submit(&self, request: GenerationRequest, slot: usize, text: Option<TextSink>) -> oneshot::Receiver<Result<Completion, EngineError>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { request, slot, text, reply: tx }) {
            let _ = job.reply.send(Err(EngineError::WorkerGone));
        }
        rx
    }
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
