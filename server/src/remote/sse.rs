//! Server-sent events, read incrementally: bytes arrive in arbitrary pieces
//! (a line, half a line, several events), events come out whole.
//!
//! Only what completion streams use is kept: the `data` field (several
//! `data:` lines of one event joined by newlines). Comments, `event:`, `id:`
//! and `retry:` lines are skipped. Lines end in LF, CRLF or CR, as the
//! format allows.

/// An incremental event-stream reader.
#[derive(Debug)]
pub struct SseReader {
    /// Bytes of the line not finished yet.
    line: Vec<u8>,
    /// `data` of the event being read.
    data: Option<String>,
    /// The previous chunk ended in CR: an LF at the start of the next is
    /// part of the same line break.
    after_cr: bool,
    /// Lines (and events) longer than this are a broken stream.
    max_line: usize,
}

impl Default for SseReader {
    fn default() -> Self {
        Self { line: Vec::new(), data: None, after_cr: false, max_line: MAX_LINE }
    }
}

/// Lines longer than this are a broken stream, not an event.
const MAX_LINE: usize = 16 << 20;

/// The stream cannot be read as server-sent events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event-stream line or event is longer than {0} bytes")]
pub struct LineTooLong(pub usize);

impl SseReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader whose lines and events may be at most `max_line` bytes.
    pub fn with_line_limit(max_line: usize) -> Self {
        Self { max_line, ..Self::default() }
    }

    /// Reads a piece of the stream; returns the `data` of every event it completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, LineTooLong> {
        let mut events = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, &mut events);
                }
                _ => {
                    if self.line.len() >= self.max_line {
                        return Err(LineTooLong(self.max_line));
                    }
                    self.line.push(b);
                }
            }
            // An event of many short `data:` lines is bounded as well.
            if self.data.as_ref().is_some_and(|d| d.len() > self.max_line) {
                return Err(LineTooLong(self.max_line));
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<String>) {
        if line.is_empty() {
            events.extend(self.data.take());
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(pieces: &[&[u8]]) -> Vec<String> {
        let mut reader = SseReader::new();
        pieces.iter().flat_map(|p| reader.push(p).unwrap()).collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b"data: {\"a\":1}\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let events = read_all(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(events, vec!["{\"a\":1}", "[DONE]"], "cut at {cut}");
        }
    }

    #[test]
    fn every_line_ending_and_field_kind() {
        let events = read_all(&[b": keep-alive\r\nevent: x\r\ndata:one\r\ndata: two\r\n\r\nid: 3\rdata: three\r\r"]);
        assert_eq!(events, vec!["one\ntwo", "three"]);
    }

    #[test]
    fn crlf_split_between_pieces_is_one_line_break() {
        assert_eq!(read_all(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]), vec!["a", "b"]);
    }

    #[test]
    fn lines_and_events_past_the_limit_are_errors() {
        let mut reader = SseReader::with_line_limit(8);
        assert_eq!(reader.push(b"data: 1234567890"), Err(LineTooLong(8)));
        let mut reader = SseReader::with_line_limit(8);
        assert_eq!(reader.push(b"data: 1234\ndata: 5678\ndata: 9\n"), Err(LineTooLong(8)));
        let mut reader = SseReader::with_line_limit(16);
        assert_eq!(reader.push(b"data: 12\n\n"), Ok(vec!["12".to_string()]));
    }

    #[test]
    fn an_unfinished_event_is_not_reported() {
        assert!(read_all(&[b"data: half"]).is_empty());
    }
}
