//! Framing between the editor and tower-lsp-server that survives bad input.
//!
//! tower-lsp-server stops reading after the first message it cannot decode
//! (its framed reader ends on an error), so a single malformed message would
//! end the session. This layer reads `Content-Length` frames itself, answers
//! malformed ones with the JSON-RPC error they deserve (`-32700` for text
//! that is not JSON, `-32600` for JSON that is not a message), and passes
//! only well-formed messages on. Outgoing frames from the server and these
//! error replies are written whole, one at a time, so they never interleave.

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Larger bodies are refused rather than buffered (64 MiB is far beyond any
/// real document an editor sends).
const MAX_BODY: usize = 64 << 20;

/// Reads one frame's body. `Ok(None)` at end of input; `Err(reply)` when the
/// frame's header was unusable (the reply is the error to send).
async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Result<Vec<u8>, Value>>> {
    let mut length: Option<usize> = None;
    let mut saw_header = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            if saw_header {
                break;
            }
            continue; // stray blank line between frames
        }
        saw_header = true;
        if let Some((name, value)) = trimmed.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
    }
    let Some(length) = length.filter(|n| *n <= MAX_BODY) else {
        return Ok(Some(Err(error_reply(Value::Null, -32700, "Parse error: missing or invalid Content-Length header"))));
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(Ok(body)))
}

fn error_reply(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Checks a body is a JSON-RPC message; otherwise the error reply to send.
fn check_message(body: &[u8]) -> Result<(), Value> {
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
    Ok(())
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
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
        let mut reader = BufReader::new(input);
        loop {
            match read_frame(&mut reader).await {
                Ok(Some(Ok(body))) => match check_message(&body) {
                    Ok(()) => {
                        if to_server.write_all(&frame(&body)).await.is_err() {
                            break;
                        }
                    }
                    Err(reply) => {
                        tracing::warn!("malformed message from the client: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>());
                        let _ = replies.send(frame(reply.to_string().as_bytes()));
                    }
                },
                Ok(Some(Err(reply))) => {
                    tracing::warn!("malformed message header from the client");
                    let _ = replies.send(frame(reply.to_string().as_bytes()));
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The editor is gone: closing the server's input ends the session.
        let _ = to_server.shutdown().await;
    };

    let outbound = async move {
        let mut reader = BufReader::new(from_server);
        while let Ok(Some(Ok(body))) = read_frame(&mut reader).await {
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
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked_for_shape() {
        assert!(check_message(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#).is_ok());
        assert!(check_message(br#"{"jsonrpc":"2.0","method":"x"}"#).is_ok());
        assert!(check_message(br#"{"jsonrpc":"2.0","id":1,"result":null}"#).is_ok());
        assert_eq!(check_message(b"{bad}").unwrap_err()["error"]["code"], -32700);
        assert_eq!(check_message(b"[1]").unwrap_err()["error"]["code"], -32600);
        assert_eq!(check_message(br#"{"jsonrpc":"2.0","id":7}"#).unwrap_err()["id"], 7);
    }
}
