//! Where the text after the middle marker starts: the anchor.
//!
//! In prefix-suffix-middle prompts cria puts the cursor's line after the
//! middle marker (`prompt::PromptInput::cursor_line_after_middle`), so typing
//! on a line changes only the prompt's last tokens. Pressing Enter used to
//! move that line into the prefix: the prefix's end changed, and everything
//! after it — the whole suffix, up to 128 tokens — was computed again
//! (0.4–0.7 s on two cores, on the keystroke a user waits on most).
//!
//! So the anchor stays where it was while the user types on below it: the
//! middle holds the lines typed since (at most [`MAX_MIDDLE_LINES`]), which
//! reads to the model like its own output, and the prefix and suffix keep
//! their place in the KV cache. Once the middle holds [`WARM_AFTER_LINES`]
//! lines, the prompt anchored at the cursor's line is warmed in the
//! background (in a KV slot beside the one in use, `SlotChoice::Beside`);
//! when the middle would grow too long, the anchor moves there, already
//! computed.
//!
//! Pure: text and byte offsets in, offsets out.

/// Most whole lines kept after the middle marker.
pub const MAX_MIDDLE_LINES: usize = 8;

/// Most bytes kept after the middle marker.
pub const MAX_MIDDLE_BYTES: usize = 1024;

/// Middle lines from which the next anchor is warmed.
pub const WARM_AFTER_LINES: usize = 4;

/// A document's anchor: a line start at or before the cursor's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Byte offset of the line start the middle begins at.
    pub offset: usize,
    /// The line start warmed to take over when this one is too far back.
    pub next: Option<usize>,
}

/// The anchor for a cursor, and the line start to warm a prompt for (if one
/// should be warmed now), given the document's previous anchor.
pub fn choose_anchor(text: &str, cursor: usize, previous: Option<Anchor>) -> (Anchor, Option<usize>) {
    let cursor = floor_boundary(text, cursor.min(text.len()));
    let line_start = text[..cursor].rfind(['\n', '\r']).map_or(0, |i| i + 1);
    let usable = |at: usize| {
        at <= line_start
            && text.is_char_boundary(at)
            && (at == 0 || text[..at].ends_with(['\n', '\r']))
            && line_start - at <= MAX_MIDDLE_BYTES
            && lines_between(text, at, line_start) <= MAX_MIDDLE_LINES
    };
    let (offset, next) = match previous {
        Some(p) if usable(p.offset) => (p.offset, p.next.filter(|&n| n > p.offset && usable(n))),
        Some(Anchor { next: Some(n), .. }) if usable(n) => (n, None),
        _ => (line_start, None),
    };
    let warm = (next.is_none() && lines_between(text, offset, line_start) >= WARM_AFTER_LINES).then_some(line_start);
    (Anchor { offset, next: next.or(warm) }, warm)
}

/// Line breaks in `text[from..to]`.
fn lines_between(text: &str, from: usize, to: usize) -> usize {
    let bytes = &text.as_bytes()[from..to];
    bytes.iter().enumerate().filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))).count()
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text with `$0` marking the cursor: (text, cursor).
    fn marked(text: &str) -> (String, usize) {
        let at = text.find("$0").unwrap();
        (text.replace("$0", ""), at)
    }

    #[test]
    fn a_first_request_anchors_at_the_cursor_line() {
        let (text, cursor) = marked("def f():\n    x = 1\n    re$0\n");
        let (anchor, warm) = choose_anchor(&text, cursor, None);
        assert_eq!(anchor, Anchor { offset: text.find("    re").unwrap(), next: None });
        assert_eq!(warm, None);
    }

    #[test]
    fn enter_keeps_the_anchor_so_the_suffix_stays_cached() {
        let (before, cursor) = marked("def f():\n    x = 1$0\n\nprint(f())\n");
        let (anchor, _) = choose_anchor(&before, cursor, None);
        let (after, cursor) = marked("def f():\n    x = 1\n    $0\n\nprint(f())\n");
        let (kept, warm) = choose_anchor(&after, cursor, Some(anchor));
        assert_eq!(kept.offset, anchor.offset);
        assert_eq!(warm, None);
    }

    #[test]
    fn the_next_anchor_is_warmed_then_taken_when_the_middle_is_too_long() {
        let head = "def f():\n";
        let mut text = head.to_string();
        let mut anchor = choose_anchor(&text, text.len(), None).0;
        let mut warmed = Vec::new();
        for line in 0..12 {
            text.push_str(&format!("    x{line} = {line}\n"));
            let (next, warm) = choose_anchor(&text, text.len(), Some(anchor));
            warmed.extend(warm);
            let middle_lines = text[next.offset..].matches('\n').count();
            assert!(middle_lines <= MAX_MIDDLE_LINES, "line {line}: {middle_lines} lines in the middle");
            anchor = next;
        }
        // Warmed at 4 lines, taken at 9 (leaving 5), warmed again at 4 more.
        assert!(!warmed.is_empty());
        assert!(warmed.contains(&anchor.offset), "the anchor moved to a warmed line: {anchor:?} {warmed:?}");
    }

    #[test]
    fn a_jump_or_an_edit_above_re_anchors_at_the_cursor_line() {
        let (text, cursor) = marked("a\nb\nc\n$0");
        let (anchor, _) = choose_anchor(&text, cursor, None);
        // The cursor moved above the anchor.
        let (moved, _) = choose_anchor(&text, 1, Some(anchor));
        assert_eq!(moved.offset, 0);
        // An edit above shifted the anchor off a line start.
        let (edited, cursor) = marked("ab\nb\nc\n$0");
        let (shifted, _) = choose_anchor(&edited, cursor, Some(anchor));
        assert_eq!(shifted.offset, edited.len());
        // Out-of-range offsets are only clamped.
        let (clamped, _) = choose_anchor("é", 1, Some(Anchor { offset: 99, next: Some(1) }));
        assert_eq!(clamped.offset, 0);
    }
}
