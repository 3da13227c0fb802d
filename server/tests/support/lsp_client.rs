//! The one LSP client of the tests: speaks Content-Length framed JSON-RPC
//! to the real `cria` binary over its stdio, or to the server running in
//! this process over an in-memory `tokio::io::duplex` pipe (with a
//! scripted generator instead of a model). It answers the server's own
//! requests (`window/workDoneProgress/create`...) as an editor does, keeps
//! every message it receives for later assertions, and can send raw bytes
//! (malformed input) and wait for messages with a timeout.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One message as a Content-Length frame.
pub fn frame(body: &str) -> Vec<u8> {
    format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// Reads one Content-Length frame's body; `None` at the end of the stream.
/// Header names are matched without regard to case, and blank lines before
/// a header are skipped.
pub fn read_frame(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            if length.is_some() {
                break;
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// What an editor answers to a request from the server.
fn reply_to(method: &str) -> Value {
    match method {
        "workspace/configuration" => json!([]),
        _ => Value::Null,
    }
}

type Writer = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

fn write_to(writer: &Writer, bytes: &[u8]) {
    let mut writer = writer.lock().unwrap();
    let writer = writer.as_mut().expect("the server's input is open");
    writer.write_all(bytes).expect("the server reads its input");
    writer.flush().unwrap();
}

/// Where the server runs.
enum Server {
    /// The `cria lsp` binary.
    Process(Child),
    /// `cria::protocol::run_session_with_generator` on a thread of this
    /// process; the thread's result is how the session ended.
    InProcess(Option<std::thread::JoinHandle<cria::protocol::SessionEnd>>),
}

/// A running server and the messages it sent.
pub struct LspClient {
    server: Server,
    writer: Writer,
    incoming: Receiver<Value>,
    /// Every message received so far, in order.
    pub received: Vec<Value>,
    unread: VecDeque<Value>,
    next_id: i64,
}

impl LspClient {
    /// Starts `cria lsp` with `CRIA_HOME` set to `home`.
    pub fn start(home: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_env(home, extra_args, &[])
    }

    /// Starts `cria lsp` with `CRIA_HOME` set to `home` and more variables.
    pub fn start_with_env(home: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with_stderr(home, extra_args, env, Stdio::inherit())
    }

    /// [`Self::start_with_env`], with the server's log going to `stderr`.
    /// The log level is `cria=info` unless `env` sets `CRIA_LOG`.
    pub fn start_with_stderr(home: &Path, extra_args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut child = Command::new(super::cria_bin())
            .arg("lsp")
            .args(extra_args)
            .env("CRIA_LOG", "cria=info")
            .envs(env.iter().copied())
            .env("CRIA_HOME", home)
            .env("HF_HUB_CACHE", home.join("hub"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cria starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        Self::connect(Server::Process(child), Box::new(stdin), Box::new(stdout))
    }

    /// Runs the server in this process, on a runtime of its own, over an
    /// in-memory pipe; every generation is `generator`'s (the `model`
    /// setting's file is read only for its tokenizer).
    pub fn in_process(config: cria::protocol::ServerConfig, generator: cria::completion::Generator) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
        let handle = runtime.handle().clone();
        let (to_server, server_in) = tokio::io::duplex(1 << 16);
        let (server_out, from_server) = tokio::io::duplex(1 << 16);
        let session = std::thread::Builder::new()
            .name("cria-session".into())
            .spawn(move || runtime.block_on(cria::protocol::run_session_with_generator(server_in, server_out, config, generator)))
            .expect("a thread for the session");
        let writer = Blocking { handle: handle.clone(), io: to_server };
        let reader = Blocking { handle, io: from_server };
        Self::connect(Server::InProcess(Some(session)), Box::new(writer), Box::new(reader))
    }

    /// A client over a server's input and output: a thread reads frames,
    /// answers the server's requests at once and passes every message on.
    fn connect(server: Server, input: Box<dyn Write + Send>, output: Box<dyn Read + Send>) -> Self {
        let writer: Writer = Arc::new(Mutex::new(Some(input)));
        let replies = writer.clone();
        let (tx, incoming) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(output);
            while let Some(body) = read_frame(&mut reader) {
                let message: Value = serde_json::from_slice(&body).expect("the server sends JSON");
                if let (Some(method), Some(id)) = (message["method"].as_str(), message.get("id")) {
                    let answer = json!({"jsonrpc": "2.0", "id": id, "result": reply_to(method)});
                    if let Some(input) = replies.lock().unwrap().as_mut() {
                        let _ = input.write_all(&frame(&answer.to_string())).and_then(|()| input.flush());
                    }
                }
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        Self { server, writer, incoming, received: Vec::new(), unread: VecDeque::new(), next_id: 1 }
    }

    /// The server process (panics for a server in this process).
    pub fn process(&mut self) -> &mut Child {
        match &mut self.server {
            Server::Process(child) => child,
            Server::InProcess(_) => panic!("the server runs in this process"),
        }
    }

    /// The server process's id (panics for a server in this process).
    pub fn pid(&self) -> u32 {
        match &self.server {
            Server::Process(child) => child.id(),
            Server::InProcess(_) => panic!("the server runs in this process"),
        }
    }

    /// Writes raw bytes (for malformed-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        write_to(&self.writer, bytes);
    }

    /// Closes the server's input, as an editor that goes away does.
    pub fn close_input(&mut self) {
        *self.writer.lock().unwrap() = None;
    }

    /// Waits up to `timeout` for the server process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process().try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits up to `timeout` for the in-process session to end.
    pub fn session_end(&mut self, timeout: Duration) -> Option<cria::protocol::SessionEnd> {
        let Server::InProcess(session) = &mut self.server else { panic!("the server is a process") };
        let deadline = Instant::now() + timeout;
        while !session.as_ref()?.is_finished() {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(session.take()?.join().expect("the session does not panic"))
    }

    /// Sends one message.
    pub fn send(&mut self, message: &Value) {
        self.send_raw(&frame(&message.to_string()));
    }

    /// Sends a request and returns its id.
    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a request and waits for its result; panics on an error answer.
    pub fn call(&mut self, method: &str, params: Value, timeout: Duration) -> Value {
        let id = self.request(method, params);
        let answer = self.response(id, timeout);
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next message, if one comes before `deadline`.
    fn next(&mut self, deadline: Instant) -> Option<Value> {
        if let Some(m) = self.unread.pop_front() {
            return Some(m);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.incoming.recv_timeout(left) {
            Ok(m) => {
                self.received.push(m.clone());
                Some(m)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its output (crashed?)"),
        }
    }

    /// The first message matching `pred` within `timeout`, if any; other
    /// messages stay queued for later waits.
    pub fn try_wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let found = loop {
            match self.next(deadline) {
                Some(m) if pred(&m) => break Some(m),
                Some(m) => skipped.push(m),
                None => break None,
            }
        };
        for s in skipped.into_iter().rev() {
            self.unread.push_front(s);
        }
        found
    }

    /// Waits for the first message matching `pred`; other messages stay
    /// queued for later waits. Panics after `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        match self.try_wait_for(timeout, pred) {
            Some(m) => m,
            None => panic!(
                "timed out after {timeout:?} waiting for {what}; received: {:#?}",
                self.received.iter().rev().take(10).collect::<Vec<_>>()
            ),
        }
    }

    /// Waits for the response to request `id`.
    pub fn response(&mut self, id: i64, timeout: Duration) -> Value {
        self.wait_for(timeout, &format!("response {id}"), |m| m.get("id") == Some(&json!(id)) && m.get("method").is_none())
    }

    /// initialize + initialized; returns the initialize result.
    pub fn initialize(&mut self, capabilities: Value, options: Value) -> Value {
        let id = self.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": capabilities, "initializationOptions": options}),
        );
        let result = self.response(id, Duration::from_secs(30));
        self.notify("initialized", json!({}));
        result["result"].clone()
    }

    /// Waits until `cria/status` says the model is ready (or failed).
    pub fn wait_model(&mut self, timeout: Duration) -> Value {
        self.wait_for(timeout, "cria/status ready or error", |m| {
            m["method"] == "cria/status" && (m["params"]["state"] == "ready" || m["params"]["state"] == "error")
        })["params"]
            .clone()
    }

    /// `cria/documentText`.
    pub fn document_text(&mut self, uri: &str) -> Value {
        let id = self.request("cria/documentText", json!({"uri": uri}));
        self.response(id, Duration::from_secs(30))["result"].clone()
    }

    /// Opens a document.
    pub fn open(&mut self, uri: &str, language: &str, text: &str) {
        self.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}));
    }

    /// Asks for an inline completion (automatic trigger); returns the id.
    pub fn ask_inline(&mut self, uri: &str, line: u32, character: u32) -> i64 {
        self.request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}),
        )
    }

    /// Asks for an inline completion and waits for the answer.
    pub fn inline_completion(&mut self, uri: &str, line: u32, character: u32, timeout: Duration) -> Value {
        let id = self.ask_inline(uri, line, character);
        self.response(id, timeout)
    }

    /// shutdown + exit, and waits for the process (or the session) to end.
    pub fn shutdown(mut self) {
        let id = self.request("shutdown", Value::Null);
        self.response(id, Duration::from_secs(30));
        self.notify("exit", Value::Null);
        if let Server::InProcess(_) = self.server {
            let end = self.session_end(Duration::from_secs(10)).expect("the session ends after `exit`");
            assert_eq!(end, cria::protocol::SessionEnd::Clean);
            return;
        }
        let status = self.wait_exit(Duration::from_secs(10));
        let _ = self.process().kill();
        let status = status.expect("cria exits after `exit`");
        assert!(status.success(), "cria exited with {status}");
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        match &mut self.server {
            Server::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Closing the input ends the session; its thread is not waited for.
            Server::InProcess(_) => *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = None,
        }
    }
}

/// A tokio stream used from plain threads: each call blocks on the runtime
/// that drives the in-process server.
struct Blocking<T> {
    handle: tokio::runtime::Handle,
    io: T,
}

impl<T: tokio::io::AsyncRead + Unpin> Read for Blocking<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        self.handle.block_on(self.io.read(buf))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> Write for Blocking<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncWriteExt;
        self.handle.block_on(self.io.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.handle.block_on(self.io.flush())
    }
}
