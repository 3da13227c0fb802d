//! `cria serve`: load the model once and serve it over an OpenAI-compatible
//! HTTP API, so that many editors share one machine.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use cria::completion::{resolve_model, start_with_slots};
use cria::engine::{ComputeDevice, EngineOptions};
use cria::models::CriaHome;
use cria::serve::{serve, Limits, ServeOptions};

/// Arguments of `cria serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Address and port to listen on. Loopback by default; give
    /// 0.0.0.0:PORT to accept other machines (then also set --token-env).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Model config name or path to a .gguf file.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    model: String,
    /// Name of the environment variable holding the bearer token clients
    /// must send (`Authorization: Bearer TOKEN`); without it anyone may connect.
    #[arg(long)]
    token_env: Option<String>,
    /// KV cache slots: how many clients keep their prompt prefix at once.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Context window per slot (prompt plus generated tokens).
    #[arg(long, default_value_t = 4096)]
    context_length: usize,
    /// Threads for the forward pass (default: the physical cores this
    /// process may use).
    #[arg(long)]
    threads: Option<std::num::NonZeroUsize>,
    /// Where the model runs: cpu, cuda, cuda:N, metal (GPUs need a build
    /// with `--features cuda` or `--features metal`), or candle-cpu.
    #[arg(long, default_value = "cpu")]
    device: ComputeDevice,
    /// Connections open at once; past it the one idle the longest is closed
    /// (or, when all are busy, the new one refused).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
}

/// Runs the server until the process is stopped.
pub fn run(args: Args) -> anyhow::Result<()> {
    let listen: SocketAddr = args.listen.parse().with_context(|| format!("--listen `{}`: expected ADDRESS:PORT, e.g. 127.0.0.1:8080", args.listen))?;
    if !(1..=64).contains(&args.slots) {
        bail!("--slots must be from 1 to 64, got {}", args.slots);
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    let limits = Limits { max_connections: args.max_connections, ..Limits::default() };
    let token = match &args.token_env {
        Some(name) => match std::env::var(name) {
            Ok(token) if !token.trim().is_empty() => Some(token.trim().to_string()),
            _ => bail!("--token-env {name}: the environment variable {name} is not set or empty"),
        },
        None => None,
    };
    if !listen.ip().is_loopback() && token.is_none() {
        eprintln!("warning: listening on {listen} without --token-env: anyone who can reach this machine may use the model");
    }

    let home = CriaHome::from_env()?;
    let resolved = resolve_model(&args.model, &home)?;
    let options = EngineOptions {
        context_length: args.context_length,
        threads: args.threads.map_or(0, usize::from),
        device: args.device,
        ..EngineOptions::default()
    };
    let model = start_with_slots(resolved, options, args.slots, None, Box::new(|_| {}))?.finish_blocking()?;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        // The one line on stdout: where to point clients (tests read it).
        println!("cria serve: {} on http://{address} ({} slots, load {} ms)", model.name, args.slots, model.load_time.as_millis());
        serve(model, listener, ServeOptions { token, slots: args.slots, limits }).await?;
        anyhow::Ok(())
    })
}
