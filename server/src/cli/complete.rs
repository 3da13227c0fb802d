//! `cria complete FILE:LINE:COL`: one completion at a place in a file, printed
//! as text or as one JSON object with the timings.

use std::path::PathBuf;

use anyhow::{bail, Context};
use cria::completion::{resolve_model, start, CompletionInput, Settings};
use cria::context::{line_comment, split_at_line_column};
use cria::engine::{CancelFlag, ComputeDevice, EngineOptions, SamplingParams};
use cria::models::{CriaHome, FimOrder};

/// Arguments of `cria complete`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to complete: FILE:LINE:COL, line and column starting at 1.
    location: String,
    /// Model config name or path to a .gguf file.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    model: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Context window to allocate (prompt plus generated tokens).
    #[arg(long, default_value_t = 4096)]
    context_length: usize,
    /// Prompt layout: psm, spm or prefix (default: the model's preferred one).
    #[arg(long)]
    order: Option<String>,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads for the model (default: the physical cores cria may use).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Where the model runs: cpu, cuda, cuda:N, metal (GPUs need a build
    /// with `--features cuda` or `--features metal`), or candle-cpu.
    #[arg(long, default_value = "cpu")]
    device: ComputeDevice,
    /// Decode token by token, without verifying guessed tokens in batches
    /// (the output is the same; for measuring).
    #[arg(long)]
    no_speculation: bool,
    /// Print one JSON object with the completion and timings.
    #[arg(long)]
    json: bool,
}

fn parse_location(location: &str) -> anyhow::Result<(PathBuf, usize, usize)> {
    let mut parts = location.rsplitn(3, ':');
    let (col, line, file) = (parts.next(), parts.next(), parts.next());
    let (Some(col), Some(line), Some(file)) = (col, line, file) else {
        bail!("expected FILE:LINE:COL, got `{location}`");
    };
    let line = line
        .parse()
        .with_context(|| format!("line `{line}` is not a number"))?;
    let col = col
        .parse()
        .with_context(|| format!("column `{col}` is not a number"))?;
    Ok((PathBuf::from(file), line, col))
}

fn parse_order(order: &str) -> anyhow::Result<FimOrder> {
    Ok(match order {
        "psm" => FimOrder::Psm,
        "spm" => FimOrder::Spm,
        "prefix" => FimOrder::Prefix,
        other => bail!("unknown order `{other}` (psm, spm or prefix)"),
    })
}

/// Runs the verb.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (path, line, col) = parse_location(&args.location)?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.contains(&0) {
        bail!("{} looks binary (it contains NUL bytes)", path.display());
    }
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let cursor = split_at_line_column(&text, line, col)
        .with_context(|| format!("{}:{line}:{col}", path.display()))?;
    let order = args.order.as_deref().map(parse_order).transpose()?;

    let home = CriaHome::from_env()?;
    let resolved = resolve_model(&args.model, &home)?;
    let options = EngineOptions {
        context_length: args.context_length,
        threads: args.threads.map_or(0, usize::from),
        speculative: !args.no_speculation,
        device: args.device,
        ..EngineOptions::default()
    };
    let model = start(resolved, options, order, Box::new(|_| {}))?.finish_blocking()?;

    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let settings = Settings {
        max_new_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            seed: args.seed,
            ..SamplingParams::default()
        },
        ..Settings::default()
    };
    let input = CompletionInput {
        cursor: &cursor,
        context: &[],
        line_comment: line_comment(extension),
        path: None,
    };
    let (request, _prompt) = model.request(&input, &settings, None, CancelFlag::new())?;
    let completion = model
        .generator
        .generate(request)
        .blocking_recv()
        .context("the model worker stopped")??;

    if args.json {
        let object = serde_json::json!({
            "completion": completion.text,
            "stop_reason": completion.stop_reason.as_str(),
            "model": model.name,
            "load_ms": model.load_time.as_secs_f64() * 1e3,
            "prompt_tokens": completion.prompt_tokens,
            "reused_tokens": completion.reused_tokens,
            "prefill_ms": completion.prefill.as_secs_f64() * 1e3,
            "generated_tokens": completion.tokens.len(),
            "decode_ms": completion.decode.as_secs_f64() * 1e3,
        });
        println!("{object}");
    } else {
        println!("{}", completion.text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_from_the_right() {
        let (p, l, c) = parse_location("C:/dir/a:b.rs:12:3").unwrap();
        assert_eq!((p, l, c), (PathBuf::from("C:/dir/a:b.rs"), 12, 3));
        assert!(parse_location("file.rs:12").is_err());
        assert!(parse_location("file.rs:x:1").is_err());
    }
}
