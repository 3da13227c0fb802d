//! Line helpers shared by the rules: splitting at any LSP line break and
//! measuring indentation.
//!
//! Every position here is a byte offset at an ASCII byte or at the end of the
//! text, so slicing with it can never split a character.

/// One line of a text: where its content starts and ends, and where the next
/// line starts (after the `\n`, `\r\n` or lone `\r`; the text's length for
/// the last line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Line<'t> {
    /// The line's content, line break excluded.
    pub text: &'t str,
    /// Byte offset of the content's start.
    pub start: usize,
    /// Byte offset just past the content (where the line break begins).
    pub end: usize,
    /// Byte offset of the next line's start.
    pub next: usize,
}

impl Line<'_> {
    /// Whether the line has nothing but whitespace: such lines carry no
    /// structure (indentation, repetition) and are skipped by comparisons.
    pub fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// Whether a line break follows the content.
    pub fn has_break(&self) -> bool {
        self.next > self.end
    }
}

/// The lines of `text`, split at `\n`, `\r\n` and lone `\r` as LSP does. There
/// is always at least one line; a text ending in a break ends with an empty
/// line, like `str::split`.
pub(crate) fn lines(text: &str) -> Lines<'_> {
    Lines {
        text,
        pos: 0,
        done: false,
    }
}

/// Iterator returned by [`lines`].
pub(crate) struct Lines<'t> {
    text: &'t str,
    pos: usize,
    done: bool,
}

impl<'t> Iterator for Lines<'t> {
    type Item = Line<'t>;

    fn next(&mut self) -> Option<Line<'t>> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let rest = self.text.get(start..).unwrap_or("");
        let (end, next) = match rest.find(['\n', '\r']) {
            Some(off) => {
                let end = start + off;
                let crlf = rest.as_bytes().get(off) == Some(&b'\r')
                    && rest.as_bytes().get(off + 1) == Some(&b'\n');
                (end, end + if crlf { 2 } else { 1 })
            }
            None => {
                self.done = true;
                (self.text.len(), self.text.len())
            }
        };
        self.pos = next;
        let text = self.text.get(start..end).unwrap_or("");
        Some(Line {
            text,
            start,
            end,
            next,
        })
    }
}

/// The text after the last line break of `text` (all of it when there is
/// none): the part of the cursor's line that lies before the cursor.
pub(crate) fn last_line(text: &str) -> &str {
    match text.rfind(['\n', '\r']) {
        Some(i) => text.get(i + 1..).unwrap_or(""),
        None => text,
    }
}

/// The text before the first line break of `text`: the rest of the cursor's
/// line when `text` is the suffix.
pub(crate) fn first_line(text: &str) -> &str {
    match text.find(['\n', '\r']) {
        Some(i) => text.get(..i).unwrap_or(""),
        None => text,
    }
}

/// The leading spaces and tabs of `line`: what the indentation rules compare
/// and convert. Other Unicode spaces count as content.
pub(crate) fn leading_ws(line: &str) -> &str {
    let n = line.len() - line.trim_start_matches([' ', '\t']).len();
    line.get(..n).unwrap_or("")
}

/// The column reached after `ws` when starting at column `from`, with tab
/// stops every `tab` columns; characters other than tabs count one column.
pub(crate) fn advance_columns(from: usize, ws: &str, tab: usize) -> usize {
    let tab = tab.max(1);
    ws.chars().fold(from, |col, c| {
        if c == '\t' {
            (col / tab + 1) * tab
        } else {
            col + 1
        }
    })
}

/// The indentation width of `line` in columns.
pub(crate) fn indent_width(line: &str, tab: usize) -> usize {
    advance_columns(0, leading_ws(line), tab)
}

/// The largest char boundary at or below `at`: lets the tail/head windows of
/// a huge document be cut anywhere without splitting a character.
pub(crate) fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The last `max` bytes of `text`, starting at a line start when the text was
/// cut (so scanning starts outside a half line), and whether it was cut.
pub(crate) fn tail(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let from = text.len() - max;
    let mut at = floor_boundary(text, from);
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    let window = text.get(at..).unwrap_or("");
    match window.find(['\n', '\r']) {
        Some(i) => (window.get(i + 1..).unwrap_or(""), true),
        None => (window, true),
    }
}

/// The first `max` bytes of `text` (cut at a char boundary) and whether it was
/// cut.
pub(crate) fn head(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    (text.get(..floor_boundary(text, max)).unwrap_or(""), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_every_kind_of_break() {
        let text = "a\r\nb\rc\n\nd";
        let got: Vec<&str> = lines(text).map(|l| l.text).collect();
        assert_eq!(got, ["a", "b", "c", "", "d"]);
        let ends: Vec<bool> = lines("x\n").map(|l| l.has_break()).collect();
        assert_eq!(ends, [true, false]);
        assert_eq!(lines("").count(), 1);
    }

    #[test]
    fn indentation_is_measured_in_columns() {
        assert_eq!(indent_width("    x", 4), 4);
        assert_eq!(indent_width("\tx", 4), 4);
        assert_eq!(indent_width("  \tx", 4), 4);
        assert_eq!(indent_width("\t  x", 8), 10);
        assert_eq!(leading_ws("\u{3000}x"), "");
    }

    #[test]
    fn windows_never_split_characters() {
        let text = "é\n🦀🦀\nabc";
        for max in 0..text.len() + 2 {
            let _ = tail(text, max);
            let _ = head(text, max);
        }
        assert_eq!(tail(text, 5), ("abc", true));
        assert_eq!(head(text, 4), ("é\n", true));
        assert_eq!(last_line("a\r\nb"), "b");
        assert_eq!(first_line(")\r\nb"), ")");
    }
}
