//! The language server driven over stdio as an editor drives it: the real
//! binary, real models (SmolLM2 for speed, Qwen2.5-Coder for FIM), edits in
//! both position encodings, a storm of requests, and bad input of every kind.

#[path = "../server/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::lsp_client::LspClient;

const LONG: Duration = Duration::from_secs(420);

fn utf16_caps() -> Value {
    json!({"window": {"workDoneProgress": true}, "textDocument": {"inlineCompletion": {}}})
}

fn ready_server(home: &Path, model: &str, extra: Value) -> LspClient {
    let mut c = LspClient::start(home, &[]);
    let mut options = json!({"model": model, "latencyBudgetMs": 180000, "maxTokens": 16});
    if let (Value::Object(o), Value::Object(e)) = (&mut options, extra) {
        o.extend(e);
    }
    c.initialize(utf16_caps(), options);
    let status = c.wait_model(LONG);
    assert_eq!(status["state"], "ready", "{status}");
    c
}

#[test]
fn handshake_negotiates_encoding_and_announces_capabilities() {
    let home = support::linked_home();
    let mut c = LspClient::start(home.path(), &[]);
    let result =
        c.initialize(json!({"general": {"positionEncodings": ["utf-32", "utf-8", "utf-16"]}}), json!({"model": "/nonexistent.gguf"}));
    let caps = &result["capabilities"];
    assert_eq!(caps["positionEncoding"], "utf-8");
    assert_eq!(caps["textDocumentSync"]["change"], 2, "incremental sync");
    assert!(caps["inlineCompletionProvider"].is_object());
    assert!(caps["completionProvider"].is_object());
    assert_eq!(result["serverInfo"]["name"], "cria");
    c.shutdown();

    let mut c = LspClient::start(home.path(), &[]);
    let result = c.initialize(json!({}), json!({"model": "/nonexistent.gguf"}));
    assert_eq!(result["capabilities"]["positionEncoding"], "utf-16", "utf-16 when the client offers nothing");
    c.shutdown();
}

#[test]
fn inline_and_plain_completion_on_smollm2_with_progress_and_status() {
    let home = support::linked_home();
    let mut c = ready_server(home.path(), "smollm2-135m-instruct", json!({}));
    // Loading was reported as work-done progress, begin to end (reports go
    // out once the client accepted the token, never holding up the load).
    c.wait_for(Duration::from_secs(30), "the end of load progress", |m| {
        m["method"] == "$/progress" && m["params"]["value"]["kind"] == "end"
    });
    let kinds: Vec<String> = c
        .received
        .iter()
        .filter(|m| m["method"] == "$/progress")
        .map(|m| m["params"]["value"]["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("begin"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("end"), "{kinds:?}");
    assert!(c.received.iter().any(|m| m["method"] == "cria/status" && m["params"]["state"] == "loading"));

    let uri = "file:///work/numbers.py";
    let text = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    ";
    c.open(uri, "python", text);
    let answer = c.inline_completion(uri, 5, 4, LONG);
    // An `InlineCompletionList` whose items carry a range, the cursor's when
    // nothing after it is replaced (lsp-mode needs both).
    let items = answer["result"]["items"].as_array().unwrap_or_else(|| panic!("an InlineCompletionList: {answer}")).clone();
    assert_eq!(items.len(), 1, "{answer}");
    assert!(!items[0]["insertText"].as_str().unwrap().trim().is_empty(), "{answer}");
    assert_eq!(items[0]["range"], json!({"start": {"line": 5, "character": 4}, "end": {"line": 5, "character": 4}}), "{answer}");
    let status = c.wait_for(Duration::from_secs(10), "status after completion", |m| {
        m["method"] == "cria/status" && m["params"]["lastLatencyMs"].is_number()
    });
    assert!(status["params"]["promptTokens"].as_u64().unwrap() > 10);

    let id = c.request("textDocument/completion", json!({"textDocument": {"uri": uri}, "position": {"line": 5, "character": 4}}));
    let answer = c.response(id, LONG);
    let list = &answer["result"];
    assert_eq!(list["isIncomplete"], true);
    let item = &list["items"][0];
    assert_eq!(item["detail"], "cria", "{answer}");
    assert_eq!(item["insertTextFormat"], 1);
    assert_eq!(item["textEdit"]["range"]["start"], json!({"line": 5, "character": 4}));
    // The same prompt again is answered from the cache, identically.
    let inline_text = items[0]["insertText"].as_str().unwrap();
    assert_eq!(item["textEdit"]["newText"], inline_text);
    // After an edit near the end, the cached prompt prefix is reused. (An
    // edit of a word or two: token healing leaves the last token of the
    // line out of the prompt, so `re` alone would not lengthen it. And not
    // the start of the suggestion: typing that is answered from it without
    // running the model.)
    let edit = ["return a *", "result = a *"].into_iter().find(|e| !inline_text.starts_with(e)).unwrap();
    change(&mut c, uri, 2, (5, 4, 5, 4), edit);
    let answer = c.inline_completion(uri, 5, 4 + edit.len() as u32, LONG);
    assert!(answer["result"]["items"].is_array(), "{answer}");
    let status = c.wait_for(Duration::from_secs(10), "status after the edit", |m| {
        m["method"] == "cria/status" && m["params"]["promptTokens"].as_u64() > status["params"]["promptTokens"].as_u64()
    });
    let (reused, prompt) = (status["params"]["reusedTokens"].as_u64().unwrap(), status["params"]["promptTokens"].as_u64().unwrap());
    assert!(reused > 10 && reused < prompt, "reused {reused} of {prompt}");
    c.shutdown();
}

#[test]
fn accepting_a_suggestion_computes_the_next_one_ahead_of_the_request() {
    let home = support::linked_home();
    let mut c = ready_server(home.path(), "smollm2-135m-instruct", json!({}));
    let uri = "file:///work/accept.py";
    c.open(uri, "python", "def add(a, b):\n    ");
    // The editor inserts an accepted suggestion, then reports it.
    change(&mut c, uri, 2, (1, 4, 1, 4), "return a + b\n\n\ndef sub(a, b):\n    ");
    let id =
        c.request("workspace/executeCommand", json!({"command": "cria.accepted", "arguments": [{"uri": uri, "text": "return a + b"}]}));
    assert!(c.response(id, Duration::from_secs(30)).get("result").is_some());
    // The speculative completion runs on its own and reports its status.
    let status = c.wait_for(LONG, "status of the speculative completion", |m| {
        m["method"] == "cria/status" && m["params"]["lastLatencyMs"].is_number()
    });
    assert!(status["params"]["promptTokens"].as_u64().unwrap() > 5);
    // The editor's own request at the new cursor is then answered.
    let r = c.inline_completion(uri, 4, 4, LONG);
    assert!(r["result"]["items"].is_array(), "{r}");
    c.shutdown();
}

#[test]
fn fim_completion_on_qwen_coder_uses_the_text_after_the_cursor() {
    let home = support::linked_home();
    let mut c = ready_server(home.path(), "qwen2.5-coder-0.5b-instruct", json!({"maxTokens": 24}));
    let uri = "file:///work/shapes.py";
    let text = "import math\n\n\ndef circle_area(radius):\n    return \n\n\nprint(circle_area(2.0))\n";
    c.open(uri, "python", text);
    let answer = c.inline_completion(uri, 4, 11, LONG);
    let insert = answer["result"]["items"][0]["insertText"].as_str().unwrap_or_default().to_string();
    assert!(insert.contains("radius"), "FIM answer uses the parameter: {answer}");
    assert!(!insert.contains("print(circle_area"), "the text after the cursor is not repeated: {insert:?}");
    c.shutdown();
}

/// Token healing, over LSP on the real model: a cursor inside a word or
/// after a space gets an answer that continues the text exactly (the
/// issue's cases on `ledger.py`: `= de` once gave `" defaultdict"`, `= def`
/// gave `"auldict"`, `in ` gave `" transactions:"`).
#[test]
fn answers_continue_a_partial_word_and_a_trailing_space_exactly() {
    let home = support::linked_home();
    let mut c = ready_server(home.path(), "qwen2.5-coder-0.5b-instruct", json!({"latencyBudgetMs": 60000, "maxTokens": 16}));
    let original = include_str!("../benches/data/ledger.py");
    let uri = "file:///work/heal/ledger.py";
    c.open(uri, "python", original);
    let words: std::collections::HashSet<&str> = original.split(|ch: char| !(ch.is_alphanumeric() || ch == '_')).collect();
    let cases = [
        ("    totals: dict[str, Decimal] = defaultdict(Decimal)", "    totals: dict[str, Decimal] = de"),
        ("    totals: dict[str, Decimal] = defaultdict(Decimal)", "    totals: dict[str, Decimal] = def"),
        ("    totals: dict[str, Decimal] = defaultdict(Decimal)", "    totals: dict[str, Decimal] = "),
        ("    for tx in transactions:", "    for tx in "),
    ];
    for (version, (whole, typed)) in cases.into_iter().enumerate() {
        // Whole lines: the cursor's line ends at the cursor.
        let text = original.replacen(&format!("\n{whole}\n"), &format!("\n{typed}\n"), 1);
        let at = text.find(&format!("\n{typed}\n")).expect("the line") + 1;
        let line = text[..at].matches('\n').count() as u32;
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version + 2}, "contentChanges": [{"text": text}]}),
        );
        let answer = c.inline_completion(uri, line, typed.len() as u32, LONG);
        let insert = answer["result"]["items"][0]["insertText"].as_str().unwrap_or_default();
        assert!(!insert.trim().is_empty(), "{typed:?}: no answer: {answer}");
        assert!(!insert.starts_with([' ', '\t']), "{typed:?}: a doubled space: {insert:?}");
        let typed_word: String = typed.chars().rev().take_while(|ch| ch.is_alphanumeric()).collect::<Vec<_>>().into_iter().rev().collect();
        let spliced: String = typed_word.chars().chain(insert.chars()).take_while(|ch| ch.is_alphanumeric() || *ch == '_').collect();
        assert!(
            typed_word.is_empty() || words.contains(spliced.as_str()),
            "{typed:?}: accepting {insert:?} writes `{spliced}`, a word the file does not have"
        );
    }
    c.shutdown();
}

/// Enter (with the editor's auto-indentation) costs only the new line's
/// tokens: the prompt's middle marker stays where it was (its anchor), so
/// the prefix and the suffix after it stay in the KV cache. It used to move
/// the line into the prefix and recompute the whole suffix (~130 tokens).
///
/// Each request's numbers are read from the server's log, which has them
/// before the answer goes out: `cria/status` also goes out on warm-ups with
/// the last numbers, which an Enter that types through the suggestion
/// before it (and generates nothing) would read as its own.
#[test]
fn enter_recomputes_only_the_new_line() {
    let home = support::linked_home();
    let log = home.path().join("enter.log");
    let stderr = std::process::Stdio::from(std::fs::File::create(&log).unwrap());
    let mut c = LspClient::start_with_stderr(home.path(), &[], &[("CRIA_LOG", "cria=info")], stderr);
    c.initialize(utf16_caps(), json!({"model": "qwen2.5-coder-0.5b-instruct", "latencyBudgetMs": 60000, "maxTokens": 4}));
    assert_eq!(c.wait_model(LONG)["state"], "ready");
    let text = include_str!("../benches/data/ledger.py");
    let uri = "file:///work/enter/ledger.py";
    c.open(uri, "python", text);
    let line_text = "    for tx in transactions:";
    let line = text.lines().position(|l| l == line_text).expect("the loop") as u32;
    let end = line_text.len() as u32;
    // (edit at, text typed, cursor after): Enter, a word, Enter again.
    let steps = [
        (None, "", (line, end)),
        (Some((line, end)), "\n        ", (line + 1, 8)),
        (Some((line + 1, 8)), "if", (line + 1, 10)),
        (Some((line + 1, 10)), "\n        ", (line + 2, 8)),
    ];
    let mut logged = 0;
    let mut computed_after_enter = Vec::new();
    for (version, (at, typed, cursor)) in steps.into_iter().enumerate() {
        if let Some((l, ch)) = at {
            change(&mut c, uri, version as i64 + 1, (l, ch, l, ch), typed);
        }
        let answer = c.inline_completion(uri, cursor.0, cursor.1, LONG);
        assert!(answer["result"]["items"].is_array(), "{answer}");
        let generations = generations_logged(&log);
        let this_request = &generations[logged..];
        logged = generations.len();
        if typed.starts_with('\n') {
            computed_after_enter.extend(this_request.iter().map(|(prompt, reused)| prompt - reused));
        }
    }
    c.shutdown();
    // An Enter may type through the suggestion before it and generate
    // nothing; after `if` the suggestion is a condition, so one generates.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!computed_after_enter.is_empty(), "no generation after either Enter:\n{log}");
    assert!(computed_after_enter.iter().all(|&n| n <= 8), "tokens computed after each Enter: {computed_after_enter:?}\n{log}");
}

/// The generations a server's info log reports so far, in order: (prompt
/// tokens, of which reused from the KV cache). Warm-ups are not logged.
fn generations_logged(log: &Path) -> Vec<(u64, u64)> {
    generation_lines(log).iter().map(|l| (number_in(l, "prompt="), number_in(l, "reused="))).collect()
}

/// The log lines of the generations a server's info log reports so far.
fn generation_lines(log: &Path) -> Vec<String> {
    log_lines(log, " completion latency_ms=")
}

/// The lines of the log at `log` that hold `marker`.
fn log_lines(log: &Path, marker: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines().filter(|l| l.contains(marker)).map(str::to_string).collect()
}

/// The number after `name` in `line` (a log line's `name=value` field).
fn number_in(line: &str, name: &str) -> u64 {
    let value = line.split(' ').find_map(|word| word.strip_prefix(name)).unwrap_or_else(|| panic!("no {name} in {line}"));
    value.parse().unwrap_or_else(|_| panic!("{name}{value} in {line}"))
}

/// The number after `name` in the last line of the log at `log` that holds `marker`.
fn logged_number(log: &Path, marker: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text.lines().rev().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("no {marker:?} in the log:\n{text}"));
    number_in(line, name)
}

/// A flood of `cria/prefetch` (a cursor held on an arrow key, or a hostile
/// client) builds few prompts: one at a time, and only the newest. The
/// request after it is answered, and the server stays up.
#[test]
fn a_prefetch_flood_builds_only_the_newest_prompts() {
    let home = support::linked_home();
    let log = home.path().join("server.log");
    let stderr = std::process::Stdio::from(std::fs::File::create(&log).unwrap());
    let mut c = LspClient::start_with_stderr(home.path(), &[], &[("CRIA_LOG", "cria=debug")], stderr);
    c.initialize(utf16_caps(), json!({"model": "smollm2-135m-instruct", "latencyBudgetMs": 60000, "maxTokens": 8}));
    assert_eq!(c.wait_model(LONG)["state"], "ready");
    let uri = "file:///work/flood.py";
    let text: String = (0..200).map(|i| format!("def f{i}(x):\n    return x + {i}\n\n")).collect();
    c.open(uri, "python", &text);
    let floods = 2000;
    for i in 0..floods {
        let position = json!({"line": (i * 7) % 600, "character": 4});
        c.notify("cria/prefetch", json!({"textDocument": {"uri": uri}, "position": position}));
    }
    let answer = c.inline_completion(uri, 4, 4, LONG);
    assert!(answer["result"]["items"].is_array(), "{answer}");
    c.shutdown();
    let built = std::fs::read_to_string(&log).unwrap().matches("prefetch: prompt built").count();
    assert!(built < floods / 10, "{built} prompts built for {floods} prefetches");
}

// ---- documents: the server's copy equals the editor's ----

/// Byte offset of an LSP position in `text`, clamped as the spec says.
/// A Python file of 40 small functions and the head of a 41st, the cursor
/// in its body (line, column 4), and what SmolLM2 answers there when asked
/// alone with `max_tokens`: the suggestion the typing tests type into.
fn scale_functions_and_their_answer(home: &std::path::Path, uri: &str, max_tokens: u32) -> (String, u32, String) {
    let body: String = (0..40).map(|i| format!("def scale_{i}(x):\n    return x * {i}\n\n\n")).collect();
    let text = format!("{body}def scale_40(x):\n    ");
    let line = text.matches('\n').count() as u32;
    // The typing servers' budget: the same full prompt, never cut short.
    let mut alone = ready_server(home, "smollm2-135m-instruct", json!({"maxTokens": max_tokens, "latencyBudgetMs": 180000}));
    alone.open(uri, "python", &text);
    let answer = alone.inline_completion(uri, line, 4, LONG);
    let expected = answer["result"]["items"][0]["insertText"].as_str().unwrap_or_default().to_string();
    alone.shutdown();
    (text, line, expected)
}

/// A ready SmolLM2 server (the settings of `scale_functions_and_their_answer`,
/// a budget no machine runs out of) whose info log goes to `home/log_name`.
fn logging_smollm2_server(home: &std::path::Path, log_name: &str, max_tokens: u32) -> (LspClient, std::path::PathBuf) {
    logging_server(home, log_name, json!({"model": "smollm2-135m-instruct", "latencyBudgetMs": 180000, "maxTokens": max_tokens}))
}

/// A server started with `options`, ready, whose info log goes to
/// `home/log_name` (for the tests that read what it logged).
fn logging_server(home: &std::path::Path, log_name: &str, options: Value) -> (LspClient, std::path::PathBuf) {
    let log = home.join(log_name);
    let stderr = std::process::Stdio::from(std::fs::File::create(&log).unwrap());
    let mut c = LspClient::start_with_stderr(home, &[], &[("CRIA_LOG", "cria=info")], stderr);
    c.initialize(utf16_caps(), options);
    assert_eq!(c.wait_model(LONG)["state"], "ready");
    (c, log)
}

/// Tells the server where the cursor rests (`cria/prefetch`).
fn prefetch(c: &mut LspClient, uri: &str, line: u32, character: u32) {
    c.notify("cria/prefetch", json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}));
}

/// Typing on while a suggestion is still being generated: the first
/// request is superseded (answered empty) but its generation goes on, and
/// its answer, come late, serves the newer request whose typed character
/// starts it, at once and without a generation of its own.
#[test]
fn a_late_answer_serves_the_request_that_typed_its_first_character() {
    let home = support::linked_home();
    let uri = "file:///work/along.py";
    let (text, line, expected) = scale_functions_and_their_answer(home.path(), uri, 12);
    let first: String = expected.chars().take(1).collect();
    assert!(expected.chars().count() > 2, "a suggestion to type into: {expected:?}");

    // A fresh server: ask, then type the suggestion's first character and ask again at once.
    let (mut c, log) = logging_smollm2_server(home.path(), "along.log", 12);
    c.open(uri, "python", &text);
    let older = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": 4}, "context": {"triggerKind": 2}}),
    );
    // As an editor sends keys (100 ms or more apart): the older request has
    // looked at the document and sent its job before the key changes it.
    // At once, the newer request's job could go first, and its own answer
    // (which may type through the same suggestion) serve it.
    std::thread::sleep(Duration::from_millis(30));
    change(&mut c, uri, 2, (line, 4, line, 4), &first);
    let newer = c.inline_completion(uri, line, 5, LONG);
    assert_eq!(c.response(older, LONG)["result"], json!({"items": []}), "the superseded request is answered empty");
    let rest = newer["result"]["items"][0]["insertText"].as_str().unwrap_or_default();
    assert_eq!(rest, &expected[first.len()..], "{newer}");
    c.shutdown();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("late suggestion ready"), "the older generation was not left to finish:\n{log}");
}

#[test]
fn a_generation_that_agrees_with_the_typing_runs_on_and_serves_the_newest_request() {
    let home = support::linked_home();
    let uri = "file:///work/typed.py";
    // Room for lines after the first, which post-processing cuts.
    let (text, line, expected) = scale_functions_and_their_answer(home.path(), uri, 48);
    let typed: Vec<char> = expected.chars().take(3).collect();
    assert!(expected.chars().count() > 4 && typed.iter().all(|c| c.is_ascii()), "a suggestion to type into: {expected:?}");

    // Ask, then type three characters of the suggestion, asking after each
    // one at once: the first request's generation agrees with all of them.
    let (mut c, log) = logging_smollm2_server(home.path(), "typed.log", 48);
    c.open(uri, "python", &text);
    let ask = |c: &mut LspClient, character: u32| {
        c.request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}),
        )
    };
    let mut asked = vec![ask(&mut c, 4)];
    for (i, ch) in typed.iter().enumerate() {
        let column = 4 + i as u32;
        // A key every 30 ms: requests are handled concurrently, and each
        // must have looked at the document before the next key changes it
        // (editors send them 100 ms or more apart).
        std::thread::sleep(Duration::from_millis(30));
        change(&mut c, uri, 2 + i as i64, (line, column, line, column), &ch.to_string());
        asked.push(ask(&mut c, column + 1));
    }
    let newest = c.response(asked.pop().unwrap(), LONG);
    for older in asked {
        assert_eq!(c.response(older, LONG)["result"], json!({"items": []}), "a superseded request is answered empty");
    }
    let rest = newest["result"]["items"][0]["insertText"].as_str().unwrap_or_default();
    assert_eq!(rest, &expected[3..], "{newest}");
    c.shutdown();
    let log = std::fs::read_to_string(&log).unwrap();
    // Only the first request's job generated anything (the jobs of the
    // requests in between gave way to it, and are cancelled unrun), and it
    // ran on three keystrokes later: it was not cancelled. The first request
    // (an empty line: several lines) would write on past the line; the
    // newest one wants only that line, so it ended there.
    let jobs: Vec<&str> = log.lines().filter(|l| l.contains("completion latency_ms")).collect();
    let generating: Vec<&&str> = jobs.iter().filter(|l| !l.contains("generated=0 ")).collect();
    assert_eq!(generating.len(), 1, "one generation, the first request's:\n{log}");
    assert!(!generating[0].contains("stop=\"cancelled\""), "the first generation was stopped by typing that agreed with it:\n{log}");
    assert!(generating[0].contains("stop=\"enough\""), "the first generation did not end with the line being typed:\n{log}");
    assert!(log.contains("late suggestion ready"), "{log}");
}

fn offset(text: &str, line: u32, character: u32, utf16: bool) -> usize {
    let mut starts = vec![0];
    let b = text.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'\n' || (b[i] == b'\r' && b.get(i + 1) != Some(&b'\n')) {
            starts.push(i + 1);
        }
    }
    let Some(&start) = starts.get(line as usize) else {
        return text.len();
    };
    let end = starts.get(line as usize + 1).copied().unwrap_or(text.len());
    let content = text[start..end].trim_end_matches(['\n', '\r']);
    let mut units = 0;
    for (i, ch) in content.char_indices() {
        let width = if utf16 { ch.len_utf16() } else { ch.len_utf8() };
        if units + width > character as usize {
            return start + i;
        }
        units += width;
    }
    start + content.len()
}

fn edit(text: &mut String, range: (u32, u32, u32, u32), new: &str, utf16: bool) {
    let a = offset(text, range.0, range.1, utf16);
    let b = offset(text, range.2, range.3, utf16);
    let (a, b) = (a.min(b), a.max(b));
    text.replace_range(a..b, new);
}

fn change(c: &mut LspClient, uri: &str, version: i64, range: (u32, u32, u32, u32), new: &str) {
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": version},
               "contentChanges": [{"range": {"start": {"line": range.0, "character": range.1}, "end": {"line": range.2, "character": range.3}}, "text": new}]}),
    );
}

#[test]
fn utf16_edits_with_emoji_and_crlf_keep_the_text_exact() {
    let home = support::linked_home();
    let mut c = LspClient::start(home.path(), &[]);
    c.initialize(json!({}), json!({"model": "/nonexistent.gguf"}));
    let uri = "file:///work/emoji.rs";
    let mut text = String::from("fn main() {\r\n    let crab = \"🦀🦀\"; // 𝄞 clef\r\n    println!(\"{crab}\");\r\n}\r\n");
    c.open(uri, "rust", &text);
    type Edit<'a> = ((u32, u32, u32, u32), &'a str);
    let edits: [Edit; 6] = [
        ((1, 16, 1, 18), ""),                      // delete the second crab (2 UTF-16 units)
        ((1, 16, 1, 16), "🐍é"),                   // insert after the first crab
        ((1, 27, 1, 29), "G"),                     // replace the clef (a surrogate pair)
        ((2, 0, 2, 0), "\r\n    // new line\r\n"), // insert lines with CRLF
        ((0, 11, 1, 0), " // opened\r\n"),         // across a CRLF
        ((4, 99, 4, 99), " tail"),                 // past the end of a line: clamps to its end
    ];
    for (version, (range, new)) in edits.iter().enumerate() {
        change(&mut c, uri, version as i64 + 2, *range, new);
        edit(&mut text, *range, new, true);
        assert_eq!(c.document_text(uri), json!(text), "after edit {version}: {range:?} {new:?}");
    }
    c.shutdown();
}

#[test]
fn random_edit_sequences_keep_the_text_exact_in_utf8_and_utf16() {
    let home = support::linked_home();
    for (utf16, caps) in [(false, json!({"general": {"positionEncodings": ["utf-8"]}})), (true, json!({}))] {
        let mut c = LspClient::start(home.path(), &[]);
        c.initialize(caps, json!({"model": "/nonexistent.gguf"}));
        let uri = "file:///work/random.py";
        let mut text = String::from("def f(x):\r\n    return x  # é\n\n🦀 = 1\r");
        c.open(uri, "python", &text);
        let mut rng = StdRng::seed_from_u64(if utf16 { 16 } else { 8 });
        let pieces = ["", "a", "\n", "\r\n", "\r", "\t", "🦀", "é", "日本", "{}", "()", "\"", "    ", "x = 1\n", "𝄞"];
        for version in 0..300 {
            let lines = text.split('\n').count() as u32 + 1;
            let mut pos = || (rng.random_range(0..lines), rng.random_range(0..12u32));
            let (a, b) = (pos(), pos());
            let (start, end) = if a <= b { (a, b) } else { (b, a) };
            let new: String = (0..rng.random_range(0..3)).map(|_| pieces[rng.random_range(0..pieces.len())]).collect();
            let range = (start.0, start.1, end.0, end.1);
            change(&mut c, uri, version + 2, range, &new);
            edit(&mut text, range, &new, utf16);
            if version % 50 == 49 {
                assert_eq!(c.document_text(uri), json!(text), "utf16={utf16} after {version} edits");
            }
        }
        assert_eq!(c.document_text(uri), json!(text));
        c.shutdown();
    }
}

#[test]
fn a_storm_of_edits_and_requests_is_answered_without_deadlock() {
    let home = support::linked_home();
    let mut c = ready_server(home.path(), "smollm2-135m-instruct", json!({"maxTokens": 8, "latencyBudgetMs": 3000}));
    let uri = "file:///work/storm.py";
    let mut text = String::from("def storm():\n    ");
    c.open(uri, "python", &text);
    let typed: String = "total = sum(range(10)) + len('abc') * 2  # typed one key at a time\n    ".chars().cycle().take(200).collect();
    let mut ids = Vec::new();
    let (mut line, mut col) = (1u32, 4u32);
    for (i, ch) in typed.chars().enumerate() {
        change(&mut c, uri, i as i64 + 2, (line, col, line, col), &ch.to_string());
        text.push(ch);
        if ch == '\n' {
            (line, col) = (line + 1, 0);
        } else {
            col += 1;
        }
        ids.push(c.request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": col}, "context": {"triggerKind": 2}}),
        ));
    }
    assert_eq!(ids.len(), 200);
    let mut answered = 0;
    for id in ids {
        let r = c.response(id, Duration::from_secs(120));
        assert!(r.get("result").is_some() || r["error"]["code"] == -32800, "answered or cancelled: {r}");
        answered += 1;
    }
    assert_eq!(answered, 200);
    assert_eq!(c.document_text(uri), json!(text));
    // Still serving after the storm.
    let r = c.inline_completion(uri, line, col, LONG);
    assert!(r.get("result").is_some(), "{r}");
    c.shutdown();
}

#[test]
fn bad_input_gets_errors_or_empty_answers_and_the_server_keeps_serving() {
    let home = support::linked_home();
    let mut c = LspClient::start(home.path(), &[]);
    c.initialize(json!({}), json!({"model": "/nonexistent.gguf"}));
    let error_code = |c: &mut LspClient| {
        c.wait_for(Duration::from_secs(30), "error reply", |m| m.get("error").is_some() && m["id"].is_null())["error"]["code"].clone()
    };
    c.send_raw(b"Content-Length: 9\r\n\r\n{not json");
    assert_eq!(error_code(&mut c), -32700);
    c.send_raw(b"Content-Length: 7\r\n\r\n[1,2,3]");
    assert_eq!(error_code(&mut c), -32600);
    c.send_raw(b"no header at all\r\n\r\n");
    assert_eq!(error_code(&mut c), -32700);

    let id = c.request("cria/noSuchMethod", json!({}));
    assert_eq!(c.response(id, Duration::from_secs(30))["error"]["code"], -32601);
    let id = c.request("textDocument/inlineCompletion", json!({"textDocument": {"uri": "file:///x.py"}, "position": {"line": "two"}}));
    assert_eq!(c.response(id, Duration::from_secs(30))["error"]["code"], -32602);

    // A document never opened, and a position far past the end: empty answers.
    let r = c.inline_completion("file:///never-opened.py", 0, 0, Duration::from_secs(30));
    assert_eq!(r["result"], json!({"items": []}), "{r}");
    c.open("file:///short.py", "python", "x = 1\n");
    let r = c.inline_completion("file:///short.py", 500, 500, Duration::from_secs(30));
    assert_eq!(r["result"], json!({"items": []}), "{r}");
    // Edits to a document never opened are ignored, not fatal.
    change(&mut c, "file:///never-opened.py", 2, (0, 0, 0, 0), "x");
    assert_eq!(c.document_text("file:///short.py"), json!("x = 1\n"));
    assert_eq!(c.document_text("file:///never-opened.py"), Value::Null);
    c.shutdown();
}

#[test]
fn a_missing_model_is_shown_to_the_user_and_the_server_keeps_serving() {
    let home = support::linked_home();
    let mut c = LspClient::start(home.path(), &[]);
    c.initialize(utf16_caps(), json!({"model": "/models/missing.gguf"}));
    let shown = c.wait_for(LONG, "showMessage", |m| m["method"] == "window/showMessage");
    assert_eq!(shown["params"]["type"], 1, "an error");
    let message = shown["params"]["message"].as_str().unwrap();
    assert!(message.contains("/models/missing.gguf") && message.contains("model"), "{message}");
    let status = c.wait_model(LONG);
    assert_eq!(status["state"], "error");
    assert!(status["message"].as_str().unwrap().contains("missing.gguf"));
    // The load's progress ends after the error was reported (the client had
    // to accept the token first); the status comes again after it, so a
    // client showing both ends on the error, not on "loading".
    c.wait_for(LONG, "the end of load progress", |m| m["method"] == "$/progress" && m["params"]["value"]["kind"] == "end");
    let end = c.received.iter().rposition(|m| m["method"] == "$/progress").unwrap();
    let is_status = |m: &Value| m["method"] == "cria/status";
    while c.received.iter().rposition(is_status).is_none_or(|last| last < end) {
        c.wait_for(Duration::from_secs(30), "a status after the progress", is_status);
    }
    let last = c.received.iter().rev().find(|m| is_status(m)).unwrap();
    assert_eq!(last["params"]["state"], "error", "the last status: {last}");
    c.open("file:///a.py", "python", "print(1)\n");
    let r = c.inline_completion("file:///a.py", 0, 8, Duration::from_secs(30));
    assert_eq!(r["result"], json!({"items": []}));
    // Bad settings values are reported and the rest still applies.
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"cria": {"maxTokens": "many", "nonsense": 1}}}));
    let shown = c.wait_for(Duration::from_secs(30), "showMessage for maxTokens", |m| {
        m["method"] == "window/showMessage" && m["params"]["message"].as_str().unwrap_or("").contains("maxTokens")
    });
    assert_eq!(shown["params"]["type"], 1);
    // Pointing the setting at a real model loads it.
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"cria": {"model": "smollm2-135m-instruct"}}}));
    let status = c.wait_for(LONG, "ready", |m| m["method"] == "cria/status" && m["params"]["state"] == "ready");
    assert_eq!(status["params"]["model"], "smollm2-135m-instruct");
    c.shutdown();
}

/// The suggestion cache keys every setting that changes the answer: after
/// `maxTokens` goes from 16 to 1, the same cursor gets a one-token answer,
/// not the 16-token one cached before.
#[test]
fn changing_a_setting_that_shapes_the_answer_bypasses_the_cache() {
    let home = support::linked_home();
    let mut c = ready_server(home.path(), "smollm2-135m-instruct", json!({"maxTokens": 16}));
    let uri = "file:///work/settings.py";
    c.open(uri, "python", "def add(a, b):\n    ");
    let text_of = |answer: &Value| answer["result"]["items"][0]["insertText"].as_str().unwrap_or_default().to_string();
    let long = text_of(&c.inline_completion(uri, 1, 4, LONG));
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"cria": {"maxTokens": 1}}}));
    let short = text_of(&c.inline_completion(uri, 1, 4, LONG));
    assert!(long.len() > short.len(), "maxTokens 1 answered {short:?} (with 16: {long:?})");
    c.shutdown();
}

/// LSP 3.18 `selectedCompletionInfo`: with an item selected in the
/// editor's completion list, the suggestion extends that item over its
/// range (VS Code hides an inline suggestion that does not), computed as if
/// the item were applied.
#[test]
fn a_selected_completion_item_is_extended_over_its_range() {
    let home = support::linked_home();
    let mut c = ready_server(home.path(), "smollm2-135m-instruct", json!({"maxTokens": 8}));
    let uri = "file:///work/selected.py";
    c.open(uri, "python", "import math\n\n\ndef area(r):\n    return math.p");
    let range = json!({"start": {"line": 4, "character": 16}, "end": {"line": 4, "character": 17}});
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 17},
               "context": {"triggerKind": 2, "selectedCompletionInfo": {"range": range, "text": "pi"}}}),
    );
    let answer = c.response(id, LONG);
    let item = &answer["result"]["items"][0];
    assert_eq!(item["range"], range, "{answer}");
    let insert = item["insertText"].as_str().unwrap();
    assert!(insert.starts_with("pi") && insert.len() > 2, "{answer}");
    c.shutdown();
}

// ---- never cold: warm-up, late answers, several KV caches ----

/// `benches/data/ledger.py` (about 1,400 Qwen tokens) with its marked line
/// emptied: the cursor goes there, after the indentation.
fn ledger() -> (String, u32, u32) {
    let text = include_str!("../benches/data/ledger.py");
    let line = text.lines().position(|l| l.contains("# keystroke-replay: cursor")).expect("marked line") as u32;
    let text = text.replace("# keystroke-replay: cursor", "");
    (text, line, 8)
}

fn status_of(m: &Value) -> Option<&Value> {
    (m["method"] == "cria/status").then(|| &m["params"])
}

#[test]
fn a_request_that_outlives_its_budget_is_finished_in_the_background_and_served_on_the_re_ask() {
    let home = support::linked_home();
    // A budget far too short for any prefill: the first answer must be late.
    let mut c = ready_server(home.path(), "qwen2.5-coder-0.5b-instruct", json!({"latencyBudgetMs": 50, "maxTokens": 24}));
    let (text, line, _) = ledger();
    // A loop header being typed: a one-line answer even from a small prompt.
    let text = text.replacen("\n        \n", "\n        for tx in \n", 1);
    let character = 18;
    let uri = "file:///work/late/ledger.py";
    c.open(uri, "python", &text);
    let first = c.inline_completion(uri, line, character, LONG);
    assert_eq!(first["result"], json!({"items": []}), "nothing is ready within 50 ms: {first}");
    // The editor is told the server is warming, then that the answer is ready.
    c.wait_for(LONG, "warming", |m| status_of(m).is_some_and(|s| s["state"] == "warming" && s["warming"]["uri"] == uri));
    c.wait_for(LONG, "ready after warming", |m| status_of(m).is_some_and(|s| s["state"] == "ready"));
    let again = c.inline_completion(uri, line, character, LONG);
    let insert = again["result"]["items"][0]["insertText"].as_str().unwrap_or_default();
    assert!(!insert.trim().is_empty(), "the re-ask gets the finished answer from the cache: {again}");
    c.shutdown();
}

#[test]
fn prefetch_warms_a_cursor_and_switching_back_to_a_file_reuses_its_cache() {
    let home = support::linked_home();
    let options = json!({"model": "qwen2.5-coder-0.5b-instruct", "latencyBudgetMs": 5000, "maxTokens": 8});
    let (mut c, log) = logging_server(home.path(), "server.log", options);
    let (text, line, character) = ledger();
    let (a, b) = ("file:///work/warm/ledger.py", "file:///work/warm/other.py");
    let warm = |c: &mut LspClient, uri: &str, line: u32, character: u32| {
        prefetch(c, uri, line, character);
        c.wait_for(LONG, "warming", |m| status_of(m).is_some_and(|s| s["state"] == "warming" && s["warming"]["uri"] == uri));
        c.wait_for(LONG, "warm-up done", |m| status_of(m).is_some_and(|s| s["state"] == "ready"));
    };
    let numbers = |s: &Value| (s["lastLatencyMs"].clone(), s["promptTokens"].clone(), s["reusedTokens"].clone());
    let reused = |c: &mut LspClient, uri: &str, line: u32, character: u32| {
        let before = c.received.iter().rev().find_map(status_of).map(numbers);
        let answer = c.inline_completion(uri, line, character, LONG);
        assert!(answer["result"]["items"].is_array(), "{answer}");
        // The status of this completion: the first with new numbers.
        let status = c.wait_for(LONG, "status of the completion", |m| {
            status_of(m).is_some_and(|s| s["lastLatencyMs"].is_number() && Some(numbers(s)) != before)
        });
        let s = status["params"].clone();
        (s["reusedTokens"].as_u64().unwrap(), s["promptTokens"].as_u64().unwrap(), s["kvSlots"].as_u64().unwrap_or(0))
    };
    // Once the prompt at the resting cursor is warm, the suggestion there is
    // computed (the suggestion at rest): from the quick prompt first where
    // the full one is cold, then from the full prompt, which is as big as
    // this machine affords (from 384 tokens on a slow or busy machine up to
    // the default 1,536; the file's 1,200 tokens fill at least half of any,
    // the window's start being aligned to a grid), reusing all but its last
    // token.
    let full = logged_number(&log, " model ready ", "full_prompt_tokens=");
    let from_full = |c: &mut LspClient, n: usize| {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let lines = log_lines(&log, " suggestion at rest ");
            let full_ones: Vec<&String> = lines.iter().filter(|l| number_in(l, "budget=") == full).collect();
            if let Some(line) = full_ones.get(n - 1) {
                return line.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no suggestion at rest from the full prompt: {lines:?}");
            c.try_wait_for(Duration::from_millis(100), |_| false);
        }
    };
    c.open(a, "python", &text);
    warm(&mut c, a, line, character);
    let rest_a = from_full(&mut c, 1);
    let (reused_a, prompt_a) = (number_in(&rest_a, "reused="), number_in(&rest_a, "prompt="));
    assert!(reused_a + 2 >= prompt_a, "the suggestion after a prefetch computes almost nothing: {reused_a} of {prompt_a}");
    assert!(prompt_a * 2 >= full, "the windows fill at least half the full prompt's {full} tokens: {prompt_a}");
    // A request there is answered from the cache: no generation of its own.
    let answer = c.inline_completion(a, line, character, LONG);
    let shown = answer["result"]["items"][0]["insertText"].as_str().unwrap_or_default().to_string();
    assert!(generation_lines(&log).is_empty(), "the request after the suggestion at rest generated: {answer}");

    // Another file, then back: the first file's prompt is still cached.
    let other = text.replace("Ledger", "Journal").replace("ledger", "journal");
    c.open(b, "python", &other);
    warm(&mut c, b, line, character);
    let rest_b = from_full(&mut c, 2);
    assert!(number_in(&rest_b, "reused=") + 2 >= number_in(&rest_b, "prompt="), "{rest_b}");
    // Typing a character makes a new prompt (one the suggestion shown does
    // not start with: typing that would be answered without a generation).
    let typed = if shown.starts_with('t') { "q" } else { "t" };
    change(&mut c, a, 2, (line, character, line, character), typed);
    let (back, prompt, slots) = reused(&mut c, a, line, character + 1);
    assert!(back + 8 >= prompt, "switching back computes almost nothing: {back} of {prompt}");
    assert!(slots >= 2, "each file keeps a KV cache slot: {slots}");
    c.shutdown();
}

/// Context switches of each of a process's threads (Linux: `/proc`), by
/// thread id: a thread that wakes, for a timer or a poll, switches.
#[cfg(target_os = "linux")]
fn thread_wake_ups(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut counts = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue }; // the thread ended
        let switches =
            status.lines().filter(|l| l.contains("ctxt_switches:")).filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
        counts.insert(task.file_name().to_string_lossy().into_owned(), switches.sum());
    }
    counts
}

/// Once a document is warm and its suggestion at rest computed, a server
/// nobody talks to uses no CPU: no thread wakes (no polling, no timers),
/// and the status reports the memory the KV caches take, slot by slot.
#[test]
#[cfg(target_os = "linux")]
fn after_warming_an_idle_server_sleeps_and_reports_its_kv_memory() {
    let home = support::linked_home();
    let options = json!({"model": "smollm2-135m-instruct", "latencyBudgetMs": 5000, "maxTokens": 8});
    let (mut c, log) = logging_server(home.path(), "server.log", options);
    let (text, line, character) = ledger();
    let uri = "file:///work/idle/ledger.py";
    c.open(uri, "python", &text);
    prefetch(&mut c, uri, line, character);
    c.wait_for(LONG, "warming", |m| status_of(m).is_some_and(|s| s["state"] == "warming"));
    c.wait_for(LONG, "warm", |m| status_of(m).is_some_and(|s| s["state"] == "ready"));
    // The suggestion at rest follows the warm-up: wait until it is logged
    // and nothing more comes (a second one, from the full prompt, may).
    let deadline = std::time::Instant::now() + LONG;
    let mut seen = 0;
    loop {
        let now = log_lines(&log, " suggestion at rest ").len();
        if now > 0 && now == seen {
            break;
        }
        seen = now;
        assert!(std::time::Instant::now() < deadline, "no suggestion at rest");
        c.try_wait_for(Duration::from_secs(2), |_| false);
    }
    let status = c.received.iter().rev().find_map(status_of).expect("a status").clone();
    let total = status["kvCacheMb"].as_f64().expect("kvCacheMb");
    let per_slot: Vec<f64> = status["kvSlotsMb"].as_array().expect("kvSlotsMb").iter().filter_map(Value::as_f64).collect();
    let used = status["kvSlots"].as_u64().expect("kvSlots") as usize;
    assert!(per_slot.iter().filter(|&&mb| mb > 0.0).count() >= used && used >= 1, "{status}");
    assert!((per_slot.iter().sum::<f64>() - total).abs() <= 0.1 * per_slot.len() as f64, "the slots add up to the total: {status}");

    // Idle: threads the runtime keeps for blocking work end after 10 s
    // idle (that ending is no poll); every thread there before and after
    // must not have woken.
    std::thread::sleep(Duration::from_secs(11));
    let before = thread_wake_ups(c.pid());
    std::thread::sleep(Duration::from_secs(5));
    let after = thread_wake_ups(c.pid());
    let woke: Vec<String> = after
        .iter()
        .filter(|(id, n)| before.get(*id).is_none_or(|b| b != *n))
        .map(|(id, n)| format!("thread {id}: {n} (was {:?})", before.get(id)))
        .collect();
    assert!(woke.is_empty(), "an idle server's threads woke: {woke:?}");
    c.shutdown();
}
