//! A small LSP client for tests: spawns the real `cria` binary, speaks
//! Content-Length framed JSON-RPC over its stdio, answers the server's own
//! requests (`window/workDoneProgress/create`) and keeps every message it
//! receives for later assertions.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running server and the messages it sent.
pub struct LspClient {
    /// The server process.
    pub child: Child,
    stdin: Option<ChildStdin>,
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
    pub fn start_with_stderr(home: &Path, extra_args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut child = Command::new(super::cria_bin())
            .arg("lsp")
            .args(extra_args)
            .envs(env.iter().copied())
            .env("CRIA_HOME", home)
            .env("HF_HUB_CACHE", home.join("hub"))
            .env("CRIA_LOG", "cria=info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cria starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length:") {
                        length = v.trim().parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; length.expect("Content-Length")];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let value: Value = serde_json::from_slice(&body).expect("server sends JSON");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Self { child, stdin: Some(stdin), incoming: rx, received: Vec::new(), unread: VecDeque::new(), next_id: 1 }
    }

    /// Writes raw bytes (for malformed-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("the server's input is open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the server's input, as an editor that goes away does.
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for the server to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn send(&mut self, message: &Value) {
        let body = message.to_string();
        self.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }

    /// Sends a request and returns its id.
    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next message, answering server requests on the way.
    fn next(&mut self, deadline: Instant) -> Option<Value> {
        if let Some(m) = self.unread.pop_front() {
            return Some(m);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.incoming.recv_timeout(left) {
            Ok(m) => {
                if m.get("method").is_some() && m.get("id").is_some() {
                    let id = m["id"].clone();
                    self.send(&json!({"jsonrpc": "2.0", "id": id, "result": null}));
                }
                self.received.push(m.clone());
                Some(m)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its output (crashed?)"),
        }
    }

    /// Waits for the first message matching `pred`; other messages stay
    /// queued for later waits. Panics after `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            match self.next(deadline) {
                Some(m) if pred(&m) => {
                    for s in skipped.into_iter().rev() {
                        self.unread.push_front(s);
                    }
                    return m;
                }
                Some(m) => skipped.push(m),
                None => panic!("timed out after {timeout:?} waiting for {what}; received: {:#?}", self.received.iter().rev().take(10).collect::<Vec<_>>()),
            }
        }
    }

    /// Waits for the response to request `id`.
    pub fn response(&mut self, id: i64, timeout: Duration) -> Value {
        self.wait_for(timeout, &format!("response {id}"), |m| m.get("id") == Some(&json!(id)) && m.get("method").is_none())
    }

    /// initialize + initialized; returns the initialize result.
    pub fn initialize(&mut self, capabilities: Value, options: Value) -> Value {
        let id = self.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": capabilities, "initializationOptions": options}));
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

    /// Asks for an inline completion and waits for the answer.
    pub fn inline_completion(&mut self, uri: &str, line: u32, character: u32, timeout: Duration) -> Value {
        let id = self.request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}),
        );
        self.response(id, timeout)
    }

    /// shutdown + exit, and waits for the process.
    pub fn shutdown(mut self) {
        let id = self.request("shutdown", Value::Null);
        self.response(id, Duration::from_secs(30));
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "cria exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("cria did not exit after `exit`");
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
