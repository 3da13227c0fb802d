//! Remote backends and `cria serve`, end to end with real processes on
//! loopback: the language server pointed at `cria serve` and at llama.cpp's
//! `llama-server` (built by scripts/build-llama-cpp, cached), the HTTP API
//! of `cria serve` itself, and every failure path (engine down, too slow,
//! 401, malformed answer) against a scripted fake engine: each gives an
//! empty completion and a `cria/status` error, and the server keeps serving.

#[path = "../server/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cria::engine::gguf::GgufFile;
use cria::engine::Tokenizer;
use serde_json::{json, Value};
use support::http::{free_port, post_json, request, wait_healthy, FakeEngine, Reply};
use support::lsp_client::LspClient;
use support::serve::{cria_serve, Running};

const LONG: Duration = Duration::from_secs(120);
const SMOLLM2: &str = "smollm2-135m-instruct";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct";


/// llama.cpp's server with a model, built (or taken from the cache) by
/// scripts/build-llama-cpp.
fn llama_server(model: &Path, args: &[&str]) -> (Running, SocketAddr) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-llama-cpp");
    let built = Command::new(&script).stderr(Stdio::inherit()).output().expect("scripts/build-llama-cpp runs");
    assert!(built.status.success(), "scripts/build-llama-cpp failed");
    let bin = String::from_utf8_lossy(&built.stdout).lines().last().expect("the bin folder").trim().to_string();
    let port = free_port();
    let child = Command::new(Path::new(&bin).join("llama-server"))
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-c", "2048", "-np", "1", "-t", "2"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("llama-server starts");
    let running = Running(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(wait_healthy(addr, "/health", LONG), "llama-server did not become healthy on {addr}");
    (running, addr)
}

/// A language server whose model runs on `backend`; waits until it is ready.
fn remote_lsp(home: &Path, model: &str, backend: Value, extra: Value, env: &[(&str, &str)]) -> LspClient {
    // Loopback engines: never through a proxy the environment may name.
    let mut env = env.to_vec();
    env.extend([("NO_PROXY", "127.0.0.1,localhost"), ("no_proxy", "127.0.0.1,localhost")]);
    let mut c = LspClient::start_with_env(home, &[], &env);
    let mut options = json!({"model": model, "backend": backend, "latencyBudgetMs": 60000, "maxTokens": 16});
    if let (Value::Object(o), Value::Object(e)) = (&mut options, extra) {
        o.extend(e);
    }
    c.initialize(json!({"textDocument": {"inlineCompletion": {}}}), options);
    let status = c.wait_model(LONG);
    assert_eq!(status["state"], "ready", "{status}");
    c
}

fn inline_text(answer: &Value) -> String {
    answer["result"]["items"][0]["insertText"].as_str().unwrap_or_default().to_string()
}

/// The next `cria/status` sent after a completion (a loading status that
/// repeats the last numbers is not one).
fn completion_status(c: &mut LspClient) -> Value {
    c.wait_for(Duration::from_secs(30), "cria/status after a completion", |m| {
        let p = &m["params"];
        m["method"] == "cria/status" && ((p["state"] == "ready" && p["lastLatencyMs"].is_number()) || p["state"] == "error")
    })["params"]
        .clone()
}

const ADD: &str = "def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n    return";
const FIM_DOC: &str = "import math\n\n\ndef circle_area(radius):\n    return \n\n\nprint(circle_area(2.0))\n";

#[test]
fn cria_serve_speaks_the_openai_api_with_a_token_streaming_and_a_slot_per_client() {
    let home = support::linked_home();
    let token = "serve-secret";
    let (_serve, addr) = cria_serve(home.path(), SMOLLM2, &["--context-length", "1024", "--slots", "2", "--token-env", "CRIA_TEST_SERVE_TOKEN"], &[("CRIA_TEST_SERVE_TOKEN", token)]);

    let health = request(addr, "GET", "/health", &[], None);
    assert_eq!((health.status, health.json()["status"].clone()), (200, json!("ok")), "health needs no token");
    let denied = request(addr, "GET", "/v1/models", &[], None);
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["error"]["type"], "authentication_error");
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    let wrong = post_json(addr, "/v1/completions", Some("not-it"), &json!({"prompt": "x"}));
    assert_eq!(wrong.status, 401);
    let models = request(addr, "GET", "/v1/models", &[("Authorization", &format!("Bearer {token}"))], None);
    assert_eq!(models.json()["data"][0]["id"], SMOLLM2, "{}", models.body);

    // Text and token ids give the same greedy answer.
    let ask = |prompt: Value, user: &str, stream: bool| {
        post_json(addr, "/v1/completions", Some(token), &json!({"prompt": prompt, "max_tokens": 12, "temperature": 0, "user": user, "stream": stream, "stream_options": {"include_usage": true}}))
    };
    let whole = ask(json!(ADD), "alice", false);
    assert_eq!(whole.status, 200, "{}", whole.body);
    let whole = whole.json();
    let text = whole["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(!text.trim().is_empty(), "{whole}");
    assert!(["stop", "length"].contains(&whole["choices"][0]["finish_reason"].as_str().unwrap()));
    assert_eq!(whole["object"], "text_completion");
    let tok = Tokenizer::from_gguf(&GgufFile::open(&support::smollm2()).unwrap()).unwrap();
    let mut ids: Vec<u32> = tok.bos().filter(|_| tok.add_bos()).into_iter().collect();
    ids.extend(tok.encode(ADD).unwrap());
    assert_eq!(whole["usage"]["prompt_tokens"], ids.len());
    let by_ids = ask(json!(ids), "alice", false).json();
    assert_eq!(by_ids["choices"][0]["text"], text.as_str());
    assert_eq!(by_ids["usage"]["prompt_tokens_details"]["cached_tokens"], ids.len() - 1, "alice's slot kept her prompt");

    // Streaming: pieces that add up to the same text, the finish, usage, [DONE].
    let streamed = ask(json!(ADD), "alice", true);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    let events = streamed.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{}", streamed.body);
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(joined, text);
    assert!(chunks.len() >= 3, "text in pieces: {events:?}");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"].is_string()));
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], ids.len());

    // Two slots: bob's prompt does not wipe alice's; a third client takes
    // the slot used longest ago (bob's).
    let cached = |r: Value| r["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    let bob = "fn main() {\n    let greeting = \"hello\";\n    println!(";
    ask(json!(bob), "bob", false);
    assert_eq!(cached(ask(json!(ADD), "alice", false).json()), ids.len() as u64 - 1);
    ask(json!("SELECT name FROM users WHERE"), "carol", false);
    assert!(cached(ask(json!(bob), "bob", false).json()) < 5, "bob's slot went to carol");

    // Bad requests are refused with a reason; the server goes on.
    for bad in [json!({"max_tokens": 4}), json!({"prompt": [4_000_000_000u64]}), json!({"prompt": "x", "n": 2}), json!({"prompt": "x", "suffix": "y"}), json!({"prompt": []})] {
        let r = post_json(addr, "/v1/completions", Some(token), &bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
    let r = request(addr, "POST", "/v1/completions", &[("Authorization", &format!("Bearer {token}"))], Some("{not json"));
    assert_eq!(r.status, 400);
    assert_eq!(request(addr, "GET", "/nowhere", &[], None).status, 404);
    assert_eq!(ask(json!(ADD), "alice", false).json()["choices"][0]["text"], text.as_str());
}

#[test]
fn the_language_server_gives_the_same_suggestion_through_cria_serve_as_embedded() {
    let home = support::linked_home();
    let (_serve, addr) = cria_serve(home.path(), SMOLLM2, &["--context-length", "1024", "--slots", "2"], &[]);
    let uri = "file:///work/numbers.py";
    let text = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    ";

    let mut embedded = remote_lsp(home.path(), SMOLLM2, json!({"kind": "embedded"}), json!({}), &[]);
    embedded.open(uri, "python", text);
    let expected = inline_text(&embedded.inline_completion(uri, 5, 4, LONG));
    assert!(!expected.trim().is_empty());
    embedded.shutdown();

    let backend = json!({"kind": "remote", "url": format!("http://{addr}/v1")});
    let mut c = remote_lsp(home.path(), SMOLLM2, backend, json!({}), &[]);
    c.open(uri, "python", text);
    assert_eq!(inline_text(&c.inline_completion(uri, 5, 4, LONG)), expected, "the same prompt, the same greedy answer");
    let status = completion_status(&mut c);
    assert_eq!(status["state"], "ready", "{status}");
    let prompt = status["promptTokens"].as_u64().unwrap();
    // Typing on (something other than the suggestion): a new prompt that
    // shares all but its end with the last one.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2},
               "contentChanges": [{"range": {"start": {"line": 5, "character": 4}, "end": {"line": 5, "character": 4}}, "text": "# "}]}),
    );
    c.inline_completion(uri, 5, 6, LONG);
    let status = completion_status(&mut c);
    let reused = status["reusedTokens"].as_u64().unwrap();
    assert!(reused + 3 >= prompt && reused > 10, "cria serve kept this editor's prefix ({prompt} tokens before): {status}");
    c.shutdown();
}

#[test]
fn the_language_server_completes_through_llama_server_in_every_flavour() {
    let home = support::linked_home();
    let key = "llama-secret";
    let (_llama, addr) = llama_server(&support::qwen(), &["--api-key", key]);
    let env = [("CRIA_TEST_LLAMA_KEY", key)];
    let url = format!("http://{addr}");
    let uri = "file:///work/shapes.py";
    let flavours = [
        json!({"kind": "remote", "url": url, "apiKeyEnv": "CRIA_TEST_LLAMA_KEY"}),
        json!({"kind": "remote", "url": url, "apiKeyEnv": "CRIA_TEST_LLAMA_KEY", "prompt": "text"}),
        json!({"kind": "remote", "url": url, "apiKeyEnv": "CRIA_TEST_LLAMA_KEY", "flavour": "llamacpp-infill"}),
    ];
    let mut c = remote_lsp(home.path(), QWEN, flavours[0].clone(), json!({"maxTokens": 24}), &env);
    c.open(uri, "python", FIM_DOC);
    for (i, backend) in flavours.iter().enumerate() {
        if i > 0 {
            c.notify("workspace/didChangeConfiguration", json!({"settings": {"cria": {"backend": backend}}}));
            c.wait_for(LONG, "the new backend", |m| m["method"] == "cria/status" && m["params"]["state"] == "loading");
            assert_eq!(c.wait_model(LONG)["state"], "ready");
        }
        let insert = inline_text(&c.inline_completion(uri, 4, 11, LONG));
        // (llama.cpp's kernels differ from candle's, and greedy answers with
        // them: only the use of the parameter, the FIM part, is checked.)
        assert!(insert.contains("radius"), "{backend}: the FIM answer uses the parameter: {insert:?}");
        let status = completion_status(&mut c);
        assert_eq!(status["state"], "ready", "{backend}: {status}");
    }

    // The wrong key: llama-server answers 401, the editor gets nothing and
    // an error status naming the variable; the server keeps serving.
    let mut wrong = remote_lsp(home.path(), QWEN, flavours[0].clone(), json!({}), &[("CRIA_TEST_LLAMA_KEY", "wrong")]);
    wrong.open(uri, "python", FIM_DOC);
    assert_eq!(wrong.inline_completion(uri, 4, 11, LONG)["result"], json!({"items": []}));
    let status = completion_status(&mut wrong);
    assert_eq!(status["state"], "error");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("401") && message.contains("CRIA_TEST_LLAMA_KEY") && !message.contains("wrong"), "{message}");
    wrong.shutdown();
    c.shutdown();
}

#[test]
fn engine_failures_give_empty_completions_an_error_status_and_a_server_that_keeps_serving() {
    let home = support::linked_home();
    let good = json!({"choices": [{"text": "a * b", "index": 0, "finish_reason": null}]}).to_string();
    let done = json!({"choices": [{"text": "", "index": 0, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 5}}}).to_string();
    let fake = FakeEngine::start(vec![
        Reply::Status(401, r#"{"error": {"message": "Invalid API Key", "type": "authentication_error"}}"#.into()),
        Reply::Events(vec!["{\"choices\": [{\"text\": ".into()]),
        Reply::Silent(Duration::from_secs(20)),
        Reply::Events(vec![good, done, "[DONE]".into()]),
        Reply::Slow { text: "x{i} = {i}\n    ".into(), every: Duration::from_millis(100), count: 200 },
    ]);
    let backend = json!({"kind": "remote", "url": fake.url(), "apiKeyEnv": "CRIA_TEST_FAKE_KEY", "model": "served-name"});
    let budget = 1500;
    let mut c = remote_lsp(home.path(), SMOLLM2, backend, json!({"latencyBudgetMs": budget}), &[("CRIA_TEST_FAKE_KEY", "fake-secret")]);
    let uri = "file:///work/numbers.py";
    // The end of a `return` line asks for one line; an empty line in a body, for several.
    c.open(uri, "python", "def multiply(a, b):\n    return ");
    let body = "file:///work/body.py";
    c.open(body, "python", "def setup():\n    \n");

    let expect_error = |c: &mut LspClient, what: &str| {
        let asked = Instant::now();
        let answer = c.inline_completion(uri, 1, 11, LONG);
        assert!(asked.elapsed() < Duration::from_millis(budget + 1000), "{what}: answered within the budget ({:?})", asked.elapsed());
        assert_eq!(answer["result"], json!({"items": []}), "{what}: an empty completion");
        let status = completion_status(c);
        assert_eq!(status["state"], "error", "{what}: {status}");
        let message = status["message"].as_str().unwrap().to_string();
        assert!(!message.contains("fake-secret"), "the key never shows: {message}");
        message
    };
    let m = expect_error(&mut c, "401");
    assert!(m.contains("401") && m.contains("Invalid API Key") && m.contains("CRIA_TEST_FAKE_KEY"), "{m}");
    let m = expect_error(&mut c, "malformed");
    assert!(m.contains("malformed"), "{m}");
    let m = expect_error(&mut c, "too slow");
    assert!(m.contains("latency budget"), "{m}");

    // A good answer clears the error.
    let answer = c.inline_completion(uri, 1, 11, LONG);
    assert_eq!(inline_text(&answer), "a * b");
    let status = completion_status(&mut c);
    assert_eq!((status["state"].as_str(), status["reusedTokens"].as_u64()), (Some("ready"), Some(5)), "{status}");

    // An engine slower than the budget: complete lines by then are shown,
    // and the stream is closed at once.
    let asked = Instant::now();
    let answer = c.inline_completion(body, 1, 4, LONG);
    let text = inline_text(&answer);
    assert!(text.starts_with("x0 = 0\n    x1 = 1\n"), "{answer}");
    assert_eq!(completion_status(&mut c)["state"], "ready", "what came within the budget is a good answer");
    let left = (0..50)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            fake.received().last().and_then(|r| r.client_left)
        })
        .expect("the stream was closed");
    assert!(left - asked < Duration::from_millis(budget + 1000), "closed {:?} after the request", left - asked);

    // What went over the wire: the key in the header only, token ids, a stream.
    let sent = fake.received();
    assert!(sent[0].head.contains("authorization: Bearer fake-secret") || sent[0].head.contains("Authorization: Bearer fake-secret"), "{}", sent[0].head);
    assert!(sent[0].head.starts_with("POST /v1/completions "), "{}", sent[0].head);
    let body: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert!(body["prompt"].as_array().is_some_and(|p| p.iter().all(Value::is_u64)), "{body}");
    assert_eq!((body["stream"].clone(), body["model"].clone(), body["max_tokens"].clone()), (json!(true), json!("served-name"), json!(16)));

    // The engine down: nothing listens on the port.
    let down = json!({"kind": "remote", "url": format!("http://127.0.0.1:{}", free_port())});
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"backend": down}}));
    c.wait_for(LONG, "the new backend", |m| m["method"] == "cria/status" && m["params"]["state"] == "loading");
    assert_eq!(c.wait_model(LONG)["state"], "ready");
    let m = expect_error(&mut c, "engine down");
    assert!(m.contains("cannot reach"), "{m}");

    // Still serving.
    assert_eq!(c.document_text(uri), json!("def multiply(a, b):\n    return "));
    c.shutdown();
}
