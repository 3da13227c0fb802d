//! `cria complete FILE:LINE:COL`: the suggestion an editor would show at a
//! place in a file, through the same completion pipeline as `cria lsp`
//! (mode, windows, prompt, post-processing) with the server's default
//! settings; or the model's raw text (`--raw`), or one JSON object with
//! both and the timings (`--json`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use cria::completion::anchor::choose_anchor;
use cria::completion::{
    mode_at, resolve_model, start, Ablation, Backend, CursorPlace, Pipeline, PromptSize, SuggestionSettings, Trigger, DEFAULT_MAX_TOKENS,
};
use cria::context::{split_at_line_column, CompletionMode};
use cria::documents::{Document, Language};
use cria::engine::{CancelFlag, ComputeDevice, EngineOptions};
use cria::models::{CriaHome, FimOrder};

/// Arguments of `cria complete`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to complete: FILE:LINE:COL, line and column starting at 1.
    /// FILE's extension names the language (also with `--stdin`).
    location: String,
    /// Model config name or path to a .gguf file.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    model: String,
    /// Most tokens to generate (a single-line suggestion stops at 48).
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    max_tokens: usize,
    /// Context window to allocate (prompt plus generated tokens).
    #[arg(long, default_value_t = EngineOptions::default().context_length)]
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
    /// Print the model's raw text instead of the suggestion an editor shows.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Print one JSON object: the suggestion (`completion`), the model's
    /// raw text (`raw_completion`), the `mode` (single-line, multi-line or
    /// none) and the timings.
    #[arg(long)]
    json: bool,
    /// Read the file's text from standard input (an editor's unsaved
    /// buffer); FILE still names the file, for its language.
    #[arg(long)]
    stdin: bool,
}

fn parse_location(location: &str) -> anyhow::Result<(PathBuf, usize, usize)> {
    let mut parts = location.rsplitn(3, ':');
    let (col, line, file) = (parts.next(), parts.next(), parts.next());
    let (Some(col), Some(line), Some(file)) = (col, line, file) else {
        bail!("expected FILE:LINE:COL, got `{location}`");
    };
    let line = line.parse().with_context(|| format!("line `{line}` is not a number"))?;
    let col = col.parse().with_context(|| format!("column `{col}` is not a number"))?;
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

/// The file's text, from the file or standard input.
fn read_text(path: &Path, from_stdin: bool) -> anyhow::Result<String> {
    let bytes = if from_stdin {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
        bytes
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    if bytes.contains(&0) {
        bail!("{} looks binary (it contains NUL bytes)", path.display());
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// The words `--json` uses for a completion mode.
fn mode_name(mode: CompletionMode) -> &'static str {
    match mode {
        CompletionMode::SingleLine => "single-line",
        CompletionMode::MultiLine => "multi-line",
        CompletionMode::Skip => "none",
    }
}

/// Runs the verb.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (path, line, col) = parse_location(&args.location)?;
    let text = read_text(&path, args.stdin)?;
    let offset = split_at_line_column(&text, line, col).with_context(|| format!("{}:{line}:{col}", path.display()))?.prefix.len();
    let order = args.order.as_deref().map(parse_order).transpose()?;
    let path_text = path.to_string_lossy();
    let language = Language::from_path(&path_text).unwrap_or_else(|| {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Language::PlainText(extension.to_string())
    });
    // Parsed as the language server parses an opened document.
    let document = Document::new(&text, language.clone(), 0);

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

    let mode = mode_at(&text, offset, document.tree(), Trigger::Automatic);
    if mode == CompletionMode::Skip {
        // The editor asks for nothing here (mid-identifier).
        if args.json {
            let object = serde_json::json!({
                "completion": "",
                "raw_completion": "",
                "mode": mode_name(mode),
                "model": model.name,
                "load_ms": model.load_time.as_secs_f64() * 1e3,
            });
            println!("{object}");
        }
        return Ok(());
    }
    let settings = SuggestionSettings {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        ablation: Ablation::from_env(),
        ..SuggestionSettings::default()
    };
    let pipeline = Pipeline { model: &model, settings: &settings, backend: &Backend::Embedded };
    let place = CursorPlace {
        text: &text,
        offset,
        tree: document.tree(),
        language: &language,
        mode,
        path: &path_text,
        // A document's first request: the middle from the cursor's line.
        anchor: Some(choose_anchor(&text, offset, None).0.offset),
    };
    // No other files are open: no snippets, as in an editor with one file.
    let no_snippets = &mut |_: &_| Arc::new(Vec::new());
    let mut built = pipeline.build(&place, PromptSize::Full, no_snippets, None, CancelFlag::new())?;
    built.request.sampling.seed = args.seed;
    let completion = model.generator.generate(built.request).blocking_recv().context("the model worker stopped")??;
    let shown = pipeline.shown_text(&place, &built.cursor, &completion);
    // A blank suggestion is none: the editor shows nothing.
    let shown = if shown.trim().is_empty() { String::new() } else { shown };

    if args.json {
        let object = serde_json::json!({
            "completion": shown,
            "raw_completion": completion.text,
            "mode": mode_name(mode),
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
    } else if args.raw {
        println!("{}", completion.text);
    } else if !shown.is_empty() {
        println!("{shown}");
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
