//! Decoding speed on the keystroke replay's prompts, with and without
//! speculative decoding (prompt lookup).
//!
//! `benches/keystroke_replay.py` measures what an editor user waits for; its
//! answers are mostly a few tokens (the rest of a line), too short to time
//! decoding. This benchmark takes the same typing session (a function body
//! typed into `benches/data/ledger.py`), stops at every `--every`-th
//! keystroke, builds the prompt as `cria lsp` does (the same windows, budget,
//! layout and completion mode, without other files' snippets) and generates:
//!
//! * **as served**: the server's request (single-line suggestions stop at the
//!   newline; multi-line ones at the model's end of text, 64 tokens at most);
//! * **multi-line**: the same prompt with no stop strings, up to 48 tokens
//!   (the model's end of text still stops it), so that positions where the
//!   server wants one line also decode long enough to be timed.
//!
//! Each is generated token by token and with speculation (alternating which
//! goes first), on one engine whose speculation statistics persist as in the
//! server; all "as served" positions run first, then all multi-line ones, so
//! the guess rate the engine carries is each case's own. The
//! greedy outputs must be identical (asserted). Tokens/s = decoded tokens over
//! decode time, summed over positions; the first token of each answer comes
//! from the prompt's pass and is not counted.
//!
//! Usage: `cargo bench -p cria --bench replay_decode -- --bench [--threads N]
//! [--every N] [MODEL...]` (config names; default Qwen2.5-Coder-0.5B).
//! Prints one JSON line per model; `benches/engine-vs-llama-cpp` puts it
//! beside llama.cpp's plain decoding at the same depth.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Instant;

use std::sync::Arc;

use cria::completion::{mode_at, resolve_model, Trigger, start, Ablation, Backend, CursorPlace, Model, Pipeline, PromptSize, SuggestionSettings};
use cria::context::CompletionMode;
use cria::documents::Language;
use cria::engine::{CancelFlag, Completion, EngineOptions, GenerationRequest, StopReason};
use cria::models::CriaHome;

mod common;
use common::{fail, BenchArgs};

const MARKER: &str = "# keystroke-replay: cursor";
const INDENT_UNIT: usize = 4;
/// Most tokens per answer in the "multi-line" case.
const LONG_TOKENS: usize = 48;

/// The document after each keystroke of typing `body` at the marker line, with
/// the cursor's byte offset: the same session as `keystroke_replay.py`
/// (Enter keeps the indentation, one level more after a `:`; Backspace and
/// Tab move by one level; every other character is one keystroke).
fn typing_session(source: &str, body: &str) -> Vec<(String, usize)> {
    let indent_of = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let mut lines: Vec<String> = source.split('\n').map(str::to_string).collect();
    let rows: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim() == MARKER).collect();
    assert_eq!(rows.len(), 1, "the source must contain exactly one line `{MARKER}`");
    let row = rows[0];
    let base = indent_of(&lines[row]);
    lines[row] = " ".repeat(base);
    let (mut cur_row, mut cur_col) = (row, base);
    let mut states = Vec::new();
    let mut edit = |lines: &mut Vec<String>, cur_row: &mut usize, cur_col: &mut usize, col0: usize, col1: usize, text: &str| {
        let (head, tail) = (lines[*cur_row][..col0].to_string(), lines[*cur_row][col1..].to_string());
        let new: Vec<String> = format!("{head}{text}{tail}").split('\n').map(str::to_string).collect();
        let added = new.len();
        *cur_col = new[added - 1].len() - tail.len();
        lines.splice(*cur_row..=*cur_row, new);
        *cur_row += added - 1;
        let text = lines.join("\n");
        let offset = lines[..*cur_row].iter().map(|l| l.len() + 1).sum::<usize>() + *cur_col;
        states.push((text, offset));
    };
    for (i, body_line) in body.trim_end_matches('\n').split('\n').enumerate() {
        if i > 0 {
            let current = lines[cur_row].clone();
            let mut auto = indent_of(&current) + if current.trim_end().ends_with(':') { INDENT_UNIT } else { 0 };
            if current.trim().is_empty() {
                auto = indent_of(&current);
            }
            let col = cur_col;
            edit(&mut lines, &mut cur_row, &mut cur_col, col, col, &format!("\n{}", " ".repeat(auto)));
        }
        let target = base + indent_of(body_line);
        while indent_of(&lines[cur_row]) > target && lines[cur_row].trim().is_empty() {
            let col = cur_col;
            edit(&mut lines, &mut cur_row, &mut cur_col, col - INDENT_UNIT, col, "");
        }
        while cur_col < target {
            let col = cur_col;
            edit(&mut lines, &mut cur_row, &mut cur_col, col, col, &" ".repeat(INDENT_UNIT));
        }
        for ch in body_line.trim_start_matches(' ').chars() {
            let col = cur_col;
            edit(&mut lines, &mut cur_row, &mut cur_col, col, col, &ch.to_string());
        }
    }
    states
}

/// The server's request at a cursor (the completion pipeline's full
/// prompt, as `cria lsp` builds it, without other files' snippets), or
/// `None` where it asks for nothing.
fn served_request(
    model: &Model,
    settings: &SuggestionSettings,
    text: &str,
    cursor: usize,
    tree: &tree_sitter::Tree,
) -> Option<GenerationRequest> {
    let mode = mode_at(text, cursor, Some(tree), Trigger::Automatic);
    if mode == CompletionMode::Skip {
        return None;
    }
    let place = CursorPlace { text, offset: cursor, tree: Some(tree), language: &Language::Python, mode, path: "ledger.py", anchor: None };
    let pipeline = Pipeline { model, settings, backend: &Backend::Embedded };
    let no_snippets = &mut |_: &_| Arc::new(Vec::new());
    let built = pipeline.build(&place, PromptSize::Full, no_snippets, None, CancelFlag::new()).expect("prompt");
    Some(built.request)
}

/// Tokens that took a forward pass after the prompt's: all but the first,
/// plus the end-of-text token when that is what stopped it.
fn decoded(c: &Completion) -> usize {
    c.tokens.len().saturating_sub(1) + usize::from(c.stop_reason == StopReason::Eos)
}

/// Sums over positions for one case.
#[derive(Default)]
struct Totals {
    positions: usize,
    tokens: usize,
    plain_s: f64,
    speculative_s: f64,
    drafted: usize,
    accepted: usize,
    prompt_tokens: Vec<usize>,
}

impl Totals {
    fn json(&self) -> serde_json::Value {
        let mut prompts = self.prompt_tokens.clone();
        prompts.sort_unstable();
        let plain = self.tokens as f64 / self.plain_s;
        let speculative = self.tokens as f64 / self.speculative_s;
        serde_json::json!({
            "positions": self.positions, "decoded_tokens": self.tokens,
            "plain_tps": plain, "speculative_tps": speculative, "speed_up": speculative / plain,
            "drafted": self.drafted, "accepted": self.accepted,
            "median_prompt_tokens": prompts.get(prompts.len() / 2).copied().unwrap_or(0),
        })
    }
}

fn generate(model: &Model, request: &GenerationRequest, speculative: bool) -> Completion {
    let request = GenerationRequest { speculative, ..request.clone() };
    model.generator.generate(request).blocking_recv().expect("the model worker stopped").expect("generation")
}

/// Runs one request both ways and adds it to `totals`.
fn measure(model: &Model, request: &GenerationRequest, speculative_first: bool, totals: &mut Totals) {
    // Fill the cache with this prompt first, so both timed runs start alike.
    generate(model, &GenerationRequest { max_new_tokens: 1, ..request.clone() }, false);
    let (plain, speculative) = if speculative_first {
        let s = generate(model, request, true);
        (generate(model, request, false), s)
    } else {
        let p = generate(model, request, false);
        (p, generate(model, request, true))
    };
    assert_eq!(plain.tokens, speculative.tokens, "speculation changed the greedy output");
    totals.positions += 1;
    totals.tokens += decoded(&plain);
    totals.plain_s += plain.decode.as_secs_f64();
    totals.speculative_s += speculative.decode.as_secs_f64();
    totals.drafted += speculative.drafted_tokens;
    totals.accepted += speculative.accepted_tokens;
    totals.prompt_tokens.push(plain.prompt_tokens);
}

fn main() {
    let Some(args) = BenchArgs::from_env("replay_decode", &["--threads", "--every"]) else {
        return;
    };
    let threads = args.number("--threads", 0);
    let every = args.number("--every", 8).max(1);
    let names = args.positional(&["qwen2.5-coder-0.5b-instruct"]);

    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/data");
    let source = std::fs::read_to_string(data.join("ledger.py")).expect("benches/data/ledger.py");
    let body = std::fs::read_to_string(data.join("ledger_body.txt")).expect("benches/data/ledger_body.txt");
    let states = typing_session(&source, &body);
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&Language::from_language_id("python").grammar().expect("python grammar")).unwrap();
    let settings = SuggestionSettings { ablation: Ablation::from_env(), ..SuggestionSettings::default() };
    let home = CriaHome::from_env().expect("CRIA_HOME");

    for name in names {
        let resolved = resolve_model(&name, &home).unwrap_or_else(|e| fail(format!("{name}: {e}")));
        let options =
            EngineOptions { context_length: EngineOptions::default().context_length, threads, speculative: true, ..Default::default() };
        let starting = start(resolved, options, None, Box::new(|_| {})).unwrap_or_else(|e| fail(format!("{name}: {e}")));
        let model = starting.finish_blocking().unwrap_or_else(|e| fail(format!("{name}: {e}")));
        // Each case in a pass of its own, as a server sees one kind of
        // request: the engine's learnt guess rate follows that case only.
        let (mut served, mut long) = (Totals::default(), Totals::default());
        let started = Instant::now();
        for multi_line in [false, true] {
            for (i, (text, cursor)) in states.iter().enumerate().skip(every - 1).step_by(every) {
                let tree = parser.parse(text, None).expect("parse");
                let Some(request) = served_request(&model, &settings, text, *cursor, &tree) else {
                    continue;
                };
                if multi_line {
                    let request = GenerationRequest { max_new_tokens: LONG_TOKENS, stop_strings: Vec::new(), ..request };
                    measure(&model, &request, i % 2 == 0, &mut long);
                } else {
                    measure(&model, &request, i % 2 == 0, &mut served);
                }
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "model": name, "keystrokes": states.len(), "every": every, "threads": threads,
                "seconds": started.elapsed().as_secs_f64(),
                "as_served": served.json(), "multi_line": long.json(),
            })
        );
    }
}
