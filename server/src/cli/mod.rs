//! Command-line verbs. Each verb is a thin shell over the library: parse
//! arguments, call it, print the result, and turn errors into one clear line
//! on stderr and a non-zero exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod complete;
mod lsp;
mod models;
mod pull;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cria: code completion from a model resident in its own process.
#[derive(Parser)]
#[command(name = "cria", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Accepted and ignored (the language server always uses stdio).
    #[arg(long, hide = true)]
    stdio: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Speak the Language Server Protocol over stdio (the default).
    Lsp(lsp::Args),
    /// Print the suggestion an editor would get at FILE:LINE:COL (1-based, as
    /// compilers print them), or the model's raw text (`--raw`).
    Complete(complete::Args),
    /// Download a model's GGUF file from the Hugging Face hub into $CRIA_HOME/models.
    Pull(pull::Args),
    /// List the models cria knows and whether their files are present.
    Models,
    /// Serve the resident model over an OpenAI-compatible HTTP API, for editors sharing one machine.
    Serve(serve::Args),
}

/// Runs the verb named on the command line.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let log_control = init_logging();
    let result = match cli.command {
        None => lsp::run(lsp::Args::default(), log_control),
        Some(Command::Lsp(args)) => lsp::run(args, log_control),
        Some(Command::Complete(args)) => complete::run(args),
        Some(Command::Pull(args)) => pull::run(args),
        Some(Command::Models) => models::run(),
        Some(Command::Serve(args)) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line per cause, the first prefixed: what failed, then why.
            let mut message = format!("error: {err}");
            for cause in err.chain().skip(1) {
                message.push_str(&format!(": {cause}"));
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries the protocol or the answer), at the
/// level `CRIA_LOG` gives (default: warnings). The returned control lets the
/// language server change the level when its `logLevel` setting changes
/// (`CRIA_LOG`, when set, wins).
fn init_logging() -> cria::protocol::LogControl {
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var("CRIA_LOG").ok();
    let filter = from_env
        .as_deref()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false))
        .try_init();
    std::sync::Arc::new(move |level: &str| {
        if from_env.is_some() {
            return Ok(());
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}
