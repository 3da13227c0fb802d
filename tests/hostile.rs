//! The attack suite (issue #14): each hostile input seen against cria,
//! replayed against the real binary, with the behaviour it must keep: the
//! server alive and answering, the document equal to the client's, a clear
//! error, memory bounded (peak RSS from `/proc/<pid>/status`), `/health`
//! answering within a second. Hostile model files are generated here
//! (`support::gguf_writer`); everything runs on loopback, bounded in count
//! and time. Run with `CRIA_TEST_BIN=/path/to/old/cria` to see a build fail.

#[path = "../server/tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::gguf_writer::{kind, tiny_llama, Gguf, Val};
use support::http::{request, try_request};
use support::lsp_client::{frame, LspClient};
use support::memory_of;

const LONG: Duration = Duration::from_secs(180);
const MIB: u64 = 1 << 20;

/// A language server with no model (none is needed to read frames), its
/// log in `log` when given.
fn bare_lsp(home: &Path, log: Option<&Path>) -> LspClient {
    let stderr = log.map_or(Stdio::inherit(), |p| Stdio::from(File::create(p).expect("a log file")));
    let mut c = LspClient::start_with_stderr(home, &[], &[("CRIA_LOG", "cria=info")], stderr);
    c.initialize(json!({}), json!({"model": "/nonexistent.gguf"}));
    c
}

/// Asserts the server answers a request with its own id and a result.
fn assert_alive(c: &mut LspClient) {
    let id = c.request("cria/documentText", json!({"uri": "file:///nothing-here.py"}));
    let answer = c.response(id, Duration::from_secs(30));
    assert_eq!(answer.get("result"), Some(&Value::Null), "{answer}");
}

fn send_in_pieces(c: &mut LspClient, filler: u8, total: usize) {
    let piece = vec![filler; MIB as usize];
    let mut left = total;
    while left > 0 {
        let n = left.min(piece.len());
        c.send_raw(&piece[..n]);
        left -= n;
    }
}

fn peak_rss(c: &LspClient) -> u64 {
    memory_of(c.pid()).0
}

fn change(c: &mut LspClient, uri: &str, version: i64, range: Value, text: &str) {
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"range": range, "text": text}]}));
}

fn range(start_line: Value, end_line: Value) -> Value {
    json!({"start": {"line": start_line, "character": 0}, "end": {"line": end_line, "character": 0}})
}

fn items(answer: &Value) -> Vec<Value> {
    answer["result"].as_array().or_else(|| answer["result"]["items"].as_array()).cloned().unwrap_or_else(|| panic!("a list: {answer}"))
}

// ---- 1. a change whose range is not a range ----

#[test]
fn lsp_a_change_whose_range_is_not_a_range_is_refused_and_the_document_goes_stale_until_repaired() {
    let home = support::linked_home();
    let mut c = LspClient::start(home.path(), &[]);
    c.initialize(json!({}), json!({"model": "smollm2-135m-instruct", "latencyBudgetMs": 180000, "maxTokens": 8}));
    assert_eq!(c.wait_model(LONG)["state"], "ready");
    let uri = "file:///work/stale.py";
    let text = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    ";
    c.open(uri, "python", text);
    assert_eq!(items(&c.inline_completion(uri, 5, 4, LONG)).len(), 1, "a suggestion before");

    for (version, line) in [(2, json!(-1)), (3, json!(1u64 << 32)), (4, json!("1"))] {
        change(&mut c, uri, version, range(line.clone(), json!(0)), "REPLACED");
        assert_eq!(c.document_text(uri), json!(text), "line {line}: the document is left as it was");
    }
    let logged = c.wait_for(Duration::from_secs(30), "a logMessage about the refused change", |m| m["method"] == "window/logMessage");
    assert_eq!(logged["params"]["type"], 2, "a warning: {logged}");
    assert!(logged["params"]["message"].as_str().unwrap().contains("refused"), "{logged}");
    // Stale: ranged changes refer to a text the server does not have.
    change(&mut c, uri, 5, range(json!(0), json!(0)), "# ");
    assert_eq!(c.document_text(uri), json!(text));
    assert_eq!(items(&c.inline_completion(uri, 5, 4, LONG)), Vec::<Value>::new(), "no suggestions while stale");
    // A whole-text change repairs it.
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": 6}, "contentChanges": [{"text": text}]}));
    assert_eq!(c.document_text(uri), json!(text));
    assert_eq!(items(&c.inline_completion(uri, 5, 4, LONG)).len(), 1, "suggestions again after the repair");
    c.shutdown();
}

// ---- 2. frames of the wrong length, too large or without header ----

#[test]
fn lsp_a_bad_frame_never_spoils_the_frames_after_it() {
    let home = tempfile::tempdir().unwrap();
    let mut c = bare_lsp(home.path(), None);
    let cases: [(&str, Vec<u8>); 7] = [
        ("a Content-Length above the cap, then a short body", b"Content-Length: 1099511627776\r\n\r\n{}".to_vec()),
        ("a Content-Length too large for a number", b"Content-Length: 999999999999999999999999\r\n\r\n{}".to_vec()),
        ("a body shorter than its Content-Length", b"Content-Length: 90\r\n\r\n{\"jsonrpc\":\"2.0\"}".to_vec()),
        ("a body longer than its Content-Length", br#"Content-Length: 5

{"jsonrpc":"2.0","method":"initialized","params":{}}"#.to_vec()),
        ("a frame without header", br#"{"jsonrpc":"2.0","id":99,"method":"shutdown"}"#.to_vec()),
        ("a Content-Length that is not a number", b"Content-Length: lots\r\n\r\n".to_vec()),
        ("blank lines and junk", b"\r\n\r\njunk\r\n\r\n".to_vec()),
    ];
    for (i, (what, bad)) in cases.iter().enumerate() {
        c.send_raw(bad);
        let uri = format!("file:///work/after-{i}.py");
        let text = format!("# opened after {what}\n");
        c.open(&uri, "python", &text);
        assert_eq!(c.document_text(&uri), json!(text), "after {what}");
    }
    // Every bad frame got a parse error, and nothing else did.
    let errors = c.received.iter().filter(|m| m["error"]["code"] == -32700).count();
    assert!((cases.len()..=2 * cases.len()).contains(&errors), "{errors} parse errors for {} bad frames", cases.len());
    c.shutdown();
}

#[test]
fn lsp_an_oversized_body_is_skipped_in_bounded_memory() {
    let home = tempfile::tempdir().unwrap();
    let mut c = bare_lsp(home.path(), None);
    let size = 80 * MIB as usize;
    c.send_raw(format!("Content-Length: {size}\r\n\r\n").as_bytes());
    send_in_pieces(&mut c, b'x', size);
    let error = c.wait_for(Duration::from_secs(60), "a parse error", |m| m["error"]["code"] == -32700);
    assert!(error["error"]["message"].as_str().unwrap().contains("64 MiB"), "{error}");
    assert_alive(&mut c);
    let peak = peak_rss(&c);
    assert!(peak < 64 * MIB, "peak RSS {} MiB reading an 80 MiB body", peak / MIB);
    c.shutdown();
}

// ---- 3. invalid UTF-8 in a header ----

#[test]
fn lsp_invalid_utf8_in_a_header_is_a_parse_error_and_the_session_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let mut c = bare_lsp(home.path(), None);
    c.send_raw(b"Content-Type: application/vscode-jsonrpc; charset=\xff\xfe\r\nContent-Length: 2\r\n\r\n{}");
    c.wait_for(Duration::from_secs(30), "a parse error", |m| m["error"]["code"] == -32700 && m["id"].is_null());
    c.send_raw(b"Content-Length\xc3: 2\r\n\r\n");
    c.wait_for(Duration::from_secs(30), "another parse error", |m| m["error"]["code"] == -32700 && m["id"].is_null());
    assert_alive(&mut c);
    c.shutdown();
}

// ---- 4. a header line without end ----

#[test]
fn lsp_a_header_line_without_end_is_cut_at_8_kib() {
    let home = tempfile::tempdir().unwrap();
    let mut c = bare_lsp(home.path(), None);
    send_in_pieces(&mut c, b'a', 128 * MIB as usize);
    c.send_raw(b"\r\n\r\n");
    let error = c.wait_for(Duration::from_secs(60), "a parse error", |m| m["error"]["code"] == -32700);
    assert!(error["error"]["message"].as_str().unwrap().contains("8 KiB"), "{error}");
    assert_alive(&mut c);
    let peak = peak_rss(&c);
    assert!(peak < 64 * MIB, "peak RSS {} MiB reading a 128 MiB header line", peak / MIB);
    c.shutdown();
}

// ---- 5. warnings once per message ----

#[test]
fn lsp_warnings_a_client_causes_per_message_are_rate_limited() {
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("stderr.log");
    let mut c = bare_lsp(home.path(), Some(&log));
    let mut flood = Vec::new();
    for i in 0..5000 {
        flood.extend(frame("{not json"));
        flood.extend(b"no header\r\n\r\n");
        let change = json!({"jsonrpc": "2.0", "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": format!("file:///never-opened-{i}.py"), "version": 1}, "contentChanges": [{"text": "x"}]}});
        flood.extend(frame(&change.to_string()));
        if i % 5 == 0 {
            let ask = json!({"jsonrpc": "2.0", "id": 100_000 + i, "method": "textDocument/inlineCompletion",
                "params": {"textDocument": {"uri": format!("file:///never-opened-{i}.py")}, "position": {"line": 0, "character": 0}, "context": {"triggerKind": 2}}});
            flood.extend(frame(&ask.to_string()));
        }
    }
    c.send_raw(&flood);
    assert_alive(&mut c);
    c.shutdown();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.len() < 64 << 10, "{} bytes of log for 16000 bad messages", logged.len());
    assert!(logged.contains("suppressed"), "the log says lines were left out");
}

// ---- 6. exit codes ----

#[test]
fn lsp_exit_without_shutdown_or_closed_input_exits_1_and_after_shutdown_0() {
    let home = tempfile::tempdir().unwrap();
    let mut c = bare_lsp(home.path(), None);
    c.notify("exit", Value::Null);
    assert_eq!(c.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(1), "exit without shutdown");

    let mut c = bare_lsp(home.path(), None);
    c.close_input();
    assert_eq!(c.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(1), "input closed");

    bare_lsp(home.path(), None).shutdown(); // asserts exit code 0
}

// ---- 8-11. hostile model files, every front end ----

/// Files that once panicked, aborted or took 32x their size, and what the
/// error must name.
fn hostile_models() -> Vec<(&'static str, Gguf, &'static str)> {
    let mut cases = Vec::new();
    let mut g = tiny_llama();
    g.set("general.alignment", Val::U32(0));
    cases.push(("general.alignment = 0", g, "general.alignment"));
    for (what, count) in [("block_count = 2^32 - 1", Val::U32(u32::MAX)), ("block_count = 2^62", Val::U64(1 << 62))] {
        let mut g = tiny_llama();
        g.set("llama.block_count", count);
        cases.push((what, g, "block_count"));
    }
    let mut g = tiny_llama();
    let t = g.tensor_mut("output.weight");
    (t.dims, t.data) = (vec![64, 1 << 62], Vec::new());
    cases.push(("a tensor of 2^62 x 64 with no data", g, "output.weight"));
    let mut g = tiny_llama();
    g.set("junk.array", Val::RawArray { element: kind::U8, len: 32 * MIB, bytes: vec![1; 32 * MIB as usize] });
    cases.push(("a 32 MiB metadata array", g, "memory"));
    cases
}

fn cria(home: &Path, args: &[&str]) -> Output {
    Command::new(support::cria_bin()).args(args).env("CRIA_HOME", home).env_remove("CRIA_LOG").output().expect("cria runs")
}

fn assert_clean_error(what: &str, out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: exit status {:?}; stderr: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{what}: `{needle}` not in {stderr}");
}

#[test]
fn hostile_model_files_are_refused_with_an_error_by_every_front_end() {
    let home = tempfile::tempdir().unwrap();
    let source = home.path().join("x.py");
    std::fs::write(&source, "def f():\n    ").unwrap();
    let location = format!("{}:2:5", source.display());
    for (i, (what, gguf, needle)) in hostile_models().into_iter().enumerate() {
        let path = home.path().join(format!("hostile-{i}.gguf"));
        gguf.write(&path);
        let model = path.to_str().unwrap();
        let out = cria(home.path(), &["complete", "--model", model, &location]);
        assert_clean_error(what, &out, needle);
        let out = cria(home.path(), &["serve", "--model", model, "--listen", "127.0.0.1:0"]);
        assert_clean_error(what, &out, needle);

        let mut c = LspClient::start(home.path(), &[]);
        c.initialize(json!({}), json!({"model": model}));
        let status = c.wait_model(LONG);
        assert_eq!(status["state"], "error", "{what}: {status}");
        assert!(status["message"].as_str().unwrap_or("").contains(needle), "{what}: {status}");
        assert_alive(&mut c);
        let peak = peak_rss(&c);
        assert!(peak < 128 * MIB, "{what}: peak RSS {} MiB", peak / MIB);
        c.shutdown();
    }
}

// ---- 12-16. cria serve ----

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tiny model with a context of 4096, written under `dir`.
fn tiny_model(dir: &Path) -> PathBuf {
    let mut g = tiny_llama();
    g.set("llama.context_length", Val::U32(4096));
    let path = dir.join("tiny.gguf");
    g.write(&path);
    path
}

/// `cria serve` on the tiny model, its log in `dir/serve.log`.
fn serve(dir: &Path, args: &[&str]) -> (Running, SocketAddr) {
    serve_with_env(dir, args, &[])
}

/// `cria serve` as [`serve`], with more environment variables.
fn serve_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Running, SocketAddr) {
    let model = tiny_model(dir);
    let log = File::create(dir.join("serve.log")).unwrap();
    let mut child = Command::new(support::cria_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--model", model.to_str().unwrap(), "--slots", "2", "--threads", "1"])
        .args(args)
        .env("CRIA_HOME", dir)
        .env("CRIA_LOG", "cria=info")
        .env("CRIA_TEST_TOKEN", "the-token")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("cria serve starts");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    (running, support::http::listening_address(stdout, LONG))
}

/// Asserts `/health` answers within a second.
fn assert_healthy_within_1s(addr: SocketAddr, during: &str) {
    let started = Instant::now();
    let answer = try_request(addr, "GET", "/health", &[], None);
    let took = started.elapsed();
    assert!(answer.as_ref().is_ok_and(|r| r.status == 200), "{during}: /health answered {answer:?}");
    assert!(took < Duration::from_secs(1), "{during}: /health took {took:?}");
}

fn completion(addr: SocketAddr, body: &Value) -> (u16, Duration) {
    let started = Instant::now();
    let answer = request(addr, "POST", "/v1/completions", &[], Some(&body.to_string()));
    (answer.status, started.elapsed())
}

#[test]
fn serve_control_token_texts_are_found_in_one_pass_and_health_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let (_serve, addr) = serve(dir.path(), &[]);
    // 4000 control-token texts: a prompt that fits, answered at once.
    let (status, took) = completion(addr, &json!({"prompt": "</s>".repeat(4000), "max_tokens": 1}));
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Two long ones at once, while /health is asked.
    let long = json!({"prompt": "a</s>".repeat(28_000), "max_tokens": 1});
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let long = long.clone();
            std::thread::spawn(move || completion(addr, &long))
        })
        .collect();
    for _ in 0..5 {
        assert_healthy_within_1s(addr, "two long prompts");
        std::thread::sleep(Duration::from_millis(50));
    }
    for client in clients {
        let (status, took) = client.join().unwrap();
        assert_eq!(status, 400);
        assert!(took < Duration::from_secs(2), "refused after {took:?}");
    }
}

#[test]
fn serve_idle_and_slow_connections_are_capped_and_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_serve, addr) = serve(dir.path(), &["--max-connections", "8"]);
    // Slowloris: headers begun, never finished.
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    for _ in 0..3 {
        assert_healthy_within_1s(addr, "40 half-open connections");
    }
    // The last one is closed within the header timeout (10 s), or sooner
    // to make room.
    let last = slow.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = last.read(&mut buf);
    assert!(matches!(read, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"), "closed, not answered: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "closed after {:?}", started.elapsed());
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("connections open (the cap)"), "the cap is logged: {log}");
}

#[test]
fn serve_checks_the_token_before_reading_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let (_serve, addr) = serve(dir.path(), &["--token-env", "CRIA_TEST_TOKEN"]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A body announced but never sent, with a wrong token.
    s.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("an answer before the body");
    assert!(line.starts_with("HTTP/1.1 401"), "{line:?}");
}

#[test]
fn serve_logs_the_user_field_escaped_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (_serve, addr) = serve(dir.path(), &[]);
    let user = format!("eve\nERROR cria: forged line\n{}", "x".repeat(10_000));
    let (status, _) = completion(addr, &json!({"prompt": "hello", "max_tokens": 1, "user": user}));
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let excerpt: String = log.chars().take(600).collect();
    assert!(log.contains("eve\\nERROR"), "the user is logged, escaped: {excerpt}");
    assert!(!log.lines().any(|l| l.starts_with("ERROR cria: forged")), "a forged line: {excerpt}");
    assert!(log.lines().all(|l| l.len() < 2000), "a log line is bounded");
}

/// POSTs a body the server may refuse before reading it all: the body is
/// written on another thread (its errors ignored) while the status is read.
fn post_large(addr: SocketAddr, body: &Value) -> (u16, Duration) {
    let body = body.to_string();
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(body.as_bytes()));
    });
    let mut line = String::new();
    BufReader::new(&mut stream).read_line(&mut line).expect("a status line");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    (status, started.elapsed())
}

#[test]
fn serve_refuses_an_overlong_prompt_early() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, addr) = serve(dir.path(), &[]);
    let (before, _) = memory_of(serve.0.id());
    let (status, took) = post_large(addr, &json!({"prompt": "word ".repeat(380_000), "max_tokens": 1}));
    assert_eq!(status, 400);
    assert!(took < Duration::from_secs(1), "a 1.9 MB prompt refused after {took:?}");
    let (status, took) = completion(addr, &json!({"prompt": "word ".repeat(20_000), "max_tokens": 1}));
    assert_eq!(status, 400, "100 KB of text is more than 4096 tokens");
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    let (after, _) = memory_of(serve.0.id());
    assert!(after.saturating_sub(before) < 64 * MIB, "peak RSS grew by {} MiB", (after - before) / MIB);
    assert_healthy_within_1s(addr, "after long prompts");
}

// ---- 17-18. remote backends ----

/// A language server using the tiny model's tokenizer and a remote engine at `url`.
fn remote_lsp(dir: &Path, url: &str, budget_ms: u64, log: &Path) -> LspClient {
    let model = tiny_model(dir);
    let env = [("NO_PROXY", "127.0.0.1,localhost"), ("no_proxy", "127.0.0.1,localhost"), ("CRIA_LOG", "cria=info")];
    let mut c = LspClient::start_with_stderr(dir, &[], &env, Stdio::from(File::create(log).unwrap()));
    let backend = json!({"kind": "remote", "url": url, "prompt": "text"});
    c.initialize(json!({}), json!({"model": model, "backend": backend, "latencyBudgetMs": budget_ms, "maxTokens": 16}));
    let status = c.wait_model(LONG);
    assert_eq!(status["state"], "ready", "{status}");
    c
}

fn error_status(c: &mut LspClient) -> Value {
    c.wait_for(Duration::from_secs(30), "an error status", |m| m["method"] == "cria/status" && m["params"]["state"] == "error")["params"].clone()
}

#[test]
fn remote_passwords_in_urls_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let log = dir.path().join("lsp.log");
    let mut c = remote_lsp(dir.path(), &format!("http://alice:s3cret@{closed}"), 5000, &log);
    c.open("file:///work/a.py", "python", "def f():\n    ");
    assert_eq!(items(&c.inline_completion("file:///work/a.py", 1, 4, LONG)), Vec::<Value>::new());
    let status = error_status(&mut c);
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("<redacted>@") && !message.contains("s3cret"), "{message}");
    // A bad URL in the settings is shown without its password too.
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"cria": {"backend": {"kind": "remote", "url": "ftp://bob:hunter2@gpu"}}}}));
    let shown = c.wait_for(Duration::from_secs(30), "showMessage", |m| m["method"] == "window/showMessage");
    assert!(!shown.to_string().contains("hunter2"), "{shown}");
    c.shutdown();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("s3cret") && !logged.contains("hunter2"), "{logged}");
}

/// A fake engine that answers every connection with `head`, then `body`
/// pieces until the client goes away.
fn flood_engine(head: &'static str, body: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { return };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let _ = reader.read_exact(&mut vec![0; length]);
                let _ = stream.write_all(head.as_bytes());
                // At most 1 GiB, in case a client never stops reading.
                for i in 0..(1usize << 30) / (64 << 10) {
                    if stream.write_all(&body(i)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn remote_floods_are_cut_off_within_the_budget_and_bounded_memory() {
    let text_event = |_| {
        let event = json!({"choices": [{"text": "a".repeat(64 << 10), "index": 0, "finish_reason": null}]});
        format!("data: {event}\n\n").into_bytes()
    };
    let floods: Vec<(&str, SocketAddr)> = vec![
        ("a 512 MiB JSON body", flood_engine("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 536870912\r\n\r\n{\"choices\":[{\"text\":\"", |_| vec![b'a'; 64 << 10])),
        ("an event that never ends", flood_engine("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {\"choices\":[{\"text\":\"", |_| vec![b'a'; 64 << 10])),
        ("64 MiB of text in events", flood_engine("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", text_event)),
    ];
    for (what, addr) in floods {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("lsp.log");
        let mut c = remote_lsp(dir.path(), &format!("http://{addr}"), 3000, &log);
        c.open("file:///work/a.py", "python", "def f():\n    ");
        let started = Instant::now();
        let answer = c.inline_completion("file:///work/a.py", 1, 4, LONG);
        let took = started.elapsed();
        assert!(answer.get("result").is_some(), "{what}: {answer}");
        assert!(took < Duration::from_secs(5), "{what}: answered after {took:?} with a budget of 3 s");
        let peak = peak_rss(&c);
        assert!(peak < 192 * MIB, "{what}: peak RSS {} MiB", peak / MIB);
        assert_alive(&mut c);
        c.shutdown();
    }
}

#[test]
fn lsp_a_job_that_panics_in_the_engine_is_reported_and_the_next_one_is_served() {
    let home = support::linked_home();
    // Debug builds only: the engine's first job panics on purpose.
    let mut c = LspClient::start_with_env(home.path(), &[], &[("CRIA_TEST_ENGINE_PANIC_ON_JOB", "1")]);
    c.initialize(json!({}), json!({"model": "smollm2-135m-instruct", "latencyBudgetMs": 180000, "maxTokens": 8}));
    assert_eq!(c.wait_model(LONG)["state"], "ready");
    let uri = "file:///work/panic.py";
    c.open(uri, "python", "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    ");
    let first = c.inline_completion(uri, 5, 4, LONG);
    assert_eq!(items(&first).len(), 0, "the failed job answers nothing: {first}");
    let status = c.wait_for(LONG, "an error status", |m| m["method"] == "cria/status" && m["params"]["state"] == "error");
    let message = status["params"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("panics on purpose") && message.contains("reset"), "{message}");
    // The engine thread lives on, its caches emptied: the next request is served.
    let second = c.inline_completion(uri, 5, 4, LONG);
    assert_eq!(items(&second).len(), 1, "{second}");
    c.wait_for(LONG, "ready again", |m| m["method"] == "cria/status" && m["params"]["state"] == "ready");
    c.shutdown();
}

#[test]
fn serve_reports_a_job_that_panicked_on_health_and_serves_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    // Debug builds only: the engine's first job panics on purpose.
    let (_serve, addr) = serve_with_env(dir.path(), &[], &[("CRIA_TEST_ENGINE_PANIC_ON_JOB", "1")]);
    let body = json!({"prompt": "def add(a, b):\n    return", "max_tokens": 4});
    let (status, _) = completion(addr, &body);
    assert!(status >= 500, "the failed job is an error: {status}");
    let health = request(addr, "GET", "/health", &[], None);
    assert_eq!(health.status, 503, "{:?}", health.json());
    assert!(health.json()["message"].as_str().unwrap_or_default().contains("panics on purpose"), "{:?}", health.json());
    let (status, _) = completion(addr, &body);
    assert_eq!(status, 200, "the next job is served");
    assert_healthy_within_1s(addr, "after a good job");
}
