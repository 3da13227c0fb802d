//! Where a suggestion goes in the document: at the cursor, covering the
//! closing characters after it when its first line ends with them, with
//! the identifier being typed for clients that filter items by it; or, when
//! the editor's completion list has an item selected, over that item's
//! range. Positions are plain positions in the negotiated encoding
//! (`documents::encoding`); a front end turns them into its own types.

use crate::documents::encoding::byte_to_position;
use crate::documents::{Position, PositionEncoding};

/// A suggestion placed in the document, ready to be turned into an editor's
/// items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// Text to insert at the cursor.
    pub text: String,
    /// The cursor.
    pub cursor: Position,
    /// End of the text after the cursor the suggestion replaces (closing
    /// characters it also covers), if any.
    pub replace_end: Option<Position>,
    /// Start of the identifier being typed, for clients that filter by it.
    pub word_start: Position,
    /// The identifier characters between `word_start` and the cursor.
    pub word: String,
}

/// The item selected in the editor's completion list (LSP 3.18
/// `selectedCompletionInfo`): the range it would replace and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedItem {
    /// Start of the range the item replaces.
    pub start: Position,
    /// End of that range.
    pub end: Position,
    /// The item's text.
    pub text: String,
}

/// The suggestion `shown` at byte `offset` of `text` (whose rope is `rope`):
/// positions in `encoding`, and the closing characters after the cursor it
/// also covers.
pub fn placed(rope: &ropey::Rope, text: &str, offset: usize, encoding: PositionEncoding, shown: String) -> Suggestion {
    let (rest_of_line, word) = around_cursor(text, offset);
    let cursor = byte_to_position(rope, offset, encoding).value;
    let covers_rest = !rest_of_line.trim().is_empty()
        && rest_of_line.trim().chars().all(|c| ")]}\"'`;,>".contains(c))
        && shown.lines().next().is_some_and(|first| first.trim_end().ends_with(rest_of_line.trim()));
    let replace_end = covers_rest.then(|| byte_to_position(rope, offset + rest_of_line.len(), encoding).value);
    let word_start = byte_to_position(rope, offset - word.len(), encoding).value;
    Suggestion { text: shown, cursor, replace_end, word_start, word }
}

/// The suggestion `shown` after the item selected in the completion list:
/// the item's text, then the suggestion, over the item's range (an editor
/// shows an inline suggestion beside its list only if it extends the
/// selected item).
pub fn over_selected(item: &SelectedItem, shown: &str) -> Suggestion {
    Suggestion {
        text: format!("{}{shown}", item.text),
        cursor: item.start,
        replace_end: Some(item.end),
        word_start: item.start,
        word: String::new(),
    }
}

/// The rest of the cursor's line, and the identifier characters just before
/// the cursor.
fn around_cursor(text: &str, offset: usize) -> (String, String) {
    let rest_of_line = text[offset..].split(['\n', '\r']).next().unwrap_or("").to_string();
    let word: String = {
        let tail: Vec<char> = text[..offset].chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        tail.into_iter().rev().collect()
    };
    (rest_of_line, word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fixture` with `$0` at the cursor, placed with `shown`, in UTF-16.
    fn place(fixture: &str, shown: &str) -> Suggestion {
        let offset = fixture.find("$0").expect("a cursor");
        let text = fixture.replace("$0", "");
        placed(&ropey::Rope::from_str(&text), &text, offset, PositionEncoding::Utf16, shown.to_string())
    }

    fn at(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    #[test]
    fn a_suggestion_ending_with_the_closers_after_the_cursor_covers_them() {
        let s = place("x = f($0)\n", "a, b)");
        assert_eq!((s.cursor, s.replace_end), (at(0, 6), Some(at(0, 7))));
        let s = place("print(\"$0\");\nnext", "hi\");");
        assert_eq!(s.replace_end, Some(at(0, 10)));
    }

    #[test]
    fn closers_the_suggestion_does_not_end_with_stay_after_it() {
        assert_eq!(place("x = f($0)\n", "a, b").replace_end, None);
        // Only closing characters are covered, never code.
        assert_eq!(place("x = f($0) + y\n", "a) + y").replace_end, None);
        // A suggestion of several lines is judged by its first.
        assert_eq!(place("f($0)\n", "a,\n  b)").replace_end, None);
        assert_eq!(place("x = $0\n", "1").replace_end, None);
    }

    #[test]
    fn the_word_being_typed_starts_the_item_for_filtering_clients() {
        let s = place("    total = sub_tot$0\n", "al + tax");
        assert_eq!((s.word.as_str(), s.word_start, s.cursor), ("sub_tot", at(0, 12), at(0, 19)));
        assert_eq!(place("x = ($0", "1)").word, "");
    }

    #[test]
    fn positions_are_in_the_negotiated_encoding() {
        // 😀 is two UTF-16 units, four bytes, one UTF-32 unit.
        let text = "s = \"😀\" + f(é$0)\n";
        let offset = text.find("$0").unwrap();
        let text = text.replace("$0", "");
        let rope = ropey::Rope::from_str(&text);
        let utf16 = placed(&rope, &text, offset, PositionEncoding::Utf16, "x)".into());
        assert_eq!((utf16.word_start, utf16.cursor, utf16.replace_end), (at(0, 13), at(0, 14), Some(at(0, 15))));
        let utf8 = placed(&rope, &text, offset, PositionEncoding::Utf8, "x)".into());
        assert_eq!((utf8.cursor, utf8.replace_end), (at(0, offset as u32), Some(at(0, offset as u32 + 1))));
        let utf32 = placed(&rope, &text, offset, PositionEncoding::Utf32, "x)".into());
        assert_eq!(utf32.cursor, at(0, 13));
    }

    #[test]
    fn a_selected_item_comes_first_and_its_range_is_replaced() {
        let item = SelectedItem { start: at(3, 4), end: at(3, 7), text: "append".into() };
        let s = over_selected(&item, "(x)");
        assert_eq!(
            s,
            Suggestion {
                text: "append(x)".into(),
                cursor: at(3, 4),
                replace_end: Some(at(3, 7)),
                word_start: at(3, 4),
                word: String::new()
            }
        );
    }
}
