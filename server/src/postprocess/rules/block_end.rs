//! The suggestion stops where the block the cursor is in ends.
//!
//! Left alone, a model finishes the block and goes on to write the rest of
//! the file. Two signs say it has left the block:
//!
//! - **A dedent.** A line (outside the suggestion's own brackets, strings and
//!   comments) indented less than the block. The block's indentation is the
//!   cursor line's; when the cursor's line (completed by the suggestion's
//!   first line) opens an indentation block (ends with `:` in Python), lines
//!   must be deeper than it. When the cursor's line is blank, the block is
//!   that of the suggestion's first line, but never deeper than what the line
//!   before the cursor allows (its indentation, deeper if it ends with `:`,
//!   or the cursor's column if more). The suggestion's first line itself is
//!   never cut. The suggestion is cut before the dedented line. Lines after a
//!   `{` need not be deeper: the bracket logic below finds the end of a
//!   bracket block, and Go's `case` lines sit at their `switch`'s
//!   indentation.
//! - **A closer of a bracket the document already closes.** Brackets open at
//!   the cursor that a closer in the suffix matches (see
//!   [`Surroundings`](crate::postprocess::Surroundings)) belong to the document: the
//!   suggestion closing one again would duplicate the closer. The suggestion
//!   is cut right before such a closer, so `print(` + `x))` before `)` gives
//!   `x)`.
//!
//! A bracket open at the cursor that the suffix does *not* close is the
//! user's unfinished code, and the suggestion may close it. When that closes
//! the enclosing block (a `{`, or a bracket opened on an earlier line) or
//! happens on a dedented line, the suggestion ends with that line: with
//! `fn main() {` at the end of a file, `    run();\n}` is kept whole and the
//! next function the model writes is not. If the line opens new brackets of
//! its own after the closer (`} else {`), the cut is right after the closer.
//!
//! A dedented line that starts with a closer is left to the bracket logic
//! (kept if it closes the user's open bracket, cut if the suffix closes it).
//! Closers matching nothing, and all bracket logic in plain text, are left to
//! [`balance_brackets`](super::balance_brackets).

use crate::postprocess::surroundings::Fate;
use crate::postprocess::lexer::{Lexer, Token};
use crate::postprocess::lines::{advance_columns, first_line, indent_width, leading_ws, lines};
use crate::postprocess::Surroundings;

/// Where the block starts in the suggestion and how deep its lines must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scope {
    /// Index of the suggestion's first non-blank line (0 when the cursor's
    /// line has text before the cursor); it and the lines before it are
    /// never cut for indentation.
    first_line: usize,
    /// Lines indented less than this many columns leave the block.
    min_indent: usize,
}

impl Scope {
    fn new(completion: &str, context: &Surroundings) -> Self {
        let tab = context.tab();
        let cursor_column = indent_width(context.cursor_line, tab);
        if !context.cursor_line.trim().is_empty() {
            let line0 = first_line(completion);
            let line = if line0.trim().is_empty() {
                context.cursor_line
            } else {
                line0
            };
            let opens = usize::from(context.opens_indented_block(line));
            return Self {
                first_line: 0,
                min_indent: cursor_column + opens,
            };
        }
        let Some((index, line)) = lines(completion).enumerate().find(|(_, l)| !l.is_blank()) else {
            return Self {
                first_line: usize::MAX,
                min_indent: 0,
            };
        };
        let own_indent = if index == 0 {
            advance_columns(cursor_column, leading_ws(line.text), tab)
        } else {
            indent_width(line.text, tab)
        };
        let own = own_indent + usize::from(context.opens_indented_block(line.text));
        let allowed = context
            .previous_line
            .map_or(0, |p| p.indent + usize::from(p.opens_block))
            .max(cursor_column);
        Self {
            first_line: index,
            min_indent: own.min(allowed),
        }
    }
}

/// Cuts `completion` where it leaves the block the cursor is in (see the
/// module documentation); returns it unchanged when it stays inside.
pub fn stop_at_block_end<'c>(completion: &'c str, context: &Surroundings) -> &'c str {
    let cut = |end: usize| completion.get(..end).unwrap_or(completion);
    let scope = Scope::new(completion, context);
    let tab = context.tab();
    let brackets = context.knows_brackets();
    let mut lexer = context.lexer.clone();
    let mut own: Vec<u8> = Vec::new();
    // The brackets open at the cursor that the suggestion has not closed yet
    // are `context.open[..outer]`.
    let mut outer = context.open.len();
    let mut line_index = 0;
    let mut line_dedented = false;
    // Set when the suggestion closed the enclosing block on this line: the
    // position just after that closer.
    let mut stop_after: Option<usize> = None;
    // Where the cut goes if the suggestion ends or the analysis gives up on
    // this line after closing the block.
    let end_here = |stop_after: Option<usize>, own: &[u8], at: usize| match stop_after {
        Some(after) if !own.is_empty() => after,
        _ => at,
    };
    // Set by a closer of the document's bracket that its line opens again
    // (`} else {`): the next opener of that kind at depth 0 is the
    // document's bracket again, not one of the suggestion's own.
    let mut reopening: Option<u8> = None;
    for token in lexer.tokens(completion) {
        match token {
            Token::Open { kind, .. } if reopening == Some(kind) && own.is_empty() => reopening = None,
            Token::Open { kind, .. } => {
                if brackets {
                    own.push(kind);
                }
            }
            Token::Close { at, kind } => {
                if !brackets {
                    continue;
                }
                if let Some(&top) = own.last() {
                    if top != kind {
                        // A mismatched closer: `balance_brackets` cuts there.
                        return cut(end_here(stop_after, &own, completion.len()));
                    }
                    own.pop();
                    continue;
                }
                let Some(bracket) = outer.checked_sub(1).and_then(|j| context.open.get(j)) else {
                    return cut(end_here(stop_after, &own, completion.len()));
                };
                if bracket.kind != kind {
                    return cut(end_here(stop_after, &own, completion.len()));
                }
                match bracket.fate {
                    Fate::ClosedBySuffix => {
                        // Still open for the suffix if the line opens it again.
                        if opens_again_on_its_line(context.lexer.in_code_again(), &completion[at + 1..], kind) {
                            reopening = Some(kind);
                            continue;
                        }
                        return cut(at);
                    }
                    Fate::LeftOpen => {
                        outer -= 1;
                        if bracket.is_block() || line_dedented {
                            stop_after = Some(at + 1);
                        }
                    }
                }
            }
            Token::LineBreak { at, next, in_code } => {
                if stop_after.is_some() {
                    return cut(end_here(stop_after, &own, at));
                }
                line_index += 1;
                line_dedented = false;
                if line_index <= scope.first_line || !own.is_empty() || !in_code {
                    continue;
                }
                let line = first_line(completion.get(next..).unwrap_or(""));
                if line.trim().is_empty() || indent_width(line, tab) >= scope.min_indent {
                    continue;
                }
                let starts_with_closer =
                    matches!(line.trim_start().bytes().next(), Some(b')' | b']' | b'}'));
                if brackets && starts_with_closer {
                    line_dedented = true;
                    continue;
                }
                return cut(at);
            }
        }
    }
    cut(end_here(stop_after, &own, completion.len()))
}

/// Whether `rest` (the text after a closer of `kind`; `lexer` in code, as
/// a closer leaves it) opens a bracket of that kind again before its line
/// ends, outside brackets of its own: `} else {`, `} catch (err) {`.
fn opens_again_on_its_line(mut lexer: Lexer, rest: &str, kind: u8) -> bool {
    let mut depth = 0usize;
    for token in lexer.tokens(rest) {
        match token {
            Token::Open { kind: k, .. } if depth == 0 && k == kind => return true,
            Token::Open { .. } => depth += 1,
            Token::Close { .. } if depth == 0 => return false,
            Token::Close { .. } => depth -= 1,
            Token::LineBreak { .. } => return false,
        }
    }
    false
}

#[cfg(test)]
#[path = "block_end_tests.rs"]
mod tests;
