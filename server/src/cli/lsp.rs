//! `cria` / `cria lsp`: the language server over stdio.

use cria::protocol::{run_session, LogControl, ServerConfig, SessionEnd};

/// Arguments of `cria lsp`.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Model to load when the client's settings name none (name or .gguf path).
    #[arg(long)]
    model: Option<String>,
    /// Accepted and ignored: stdio is the only transport, and many LSP
    /// clients pass this flag.
    #[arg(long, hide = true)]
    stdio: bool,
}

/// Runs the server until the client exits.
pub fn run(args: Args, log_control: LogControl) -> anyhow::Result<()> {
    let mut config = ServerConfig::default();
    if let Some(model) = args.model {
        config.model = model;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let end = runtime.block_on(run_session(tokio::io::stdin(), tokio::io::stdout(), config, Some(log_control)));
    // Don't wait for a model still loading on a blocking thread.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match end {
        SessionEnd::Clean => Ok(()),
        // The LSP specification: exit code 1 unless `shutdown` came first.
        SessionEnd::WithoutShutdown => anyhow::bail!("the client ended the session without a `shutdown` request"),
    }
}
