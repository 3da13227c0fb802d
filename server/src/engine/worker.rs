//! The model's own thread. The engine is loaded and runs there; callers send
//! jobs over a channel and get answers on one-shot channels they can await
//! (the language server) or block on (the CLI). Nothing here blocks an async
//! runtime, and no lock is held while the model runs.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use tokio::sync::oneshot;

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

enum Job {
    Generate(GenerationRequest, oneshot::Sender<Result<Completion, EngineError>>),
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
    pub fn spawn(
        path: PathBuf,
        options: EngineOptions,
        mut progress: Box<dyn FnMut(f32) + Send>,
    ) -> Result<(Self, LoadReceiver), EngineError> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (loaded_tx, loaded_rx) = oneshot::channel();
        thread::Builder::new()
            .name("cria-engine".into())
            .spawn(move || {
                let mut engine = match Engine::load(&path, &options, &mut *progress) {
                    Ok(engine) => engine,
                    Err(err) => {
                        let _ = loaded_tx.send(Err(err));
                        // Answer every later job with the same failure.
                        for job in jobs_rx {
                            let Job::Generate(_, reply) = job;
                            let _ = reply.send(Err(EngineError::WorkerGone));
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
                    match job {
                        Job::Generate(request, reply) => {
                            if reply.is_closed() || request.cancel.is_cancelled() {
                                let _ = reply.send(Ok(cancelled(&request)));
                                continue;
                            }
                            let result = engine.generate(&request);
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .map_err(|_| EngineError::WorkerGone)?;
        Ok((Self { jobs: jobs_tx }, loaded_rx))
    }

    /// Queues a generation; the answer arrives on the returned receiver.
    pub fn generate(&self, request: GenerationRequest) -> oneshot::Receiver<Result<Completion, EngineError>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Job::Generate(_, reply))) = self.jobs.send(Job::Generate(request, tx)) {
            let _ = reply.send(Err(EngineError::WorkerGone));
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
