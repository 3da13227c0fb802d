//! Framing between the editor and tower-lsp-server that survives bad input.
//!
//! tower-lsp-server stops reading after the first message it cannot decode
//! (its framed reader ends on an error), so a single malformed message would
//! end the session. This layer reads `Content-Length` frames itself, answers
//! malformed ones with the JSON-RPC error they deserve (`-32700` for bytes
//! that are not a frame or not JSON, `-32600` for JSON that is not a
//! message), and passes only well-formed messages on. Outgoing frames from
//! the server and these error replies are written whole, one at a time, so
//! they never interleave.
//!
//! Bounded whatever the input: a header line holds at most
//! [`MAX_HEADER_LINE`] bytes, a body at most [`MAX_BODY`]; a larger body is
//! read and dropped in [`CHUNK`]-sized pieces. After bytes that are not a
//! frame (no or bad `Content-Length`, a body shorter or longer than its
//! header said) the reader finds its way back at the next `Content-Length`
//! header, so one bad frame never spoils the ones after it.
//!
//! `textDocument/didChange` is checked here, where the raw JSON is still at
//! hand: a change whose range is not a range (a line of `-1` or `2^32`)
//! would otherwise be read by tower-lsp-server's untagged change type as a
//! whole-document change. Such a notification is passed on as
//! [`REFUSED_CHANGE_METHOD`] instead, and the document is marked stale.

use aho_corasick::AhoCorasick;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::throttle::{excerpt, Throttle};

/// Larger bodies are skipped rather than buffered (64 MiB is far beyond any
/// real document an editor sends).
pub(super) const MAX_BODY: usize = 64 << 20;
/// Longer header lines are a framing error.
pub(super) const MAX_HEADER_LINE: usize = 8 << 10;
/// Bytes read from the editor at a time.
const CHUNK: usize = 64 << 10;
/// The header the reader looks for to find its way back into the stream.
const NEEDLE: &[u8] = b"content-length:";

/// Internal notification a refused `didChange` becomes (see the module docs).
pub(super) const REFUSED_CHANGE_METHOD: &str = "cria/refusedChange";

/// What the reader found next in the stream.
#[derive(Debug, PartialEq)]
pub(super) enum Frame {
    /// A body, as long as its header said (not yet checked as JSON).
    Body(Vec<u8>),
    /// Bytes that are not a usable frame were dropped; why, for the reply.
    Malformed(&'static str),
}

/// One header line, or why there is none.
enum Line {
    /// The line's bytes with their terminator.
    Text(Vec<u8>),
    /// The line was longer than [`MAX_HEADER_LINE`] and was dropped, up to
    /// its end or up to a `Content-Length` header found inside it.
    TooLong {
        /// Stopped at a `Content-Length` header: a new frame starts there.
        resynced: bool,
    },
    /// End of input.
    End,
}

/// Reads frames from the editor with a buffer of its own, so that bytes
/// read too far (a body shorter than its header said) can be put back.
pub(super) struct FrameReader<R> {
    input: R,
    /// Unread bytes are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    needle: AhoCorasick,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(super) fn new(input: R) -> Self {
        let needle = AhoCorasick::builder().ascii_case_insensitive(true).build([NEEDLE]).expect("a fixed pattern builds");
        Self { input, buf: Vec::new(), start: 0, needle }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Makes sure some bytes are unread; false at end of input.
    async fn fill(&mut self) -> std::io::Result<bool> {
        if self.start < self.buf.len() {
            return Ok(true);
        }
        self.buf.clear();
        self.start = 0;
        self.buf.resize(CHUNK, 0);
        let n = loop {
            match self.input.read(&mut self.buf).await {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(*n.as_ref().unwrap_or(&0));
        Ok(n? > 0)
    }

    /// Puts bytes back in front of the unread ones.
    fn unread(&mut self, bytes: &[u8]) {
        let rest = self.buf.split_off(self.start);
        self.buf = [bytes, &rest].concat();
        self.start = 0;
    }

    /// Where a `Content-Length` header starts in `bytes`, if anywhere.
    fn find_header(&self, bytes: &[u8]) -> Option<usize> {
        self.needle.find(bytes).map(|m| m.start())
    }

    /// Reads one line of at most [`MAX_HEADER_LINE`] bytes. A longer one is
    /// dropped up to its end, or up to a `Content-Length` header inside it.
    async fn read_line(&mut self) -> std::io::Result<Line> {
        let mut line = Vec::new();
        loop {
            if !self.fill().await? {
                return Ok(Line::End);
            }
            let available = self.available();
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            if line.len() + take > MAX_HEADER_LINE {
                let resynced = self.drop_long_line(line).await?;
                return Ok(Line::TooLong { resynced });
            }
            line.extend_from_slice(&available[..take]);
            self.consume(take);
            if newline.is_some() {
                return Ok(Line::Text(line));
            }
        }
    }

    /// Drops the rest of a line that is too long, in bounded pieces; stops
    /// early at a `Content-Length` header inside it (not at its very start,
    /// which was read as this line). True when it stopped at one.
    async fn drop_long_line(&mut self, start: Vec<u8>) -> std::io::Result<bool> {
        let mut window = start;
        // Where `window` starts in the line.
        let mut base = 0usize;
        loop {
            let skip = usize::from(base == 0);
            if let Some(at) = window.get(skip..).and_then(|w| self.find_header(w)) {
                let back = window[at + skip..].to_vec();
                self.unread(&back);
                return Ok(true);
            }
            if window.last() == Some(&b'\n') {
                return Ok(false);
            }
            // Keep a needle's length minus one, so that a header split
            // between two pieces is still found.
            let keep = window.len().min(NEEDLE.len() - 1);
            base += window.len() - keep;
            window.drain(..window.len() - keep);
            if !self.fill().await? {
                return Ok(false);
            }
            let available = self.available();
            let take = available.iter().position(|&b| b == b'\n').map_or(available.len(), |i| i + 1);
            window.extend_from_slice(&available[..take]);
            self.consume(take);
        }
    }

    /// Drops `length` bytes in bounded pieces. With `resync`, stops early at
    /// a `Content-Length` header: a length this large is likely a lie, and
    /// the next frame may start well before it ends.
    async fn skip(&mut self, mut length: usize, resync: bool) -> std::io::Result<()> {
        let mut carry: Vec<u8> = Vec::new();
        while length > 0 {
            if !self.fill().await? {
                return Ok(());
            }
            let take = self.available().len().min(length);
            if resync {
                let mut window = std::mem::take(&mut carry);
                window.extend_from_slice(&self.available()[..take]);
                if let Some(at) = self.find_header(&window) {
                    let carried = window.len() - take;
                    if at < carried {
                        self.unread(&window[at..carried]);
                    } else {
                        self.consume(at - carried);
                    }
                    return Ok(());
                }
                carry = window[window.len().saturating_sub(NEEDLE.len() - 1)..].to_vec();
            }
            self.consume(take);
            length -= take;
        }
        Ok(())
    }

    /// The next frame; `None` at end of input.
    pub(super) async fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        let mut length: Option<Result<usize, ()>> = None;
        let mut problem: Option<&'static str> = None;
        let mut lines = 0usize;
        loop {
            let raw = match self.read_line().await? {
                Line::End => return Ok(None),
                Line::TooLong { resynced: true } => return Ok(Some(Frame::Malformed("a header line is longer than 8 KiB"))),
                Line::TooLong { resynced: false } => {
                    problem.get_or_insert("a header line is longer than 8 KiB");
                    lines += 1;
                    continue;
                }
                Line::Text(raw) => raw,
            };
            let text = trim_line_end(&raw);
            if text.is_empty() {
                if lines == 0 {
                    continue; // stray blank line between frames
                }
                break;
            }
            lines += 1;
            match parse_header(text) {
                Some((name, value)) => {
                    if name.eq_ignore_ascii_case("content-length") {
                        let value = value.trim();
                        let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                        // A number too large for memory is too large a body, not junk.
                        length = Some(value.parse::<usize>().or(if digits { Ok(usize::MAX) } else { Err(()) }));
                    }
                }
                None => {
                    // Not a header: junk, perhaps the rest of a body longer
                    // than its header said, with the next frame behind it.
                    if let Some(at) = self.find_header(&raw[1..]) {
                        self.unread(&raw[at + 1..]);
                        return Ok(Some(Frame::Malformed("bytes that are not a message frame")));
                    }
                    problem.get_or_insert(if std::str::from_utf8(text).is_err() {
                        "a header line is not UTF-8"
                    } else {
                        "a header line is not `Name: value`"
                    });
                }
            }
        }
        match (length, problem) {
            (None | Some(Err(())), Some(problem)) => Ok(Some(Frame::Malformed(problem))),
            (None | Some(Err(())), None) => Ok(Some(Frame::Malformed("missing or invalid Content-Length header"))),
            (Some(Ok(n)), _) if n > MAX_BODY => {
                self.skip(n, true).await?;
                Ok(Some(Frame::Malformed("the message is larger than 64 MiB")))
            }
            (Some(Ok(n)), Some(problem)) => {
                self.skip(n, false).await?;
                Ok(Some(Frame::Malformed(problem)))
            }
            (Some(Ok(n)), None) => {
                let mut body = Vec::with_capacity(n.min(CHUNK));
                while body.len() < n {
                    if !self.fill().await? {
                        return Ok(None);
                    }
                    let take = self.available().len().min(n - body.len());
                    body.extend_from_slice(&self.available()[..take]);
                    self.consume(take);
                }
                Ok(Some(Frame::Body(body)))
            }
        }
    }

    /// After a body that is not JSON: if it holds a `Content-Length`
    /// header, its frame was shorter than its header said and the next
    /// frame starts there; read on from it.
    pub(super) fn resync_in(&mut self, body: &[u8]) {
        if let Some(at) = self.find_header(body) {
            self.unread(&body[at..]);
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `Name: value`, the name a token (no spaces or separators), both UTF-8.
fn parse_header(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let (name, value) = line.split_once(':')?;
    let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    token.then_some((name, value))
}

fn error_reply(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Checks a body is a JSON-RPC message and returns it; otherwise the error
/// reply to send.
fn check_message(body: &[u8]) -> Result<Value, Value> {
    let value: Value = serde_json::from_slice(body).map_err(|_| error_reply(Value::Null, -32700, "Parse error"))?;
    let Value::Object(map) = &value else {
        return Err(error_reply(Value::Null, -32600, "Invalid Request: not a JSON object"));
    };
    let id = map.get("id").cloned().unwrap_or(Value::Null);
    let id_ok = matches!(id, Value::Null | Value::Number(_) | Value::String(_));
    let is_request_or_notification = matches!(map.get("method"), Some(Value::String(_)));
    let is_response = map.contains_key("id") && (map.contains_key("result") || map.contains_key("error"));
    if map.get("jsonrpc") != Some(&Value::String("2.0".into())) || !id_ok || !(is_request_or_notification || is_response) {
        let id = if id_ok { id } else { Value::Null };
        return Err(error_reply(id, -32600, "Invalid Request"));
    }
    Ok(value)
}

/// A `didChange` whose parameters are not what LSP allows becomes a
/// [`REFUSED_CHANGE_METHOD`] notification for its document; `None` when the
/// message is anything else, or fine as it is.
fn refused_change(message: &Value) -> Option<Value> {
    if message.get("method").and_then(Value::as_str) != Some("textDocument/didChange") {
        return None;
    }
    let params = message.get("params");
    let uri = params.and_then(|p| p.pointer("/textDocument/uri")).and_then(Value::as_str)?;
    let reason = change_problem(params?)?;
    Some(json!({"jsonrpc": "2.0", "method": REFUSED_CHANGE_METHOD, "params": {"uri": uri, "reason": reason}}))
}

/// What is wrong with `didChange` parameters, if anything.
fn change_problem(params: &Value) -> Option<String> {
    let version = params.pointer("/textDocument/version");
    if version.and_then(Value::as_i64).is_none_or(|v| i32::try_from(v).is_err()) {
        return Some("the version is not a 32-bit integer".into());
    }
    let Some(changes) = params.get("contentChanges").and_then(Value::as_array) else {
        return Some("`contentChanges` is not an array".into());
    };
    for (index, change) in changes.iter().enumerate() {
        let problem = match change.as_object() {
            None => Some("is not an object".to_string()),
            Some(change) => single_change_problem(change),
        };
        if let Some(problem) = problem {
            return Some(format!("change {index} {problem}"));
        }
    }
    None
}

fn single_change_problem(change: &Map<String, Value>) -> Option<String> {
    if !change.get("text").is_some_and(Value::is_string) {
        return Some("has no `text` string".into());
    }
    let range = change.get("range")?;
    let position = |name: &str| -> Option<()> {
        let p = range.get(name)?.as_object()?;
        for key in ["line", "character"] {
            u32::try_from(p.get(key)?.as_u64()?).ok()?;
        }
        Some(())
    };
    if position("start").is_none() || position("end").is_none() {
        return Some(format!("has a range that is not a range of unsigned 32-bit positions: {}", excerpt(range.to_string().as_bytes())));
    }
    None
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

static MALFORMED: Throttle = Throttle::new();

/// What to do with the next thing the editor sent.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Pass this frame on to the server.
    Forward(Vec<u8>),
    /// Answer the editor with this error.
    Reply(Value),
}

/// Reads the editor's next frame and decides what to do with it; `None`
/// at end of input.
pub(super) async fn next_outcome<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> std::io::Result<Option<Outcome>> {
    let outcome = match reader.next_frame().await? {
        None => return Ok(None),
        Some(Frame::Body(body)) => match check_message(&body) {
            Ok(message) => Outcome::Forward(match refused_change(&message) {
                Some(refused) => frame(refused.to_string().as_bytes()),
                None => frame(&body),
            }),
            Err(reply) => {
                if reply["error"]["code"] == -32700 {
                    reader.resync_in(&body);
                }
                if let Some(suppressed) = MALFORMED.check() {
                    tracing::warn!(suppressed, "malformed message from the client: {}", excerpt(&body));
                }
                Outcome::Reply(reply)
            }
        },
        Some(Frame::Malformed(why)) => {
            if let Some(suppressed) = MALFORMED.check() {
                tracing::warn!(suppressed, "malformed message frame from the client: {why}");
            }
            Outcome::Reply(error_reply(Value::Null, -32700, &format!("Parse error: {why}")))
        }
    };
    Ok(Some(outcome))
}

/// Connects the editor's streams to the server's: returns the streams the
/// server reads from and writes to, and a future that pumps bytes until the
/// editor closes its side or the server closes its output.
pub fn guard<I, O>(input: I, output: O) -> (tokio::io::DuplexStream, tokio::io::DuplexStream, impl std::future::Future<Output = ()>)
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (server_in, mut to_server) = tokio::io::duplex(1 << 20);
    let (from_server, server_out) = tokio::io::duplex(1 << 20);
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let replies = frames_tx.clone();

    let inbound = async move {
        let mut reader = FrameReader::new(input);
        while let Ok(Some(outcome)) = next_outcome(&mut reader).await {
            let sent = match outcome {
                Outcome::Forward(bytes) => to_server.write_all(&bytes).await.is_ok(),
                Outcome::Reply(reply) => replies.send(frame(reply.to_string().as_bytes())).is_ok(),
            };
            if !sent {
                break;
            }
        }
        // The editor is gone: closing the server's input ends the session.
        let _ = to_server.shutdown().await;
    };

    let outbound = async move {
        let mut reader = FrameReader::new(from_server);
        while let Ok(Some(Frame::Body(body))) = reader.next_frame().await {
            if frames_tx.send(frame(&body)).is_err() {
                break;
            }
        }
    };

    let writer = async move {
        let mut output = output;
        while let Some(bytes) = frames_rx.recv().await {
            if output.write_all(&bytes).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    };

    let pump = async move {
        let ((), (), ()) = tokio::join!(inbound, outbound, writer);
    };
    (server_in, server_out, pump)
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
