//! The document's tree-sitter parser and tree, kept in step with the rope.
//!
//! Parsing reads the rope chunk by chunk through tree-sitter's callback input,
//! so no keystroke copies the whole text. Edits are described to the tree as
//! [`InputEdit`]s and the next parse reuses every untouched subtree.
//!
//! Tree-sitter counts rows differently from the editor: only `\n` starts a new
//! row, and columns are bytes since the last `\n`. A lone `\r` is a line break
//! for the editor but not for tree-sitter, so the points handed to tree-sitter
//! are computed by tree-sitter's rule (see [`tree_point`]), or reused subtrees
//! would carry positions a fresh parse would not give them.

use ropey::Rope;
use tree_sitter::{InputEdit, Parser, Point, Tree};

/// Why a document that should have a syntax tree has none; the document still
/// works as plain text, and the caller can log the reason.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// The bundled grammar was built for an ABI this tree-sitter cannot load.
    #[error("tree-sitter rejected the grammar: {0}")]
    GrammarRejected(#[from] tree_sitter::LanguageError),
    /// The parser returned no tree (it has no timeout, so this is unexpected).
    #[error("tree-sitter returned no tree")]
    ParseFailed,
}

/// A parser plus the tree of the last parse, and whether edits happened since.
pub(crate) struct Syntax {
    /// Set to the document's grammar once, reused for every parse.
    parser: Parser,
    /// The last tree, edited in place until the next parse replaces it.
    tree: Option<Tree>,
    /// Edits were described to the tree (or it was dropped) since the last parse.
    stale: bool,
}

impl Syntax {
    /// Prepares a parser for `grammar`; nothing is parsed yet.
    pub(crate) fn new(grammar: &tree_sitter::Language) -> Result<Self, SyntaxError> {
        let mut parser = Parser::new();
        parser.set_language(grammar)?;
        Ok(Self {
            parser,
            tree: None,
            stale: true,
        })
    }

    /// The tree of the last successful parse, if it is still current.
    pub(crate) fn tree(&self) -> Option<&Tree> {
        if self.stale {
            None
        } else {
            self.tree.as_ref()
        }
    }

    /// Tells the old tree about one edit so the next parse can reuse it.
    pub(crate) fn edit(&mut self, edit: &InputEdit) {
        if let Some(tree) = &mut self.tree {
            tree.edit(edit);
        }
        self.stale = true;
    }

    /// Drops the tree (the document is no longer parsed); the next parse starts fresh.
    pub(crate) fn clear(&mut self) {
        self.tree = None;
        self.stale = true;
    }

    /// Parses the rope if anything changed since the last parse, reusing the
    /// edited old tree when there is one.
    pub(crate) fn refresh(&mut self, rope: &Rope) -> Result<(), SyntaxError> {
        if !self.stale {
            return Ok(());
        }
        let tree = parse_rope(&mut self.parser, rope, self.tree.as_ref());
        self.tree = tree;
        self.stale = self.tree.is_none();
        if self.stale {
            Err(SyntaxError::ParseFailed)
        } else {
            Ok(())
        }
    }
}

/// Parses `rope` through the callback input: each call hands tree-sitter the
/// rest of the chunk holding the requested byte, borrowed, never copied.
pub(crate) fn parse_rope(parser: &mut Parser, rope: &Rope, old: Option<&Tree>) -> Option<Tree> {
    let mut read = |byte: usize, _: Point| chunk_from(rope, byte);
    parser.parse_with_options(&mut read, old, None)
}

/// The bytes of `rope` from `byte` to the end of the chunk holding it; empty at
/// or past the end, which tells tree-sitter the input is over.
fn chunk_from(rope: &Rope, byte: usize) -> &[u8] {
    if byte >= rope.len_bytes() {
        return &[];
    }
    let (chunk, chunk_start, _, _) = rope.chunk_at_byte(byte);
    chunk.as_bytes().get(byte - chunk_start..).unwrap_or(&[])
}

/// The tree-sitter point of `byte`: rows count `\n` only and columns count
/// bytes since the last `\n`.
///
/// With no lone `\r` in the text (`lone_crs == 0`, the usual case) this is
/// ropey's line and byte column, in O(log n). Otherwise the text before `byte`
/// is scanned, O(n), which only documents with classic Mac line ends pay.
pub(crate) fn tree_point(rope: &Rope, byte: usize, lone_crs: usize) -> Point {
    let byte = byte.min(rope.len_bytes());
    if lone_crs == 0 {
        let row = rope.byte_to_line(byte);
        return Point::new(row, byte - rope.line_to_byte(row));
    }
    let mut row = 0;
    let mut row_start = 0;
    let mut offset = 0;
    for chunk in rope.chunks() {
        if offset >= byte {
            break;
        }
        let bytes = chunk.as_bytes();
        let take = bytes.len().min(byte - offset);
        for (i, b) in bytes[..take].iter().enumerate() {
            if *b == b'\n' {
                row += 1;
                row_start = offset + i + 1;
            }
        }
        offset += bytes.len();
    }
    Point::new(row, byte - row_start)
}

/// The point where `text` ends when inserted at `start`, by tree-sitter's rule.
pub(crate) fn point_after(start: Point, text: &str) -> Point {
    match text.rfind('\n') {
        Some(last) => Point::new(
            start.row + text.bytes().filter(|b| *b == b'\n').count(),
            text.len() - last - 1,
        ),
        None => Point::new(start.row, start.column + text.len()),
    }
}

/// Counts the lone `\r` (not followed by `\n`) starting at a byte in `bytes`;
/// the byte after the range is looked at to decide the last one.
pub(crate) fn count_lone_crs(rope: &Rope, bytes: std::ops::Range<usize>) -> usize {
    let len = rope.len_bytes();
    let (start, end) = (bytes.start.min(len), bytes.end.min(len));
    let mut it = rope.bytes_at(start).peekable();
    let mut count = 0;
    for _ in start..end {
        let Some(b) = it.next() else { break };
        if b == b'\r' && it.peek() != Some(&b'\n') {
            count += 1;
        }
    }
    count
}

/// Counts NUL bytes in a byte range of `rope`, to keep the binary flag current.
pub(crate) fn count_nuls(rope: &Rope, bytes: std::ops::Range<usize>) -> usize {
    let len = rope.len_bytes();
    let (start, end) = (bytes.start.min(len), bytes.end.min(len));
    if start >= end {
        return 0;
    }
    rope.bytes_at(start)
        .take(end - start)
        .filter(|b| *b == 0)
        .count()
}

/// Builds the edit description tree-sitter needs, from byte offsets and the
/// points computed before the rope changed.
pub(crate) fn input_edit(
    start_byte: usize,
    old_end_byte: usize,
    start: Point,
    old_end: Point,
    text: &str,
) -> InputEdit {
    InputEdit {
        start_byte,
        old_end_byte,
        new_end_byte: start_byte + text.len(),
        start_position: start,
        old_end_position: old_end,
        new_end_position: point_after(start, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tree-sitter's rule, computed the obvious way on a string.
    fn naive_point(text: &str, byte: usize) -> Point {
        let before = &text.as_bytes()[..byte];
        let row = before.iter().filter(|b| **b == b'\n').count();
        let row_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        Point::new(row, byte - row_start)
    }

    fn naive_lone_crs(text: &str) -> usize {
        text.as_bytes()
            .iter()
            .enumerate()
            .filter(|(i, b)| **b == b'\r' && text.as_bytes().get(i + 1) != Some(&b'\n'))
            .count()
    }

    proptest! {
        #[test]
        fn points_follow_tree_sitters_rows(
            pieces in prop::collection::vec(prop::sample::select(&["a", "é", "🦀", "\n", "\r", "\r\n", " "][..]), 0..200),
            at in 0usize..1000,
        ) {
            let text = pieces.concat();
            let rope = Rope::from_str(&text);
            let lone = naive_lone_crs(&text);
            prop_assert_eq!(count_lone_crs(&rope, 0..text.len()), lone);
            let byte = at.min(text.len());
            prop_assert_eq!(tree_point(&rope, byte, lone), naive_point(&text, byte));
            let boundary = (0..=byte).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let start = naive_point(&text, boundary);
            let tail = &text[boundary..];
            prop_assert_eq!(point_after(start, tail), naive_point(&text, text.len()));
        }
    }

    #[test]
    fn lone_crs_are_counted_with_one_byte_of_lookahead() {
        let rope = Rope::from_str("\r\r\n\r");
        assert_eq!(count_lone_crs(&rope, 0..1), 1);
        assert_eq!(count_lone_crs(&rope, 1..2), 0);
        assert_eq!(count_lone_crs(&rope, 0..4), 2);
        assert_eq!(count_lone_crs(&rope, 3..99), 1);
        assert_eq!(count_nuls(&Rope::from_str("a\0b\0"), 0..3), 1);
    }
}
