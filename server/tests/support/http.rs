//! Plain HTTP/1.1 over std sockets for tests: a client (one request per
//! connection, chunked answers decoded) and a scripted fake engine that
//! answers each connection as the test says (an error status, a malformed
//! body, silence, a slow stream) and records what it was sent.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An answer as read by [`request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `data` of each server-sent event in the body.
    pub fn events(&self) -> Vec<String> {
        self.body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_string).collect()
    }
}

/// Sends one request and reads the whole answer.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> HttpResponse {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`request`], with failures returned.
pub fn try_request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw)?;
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else { return out };
        let size_text = String::from_utf8_lossy(&raw[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        raw = &raw[end + 2..];
        if size == 0 || raw.len() < size {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
}

/// POSTs JSON with an optional bearer token.
pub fn post_json(addr: SocketAddr, path: &str, token: Option<&str>, body: &serde_json::Value) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(addr, "POST", path, &headers, Some(&body.to_string()))
}

/// How the fake engine answers one connection.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with a JSON body.
    Status(u16, String),
    /// 200 with an event stream made of these events (`data` values).
    Events(Vec<String>),
    /// 200, then one event every `every`, up to `count`, carrying `text`
    /// with `{i}` replaced by the event's number.
    Slow { text: String, every: Duration, count: usize },
    /// Reads the request and says nothing for this long.
    Silent(Duration),
}

/// A request the fake engine received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request line and header lines.
    pub head: String,
    /// The body.
    pub body: String,
    /// For slow streams: when writing failed because the client left.
    pub client_left: Option<Instant>,
}

/// A scripted fake engine on a loopback port: connection *i* gets
/// `script[i]` (the last entry repeats).
pub struct FakeEngine {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl FakeEngine {
    /// Starts it on a free loopback port.
    pub fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let reply = script.get(i).or(script.last()).cloned().expect("a script");
                let log = log.clone();
                std::thread::spawn(move || answer(stream, reply, log));
            }
        });
        Self { addr, received }
    }

    /// The base URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of what it received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn answer(stream: TcpStream, reply: Reply, log: Arc<Mutex<Vec<Received>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let index = {
        let mut log = log.lock().unwrap();
        log.push(Received { head, body: String::from_utf8_lossy(&body).into_owned(), client_left: None });
        log.len() - 1
    };
    let mut stream = stream;
    let sse_head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    match reply {
        Reply::Status(status, body) => {
            let _ = write!(stream, "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
        Reply::Events(events) => {
            let mut out = sse_head.to_string();
            for e in events {
                out.push_str(&format!("data: {e}\n\n"));
            }
            let _ = stream.write_all(out.as_bytes());
        }
        Reply::Slow { text, every, count } => {
            let _ = stream.write_all(sse_head.as_bytes());
            for i in 0..count {
                std::thread::sleep(every);
                let piece = text.replace("{i}", &i.to_string());
                let event = serde_json::json!({"choices": [{"text": piece, "index": 0, "finish_reason": null}]});
                if stream.write_all(format!("data: {event}\n\n").as_bytes()).and_then(|()| stream.flush()).is_err() {
                    log.lock().unwrap()[index].client_left = Some(Instant::now());
                    return;
                }
            }
        }
        Reply::Silent(time) => std::thread::sleep(time),
    }
}

/// A free loopback port (for servers that must be told their port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `GET path` until it answers 200 or `timeout` passes.
pub fn wait_healthy(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if try_request(addr, "GET", path, &[], None).is_ok_and(|r| r.status == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Waits (up to `timeout`) for `cria serve`'s first stdout line, which says
/// where it listens, and returns that address.
pub fn listening_address(stdout: std::process::ChildStdout, timeout: std::time::Duration) -> SocketAddr {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(timeout).expect("cria serve says where it listens");
    let addr = line.split("http://").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|a| a.parse().ok());
    addr.unwrap_or_else(|| panic!("no address in {line:?}"))
}
