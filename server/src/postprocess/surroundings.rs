//! What the rules need to know about the document around the cursor, worked
//! out once per suggestion from a bounded window of the prefix and suffix.
//!
//! The key fact is the list of brackets open at the cursor, each marked with
//! whether the text after the cursor already closes it. A suggestion that
//! closes a bracket the suffix also closes would leave a duplicate closer: it
//! has run past the end of the enclosing block. A suggestion that closes a
//! bracket the document leaves open is finishing the user's code.

use super::indent::{IndentStats, IndentStyle};
use super::lexer::{Lexer, Token};
use super::lines::{self, advance_columns, indent_width, leading_ws};
use super::PostprocessInput;
use crate::documents::{closing_only, Language};

/// How much of the prefix (its end) and of the suffix (its start) is looked
/// at, in bytes. A block longer than this is rare; the cost of a miss is a
/// cut that is too early or too late, never a wrong character.
const WINDOW: usize = 64 * 1024;

/// How far below the innermost open bracket a closer looks for its opener.
/// Real code nests a few levels deep; the bound keeps pathological input
/// (thousands of `(` then thousands of `]`) linear.
const MAX_MATCH_DEPTH: usize = 256;

/// The index of the innermost entry of `stack` whose kind is `kind`, looking
/// at most [`MAX_MATCH_DEPTH`] entries deep.
fn innermost<T>(stack: &[T], kind: u8, kind_of: impl Fn(&T) -> u8) -> Option<usize> {
    let depth = stack
        .iter()
        .rev()
        .take(MAX_MATCH_DEPTH)
        .position(|t| kind_of(t) == kind)?;
    stack.len().checked_sub(depth + 1)
}

/// Whether the document closes an open bracket after the cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// A closer in the suffix matches it (or the suffix window ended before
    /// one could be found, which is assumed to mean the same).
    ClosedBySuffix,
    /// The suffix does not close it: the user has not written the closer yet.
    LeftOpen,
}

/// A bracket opened before the cursor and not closed before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenBracket {
    /// `(`, `[` or `{`.
    pub kind: u8,
    /// Indentation (columns) of the line the bracket is on.
    pub indent: usize,
    /// Whether it is on the cursor's line.
    pub on_cursor_line: bool,
    /// Whether the suffix closes it.
    pub fate: Fate,
}

impl OpenBracket {
    /// Whether closing this bracket ends the block the cursor is in: a brace,
    /// or any bracket opened on an earlier line. Closing a `(` or `[` opened
    /// on the cursor's line only ends an expression, and the suggestion may
    /// go on to the next statement.
    pub fn is_block(&self) -> bool {
        self.kind == b'{' || !self.on_cursor_line
    }
}

/// The last non-blank line before the cursor's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreviousLine {
    /// Its indentation in columns.
    pub indent: usize,
    /// Whether it opens an indentation block (see
    /// [`Surroundings::opens_indented_block`]).
    pub opens_block: bool,
}

/// The facts about the document around the cursor that the rules consult.
/// Built once per suggestion by [`Surroundings::new`]. Not called `Context`:
/// the `context` module is what goes into a prompt, this is what the rules
/// read of the document around the cursor.
#[derive(Clone, Debug)]
pub struct Surroundings<'a> {
    pub(crate) language: &'a Language,
    /// The cursor's line up to the cursor.
    pub(crate) cursor_line: &'a str,
    /// The cursor's line after the cursor (line break excluded).
    pub(crate) rest_of_line: &'a str,
    /// The suffix window after the cursor's line.
    pub(crate) next_lines: &'a str,
    /// The cursor is at column 0, or after the indentation, in front of
    /// code: the suggestion is whole lines inserted above that line, so it
    /// ends with a line break (and the indentation, which stays with the
    /// code).
    pub(crate) inserts_lines_above: bool,
    /// The file's indentation style.
    pub(crate) style: IndentStyle,
    /// The lexer's state at the cursor.
    pub(crate) lexer: Lexer,
    /// Brackets open at the cursor, outermost first.
    pub(crate) open: Vec<OpenBracket>,
    /// The last non-blank line before the cursor's line, if any.
    pub(crate) previous_line: Option<PreviousLine>,
}

impl<'a> Surroundings<'a> {
    /// Works out the context of `input`: the cursor's line, the file's
    /// indentation style, and the brackets open at the cursor with what the
    /// suffix does with them.
    pub fn new(input: &PostprocessInput<'a>) -> Self {
        let (prefix, _) = lines::tail(input.prefix, WINDOW);
        let (suffix, suffix_cut) = lines::head(input.suffix, WINDOW);
        let cursor_line = lines::last_line(prefix);
        let rest_of_line = lines::first_line(suffix);
        let next_lines = lines::lines(suffix)
            .nth(1)
            .and_then(|l| suffix.get(l.start..))
            .unwrap_or("");
        // At column 0 in front of code, or after the indentation in front of
        // more than closing characters, the suggestion goes in as whole lines
        // above that code: the rules see a blank cursor line with the code as
        // the first of the next lines.
        let in_front_of_code = cursor_line.is_empty() || !closing_only(rest_of_line);
        let inserts_lines_above =
            cursor_line.trim().is_empty() && !rest_of_line.trim().is_empty() && in_front_of_code;
        let (rest_of_line, next_lines) = if inserts_lines_above {
            ("", suffix)
        } else {
            (rest_of_line, next_lines)
        };

        let mut stats = IndentStats::default();
        stats.add(prefix, true);
        stats.add(suffix, false);
        let style = stats.style();
        let tab = style.tab_width();

        let mut lexer = Lexer::new(input.language);
        let mut open = scan_prefix(&mut lexer, prefix, tab);
        resolve_with_suffix(
            &mut open,
            lexer.clone(),
            suffix,
            suffix_cut,
            cursor_line,
            tab,
        );

        let mut context = Self {
            language: input.language,
            cursor_line,
            rest_of_line,
            next_lines,
            inserts_lines_above,
            style,
            lexer,
            open,
            previous_line: None,
        };
        let before_cursor_line = prefix
            .get(..prefix.len().saturating_sub(cursor_line.len()))
            .unwrap_or("");
        context.previous_line = before_cursor_line
            .rsplit(['\n', '\r'])
            .find(|line| !line.trim().is_empty())
            .map(|line| PreviousLine {
                indent: indent_width(line, tab),
                opens_block: context.opens_indented_block(line),
            });
        context
    }

    /// The tab width for measuring indentation in this file.
    pub(crate) fn tab(&self) -> usize {
        self.style.tab_width()
    }

    /// Whether the bracket rules apply: the language's strings and comments
    /// are known. In plain text a `)` may well be a list marker.
    pub(crate) fn knows_brackets(&self) -> bool {
        !matches!(self.language, Language::PlainText(_))
    }

    /// Whether `line` opens a block that only indentation ends: a trailing
    /// `:` in Python (and in plain text, for YAML-like files). The lines of
    /// such a block must be deeper than the line. A bracket block needs no
    /// such rule, since its closer marks its end; and demanding deeper lines
    /// after `{` would cut Go's `case` lines, which gofmt puts at the
    /// indentation of their `switch`.
    pub(crate) fn opens_indented_block(&self, line: &str) -> bool {
        matches!(self.language, Language::Python | Language::PlainText(_))
            && line.trim_end().ends_with(':')
    }
}

/// Scans the prefix window and returns the brackets still open at its end,
/// with the indentation of their lines. A closer that does not match the
/// innermost opener closes the nearest one of its kind (closing the ones in
/// between), as an editor's bracket matcher would; a closer of no open kind is
/// ignored.
fn scan_prefix(lexer: &mut Lexer, prefix: &str, tab: usize) -> Vec<OpenBracket> {
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut line_start = 0;
    for token in lexer.tokens(prefix) {
        match token {
            Token::Open { kind, .. } => stack.push((kind, line_start)),
            Token::Close { kind, .. } => {
                if let Some(j) = innermost(&stack, kind, |(k, _)| *k) {
                    stack.truncate(j);
                }
            }
            Token::LineBreak { next, .. } => line_start = next,
        }
    }
    stack
        .into_iter()
        .map(|(kind, start)| OpenBracket {
            kind,
            indent: indent_width(prefix.get(start..).unwrap_or(""), tab),
            on_cursor_line: start == line_start,
            fate: Fate::LeftOpen,
        })
        .collect()
}

/// Marks each open bracket with whether the suffix closes it.
///
/// The suffix is scanned for closers that match nothing opened in the
/// suffix itself. Each closes the innermost open bracket of its kind; but a
/// closer that starts its line closes, by preference, the innermost bracket of
/// its kind whose line has the same indentation, so that in
/// `fn f() {\n    if x {<cursor>\n}` the `}` is taken to close the function
/// and the `if` is seen as left open. Brackets skipped over are left open.
/// When the window ends before every bracket is accounted for, the rest are
/// assumed closed (the cautious choice: the suggestion is cut there).
fn resolve_with_suffix(
    open: &mut [OpenBracket],
    mut lexer: Lexer,
    suffix: &str,
    suffix_cut: bool,
    cursor_line: &str,
    tab: usize,
) {
    let mut top = open.len();
    let mut own: Vec<u8> = Vec::new();
    let mut line_start = 0;
    let first_line_column = if cursor_line.trim().is_empty() {
        Some(advance_columns(0, leading_ws(cursor_line), tab))
    } else {
        None
    };
    for token in lexer.tokens(suffix) {
        if top == 0 {
            break;
        }
        match token {
            Token::Open { kind, .. } => own.push(kind),
            Token::Close { at, kind } => {
                if let Some(j) = innermost(&own, kind, |k| *k) {
                    own.truncate(j);
                    continue;
                }
                let before = suffix.get(line_start..at).unwrap_or("");
                let starts_line = before.len() == leading_ws(before).len();
                let column = match (line_start, first_line_column) {
                    (0, Some(col)) => Some(col),
                    (0, None) => None,
                    _ => Some(0),
                };
                let indent = column
                    .filter(|_| starts_line)
                    .map(|col| advance_columns(col, before, tab));
                let candidates = || {
                    (0..top)
                        .rev()
                        .take(MAX_MATCH_DEPTH)
                        .filter(|j| open.get(*j).is_some_and(|o| o.kind == kind))
                };
                let chosen = indent
                    .and_then(|ind| {
                        candidates().find(|j| open.get(*j).is_some_and(|o| o.indent == ind))
                    })
                    .or_else(|| candidates().next());
                if let Some(j) = chosen {
                    if let Some(bracket) = open.get_mut(j) {
                        bracket.fate = Fate::ClosedBySuffix;
                    }
                    top = j;
                }
            }
            Token::LineBreak { next, .. } => line_start = next,
        }
    }
    if suffix_cut {
        for bracket in open.iter_mut().take(top) {
            bracket.fate = Fate::ClosedBySuffix;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::test_support::input;

    fn fates(language: &str, doc: &str) -> String {
        let language = Language::from_language_id(language);
        let context = Surroundings::new(&input(&language, doc, ""));
        context
            .open
            .iter()
            .map(|o| {
                let fate = match o.fate {
                    Fate::ClosedBySuffix => "closed",
                    Fate::LeftOpen => "open",
                };
                format!("{}@{} {fate}", o.kind as char, o.indent)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn the_suffix_decides_which_brackets_are_left_open() {
        let rust = "fn f() {\n    if x {$0\n}\n";
        assert_eq!(fates("rust", rust), "{@0 closed, {@4 open");
        let rust = "fn f() {\n    g($0);\n}\n";
        assert_eq!(fates("rust", rust), "{@0 closed, (@4 closed");
        let python = "x = foo(a,\n        $0";
        assert_eq!(fates("python", python), "(@0 open");
        let js = "describe('x', () => {\n  it('y', () => {\n    $0\n  });\n});\n";
        assert_eq!(
            fates("javascript", js),
            "(@0 closed, {@0 closed, (@2 closed, {@2 closed"
        );
        let go = "func f() {\n\tfmt.Println(\"}\", $0\n}\n";
        assert_eq!(fates("go", go), "{@0 closed, (@4 open");
    }

    #[test]
    fn the_previous_line_and_style_are_read() {
        let language = Language::Python;
        let context = Surroundings::new(&input(&language, "def f(x):\n\n$0\n    return x\n", ""));
        assert_eq!(
            context.previous_line,
            Some(PreviousLine {
                indent: 0,
                opens_block: true
            })
        );
        assert_eq!(context.style, IndentStyle::Spaces(4));
        assert_eq!(context.next_lines, "    return x\n");
    }
}
