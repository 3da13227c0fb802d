//! The language server without a model: the whole server in this process
//! on an in-memory pipe (`LspClient::in_process`), every generation played
//! back by a `ScriptedGenerator` with chosen text and timing. The model file
//! is a tiny GGUF written here, read only for its tokenizer. These tests
//! cover the paths whose outcome depends on when an answer comes (placement
//! of a suggestion before closing characters or above code, typed-through,
//! the suggestion cache, supersede and cancel, the deadline and the
//! backstop timeout, settings changes), in well under a minute; the
//! real-model tests in `tests/lsp.rs` still run the same server end to end.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cria::completion::{Generator, Script, ScriptedGenerator};
use cria::engine::StopReason;
use cria::protocol::ServerConfig;
use serde_json::{json, Value};
use support::gguf_writer::{tiny_llama, Val};
use support::lsp_client::LspClient;

/// Long enough for any step on a loaded machine; the tests that measure
/// time use their own, tighter bounds.
const STEP: Duration = Duration::from_secs(20);

/// A session with the server in this process and its model file.
struct Session {
    client: LspClient,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Session {
    type Target = LspClient;
    fn deref(&self) -> &LspClient {
        &self.client
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut LspClient {
        &mut self.client
    }
}

/// The tiny model (a real tokenizer, no FIM tokens), with room for prompts.
fn model_file(dir: &std::path::Path) -> PathBuf {
    let mut gguf = tiny_llama();
    gguf.set("llama.context_length", Val::U32(4096));
    let path = dir.join("tiny.gguf");
    gguf.write(&path);
    path
}

/// Starts a session whose generations `generator` plays, with `settings`
/// as initialization options, and waits for the model.
fn session(generator: &ScriptedGenerator, settings: Value) -> Session {
    if let Ok(filter) = std::env::var("CRIA_LOG") {
        // The server's log, for a failing test: `CRIA_LOG=cria=debug`.
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let dir = tempfile::tempdir().unwrap();
    let model = model_file(dir.path()).display().to_string();
    let config = ServerConfig { model: model.clone(), ..ServerConfig::default() };
    let mut client = LspClient::in_process(config, Generator::Scripted(generator.clone()));
    let mut options = json!({"model": model});
    options.as_object_mut().unwrap().extend(settings.as_object().cloned().unwrap_or_default());
    client.initialize(json!({}), options);
    let status = client.wait_model(STEP);
    assert_eq!(status["state"], "ready", "{status}");
    Session { client, _dir: dir }
}

const URI: &str = "file:///project/shop.py";

/// The inline items of an answer.
fn items(answer: &Value) -> Vec<Value> {
    answer["result"]["items"].as_array().cloned().unwrap_or_else(|| panic!("an item list: {answer}"))
}

/// The one suggestion's text of an answer.
fn suggestion(answer: &Value) -> String {
    let items = items(answer);
    assert_eq!(items.len(), 1, "one suggestion: {answer}");
    items[0]["insertText"].as_str().unwrap().to_string()
}

/// Types `text` at (`line`, `character`), as a `didChange` of `version`.
fn type_at(c: &mut LspClient, version: i64, line: u32, character: u32, text: &str) {
    let at = json!({"line": line, "character": character});
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"range": {"start": at, "end": at}, "text": text}]}),
    );
}

/// A document whose last line is `    total = ` (cursor at its end).
fn shop(c: &mut LspClient) -> (u32, u32) {
    c.open(URI, "python", "def checkout(price, count):\n    total = ");
    (1, "    total = ".len() as u32)
}

/// Generations so far and how each ended (`None`: still running).
fn stops(generator: &ScriptedGenerator) -> Vec<Option<StopReason>> {
    generator.runs().iter().map(|run| run.stop).collect()
}

/// Waits until the generator's runs satisfy `done`.
fn wait_runs(generator: &ScriptedGenerator, what: &str, done: impl Fn(&[Option<StopReason>]) -> bool) {
    let deadline = Instant::now() + STEP;
    while !done(&stops(generator)) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", stops(generator));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Line `line` of `text` after an item's edit (`range` on that line,
/// `new_text`) is accepted: what the user gets.
fn accepted_line(text: &str, line: usize, range: &Value, new_text: &str) -> String {
    let at = |end: &str| range[end]["character"].as_u64().unwrap() as usize;
    assert_eq!(range["start"]["line"], range["end"]["line"], "one line: {range}");
    let old = text.lines().nth(line).unwrap();
    format!("{}{new_text}{}", &old[..at("start")], &old[at("end")..])
}

#[test]
fn a_suggestion_before_the_closing_characters_after_the_cursor_is_accepted_into_a_whole_line() {
    // The model writes the `)` that is already after the cursor: the item
    // either leaves it out (post-processing sees the rest of the line) or
    // covers it (placement); accepted, the line holds one `)`. The third
    // answer continues a word: what a model writes after `pri`.
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let generator = ScriptedGenerator::new(move |_| match asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
        0 | 1 => Script::answer("price * count)"),
        _ => Script::answer("ce * count)"),
    });
    let mut c = session(&generator, json!({}));
    let text = "def checkout(price, count):\n    return round()\n";
    c.open(URI, "python", text);
    let cursor = "    return round(".len() as u32;
    let answer = c.inline_completion(URI, 1, cursor, STEP);
    let range = &items(&answer)[0]["range"];
    assert_eq!(range["start"], json!({"line": 1, "character": cursor}), "{answer}");
    assert_eq!(accepted_line(text, 1, range, &suggestion(&answer)), "    return round(price * count)", "{answer}");

    // Without closing characters after the cursor, the range is empty.
    c.open("file:///project/b.py", "python", "def checkout(price, count):\n    return round(");
    let answer = c.inline_completion("file:///project/b.py", 1, cursor, STEP);
    assert_eq!(suggestion(&answer), "price * count)");
    let range = &items(&answer)[0]["range"];
    assert_eq!(range["start"], range["end"], "{answer}");

    // In the middle of a word, as a completion item (Helix): the edit
    // starts at the word.
    let text = "def checkout(price, count):\n    return round(pri)\n";
    c.open("file:///project/c.py", "python", text);
    let cursor = "    return round(pri".len() as u32;
    let at = json!({"textDocument": {"uri": "file:///project/c.py"}, "position": {"line": 1, "character": cursor}});
    let list = c.call("textDocument/completion", at, STEP);
    let edit = &list["items"][0]["textEdit"];
    assert_eq!(edit["range"]["start"], json!({"line": 1, "character": cursor - 3}), "{list}");
    let new_text = edit["newText"].as_str().unwrap();
    assert_eq!(accepted_line(text, 1, &edit["range"], new_text), "    return round(price * count)", "{list}");
    c.client.shutdown();
}

#[test]
fn after_the_indentation_in_front_of_code_the_suggestion_is_a_line_above_and_the_code_stays_whole() {
    // The model writes one statement and stops (any healed indentation
    // first, as the engine would). The tiny model has no FIM tokens: its
    // prompt holds no text after the cursor, yet the answer is
    // post-processed against the rest of the cursor's line.
    let generator = ScriptedGenerator::new(|request| Script::answer(&format!("{}xs = list(xs)", request.healed_text)));
    let mut c = session(&generator, json!({}));
    let text = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n";
    c.open(URI, "python", text);
    let answer = c.inline_completion(URI, 1, 4, STEP);
    let shown = suggestion(&answer);
    assert_eq!(shown, "xs = list(xs)\n    ", "{answer}");
    let range = &items(&answer)[0]["range"];
    assert_eq!(range["start"], json!({"line": 1, "character": 4}), "{answer}");
    assert_eq!(range["start"], range["end"], "inserted, nothing replaced: {answer}");
    // Accepted, the line goes in above and `s = 0` keeps its indentation.
    let at = "def total(xs):\n    ".len();
    let accepted = format!("{}{shown}{}", &text[..at], &text[at..]);
    assert_eq!(accepted, "def total(xs):\n    xs = list(xs)\n    s = 0\n    for x in xs:\n        s += x\n    return s\n");

    // The same as a completion item (Helix).
    let at = json!({"textDocument": {"uri": URI}, "position": {"line": 1, "character": 4}});
    let list = c.call("textDocument/completion", at, STEP);
    let edit = &list["items"][0]["textEdit"];
    assert_eq!(edit["newText"], "xs = list(xs)\n    ", "{list}");
    assert_eq!(edit["range"], json!({"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}}), "{list}");
    c.client.shutdown();
}

#[test]
fn typing_the_start_of_the_suggestion_is_served_the_rest_without_a_generation() {
    let generator = ScriptedGenerator::always(Script::answer("price * count"));
    let mut c = session(&generator, json!({}));
    let (line, character) = shop(&mut c);
    assert_eq!(suggestion(&c.inline_completion(URI, line, character, STEP)), "price * count");
    type_at(&mut c, 2, line, character, "pri");
    assert_eq!(suggestion(&c.inline_completion(URI, line, character + 3, STEP)), "ce * count");
    type_at(&mut c, 3, line, character + 3, "ce *");
    assert_eq!(suggestion(&c.inline_completion(URI, line, character + 7, STEP)), " count");
    assert_eq!(generator.runs().len(), 1, "typed-through needs no generation");

    // Typing something else asks the model again.
    type_at(&mut c, 4, line, character + 7, " 2");
    c.inline_completion(URI, line, character + 9, STEP);
    assert_eq!(generator.runs().len(), 2);
    c.client.shutdown();
}

/// Tells the server where the cursor rests (`cria/prefetch`).
fn prefetch(c: &mut LspClient, line: u32, character: u32) {
    c.notify("cria/prefetch", json!({"textDocument": {"uri": URI}, "position": {"line": line, "character": character}}));
}

#[test]
fn a_resting_cursor_has_its_suggestion_before_the_first_keystroke() {
    let generator = ScriptedGenerator::always(Script::answer("price * count"));
    let mut c = session(&generator, json!({}));
    let (line, character) = shop(&mut c);
    prefetch(&mut c, line, character);
    wait_runs(&generator, "the suggestion at rest", |runs| runs.len() == 1 && runs[0].is_some());
    // Asked right there: the cache's; the first keys typing its start: the rest of it.
    assert_eq!(suggestion(&c.inline_completion(URI, line, character, STEP)), "price * count");
    type_at(&mut c, 2, line, character, "p");
    assert_eq!(suggestion(&c.inline_completion(URI, line, character + 1, STEP)), "rice * count");
    assert_eq!(generator.runs().len(), 1, "no generation after the prefetch's");
    // Resting again where it was computed computes nothing new.
    prefetch(&mut c, line, character + 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(generator.runs().len(), 1, "the prompt at the cursor is the typed-through one's: {:?}", stops(&generator));
    c.client.shutdown();
}

#[test]
fn the_first_keystroke_waits_for_the_suggestion_at_rest_only_while_it_types_it() {
    // Slow answers: 13 pieces of 30 ms.
    let generator = ScriptedGenerator::always(Script::per_char("price * count", Duration::from_millis(30)));
    let mut c = session(&generator, json!({"latencyBudgetMs": 5000}));
    let (line, character) = shop(&mut c);

    // The first key types what it is writing: served by it, the key's own job cancelled.
    prefetch(&mut c, line, character);
    wait_runs(&generator, "the suggestion at rest", |runs| runs.len() == 1);
    type_at(&mut c, 2, line, character, "p");
    assert_eq!(suggestion(&c.inline_completion(URI, line, character + 1, STEP)), "rice * count");
    wait_runs(&generator, "the key's own job", |runs| runs.len() == 2 && runs.iter().all(Option::is_some));
    assert_eq!(stops(&generator), [Some(StopReason::Eos), Some(StopReason::Cancelled)]);

    // A key that types something else stops it at once and gets its own answer.
    type_at(&mut c, 3, line, character + 1, "\n    ");
    let (line, character) = (line + 1, 4);
    prefetch(&mut c, line, character);
    wait_runs(&generator, "the second suggestion at rest", |runs| runs.len() == 3);
    type_at(&mut c, 4, line, character, "x");
    let asked = Instant::now();
    assert_eq!(suggestion(&c.inline_completion(URI, line, character + 1, STEP)), "price * count");
    assert!(asked.elapsed() < Duration::from_millis(2000), "waited {:?} behind the suggestion at rest", asked.elapsed());
    // Stopped: at once if it had written `p` already, else as its first
    // piece disagrees with the `x`.
    assert_eq!(stops(&generator)[2], Some(StopReason::Cancelled), "typing `x` stopped it");
    c.client.shutdown();
}

#[test]
fn at_the_end_of_a_written_line_the_next_line_is_ready_for_the_enter_that_follows() {
    // The model has nothing to add on the line, and writes the next one.
    let generator = ScriptedGenerator::new(|request| Script::answer(&format!("{}\n    return total", request.healed_text)));
    let mut c = session(&generator, json!({}));
    let text = "def checkout(price, count):\n    total = price * count";
    c.open(URI, "python", text);
    let (line, character) = (1, "    total = price * count".len() as u32);
    assert!(items(&c.inline_completion(URI, line, character, STEP)).is_empty(), "nothing on the line itself");
    wait_runs(&generator, "the lines after it, at rest", |runs| runs.len() == 2 && runs.iter().all(Option::is_some));
    assert_eq!(stops(&generator), [Some(StopReason::Stop), Some(StopReason::Eos)], "one line, then the lines after it");
    // Asked again there, it is still not shown: it goes below the line.
    assert!(items(&c.inline_completion(URI, line, character, STEP)).is_empty());
    // Enter with the editor's indentation: the next line at once.
    type_at(&mut c, 2, line, character, "\n    ");
    assert_eq!(suggestion(&c.inline_completion(URI, line + 1, 4, STEP)), "return total");
    assert_eq!(generator.runs().len(), 2, "typed through, no generation: {:?}", stops(&generator));
    c.client.shutdown();
}

#[test]
fn a_keystroke_in_another_document_stops_the_lines_computed_at_rest() {
    // One-line answers at once; the lines after a written line slowly.
    let generator = ScriptedGenerator::new(|request| {
        let answer = format!("{}\n    return total", request.healed_text);
        if request.stop_strings.iter().any(|s| s == "\n") {
            Script::answer(&answer)
        } else {
            Script::per_char(&answer, Duration::from_millis(100))
        }
    });
    let mut c = session(&generator, json!({"latencyBudgetMs": 5000}));
    c.open(URI, "python", "def checkout(price, count):\n    total = price * count");
    assert!(items(&c.inline_completion(URI, 1, "    total = price * count".len() as u32, STEP)).is_empty());
    wait_runs(&generator, "the lines after it, at rest", |runs| runs.len() == 2);
    let other = "file:///project/other.py";
    c.open(other, "python", "x = ");
    c.inline_completion(other, 0, 4, STEP);
    // (That one's empty one-line answer may start a guess at rest of its own.)
    wait_runs(&generator, "the three runs ended", |runs| runs.len() >= 3 && runs[..3].iter().all(Option::is_some));
    assert_eq!(stops(&generator)[1], Some(StopReason::Cancelled), "the guess for the first document gave way");
    c.client.shutdown();
}

/// A three-line body for `def checkout(price, count):`, written slowly by
/// the early-lines tests.
const CHECKOUT_BLOCK: &str = "total = price * count\n    tax = total * 0.2\n    return total + tax";

/// A generator that writes `answer` (after the healed text) one character
/// per `piece`.
fn per_char_generator(answer: &'static str, piece: Duration) -> ScriptedGenerator {
    ScriptedGenerator::new(move |request| Script::per_char(&format!("{}{answer}", request.healed_text), piece))
}

/// Waits for the `cria/status` saying that the whole late answer for
/// [`URI`] is cached (`lateAnswer`).
fn wait_late_answer(c: &mut Session) {
    let late = c.wait_for(STEP, "cria/status lateAnswer", |m| m["method"] == "cria/status" && m["params"]["lateAnswer"].is_object());
    assert_eq!(late["params"]["lateAnswer"]["uri"], URI);
}

#[test]
fn a_slow_multi_line_answer_shows_its_first_lines_while_the_rest_is_written() {
    // 60 pieces of 60 ms: the first line is written after 1.3 s, the
    // second after 2.4 s, the whole answer after 3.6 s; with an 8 s budget
    // the first lines are shown from 1 s on.
    let generator = per_char_generator(CHECKOUT_BLOCK, Duration::from_millis(60));
    let mut c = session(&generator, json!({"latencyBudgetMs": 8000, "maxTokens": 128}));
    c.open(URI, "python", "def checkout(price, count):\n    ");
    assert_eq!(suggestion(&c.inline_completion(URI, 1, 4, STEP)), "total = price * count");
    assert_eq!(stops(&generator), [None], "answered while the rest is written");
    // The editor is told when the whole answer is there, and asking again
    // at the same place gets it from the cache.
    wait_late_answer(&mut c);
    assert_eq!(stops(&generator), [Some(StopReason::Eos)]);
    assert_eq!(suggestion(&c.inline_completion(URI, 1, 4, STEP)), CHECKOUT_BLOCK);
    assert_eq!(generator.runs().len(), 1, "asked again: the cache's");
    // Accepting the line (or typing it) is answered with the rest at once.
    type_at(&mut c, 2, 1, 4, "total = price * count\n    ");
    assert_eq!(suggestion(&c.inline_completion(URI, 2, 4, STEP)), "tax = total * 0.2\n    return total + tax");
    assert_eq!(generator.runs().len(), 1, "typed through: {:?}", stops(&generator));
    c.client.shutdown();
}

#[test]
fn a_block_longer_than_the_budget_is_written_whole_after_its_first_lines_and_the_editor_told() {
    // The default 2 s budget; 60 pieces of 50 ms: the first line is written
    // after 1.1 s, the whole block after 3 s, past the deadline.
    let generator = per_char_generator(CHECKOUT_BLOCK, Duration::from_millis(50));
    let mut c = session(&generator, json!({"maxTokens": 128}));
    c.open(URI, "python", "def checkout(price, count):\n    ");
    assert_eq!(suggestion(&c.inline_completion(URI, 1, 4, STEP)), "total = price * count");
    wait_late_answer(&mut c);
    assert_eq!(stops(&generator), [Some(StopReason::Eos)], "written whole, past the deadline");
    assert_eq!(suggestion(&c.inline_completion(URI, 1, 4, STEP)), CHECKOUT_BLOCK);
    assert_eq!(generator.runs().len(), 1, "asked again: the cache's");
    c.client.shutdown();
}

#[test]
fn a_block_ends_its_generation_where_it_leaves_the_cursors_block() {
    // The model would go on to write the next function; the generation
    // ends before it (a whole answer, cached), not at the token limit.
    let generator = per_char_generator("total = price * count\n    return total\n\n\ndef other():\n    pass\n", Duration::from_millis(5));
    let mut c = session(&generator, json!({"maxTokens": 128}));
    c.open(URI, "python", "def checkout(price, count):\n    ");
    assert_eq!(suggestion(&c.inline_completion(URI, 1, 4, STEP)), "total = price * count\n    return total");
    assert_eq!(stops(&generator), [Some(StopReason::Stop)]);
    let runs = generator.runs();
    assert_eq!(runs[0].request.block_indent, Some(4), "the cursor line's indentation");
    c.client.shutdown();
}

#[test]
fn the_same_prompt_is_served_from_the_cache_until_a_setting_that_shapes_it_changes() {
    let generator = ScriptedGenerator::always(Script::answer("price * count"));
    let mut c = session(&generator, json!({}));
    let (line, character) = shop(&mut c);
    // Two places, so the second ask at the first is the cache's, not typed-through's.
    assert_eq!(suggestion(&c.inline_completion(URI, line, character, STEP)), "price * count");
    c.inline_completion(URI, 0, "def checkout(".len() as u32, STEP);
    assert_eq!(generator.runs().len(), 2);
    assert_eq!(suggestion(&c.inline_completion(URI, line, character, STEP)), "price * count");
    assert_eq!(generator.runs().len(), 2, "the same prompt again is the cache's");

    for (n, setting) in [json!({"maxTokens": 20}), json!({"temperature": 0.5})].into_iter().enumerate() {
        c.notify("workspace/didChangeConfiguration", json!({"settings": setting}));
        assert_eq!(suggestion(&c.inline_completion(URI, line, character, STEP)), "price * count");
        assert_eq!(generator.runs().len(), 3 + n, "after {setting} a new generation");
    }
    let runs = generator.runs();
    let last = &runs.last().unwrap().request;
    assert_eq!(last.sampling.temperature, 0.5);
    assert!(last.max_new_tokens <= 20, "{}", last.max_new_tokens);
    c.client.shutdown();
}

#[test]
fn a_newer_request_cancels_the_older_one_unless_it_only_typed_on() {
    // Slow answers: 20 pieces of 30 ms.
    let generator = ScriptedGenerator::always(Script::per_char("price * count + tax_", Duration::from_millis(30)));
    let mut c = session(&generator, json!({"latencyBudgetMs": 5000}));
    let (line, character) = shop(&mut c);

    // A request elsewhere replaces the first: its generation is cancelled
    // and it is answered empty at once.
    let first = c.ask_inline(URI, line, character);
    wait_runs(&generator, "the first generation", |runs| runs.len() == 1);
    let asked = Instant::now();
    let second = c.ask_inline(URI, 0, "def checkout(".len() as u32);
    assert!(items(&c.response(first, STEP)).is_empty());
    assert!(asked.elapsed() < Duration::from_millis(400), "the older request waited {:?}", asked.elapsed());
    c.response(second, STEP);
    assert_eq!(stops(&generator)[0], Some(StopReason::Cancelled));

    // Typing what is being written lets the older generation finish, and
    // its answer serves the newer request.
    let older = c.ask_inline(URI, line, character);
    wait_runs(&generator, "the third generation", |runs| runs.len() == 3);
    type_at(&mut c, 2, line, character, "p");
    let newer = c.ask_inline(URI, line, character + 1);
    assert!(items(&c.response(older, STEP)).is_empty(), "the editor moved on");
    assert_eq!(suggestion(&c.response(newer, STEP)), "rice * count + tax_");
    // The newer request's own job waited behind the older generation and
    // was cancelled before it ran: the older one's answer served it.
    wait_runs(&generator, "the newer job's end", |runs| runs.len() == 4 && runs[3].is_some());
    assert_eq!(stops(&generator)[2..], [Some(StopReason::Eos), Some(StopReason::Cancelled)]);
    // The older answer came late, but for a request the editor moved on
    // from: nothing to ask again (`lateAnswer` is for an answer shown in part).
    let late = c.try_wait_for(Duration::from_millis(500), |m| m["params"]["lateAnswer"].is_object());
    assert!(late.is_none(), "{late:?}");
    c.client.shutdown();
}

#[test]
fn a_lingering_multi_line_generation_ends_with_the_line_being_typed() {
    // Slow answers of two lines: 35 pieces of 30 ms.
    let generator = ScriptedGenerator::always(Script::per_char("total = price * count\n    return total", Duration::from_millis(30)));
    let mut c = session(&generator, json!({"latencyBudgetMs": 5000}));
    c.open(URI, "python", "def checkout(price, count):\n    ");
    // An empty line in a body asks for several lines; typing its first
    // character asks for one line, so the older generation is wanted only
    // up to that line's end.
    let older = c.ask_inline(URI, 1, 4);
    wait_runs(&generator, "the first generation", |runs| runs.len() == 1);
    type_at(&mut c, 2, 1, 4, "t");
    let newer = c.ask_inline(URI, 1, 5);
    assert!(items(&c.response(older, STEP)).is_empty(), "the editor moved on");
    assert_eq!(suggestion(&c.response(newer, STEP)), "otal = price * count");
    wait_runs(&generator, "the first generation's end", |runs| runs[0].is_some());
    assert_eq!(stops(&generator)[0], Some(StopReason::Enough), "it wrote on past the line being typed");
    c.client.shutdown();
}

#[test]
fn a_generation_past_the_budget_is_answered_empty_in_time_and_serves_the_next_request() {
    let generator = ScriptedGenerator::always(Script::answer("price * count").after(Duration::from_millis(700)));
    let mut c = session(&generator, json!({"latencyBudgetMs": 200}));
    let (line, character) = shop(&mut c);
    let asked = Instant::now();
    let answer = c.inline_completion(URI, line, character, STEP);
    let waited = asked.elapsed();
    assert!(items(&answer).is_empty(), "{answer}");
    assert!(waited < Duration::from_millis(600), "answered after {waited:?}, past the budget");
    let warming = c.wait_for(STEP, "cria/status warming", |m| m["method"] == "cria/status" && m["params"]["state"] == "warming");
    assert_eq!(warming["params"]["warming"]["uri"], URI, "{warming}");

    // The generation goes on; when it lands, the status says `ready` and
    // the editor's next request gets the answer at once.
    c.wait_for(STEP, "cria/status ready", |m| m["method"] == "cria/status" && m["params"]["state"] == "ready");
    assert_eq!(stops(&generator), [Some(StopReason::Eos)]);
    let asked = Instant::now();
    assert_eq!(suggestion(&c.inline_completion(URI, line, character, STEP)), "price * count");
    assert!(asked.elapsed() < Duration::from_millis(500), "the re-ask took {:?}", asked.elapsed());
    assert_eq!(generator.runs().len(), 1);
    c.client.shutdown();
}

#[test]
fn a_backend_that_never_answers_is_cut_off_by_the_backstop_with_an_error_status() {
    // A remote-like backend that ignores the deadline: only the server's
    // timeout around the wait answers the editor.
    let generator =
        ScriptedGenerator::always(Script::answer("price * count").after(Duration::from_secs(3)).ignoring_deadline()).as_remote();
    let mut c = session(&generator, json!({"latencyBudgetMs": 150}));
    let (line, character) = shop(&mut c);
    let asked = Instant::now();
    let answer = c.inline_completion(URI, line, character, STEP);
    assert!(items(&answer).is_empty(), "{answer}");
    assert!(asked.elapsed() < Duration::from_millis(600), "answered after {:?}", asked.elapsed());
    let error = c.wait_for(STEP, "cria/status error", |m| m["method"] == "cria/status" && m["params"]["state"] == "error");
    assert!(error["params"]["message"].as_str().unwrap().contains("latency budget"), "{error}");
    c.client.shutdown();
}

#[test]
fn settings_changes_reach_the_requests_and_bad_values_are_refused() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let generator = ScriptedGenerator::new(move |request| {
        record.lock().unwrap().push(request.max_new_tokens);
        Script::answer("price * count")
    });
    let mut c = session(&generator, json!({"maxTokens": 30}));
    let (line, character) = shop(&mut c);
    c.inline_completion(URI, line, character, STEP);
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"maxTokens": 12}}));
    type_at(&mut c, 2, line, character, "1");
    c.inline_completion(URI, line, character + 1, STEP);
    // A bad value is shown to the user and changes nothing.
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"maxTokens": "many"}}));
    let shown = c.wait_for(STEP, "window/showMessage", |m| m["method"] == "window/showMessage");
    assert!(shown["params"]["message"].as_str().unwrap().contains("maxTokens"), "{shown}");
    type_at(&mut c, 3, line, character + 1, "2");
    c.inline_completion(URI, line, character + 2, STEP);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0] <= 30 && seen[0] > 12, "{seen:?}");
    assert!(seen[1] <= 12, "{seen:?}");
    assert_eq!(seen[2], seen[1], "{seen:?}");
    // A language switched off gets no suggestions and no generation.
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"enabledLanguages": {"*": true, "python": false}}}));
    assert!(items(&c.inline_completion(URI, line, character + 2, STEP)).is_empty());
    assert_eq!(generator.runs().len(), 3);
    c.client.shutdown();
}

#[test]
fn a_file_alone_that_fits_whole_gets_the_snippets_share_of_the_prompt_until_snippets_come() {
    let generator = ScriptedGenerator::new(|_| Script::answer("price"));
    let mut c = session(&generator, json!({"promptTokens": 600}));
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = cria::engine::Tokenizer::from_gguf(&cria::engine::gguf::GgufFile::open(&model_file(dir.path())).unwrap()).unwrap();
    let count = |text: &str| tokenizer.encode(text).unwrap().len();
    let prompt_text = |run: usize| {
        let prompt = &generator.runs()[run].request.prompt;
        String::from_utf8_lossy(&prompt.iter().flat_map(|&t| tokenizer.token_bytes(t).to_vec()).collect::<Vec<u8>>()).into_owned()
    };
    // The text before the cursor takes about 90% of the prompt: all of it
    // fits only where no share is held back for snippets (15%).
    let cursor_line = "    total = ";
    let mut text = String::from("# shop.py: the first line\n");
    let mut i = 0;
    while count(&format!("{text}    x{i} = compute_discount(price, {i})\n{cursor_line}")) < 540 {
        text.push_str(&format!("    x{i} = compute_discount(price, {i})\n"));
        i += 1;
    }
    text.push_str(cursor_line);
    let line = text.lines().count() as u32 - 1;
    let character = cursor_line.len() as u32;
    c.open(URI, "python", &text);
    c.inline_completion(URI, line, character, STEP);
    assert!(prompt_text(0).contains("the first line"), "the file's head is cut:\n{}", prompt_text(0));

    // With a definition the cursor's neighbourhood uses open in another
    // file, the snippet takes its share and the window gives it back.
    c.notify("textDocument/didClose", json!({"textDocument": {"uri": URI}}));
    c.open("file:///project/discounts.py", "python", "def compute_discount(price, rate):\n    return price * rate\n");
    let other = "file:///project/till.py";
    c.open(other, "python", &text);
    c.inline_completion(other, line, character, STEP);
    let with_snippet = prompt_text(1);
    assert!(with_snippet.contains("def compute_discount"), "no snippet:\n{with_snippet}");
    assert!(!with_snippet.contains("the first line"), "the window did not give the snippet its share:\n{with_snippet}");

    // Alone again, a file twice as long fits neither way: it keeps the
    // smaller prompt (a larger one would take longer to warm).
    for uri in ["file:///project/discounts.py", other] {
        c.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
    }
    let long = "file:///project/long.py";
    // Short lines: the window's start, aligned to 16 lines, can then come
    // within a few tokens of its budget.
    let long_text = format!("{}{cursor_line}", "x\n".repeat(count(&text)));
    c.open(long, "python", &long_text);
    c.inline_completion(long, long_text.lines().count() as u32 - 1, character, STEP);
    let kept = generator.runs()[2].request.prompt.len();
    assert!(kept <= 600 - 600 * 15 / 100, "a long file took the snippets' share: {kept} tokens of 600");
    c.client.shutdown();
}
