//! What the user is shown: the model's raw completion, cut and cleaned.
//!
//! A code model does not know when to stop. It runs past the end of the block
//! the cursor is in, re-types the lines that already follow the cursor, loops
//! on one line, and gets cut off mid-token by the deadline. This module turns
//! its raw output into the text to insert at the cursor, or into nothing when
//! nothing worth showing is left.
//!
//! The layer is pure: text in, text out; no I/O, no async, no LSP types. It
//! never panics, whatever the input. Every rule either cuts the text to a
//! prefix of itself or (only [`rules::match_indentation_style`]) rewrites the
//! leading whitespace of lines; so the output, with each line's leading
//! whitespace removed, is always a prefix of the completion treated the same
//! way. Nothing that is not in the completion is ever shown.
//!
//! # The order of the rules
//!
//! [`postprocess`] applies them in this order, each to the previous one's
//! result:
//!
//! 1. [`rules::cut_incomplete_line`]: when generation was cut short, drop the
//!    unfinished last line. First, because every later rule reasons about
//!    whole lines, and a half line (`retu`) would mislead them.
//! 2. [`rules::keep_first_line`] in [`Extent::SingleLine`].
//! 3. [`rules::match_indentation_style`]: tabs to spaces or back, to match the
//!    file. Before the rules that compare indentation with the document's, so
//!    that they compare like with like.
//! 4. [`rules::drop_repetition`]: a model stuck in a loop is cut after the
//!    first round. Before the structural rules, whose work it makes smaller.
//! 5. [`rules::stop_at_block_end`]: stop where the suggestion leaves the block
//!    the cursor is in (dedent, or a closer of a bracket the suffix closes).
//! 6. [`rules::drop_suffix_overlap`]: drop the part that re-types what follows
//!    the cursor (the next lines, or the rest of the cursor's line). After the
//!    block rule, which already removes the common case of a re-typed closing
//!    line, and which this rule's line comparison cannot tell from the end of
//!    a block of the suggestion's own.
//! 7. [`rules::balance_brackets`]: cut at a closer that matches nothing, and
//!    cut a multi-line suggestion back so that it does not leave a bracket of
//!    its own open.
//! 8. [`rules::trim_whitespace`]: trailing whitespace goes, and a suggestion
//!    of only whitespace becomes nothing. Last, because every cut above may
//!    leave a dangling line break or indentation.
//!
//! 9. [`rules::cut_to_parsable`]: a multi-line suggestion may not add syntax
//!    errors to the file (tree-sitter); otherwise it is cut back to the
//!    shortest line cut with the fewest, or dropped. Last, on the finished
//!    text, since it parses the file with the suggestion in place; then the
//!    whitespace rule once more for the cut's line break.
//!
//! A multi-line answer cut to nothing whose first line was finished (a
//! block opened, then cut short by the token limit) is shown as its first
//! line alone, through the single-line rules.
//!
//! At column 0 in front of code (the cursor before an existing line's first
//! character), or after its indentation in front of more than closing
//! characters, the suggestion is lines inserted above that line: the rules
//! treat the cursor's line as blank, and a non-empty result gets a final
//! line break and the indentation so the existing line moves down intact.

#![warn(missing_docs)]

mod indent;
mod lexer;
mod lines;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod props_tests;
pub mod rules;
mod surroundings;
#[cfg(test)]
pub(crate) mod test_support;

pub use indent::{indentation_style, IndentStyle};
pub use rules::cut_to_complete_lines;
pub use surroundings::Surroundings;

use crate::documents::Language;

/// Whether the server asked the model for the rest of the line or for a
/// block: the editor shows these differently, and the cut rules differ.
/// `context::CompletionMode` decides it before the request, where it may also
/// decide there is no request (`Skip`); this is what is left of it once there
/// is an answer, and post-processing does not depend on `context`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// Complete the cursor's line only.
    SingleLine,
    /// Complete the line and possibly the lines after it.
    MultiLine,
}

/// Everything postprocessing looks at: the raw completion and where it goes.
#[derive(Clone, Copy, Debug)]
pub struct PostprocessInput<'a> {
    /// The model's raw output, control tokens already removed.
    pub completion: &'a str,
    /// The document before the cursor (only its end is looked at).
    pub prefix: &'a str,
    /// The document after the cursor (only its start is looked at).
    pub suffix: &'a str,
    /// The document's language: it decides comment and string syntax and
    /// whether blocks are braces or indentation.
    pub language: &'a Language,
    /// Single-line or multi-line completion.
    pub extent: Extent,
    /// Generation was cut by the deadline or the token limit, so the last
    /// line may be unfinished.
    pub truncated: bool,
}

/// Turns the model's raw completion into the text to show at the cursor;
/// an empty string means show nothing. See the module documentation for the
/// rules and their order.
pub fn postprocess(input: &PostprocessInput) -> String {
    let shown = run_rules(input);
    // A multi-line answer the rules cut to nothing (a block opened and cut
    // short by the token limit, `if (x) {` and half a body) still has a
    // finished first line: it is shown alone, as a single-line request's
    // would be. Not at column 0 in front of code, where a line must come
    // with its line break.
    let first_line_done = input.completion.trim_start().contains(['\n', '\r']);
    if shown.is_empty() && input.extent == Extent::MultiLine && first_line_done && !Surroundings::new(input).inserts_lines_above {
        return run_rules(&PostprocessInput { extent: Extent::SingleLine, ..*input });
    }
    shown
}

fn run_rules(input: &PostprocessInput) -> String {
    let context = Surroundings::new(input);
    let text = rules::cut_incomplete_line(input.completion, input.extent, input.truncated, &context);
    let text = match input.extent {
        Extent::SingleLine => rules::keep_first_line(text),
        Extent::MultiLine => text,
    };
    let converted = rules::match_indentation_style(text, &context);
    let text = rules::drop_repetition(&converted);
    let text = rules::stop_at_block_end(text, &context);
    let text = rules::drop_suffix_overlap(text, &context);
    let text = rules::balance_brackets(text, &context);
    let text = rules::trim_whitespace(text, &context);
    // The code at the cursor moves down below lines inserted above it, with
    // the line break that file uses there, and keeps its indentation (the
    // cursor's line before the cursor).
    let code_moved_down = if context.inserts_lines_above && input.extent == Extent::MultiLine {
        let rest = lines::first_line(input.suffix);
        let crlf = input.suffix.get(rest.len()..).is_some_and(|after| after.starts_with("\r\n"));
        let line_break = if crlf { "\r\n" } else { "\n" };
        format!("{line_break}{}", context.cursor_line)
    } else {
        String::new()
    };
    let text = rules::cut_to_parsable(text, input, &code_moved_down);
    let mut shown = rules::trim_whitespace(text, &context).to_owned();
    if !shown.is_empty() {
        shown.push_str(&code_moved_down);
    }
    shown
}
