//! What serving many clients and remote engines needs from the library, on
//! real models: KV cache slots that give the same greedy output and keep
//! their own prefixes, streamed text that adds up to the final text, and
//! prompts turned into what remote APIs take (text, or prefix and suffix
//! for llama.cpp's `/infill`) without losing or adding a character. Then
//! the real `cria serve` binary answering llama.cpp's `/infill` (as
//! llama.vim sends it, with curl, and llama.vscode) with the suggestion
//! `cria complete` prints for the same document, and OpenAI's `suffix`.

mod support;

use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::http::{post_json, request as http_request};

use cria::engine::gguf::GgufFile;
use cria::engine::{Engine, EngineError, EngineOptions, GenerationRequest, Tokenizer};
use cria::models::{builtin, FimOrder};
use cria::prompt::{build_prompt, ContextChunk, FimTemplate, PromptInput};
use cria::remote::prompt::{prompt_text, split_infill};
use cria::serve::prompt::SpecialTokens;

const PREFIX: &str = "import math\n\n\ndef circle_area(radius):\n    \"\"\"Area of a circle.\"\"\"\n    return ";
const SUFFIX: &str = "\n\n\nprint(circle_area(2.0))  # é 🦀\n";

fn request(prompt: &[u32], max_new: usize) -> GenerationRequest {
    GenerationRequest::new(prompt.to_vec(), max_new, vec![])
}

#[test]
fn every_slot_gives_the_same_greedy_output_and_keeps_its_own_prefix() {
    let mut engine = Engine::load(&support::smollm2(), &EngineOptions { context_length: 512, ..Default::default() }, &mut |_| {}).unwrap();
    engine.set_slots(3).unwrap();
    assert_eq!(engine.slots(), 3);
    let tok = engine.tokenizer();
    let a = tok.encode("def add(a, b):\n    \"\"\"Sum of two numbers.\"\"\"\n    return").unwrap();
    let b = tok.encode("fn main() {\n    let greeting = \"hello\";\n    println!(").unwrap();

    let base = engine.generate(&request(&a, 12)).unwrap();
    let mut streamed = String::new();
    let in_two = engine.generate_in(2, &request(&a, 12), &mut |t| streamed.push_str(t)).unwrap();
    assert_eq!((in_two.tokens.clone(), in_two.reused_tokens), (base.tokens.clone(), 0), "slot 2 starts cold and agrees with slot 0");
    assert_eq!(streamed, in_two.text, "the streamed pieces are the text");

    // Another client's prompt in slot 1 leaves slots 0 and 2 alone.
    engine.generate_in(1, &request(&b, 12), &mut |_| {}).unwrap();
    assert!(engine.cached_tokens_in(1).starts_with(&b));
    for slot in [0, 2] {
        let again = engine.generate_in(slot, &request(&a, 12), &mut |_| {}).unwrap();
        assert_eq!(again.reused_tokens, a.len() - 1, "slot {slot} kept its prefix");
        assert_eq!(again.tokens, base.tokens);
    }
    let missing = engine.generate_in(3, &request(&a, 4), &mut |_| {});
    assert!(matches!(missing, Err(EngineError::NoSuchSlot { slot: 3, slots: 3 })), "{:?}", missing.err());
}

#[test]
fn streamed_text_never_runs_past_a_stop_string() {
    let mut engine = Engine::load(&support::smollm2(), &EngineOptions { context_length: 512, ..Default::default() }, &mut |_| {}).unwrap();
    let tok = engine.tokenizer();
    let prompt = tok.encode("# Three greetings in Python\nprint(\"hello\")\nprint(\"hi\")\n").unwrap();
    let free = engine.generate(&request(&prompt, 24)).unwrap();
    let stop = free.text.find('\n').map(|at| free.text[at..].chars().take(2).collect::<String>()).expect("a line break in 24 tokens");
    let mut with_stop = request(&prompt, 24);
    with_stop.stop_strings = vec![stop.clone()];
    let mut pieces = Vec::new();
    let done = engine.generate_in(0, &with_stop, &mut |t| pieces.push(t.to_string())).unwrap();
    assert!(!done.text.contains(&stop) && free.text.starts_with(&done.text), "{:?} then {:?}", free.text, done.text);
    assert_eq!(pieces.concat(), done.text, "no piece of the stop string was streamed: {pieces:?}");
}

fn tokenizer(path: &std::path::Path) -> Tokenizer {
    Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap()
}

fn fim_prompt(template: &FimTemplate, tokenizer: &Tokenizer) -> Vec<u32> {
    fim_prompt_with(template, tokenizer, &[], false)
}

fn fim_prompt_with(template: &FimTemplate, tokenizer: &Tokenizer, context: &[ContextChunk], cursor_line_after_middle: bool) -> Vec<u32> {
    let input = PromptInput {
        prefix: PREFIX,
        suffix: SUFFIX,
        context,
        line_comment: "#",
        budget: 1024,
        suffix_share: 0.4,
        context_share: if context.is_empty() { 0.0 } else { 0.3 },
        current_path: Some("shapes.py"),
        cursor_line_after_middle,
        middle_bytes: None,
        heal: cria::prompt::Healing::Off,
    };
    build_prompt(template, tokenizer, &input).unwrap().tokens
}

#[test]
fn infill_splits_give_back_the_exact_prefix_and_suffix() {
    let cases = [
        ("qwen2.5-coder-0.5b-instruct", support::qwen(), FimOrder::Psm),
        // Code Llama: SentencePiece, the suffix encoded without its leading space.
        ("codellama-7b", support::vocab("llama-spm"), FimOrder::Psm),
        ("codellama-7b", support::vocab("llama-spm"), FimOrder::Spm),
        ("smollm2-135m-instruct", support::smollm2(), FimOrder::Prefix),
    ];
    for (name, file, order) in cases {
        let config = builtin(name).unwrap();
        let template = FimTemplate::from_config(&config, Some(order)).unwrap();
        let tok = tokenizer(&file);
        let text = split_infill(&template, &tok, &fim_prompt(&template, &tok)).unwrap_or_else(|| panic!("{name} {order:?} splits"));
        assert_eq!((text.prefix.as_str(), text.middle.as_str()), (PREFIX, ""), "{name} {order:?}");
        let suffix = if template.uses_suffix() { SUFFIX } else { "" };
        assert_eq!(text.suffix, suffix, "{name} {order:?}");
        // With the cursor line after the middle marker (as the language
        // server lays out PSM prompts), it comes back as the middle text.
        let text = split_infill(&template, &tok, &fim_prompt_with(&template, &tok, &[], true)).unwrap();
        assert_eq!(format!("{}{}", text.prefix, text.middle), PREFIX, "{name} {order:?}");
        if order == FimOrder::Psm && template.uses_suffix() {
            assert_eq!(text.middle, "    return ", "{name}");
        }
    }
    // Tokens that do not follow the template are refused, not guessed at.
    let config = builtin("qwen2.5-coder-0.5b-instruct").unwrap();
    let template = FimTemplate::from_config(&config, None).unwrap();
    let tok = tokenizer(&support::qwen());
    assert_eq!(split_infill(&template, &tok, &tok.encode("no control tokens").unwrap()), None);

    // Repository-level context comes back as files for `input_extra`.
    let context = [
        ContextChunk { path: "geometry/units.py".into(), text: "PI = 3.14159\n".into() },
        ContextChunk { path: "geometry/square.py".into(), text: "def square_area(side):\n    return side * side".into() },
    ];
    let text = split_infill(&template, &tok, &fim_prompt_with(&template, &tok, &context, false)).unwrap();
    assert_eq!((text.prefix.as_str(), text.suffix.as_str()), (PREFIX, SUFFIX));
    let expected: Vec<(String, String)> = context.iter().map(|c| (c.path.clone(), format!("{}\n", c.text.trim_end()))).collect();
    assert_eq!(text.extra, expected);
}

#[test]
fn text_prompts_read_back_to_the_same_tokens() {
    for (name, file) in [("qwen2.5-coder-0.5b-instruct", support::qwen()), ("smollm2-135m-instruct", support::smollm2())] {
        let config = builtin(name).unwrap();
        let template = FimTemplate::from_config(&config, None).unwrap();
        let tok = tokenizer(&file);
        let tokens = fim_prompt_with(&template, &tok, &[], true);
        let text = prompt_text(&tok, &tokens);
        if template.uses_suffix() {
            assert!(
                text.starts_with("<|fim_prefix|>") && text.contains("<|fim_suffix|>") && text.ends_with("<|fim_middle|>    return "),
                "{text}"
            );
        }
        assert_eq!(SpecialTokens::new(&tok).encode(&tok, &text).unwrap(), tokens, "{name}: {text}");
    }
}

const QWEN: &str = "qwen2.5-coder-0.5b-instruct";
const SMOLLM2: &str = "smollm2-135m-instruct";

/// A document with a single-line hole after `return ` (line 5, column 12).
const SHAPES: &str = "import math\n\n\ndef circle_area(radius):\n    return \n\n\nprint(circle_area(2.0))\n";

/// What `cria complete FILE:LINE:COL` prints for `text` saved as `name`.
fn cria_complete(home: &std::path::Path, name: &str, text: &str, line: usize, col: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(support::cria_bin())
        .args(["complete", &format!("{}:{line}:{col}", path.display()), "--model", QWEN])
        .env("CRIA_HOME", home)
        .stderr(Stdio::inherit())
        .output()
        .expect("cria complete runs");
    assert!(out.status.success(), "cria complete failed");
    let printed = String::from_utf8(out.stdout).unwrap();
    printed.strip_suffix('\n').unwrap_or(&printed).to_string()
}

/// The byte offset of LINE:COL (from 1) in `text`, as `input_prefix`,
/// `prompt` (the cursor line's head) and `input_suffix`, as llama.vim
/// splits a buffer.
fn split_like_llama_vim(text: &str, line: usize, col: usize) -> (String, String, String) {
    let line_start: usize = text.split_inclusive('\n').take(line - 1).map(str::len).sum();
    let cursor = line_start + col - 1;
    (text[..line_start].to_string(), text[line_start..cursor].to_string(), text[cursor..].to_string())
}

/// POSTs `body` to `url` the way llama.vim does: curl reading the JSON
/// from standard input, with a bearer token when it has an API key.
fn curl_like_llama_vim(url: &str, token: &str, body: &Value) -> Value {
    let mut curl = Command::new("curl")
        .args(["--silent", "--no-buffer", "--request", "POST", "--url", url])
        .args(["--header", "Content-Type: application/json", "--header", &format!("Authorization: Bearer {token}"), "--data", "@-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs (llama.vim's HTTP client)");
    std::io::Write::write_all(curl.stdin.as_mut().unwrap(), body.to_string().as_bytes()).unwrap();
    let out = curl.wait_with_output().unwrap();
    assert!(out.status.success(), "curl failed");
    let raw = String::from_utf8(out.stdout).unwrap();
    // llama.vim's own check before it decodes the answer.
    assert!(raw.trim_start().starts_with('{') && raw.contains("\"content\":\""), "llama.vim would drop this answer: {raw}");
    serde_json::from_str(&raw).unwrap()
}

#[test]
fn infill_answers_llama_cpps_clients_with_the_suggestion_cria_complete_prints() {
    let home = support::linked_home();
    let token = "infill-secret";
    let args = ["--slots", "2", "--context-length", "2048", "--token-env", "CRIA_TEST_INFILL_TOKEN"];
    let (_serve, addr) = support::serve::cria_serve(home.path(), QWEN, &args, &[("CRIA_TEST_INFILL_TOKEN", token)]);
    let infill = |body: &Value| post_json(addr, "/infill", Some(token), body);

    // One pipeline: the same suggestion as `cria complete` at the same place
    // of the same file, in two languages.
    let rust = "fn area(width: f64, height: f64) -> f64 {\n    let product = \n    product\n}\n";
    for (name, text, line, col) in [("shapes.py", SHAPES, 5, 12), ("area.rs", rust, 2, 19)] {
        let expected = cria_complete(home.path(), name, text, line, col);
        assert!(!expected.is_empty() && !expected.contains('\n'), "{name}: one line for a one-line hole: {expected:?}");
        let (prefix, middle, suffix) = split_like_llama_vim(text, line, col);
        let body = json!({"input_prefix": prefix, "prompt": middle, "input_suffix": suffix, "filename": name, "user": name});
        let answer = infill(&body);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let answer = answer.json();
        assert_eq!(answer["content"], expected.as_str(), "{name}: {answer}");
        assert_eq!((answer["stop"].clone(), answer["truncated"].clone()), (json!(true), json!(false)));
        assert!(answer["tokens_evaluated"].as_u64().unwrap() > 10 && answer["generation_settings"]["n_ctx"] == 2048, "{answer}");
    }

    // llama.vim's request, sent as llama.vim sends it: every field it
    // sets, the fields it asks for back, flattened under their paths.
    let (prefix, middle, suffix) = split_like_llama_vim(SHAPES, 5, 12);
    let fields = [
        "content",
        "timings/prompt_n",
        "timings/prompt_ms",
        "timings/prompt_per_token_ms",
        "timings/prompt_per_second",
        "timings/predicted_n",
        "timings/predicted_ms",
        "timings/predicted_per_token_ms",
        "timings/predicted_per_second",
        "truncated",
        "tokens_cached",
    ];
    let vim = json!({
        "id_slot": 0, "input_prefix": prefix, "input_suffix": suffix, "input_extra": [], "prompt": middle,
        "n_predict": 128, "stop": [], "n_indent": 4, "top_k": 40, "top_p": 0.90, "samplers": ["top_k", "top_p", "infill"],
        "stream": false, "cache_prompt": true, "t_max_prompt_ms": 500, "t_max_predict_ms": 1000, "response_fields": fields,
    });
    let url = format!("http://{addr}/infill");
    let answer = curl_like_llama_vim(&url, token, &vim);
    let keys: Vec<&str> = answer.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), fields.len(), "only the fields asked for: {answer}");
    assert!(fields.iter().all(|f| answer.get(*f).is_some()), "{answer}");
    assert!(answer["content"].as_str().unwrap().contains("radius"), "{answer}");
    assert!(answer["timings/predicted_n"].as_u64().unwrap() >= 1 && answer["timings/prompt_ms"].is_f64(), "{answer}");
    // The same request again: this client's slot kept the prompt.
    let again = curl_like_llama_vim(&url, token, &vim);
    assert_eq!(again["content"], answer["content"]);
    assert!(again["tokens_cached"].as_u64().unwrap() > 10, "{again}");
    // llama.vim's cache warm-up: only `input_extra`, nothing predicted, nothing asked back.
    let warm = json!({"id_slot": 0, "input_prefix": "", "input_suffix": "", "prompt": "", "n_predict": 0, "samplers": [],
        "input_extra": [{"text": "PI = 3.14159\n", "time": 1, "filename": "units.py"}], "cache_prompt": true, "response_fields": [""]});
    assert_eq!(curl_like_llama_vim_raw(&url, token, &warm), "{}");

    // Snippets of other files go into the prompt.
    let plain = json!({"input_prefix": prefix, "prompt": middle, "input_suffix": suffix, "filename": "shapes.py"});
    let mut with_extra = plain.clone();
    with_extra["input_extra"] = json!([
        {"filename": "geometry/units.py", "text": "PI = 3.14159\nTAU = 2 * PI\n"},
        {"filename": "geometry/square.py", "text": "def square_area(side):\n    return side * side\n"},
    ]);
    let (without, with) = (infill(&plain).json(), infill(&with_extra).json());
    let evaluated = |a: &Value| a["tokens_evaluated"].as_u64().unwrap();
    assert!(evaluated(&with) > evaluated(&without) + 20, "the snippets are in the prompt: {without} then {with}");

    // `n_predict` bounds the generation (healing may add up to 3 tokens it writes again).
    let body_hole =
        json!({"input_prefix": "def setup():\n", "prompt": "    ", "input_suffix": "\n", "filename": "setup.py", "n_predict": 2});
    let short = infill(&body_hole).json();
    assert_eq!(short["stop_type"], "limit", "{short}");
    assert!(short["timings"]["predicted_n"].as_u64().unwrap() <= 2 + 3, "{short}");
    assert_eq!(short["generation_settings"]["n_predict"], 2);

    // Streamed as llama.cpp streams: content chunks, then `stop: true`.
    let mut streamed_body = plain.clone();
    streamed_body["stream"] = json!(true);
    let streamed = infill(&streamed_body);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    let chunks: Vec<Value> = streamed.events().iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let joined: String = chunks.iter().filter_map(|c| c["content"].as_str()).collect();
    assert_eq!(joined, without["content"].as_str().unwrap());
    assert_eq!(chunks.last().unwrap()["stop"], true, "{chunks:?}");
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["stop"] == false), "{chunks:?}");

    // The token applies; bad bodies get a 400 that says why.
    assert_eq!(post_json(addr, "/infill", None, &plain).status, 401);
    let wrong = post_json(addr, "/infill", Some("not-it"), &plain);
    assert_eq!((wrong.status, wrong.header("www-authenticate")), (401, Some("Bearer")));
    let many_fields: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
    for (bad, why) in [
        (json!({"input_prefix": 5}), "input_prefix"),
        (json!({"prompt": [1, 2]}), "expected a string"),
        (json!({"input_extra": "units.py"}), "input_extra"),
        (json!({"input_prefix": "x = ", "temperature": 9}), "temperature"),
        (json!({"input_prefix": "x = ", "response_fields": many_fields}), "response_fields"),
    ] {
        let r = infill(&bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(why), "{bad}: {}", r.body);
    }
    let r = http_request(addr, "POST", "/infill", &[("Authorization", &format!("Bearer {token}"))], Some("{not json"));
    assert_eq!(r.status, 400, "{}", r.body);

    // OpenAI's `suffix`: a FIM prompt in the model's layout, the raw text
    // back: the same answer and prompt as the FIM prompt written by hand.
    let ask = |body: Value| post_json(addr, "/v1/completions", Some(token), &body);
    let (before, after) = SHAPES.split_at(SHAPES.find("return ").unwrap() + "return ".len());
    let fim = ask(json!({"prompt": before, "suffix": after, "max_tokens": 12, "temperature": 0}));
    assert_eq!(fim.status, 200, "{}", fim.body);
    let fim = fim.json();
    let by_hand =
        ask(json!({"prompt": format!("<|fim_prefix|>{before}<|fim_suffix|>{after}<|fim_middle|>"), "max_tokens": 12, "temperature": 0}))
            .json();
    assert_eq!(fim["choices"][0]["text"], by_hand["choices"][0]["text"], "{fim} {by_hand}");
    assert_eq!(fim["usage"]["prompt_tokens"], by_hand["usage"]["prompt_tokens"]);
    assert!(fim["choices"][0]["text"].as_str().unwrap().contains("radius"), "{fim}");
    let r = ask(json!({"prompt": [1, 2], "suffix": "x"}));
    assert_eq!(r.status, 400, "{}", r.body);
}

/// [`curl_like_llama_vim`]'s answer as it came.
fn curl_like_llama_vim_raw(url: &str, token: &str, body: &Value) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--request", "POST", "--url", url, "--header", "Content-Type: application/json"])
        .args(["--header", &format!("Authorization: Bearer {token}"), "--data", &body.to_string()])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_model_without_fim_refuses_a_suffix_and_still_infills_by_continuing_the_prefix() {
    let home = support::linked_home();
    let (_serve, addr) = support::serve::cria_serve(home.path(), SMOLLM2, &["--context-length", "1024"], &[]);
    let r = post_json(addr, "/v1/completions", None, &json!({"prompt": "def add(a, b):\n    return ", "suffix": "\n"}));
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("fill-in-the-middle"), "{message}");
    // `/infill` runs the pipeline, whose prompt for such a model is the text before the cursor.
    let answer = post_json(
        addr,
        "/infill",
        None,
        &json!({"input_prefix": "def add(a, b):\n", "prompt": "    return ", "input_suffix": "\n", "filename": "add.py", "n_predict": 8}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();
    assert_eq!(answer["stop"], true);
    assert!(answer["tokens_evaluated"].as_u64().unwrap() > 5 && answer["timings"]["predicted_n"].as_u64().unwrap() >= 1, "{answer}");
}
