//! Tests of the framing: each hostile stream is followed by a good frame,
//! which must come through whatever came before it.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::ReadBuf;

use super::*;

fn framed(body: &str) -> Vec<u8> {
    frame(body.as_bytes())
}

const GOOD: &str = r#"{"jsonrpc":"2.0","id":7,"method":"shutdown"}"#;

/// What the editor gets for a stream: the error code of each reply, or
/// the forwarded body's method or `ok`.
async fn outcomes<R: AsyncRead + Unpin>(input: R) -> Vec<String> {
    let mut reader = FrameReader::new(input);
    let mut out = Vec::new();
    while let Some(outcome) = next_outcome(&mut reader).await.expect("reading from memory") {
        out.push(match outcome {
            Outcome::Reply(reply) => reply["error"]["code"].to_string(),
            Outcome::Forward(bytes) => {
                let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a header") + 4;
                let value: Value = serde_json::from_slice(&bytes[at..]).expect("forwarded JSON");
                value["method"].as_str().unwrap_or("response").to_string()
            }
        });
    }
    out
}

async fn run(bytes: Vec<u8>) -> Vec<String> {
    outcomes(std::io::Cursor::new(bytes)).await
}

fn then_good(mut bad: Vec<u8>) -> Vec<u8> {
    bad.extend(framed(GOOD));
    bad
}

/// A stream of `len` filler bytes, then `tail`, made as it is read (so a
/// test can send 128 MiB without holding it).
struct Generated {
    filler: u8,
    left: usize,
    tail: std::io::Cursor<Vec<u8>>,
}

impl AsyncRead for Generated {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.left > 0 {
            let n = self.left.min(buf.remaining());
            buf.put_slice(&vec![self.filler; n]);
            self.left -= n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tail).poll_read(cx, buf)
    }
}

#[tokio::test]
async fn good_frames_pass_and_stray_blank_lines_are_skipped() {
    let mut bytes = framed(GOOD);
    bytes.extend(b"\r\n\r\n");
    bytes.extend(framed(r#"{"jsonrpc":"2.0","id":1,"result":null}"#));
    assert_eq!(run(then_good(bytes)).await, ["shutdown", "response", "shutdown"]);
}

#[tokio::test]
async fn a_content_length_above_the_cap_is_skipped_up_to_the_next_header() {
    // The length is a lie: the next frame follows at once.
    let bytes = then_good(format!("Content-Length: {}\r\n\r\n{{}}", u64::MAX / 2).into_bytes());
    assert_eq!(run(bytes).await, ["-32700", "shutdown"]);
    let bytes = then_good(b"Content-Length: 99999999999999999999999999\r\n\r\n{}".to_vec());
    assert_eq!(run(bytes).await, ["-32700", "shutdown"]);
}

#[tokio::test]
async fn an_oversized_body_is_read_and_dropped_in_pieces() {
    let len = MAX_BODY + 1;
    let header = format!("Content-Length: {len}\r\n\r\n");
    // Header first, then the filler as the body, then the good frame.
    let input = std::io::Cursor::new(header.into_bytes()).chain(Generated { filler: b'x', left: len, tail: std::io::Cursor::new(framed(GOOD)) });
    assert_eq!(outcomes(input).await, ["-32700", "shutdown"]);
}

#[tokio::test]
async fn a_body_shorter_than_its_length_does_not_swallow_the_next_frame() {
    // The declared 40 bytes take in the start of the next frame.
    let bytes = then_good(b"Content-Length: 40\r\n\r\n{\"jsonrpc\":".to_vec());
    assert_eq!(run(bytes).await, ["-32700", "shutdown"]);
}

#[tokio::test]
async fn a_body_longer_than_its_length_does_not_poison_the_next_frame() {
    let bytes = then_good(format!("Content-Length: 10\r\n\r\n{GOOD}").into_bytes());
    let got = run(bytes).await;
    assert_eq!(got.last().map(String::as_str), Some("shutdown"), "{got:?}");
    assert!(got[..got.len() - 1].iter().all(|c| c == "-32700"), "{got:?}");
}

#[tokio::test]
async fn a_frame_without_header_is_an_error_and_the_next_one_is_read() {
    assert_eq!(run(then_good(format!("{GOOD}\r\n\r\n").into_bytes())).await, ["-32700", "shutdown"]);
    assert_eq!(run(then_good(GOOD.as_bytes().to_vec())).await, ["-32700", "shutdown"]);
    assert_eq!(run(then_good(b"no header at all\r\n\r\n".to_vec())).await, ["-32700", "shutdown"]);
    assert_eq!(run(then_good(b"Content-Length: -5\r\n\r\n".to_vec())).await, ["-32700", "shutdown"]);
}

#[tokio::test]
async fn invalid_utf8_in_a_header_is_an_error_not_the_end() {
    let bytes = then_good(b"Content-Type: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}".to_vec());
    assert_eq!(run(bytes).await, ["-32700", "shutdown"]);
    let bytes = then_good(b"Content-Length\xff: 2\r\n\r\n".to_vec());
    assert_eq!(run(bytes).await, ["-32700", "shutdown"]);
}

#[tokio::test]
async fn a_header_line_without_end_is_cut_at_8_kib_and_dropped() {
    // 128 MiB with no newline, then a good frame.
    let input = Generated { filler: b'a', left: 128 << 20, tail: std::io::Cursor::new(framed(GOOD)) };
    assert_eq!(outcomes(input).await, ["-32700", "shutdown"]);
    // A long line of its own, then a good frame after its end.
    let mut bytes = vec![b'b'; MAX_HEADER_LINE * 3];
    bytes.extend(b"\r\n\r\n");
    assert_eq!(run(then_good(bytes)).await, ["-32700", "shutdown"]);
}

#[tokio::test]
async fn a_long_header_line_that_starts_like_a_header_ends() {
    let mut bytes = b"Content-Length: ".to_vec();
    bytes.extend(vec![b'0'; MAX_HEADER_LINE * 2]);
    bytes.extend(b"2\r\n\r\n{}");
    let got = run(then_good(bytes)).await;
    assert_eq!(got.last().map(String::as_str), Some("shutdown"), "{got:?}");
}

#[tokio::test]
async fn end_of_input_anywhere_ends_the_stream() {
    let good = then_good(Vec::new());
    for cut in 0..good.len() {
        let got = run(good[..cut].to_vec()).await;
        assert!(got.iter().all(|c| c == "-32700"), "cut at {cut}: {got:?}");
    }
}

#[test]
fn messages_are_checked_for_shape() {
    assert!(check_message(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#).is_ok());
    assert!(check_message(br#"{"jsonrpc":"2.0","method":"x"}"#).is_ok());
    assert!(check_message(br#"{"jsonrpc":"2.0","id":1,"result":null}"#).is_ok());
    assert_eq!(check_message(b"{bad}").unwrap_err()["error"]["code"], -32700);
    assert_eq!(check_message(b"[1]").unwrap_err()["error"]["code"], -32600);
    assert_eq!(check_message(br#"{"jsonrpc":"2.0","id":7}"#).unwrap_err()["id"], 7);
}

fn did_change(changes: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "textDocument/didChange",
           "params": {"textDocument": {"uri": "file:///a.rs", "version": 2}, "contentChanges": changes}})
}

fn range(start_line: Value) -> Value {
    json!({"start": {"line": start_line, "character": 0}, "end": {"line": 0, "character": 0}})
}

#[test]
fn a_change_whose_range_is_not_a_range_is_refused() {
    for line in [json!(-1), json!(1u64 << 32), json!(1.5), json!("0"), Value::Null] {
        let refused = refused_change(&did_change(json!([{"range": range(line.clone()), "text": "x"}])));
        let refused = refused.unwrap_or_else(|| panic!("line {line} is refused"));
        assert_eq!(refused["method"], REFUSED_CHANGE_METHOD);
        assert_eq!(refused["params"]["uri"], "file:///a.rs");
        assert!(refused["params"]["reason"].as_str().unwrap().contains("change 0"), "{refused}");
    }
    for change in [json!({"range": null, "text": "x"}), json!({"range": {}, "text": "x"}), json!({"range": range(json!(0))}), json!(3)] {
        assert!(refused_change(&did_change(json!([change]))).is_some(), "{change}");
    }
    assert!(refused_change(&did_change(json!({}))).is_some(), "contentChanges is not an array");
    let bad_version = json!({"jsonrpc": "2.0", "method": "textDocument/didChange",
        "params": {"textDocument": {"uri": "file:///a.rs", "version": 1u64 << 40}, "contentChanges": []}});
    assert!(refused_change(&bad_version).is_some());
}

#[test]
fn good_changes_and_other_messages_pass() {
    let good = json!([{"range": range(json!(u32::MAX)), "text": "x"}, {"text": "whole"}, {"range": range(json!(0)), "rangeLength": 0, "text": ""}]);
    assert_eq!(refused_change(&did_change(good)), None);
    assert_eq!(refused_change(&json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {}})), None);
    // Without a document to mark, there is nothing to refuse.
    assert_eq!(refused_change(&json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {}})), None);
}
