//! Property test for documents: random sequences of incremental edits, with
//! ranges drawn in the editor's encoding (out of range and mid-character
//! included) and text full of multi-byte characters and mixed line breaks.
//!
//! A reference model replays every change on a plain `String`, with its own
//! deliberately simple implementation of the clamping rules, and keeps its own
//! tree through tree-sitter's string API and naively computed edits. After
//! every batch:
//! - the document's text equals the model's;
//! - the document's tree equals the model's incremental tree, node for node
//!   (so the rope, the chunked input and the edit points introduce nothing);
//! - for Rust and Python, when the text parses without errors, the tree also
//!   equals a fresh parse of the text.
//!
//! The last check is narrower because tree-sitter itself does not promise it:
//! its incremental parse, given correct edits, can end in a different tree
//! than a fresh parse (tree-sitter/tree-sitter#4001, #1645). The property
//! found both kinds: Rust text with syntax errors recovered differently, and
//! error-free JavaScript whose comment attached elsewhere
//! (`documents::javascript_incremental_parse_can_differ_from_a_fresh_parse`). The
//! comparison with the model's incremental tree is what shows the document
//! adds no difference of its own.

use cria::documents::{Document, Language, Position, PositionEncoding, Range, TextChange};
use proptest::prelude::*;
use tree_sitter::{InputEdit, Parser, Point, Tree};

/// Pieces random text is made of: code, every line break, tabs, and
/// characters of 2, 3 and 4 UTF-8 bytes (the crab is outside the BMP).
const PIECES: &[&str] = &[
    "a", "x1", "fn", "def", "let", " ", "    ", "\t", "=", "1", ":", ";", "{", "}", "(", ")", "\"",
    "'", "#", "//", "\n", "\n", "\r\n", "\r", "🦀", "é", "e\u{301}", "中文",
];

/// `(start, content_end)` byte offsets of each line, splitting at `\r\n`,
/// `\n` and `\r` by a plain scan.
fn model_lines(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let (mut lines, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        let width = match (bytes[i], bytes.get(i + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r' | b'\n', _) => 1,
            _ => 0,
        };
        if width == 0 {
            i += 1;
        } else {
            lines.push((start, i));
            i += width;
            start = i;
        }
    }
    lines.push((start, bytes.len()));
    lines
}

/// The model's position-to-byte rule: past the last line is the end of the
/// text; otherwise walk the line's chars, stopping before one that would
/// overshoot (so mid-character rounds down and past-the-end stops at the
/// line's end).
fn model_byte(text: &str, pos: Position, enc: PositionEncoding) -> usize {
    let lines = model_lines(text);
    let Some(&(start, end)) = lines.get(pos.line as usize) else {
        return text.len();
    };
    let (mut units, mut byte) = (0usize, start);
    for c in text[start..end].chars() {
        let width = match enc {
            PositionEncoding::Utf8 => c.len_utf8(),
            PositionEncoding::Utf16 => c.len_utf16(),
            PositionEncoding::Utf32 => 1,
        };
        if units + width > pos.character as usize {
            break;
        }
        units += width;
        byte += c.len_utf8();
    }
    byte
}

/// Tree-sitter's point for `byte`: rows count `\n` only, columns count bytes.
fn naive_point(text: &str, byte: usize) -> Point {
    let before = &text.as_bytes()[..byte];
    let row = before.iter().filter(|b| **b == b'\n').count();
    let row_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Point::new(row, byte - row_start)
}

/// The model's bytes to replace and the text to put there. A reversed range
/// is swapped; a full replacement is trimmed to the span that differs, as the
/// document does, so both trees see the same edit.
fn model_edit<'a>(
    text: &str,
    change: &'a TextChange,
    enc: PositionEncoding,
) -> (usize, usize, &'a str) {
    let Some(range) = change.range else {
        let (old, new) = (text.as_bytes(), change.text.as_bytes());
        let mut prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
        while !change.text.is_char_boundary(prefix) {
            prefix -= 1;
        }
        let same = old
            .iter()
            .rev()
            .zip(new.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let mut suffix = same.min(old.len().min(new.len()) - prefix);
        while !change.text.is_char_boundary(new.len() - suffix) {
            suffix -= 1;
        }
        return (
            prefix,
            old.len() - suffix,
            &change.text[prefix..new.len() - suffix],
        );
    };
    let a = model_byte(text, range.start, enc);
    let b = model_byte(text, range.end, enc);
    (a.min(b), a.max(b), &change.text)
}

/// The model's text after `change`.
fn model_applied(text: &str, change: &TextChange, enc: PositionEncoding) -> String {
    let (start, end, new) = model_edit(text, change, enc);
    let mut text = text.to_owned();
    text.replace_range(start..end, new);
    text
}

/// The reference: a string, and a tree kept by tree-sitter's own string API.
struct Model {
    text: String,
    parser: Parser,
    tree: Tree,
}

impl Model {
    fn new(text: String, language: &Language) -> Option<Self> {
        let mut parser = Parser::new();
        parser.set_language(&language.grammar()?).ok()?;
        let tree = parser.parse(&text, None)?;
        Some(Self { text, parser, tree })
    }

    /// Applies a change to the text and describes it to the tree.
    fn apply(&mut self, change: &TextChange, enc: PositionEncoding) {
        let (start, end, new) = model_edit(&self.text, change, enc);
        let start_position = naive_point(&self.text, start);
        let old_end_position = naive_point(&self.text, end);
        self.text.replace_range(start..end, new);
        self.tree.edit(&InputEdit {
            start_byte: start,
            old_end_byte: end,
            new_end_byte: start + new.len(),
            start_position,
            old_end_position,
            new_end_position: naive_point(&self.text, start + new.len()),
        });
    }

    fn reparse(&mut self) -> Option<()> {
        self.tree = self.parser.parse(&self.text, Some(&self.tree))?;
        Some(())
    }

    fn fresh(&mut self) -> Option<Tree> {
        self.parser.parse(&self.text, None)
    }
}

/// Every node as (kind, byte range, start point, end point), in walk order.
fn nodes(tree: &tree_sitter::Tree) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = tree.walk();
    'walk: loop {
        let node = cursor.node();
        let (start, end) = (node.start_position(), node.end_position());
        out.push(format!(
            "{} {:?} {start} {end}",
            node.kind(),
            node.byte_range()
        ));
        if cursor.goto_first_child() || cursor.goto_next_sibling() {
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                break 'walk;
            }
            if cursor.goto_next_sibling() {
                break;
            }
        }
    }
    out
}

fn text_strategy(max_pieces: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..max_pieces).prop_map(|p| p.concat())
}

/// One step of an edit sequence, with lines relative to the random region.
#[derive(Clone, Debug)]
enum Op {
    /// An incremental change.
    Ranged(TextChange),
    /// The same change, but sent as the whole new text (full sync), which the
    /// document turns back into a small edit.
    FullFromRanged(TextChange),
    /// An unrelated whole new text.
    Full(String),
}

fn ranged_strategy() -> impl Strategy<Value = TextChange> {
    (0u32..8, 0u32..24, 0u32..3, 0u32..24, text_strategy(6)).prop_map(
        |(line, character, lines, end_character, text)| {
            let start = Position::new(line, character);
            let end = Position::new(line + lines, end_character);
            TextChange::replace(Range::new(start, end), text)
        },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => ranged_strategy().prop_map(Op::Ranged),
        3 => ranged_strategy().prop_map(Op::FullFromRanged),
        1 => text_strategy(30).prop_map(Op::Full),
    ]
}

/// Turns an op into the change the editor sends, moving its lines down by
/// `shift` and using `model` for full-sync texts.
fn to_change(op: &Op, shift: u32, model: &str, enc: PositionEncoding) -> TextChange {
    let moved = |change: &TextChange| {
        let mut change = change.clone();
        if let Some(range) = &mut change.range {
            range.start.line += shift;
            range.end.line += shift;
        }
        change
    };
    match op {
        Op::Ranged(change) => moved(change),
        Op::FullFromRanged(change) => TextChange::full(model_applied(model, &moved(change), enc)),
        Op::Full(text) => TextChange::full(text.clone()),
    }
}

/// A line that parses cleanly, used to pad documents over several rope chunks.
fn padding_line(language: &Language) -> &'static str {
    match language {
        Language::Python => "pad = [1, 2]\n",
        Language::Rust => "fn pad() -> u8 { 1 }\n",
        _ => "let pad = [1, 2];\n",
    }
}

fn encoding_strategy() -> impl Strategy<Value = PositionEncoding> {
    prop_oneof![
        Just(PositionEncoding::Utf8),
        Just(PositionEncoding::Utf16),
        Just(PositionEncoding::Utf32),
    ]
}

fn language_strategy() -> impl Strategy<Value = Language> {
    prop_oneof![
        Just(Language::Rust),
        Just(Language::Python),
        Just(Language::JavaScript)
    ]
}

/// Checks the document against the model after a batch (see the module docs).
fn check(doc: &Document, model: &mut Model, version: i32) -> Result<(), TestCaseError> {
    prop_assert_eq!(doc.text(), model.text.as_str());
    prop_assert_eq!(doc.version(), version);
    let Some(tree) = doc.tree() else {
        return Err(TestCaseError::fail("the document has no tree"));
    };
    prop_assert_eq!(nodes(tree), nodes(&model.tree));
    if matches!(doc.language(), Language::Rust | Language::Python) {
        let Some(fresh) = model.fresh() else {
            return Err(TestCaseError::fail("no fresh tree"));
        };
        if fresh.root_node().has_error() {
            // Error recovery depends on the parse's history; see the module docs.
            return Ok(());
        }
        prop_assert_eq!(tree.root_node().to_sexp(), fresh.root_node().to_sexp());
        prop_assert_eq!(nodes(tree), nodes(&fresh));
    }
    Ok(())
}

/// The tests, in a module so that `cargo test documents` selects them.
mod documents {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn incremental_edits_match_the_model(
            language in language_strategy(),
            enc in encoding_strategy(),
            (pad_before, pad_after) in (0u32..100, 0usize..100),
            random in text_strategy(40),
            batches in prop::collection::vec(prop::collection::vec(op_strategy(), 1..4), 1..12),
        ) {
            let pad = padding_line(&language);
            let initial = [pad.repeat(pad_before as usize), random, pad.repeat(pad_after)].concat();
            let mut doc = Document::new(&initial, language.clone(), 0);
            let Some(mut model) = Model::new(initial, &language) else {
                return Err(TestCaseError::fail("no grammar"));
            };
            check(&doc, &mut model, 0)?;
            // Edits start two lines into the padding, to cross its boundary too.
            let shift = pad_before.saturating_sub(2);

            for (version, batch) in (1..).zip(&batches) {
                let mut changes = Vec::new();
                for op in batch {
                    let change = to_change(op, shift, &model.text, enc);
                    model.apply(&change, enc);
                    changes.push(change);
                }
                prop_assert!(model.reparse().is_some());
                doc.apply_changes(version, &changes, enc);
                check(&doc, &mut model, version)?;
            }
        }
    }

    /// Found by the property above: after these edits tree-sitter's incremental
    /// parse (through its own string API too) attaches a comment differently
    /// from a fresh parse. Both trees are valid; the document must match the
    /// incremental one. If tree-sitter changes this, extend the fresh-parse check
    /// in [`check`] to JavaScript.
    #[test]
    fn javascript_incremental_parse_can_differ_from_a_fresh_parse() {
        let text = format!("{}\naa", "let pad = [1, 2];\n".repeat(29));
        let mut doc = Document::new(&text, Language::JavaScript, 0);
        let Some(mut model) = Model::new(text, &Language::JavaScript) else {
            panic!("no grammar");
        };
        let at = |line, character| Position::new(line, character);
        let batches = [
            vec![TextChange::replace(
                Range::new(at(27, 16), at(27, 16)),
                "\n\n",
            )],
            vec![
                TextChange::replace(Range::new(at(32, 0), at(32, 0)), "a"),
                TextChange::replace(Range::new(at(27, 16), at(27, 16)), "//\n"),
            ],
            vec![TextChange::replace(Range::new(at(33, 0), at(33, 1)), "")],
        ];
        for (version, batch) in (1..).zip(&batches) {
            for change in batch {
                model.apply(change, PositionEncoding::Utf8);
            }
            assert!(model.reparse().is_some());
            doc.apply_changes(version, batch, PositionEncoding::Utf8);
            if let Err(err) = check(&doc, &mut model, version) {
                panic!("{err}");
            }
        }
        let sexp = |tree: Option<&Tree>| tree.map(|t| t.root_node().to_sexp());
        assert_eq!(sexp(doc.tree()), sexp(Some(&model.tree)));
        assert_ne!(sexp(doc.tree()), sexp(model.fresh().as_ref()));
    }
}
