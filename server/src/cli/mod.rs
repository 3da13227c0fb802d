//! Command-line verbs. Each verb is a thin shell over the library: parse
//! arguments, call it, print the result, and turn errors into one clear line
//! on stderr and a non-zero exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod complete;
mod models;
mod pull;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cria: code completion from a model resident in its own process.
#[derive(Parser)]
#[command(name = "cria", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Complete the code at FILE:LINE:COL (1-based, as compilers print them).
    Complete(complete::Args),
    /// Download a model's GGUF file from the Hugging Face hub into $CRIA_HOME/models.
    Pull(pull::Args),
    /// List the models cria knows and whether their files are present.
    Models,
}

/// Runs the verb named on the command line.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Some(Command::Complete(args)) => complete::run(args),
        Some(Command::Pull(args)) => pull::run(args),
        Some(Command::Models) => models::run(),
        None => Err(anyhow::anyhow!("the language server is not built yet; use `cria complete FILE:LINE:COL`")),
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
/// level `CRIA_LOG` gives (default: warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRIA_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}
