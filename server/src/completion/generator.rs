//! Where generation happens: the resident engine thread, or a remote engine
//! over HTTP. Both take the same engine request (the prompt cria built, as
//! token ids, with its deadline and cancellation flag) and answer with the
//! same [`Completion`], so the front ends do not care which one runs. A
//! third kind, [`ScriptedGenerator`], plays back given answers with given
//! timing, for tests of the server without a model.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::scripted::ScriptedGenerator;
use crate::engine::{Completion, EngineError, EngineHandle, GenerationRequest, JobOptions};
use crate::prompt::Healing;
use crate::remote::{RemoteClient, RemoteConfig, RemoteError};

/// Which backend runs the model, as the settings choose it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// The model resident in this process (the default).
    #[default]
    Embedded,
    /// A serving engine on another machine.
    Remote(RemoteConfig),
}

/// Why a generation failed, whichever backend ran it.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The resident engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The remote engine failed or could not be reached.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Runs generations; cloning shares the same engine thread or HTTP client.
#[derive(Clone)]
pub enum Generator {
    /// The engine thread of a resident model.
    Embedded(EngineHandle),
    /// A remote engine.
    Remote(Arc<RemoteClient>),
    /// Scripted answers instead of a model (tests; see [`ScriptedGenerator`]).
    Scripted(ScriptedGenerator),
}

impl Generator {
    /// Starts a generation; await the result (async code) or block on it
    /// with [`Pending::blocking_recv`] (the CLI, embedded only).
    pub fn generate(&self, request: GenerationRequest) -> Pending {
        match self {
            Self::Embedded(engine) => Pending(Inner::Engine(engine.generate(request))),
            Self::Remote(client) => Pending(Inner::Remote(client.generate(request))),
            Self::Scripted(script) => Pending(Inner::Engine(script.submit(request, None))),
        }
    }

    /// Starts a generation with scheduling options (priority, slot choice,
    /// late finishing); a remote engine schedules by itself and ignores them.
    pub fn submit(&self, request: GenerationRequest, options: JobOptions) -> Pending {
        match self {
            Self::Embedded(engine) => Pending(Inner::Engine(engine.submit(request, options, None))),
            Self::Remote(client) => Pending(Inner::Remote(client.generate(request))),
            Self::Scripted(script) => Pending(Inner::Engine(script.submit(request, Some(options)))),
        }
    }

    /// Whether a generation whose prompt outlives its deadline goes on in
    /// the background when given a late budget ([`JobOptions::late_budget`]),
    /// so its answer can be cached: the resident engine's way. A remote
    /// engine stops at the deadline.
    pub fn finishes_late(&self) -> bool {
        match self {
            Self::Embedded(_) => true,
            Self::Remote(_) => false,
            Self::Scripted(script) => script.finishes_late(),
        }
    }

    /// How much token healing a prompt gets here: all of it on the resident
    /// engine, which holds generation to the healed text; only indentation
    /// on a remote engine, which cannot (its client drops what the answer
    /// writes of it); none for scripted answers, which are the text after
    /// the cursor as the tests write it.
    pub fn healing(&self) -> Healing {
        match self {
            Self::Embedded(_) => Healing::Full,
            Self::Remote(_) => Healing::Indentation,
            Self::Scripted(_) => Healing::Off,
        }
    }

    /// The engine thread, when the model is resident here.
    pub fn engine(&self) -> Option<&EngineHandle> {
        match self {
            Self::Embedded(engine) => Some(engine),
            Self::Remote(_) | Self::Scripted(_) => None,
        }
    }
}

enum Inner {
    Engine(oneshot::Receiver<Result<Completion, EngineError>>),
    Remote(oneshot::Receiver<Result<Completion, RemoteError>>),
}

/// A generation under way. It resolves like a one-shot receiver: the outer
/// error means the backend went away without answering.
pub struct Pending(Inner);

fn widen<E: Into<GenerateError>>(result: Result<Result<Completion, E>, oneshot::error::RecvError>) -> Result<Result<Completion, GenerateError>, oneshot::error::RecvError> {
    result.map(|r| r.map_err(Into::into))
}

impl Future for Pending {
    type Output = Result<Result<Completion, GenerateError>, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Inner::Engine(rx) => Pin::new(rx).poll(cx).map(widen),
            Inner::Remote(rx) => Pin::new(rx).poll(cx).map(widen),
        }
    }
}

impl Pending {
    /// Waits on a plain thread (never inside an async runtime).
    pub fn blocking_recv(self) -> Result<Result<Completion, GenerateError>, oneshot::error::RecvError> {
        match self.0 {
            Inner::Engine(rx) => widen(rx.blocking_recv()),
            Inner::Remote(rx) => widen(rx.blocking_recv()),
        }
    }
}
