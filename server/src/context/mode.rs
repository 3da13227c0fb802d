//! What kind of suggestion the cursor calls for, decided from the line and
//! the syntax tree: a whole block, the rest of one line, or nothing.

use tree_sitter::Tree;

use crate::documents::closing_only;

/// The shape of suggestion to ask the model for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionMode {
    /// Several lines: an empty block, after a block opener, a blank line in a body.
    MultiLine,
    /// Finish the current line only.
    SingleLine,
    /// No request: the cursor is in the middle of an identifier.
    Skip,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Decides the mode at byte offset `cursor` of `text`. With
/// `skip_mid_identifier`, a cursor between two identifier characters gets
/// [`CompletionMode::Skip`].
pub fn completion_mode(text: &str, cursor: usize, tree: Option<&Tree>, skip_mid_identifier: bool) -> CompletionMode {
    let cursor = cursor.min(text.len());
    if !text.is_char_boundary(cursor) {
        return CompletionMode::Skip;
    }
    let before = &text[..cursor];
    let after = &text[cursor..];
    let line_before = before.rsplit(['\n', '\r']).next().unwrap_or("");
    let rest = after.split(['\n', '\r']).next().unwrap_or("");
    if skip_mid_identifier && line_before.chars().next_back().is_some_and(is_ident) && rest.chars().next().is_some_and(is_ident) {
        return CompletionMode::Skip;
    }
    if let Some(tree) = tree {
        // Inside a comment or a string: finish the line.
        let at = cursor.saturating_sub(1);
        let mut node = tree.root_node().descendant_for_byte_range(at, at);
        while let Some(n) = node {
            let kind = n.kind();
            if (kind.contains("comment") || kind.contains("string")) && n.start_byte() < cursor && cursor < n.end_byte() {
                return CompletionMode::SingleLine;
            }
            node = n.parent();
        }
    }
    if line_before.trim().is_empty() && !rest.trim().is_empty() {
        // At column 0 or after the indentation, in front of code: new lines
        // go in above it (see `postprocess`).
        return CompletionMode::MultiLine;
    }
    if !closing_only(rest) {
        return CompletionMode::SingleLine;
    }
    let trimmed = line_before.trim_end();
    if trimmed.trim_start().is_empty() {
        return CompletionMode::MultiLine; // a blank line (in a body, or anywhere)
    }
    let opener = trimmed.ends_with(':') || trimmed.ends_with('{') || trimmed.ends_with("=>") || trimmed.ends_with(" do") || trimmed.ends_with('(') || trimmed.ends_with('[');
    if opener {
        CompletionMode::MultiLine
    } else {
        CompletionMode::SingleLine
    }
}

/// Whether the cursor at byte `cursor` of `text` ends a line that has code
/// (or a comment) before it and nothing after it: where, once nothing is
/// left to write on the line, what comes next is Enter and the next line.
pub fn ends_a_written_line(text: &str, cursor: usize) -> bool {
    let Some((before, after)) = text.get(..cursor).zip(text.get(cursor..)) else {
        return false;
    };
    let rest = after.split(['\n', '\r']).next().unwrap_or("");
    !line_before_cursor(before).trim().is_empty() && rest.trim().is_empty()
}

/// The indentation of the cursor's line (byte `cursor` of `text`), in
/// spaces and tabs: all of the line before the cursor where that is blank.
/// A multi-line answer's lines less indented have left the cursor's block.
pub fn cursor_line_indent(text: &str, cursor: usize) -> usize {
    let head = line_before_cursor(text.get(..cursor).unwrap_or(""));
    head.len() - head.trim_start_matches([' ', '\t']).len()
}

/// The part of the cursor's line before the cursor, `before` being all
/// the text before it.
fn line_before_cursor(before: &str) -> &str {
    before.rsplit(['\n', '\r']).next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(marked: &str) -> CompletionMode {
        let cursor = marked.find("$0").unwrap();
        let text = marked.replace("$0", "");
        let mut parser = tree_sitter::Parser::new();
        parser.set_language(&tree_sitter_python::LANGUAGE.into()).unwrap();
        let tree = parser.parse(&text, None).unwrap();
        completion_mode(&text, cursor, Some(&tree), true)
    }

    #[test]
    fn blocks_and_blank_lines_are_multi_line() {
        assert_eq!(mode("def f(x):\n    $0\n"), CompletionMode::MultiLine);
        assert_eq!(mode("def f(x):$0\n"), CompletionMode::MultiLine);
        assert_eq!(mode("if x:\n    y = 1\n\n    $0\n"), CompletionMode::MultiLine);
    }

    #[test]
    fn mid_line_comments_and_strings_are_single_line() {
        assert_eq!(mode("x = foo($0, 2)\n"), CompletionMode::SingleLine);
        assert_eq!(mode("x = 1  # the $0\n"), CompletionMode::SingleLine);
        assert_eq!(mode("s = \"hello $0\"\n"), CompletionMode::SingleLine);
        assert_eq!(mode("total = a + $0\n"), CompletionMode::SingleLine);
    }

    #[test]
    fn closing_characters_after_the_cursor_do_not_make_it_mid_line() {
        assert_eq!(mode("print($0)\n"), CompletionMode::MultiLine);
        assert_eq!(mode("x = [1, $0]\n"), CompletionMode::SingleLine);
    }

    #[test]
    fn column_zero_or_indentation_in_front_of_code_inserts_lines_above() {
        assert_eq!(mode("def f(x):\n$0    return x\n"), CompletionMode::MultiLine);
        assert_eq!(mode("$0import os\n"), CompletionMode::MultiLine);
        assert_eq!(mode("def f(x):\n    $0return x\n"), CompletionMode::MultiLine, "after the indentation");
        assert_eq!(mode("def f(x):\n    y = $0x\n"), CompletionMode::SingleLine, "after code: joins the line");
    }

    #[test]
    fn a_written_line_ends_where_nothing_follows_code_on_it() {
        let at = |marked: &str| ends_a_written_line(&marked.replace("$0", ""), marked.find("$0").unwrap());
        assert!(at("x = 1$0\ny = 2\n"));
        assert!(at("    total += x$0   \n"), "trailing spaces");
        assert!(at("# the total$0"), "a comment, at the end of the file");
        assert!(!at("x = 1\n    $0\n"), "a blank line");
        assert!(!at("x = f($0)\n"), "text after the cursor");
        assert!(!at("$0x = 1\n"), "column 0");
        assert!(!ends_a_written_line("é", 1), "not a character boundary");
    }

    #[test]
    fn the_cursor_lines_indentation_is_its_leading_spaces_and_tabs() {
        let at = |marked: &str| cursor_line_indent(&marked.replace("$0", ""), marked.find("$0").unwrap());
        assert_eq!(at("def f():\n    $0\n"), 4, "a blank line: all of it before the cursor");
        assert_eq!(at("def f():\n        $0"), 8);
        assert_eq!(at("if x:\n\ty = f($0)\n"), 1, "a tab");
        assert_eq!(at("a\r    b = 1$0\r"), 4, "CR line breaks");
        assert_eq!(at("$0x = 1\n"), 0);
        assert_eq!(cursor_line_indent("  é", 3), 0, "not a character boundary: nothing");
    }

    #[test]
    fn the_middle_of_an_identifier_gets_no_request() {
        assert_eq!(mode("value = compu$0te(1)\n"), CompletionMode::Skip);
        assert_eq!(mode("value = compute$0(1)\n"), CompletionMode::SingleLine);
    }
}
