//! Splitting a text at a cursor given as 1-based line and column (the CLI).

use crate::documents::line_starts;

/// The text on either side of the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorText {
    /// Everything before the cursor.
    pub prefix: String,
    /// Everything after the cursor.
    pub suffix: String,
}

/// Why a cursor position does not fit the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Line numbers start at 1 and must exist in the file.
    #[error("line {line} is outside the file (it has {lines} lines)")]
    LineOutOfRange {
        /// The line asked for (1-based).
        line: usize,
        /// Lines in the file.
        lines: usize,
    },
    /// Columns start at 1 and may be one past the line's last character.
    #[error("column {column} is outside line {line} (it has {chars} characters)")]
    ColumnOutOfRange {
        /// The line (1-based).
        line: usize,
        /// The column asked for (1-based).
        column: usize,
        /// Characters on that line, line break excluded.
        chars: usize,
    },
}

/// Splits `text` at a 1-based line and column (column in characters, as
/// compilers print them; one past the end of the line is allowed). Lines end
/// at `\n`, `\r\n` or `\r`, as in LSP.
pub fn split_at_line_column(text: &str, line: usize, column: usize) -> Result<CursorText, CursorError> {
    let starts = line_starts(text);
    if line == 0 || line > starts.len() {
        return Err(CursorError::LineOutOfRange { line, lines: starts.len() });
    }
    let start = starts[line - 1];
    let rest = &text[start..];
    let content_len = rest.find(['\n', '\r']).unwrap_or(rest.len());
    let content = &rest[..content_len];
    let chars = content.chars().count();
    if column == 0 || column > chars + 1 {
        return Err(CursorError::ColumnOutOfRange { line, column, chars });
    }
    let offset = start + content.char_indices().nth(column - 1).map(|(i, _)| i).unwrap_or(content_len);
    Ok(CursorText { prefix: text[..offset].to_string(), suffix: text[offset..].to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_a_one_based_position() {
        let t = split_at_line_column("ab\ncd\n", 2, 2).unwrap();
        assert_eq!((t.prefix.as_str(), t.suffix.as_str()), ("ab\nc", "d\n"));
    }

    #[test]
    fn end_of_line_and_empty_last_line_are_valid() {
        let t = split_at_line_column("ab\r\ncd", 1, 3).unwrap();
        assert_eq!((t.prefix.as_str(), t.suffix.as_str()), ("ab", "\r\ncd"));
        let t = split_at_line_column("ab\n", 2, 1).unwrap();
        assert_eq!((t.prefix.as_str(), t.suffix.as_str()), ("ab\n", ""));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let t = split_at_line_column("é🦀x", 1, 3).unwrap();
        assert_eq!(t.prefix, "é🦀");
    }

    #[test]
    fn positions_outside_the_file_are_errors() {
        assert_eq!(split_at_line_column("a\nb", 3, 1), Err(CursorError::LineOutOfRange { line: 3, lines: 2 }));
        assert_eq!(split_at_line_column("a\nb", 0, 1), Err(CursorError::LineOutOfRange { line: 0, lines: 2 }));
        assert_eq!(split_at_line_column("abc", 1, 5), Err(CursorError::ColumnOutOfRange { line: 1, column: 5, chars: 3 }));
    }
}
