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
//!    shortest line cut with the fewest, or dropped. Near the end, on the finished
//!    text, since it parses the file with the suggestion in place; then the
//!    whitespace rule once more for the cut's line break.
//! 10. [`rules::keep_the_code_below_reachable`]: lines inserted above code
//!     stop before a line that would leave that code's block (`return`).
//!     After the parse check, which a `return` line often makes cut back
//!     further (to a loop's header, whose body is the code below), so it
//!     only drops what parses yet leaves the code unreachable.
//!
//! At the end of a written line, a multi-line answer that starts with a
//! line break goes through the rules as lines typed on a new blank line
//! below it (its first line may dedent: `else:` after an `if` body).
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
//! In front of closing characters only, a suggestion that ends with a line
//! break gets the cursor line's indentation after it, so the closers keep
//! their column on the line they move to.

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

use crate::documents::{closing_only, Language};

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
    if let Some(shown) = on_the_next_lines(input) {
        return shown;
    }
    let shown = run_rules(input);
    // A multi-line answer the rules cut to nothing (a block opened and cut
    // short by the token limit, `if (x) {` and half a body) still has a
    // finished first line: it is shown alone, as a single-line request's
    // would be. Not at column 0 in front of code, where a line must come
    // with its line break.
    let first_line_done = input.completion.trim_start().contains(['\n', '\r']);
    if shown.is_empty() && input.extent == Extent::MultiLine && first_line_done && !Surroundings::new(input).inserts_lines_above {
        let line = run_rules(&PostprocessInput { extent: Extent::SingleLine, ..*input });
        // Unless that line is what the rules cut for: an unexpected indent
        // (`total += 1` deeper than `total = 0` on the line before).
        return if rules::breaks_python_indentation(&line, input) { String::new() } else { line };
    }
    shown
}

/// At the end of a written line (nothing after the cursor on it), a
/// multi-line answer that starts with a line break is lines below that
/// line: the rules see them as typed on a new blank line, whose block is
/// the first line's own (the model may go on in the enclosing block:
/// `else:` after an `if` body's last line), never deeper than the line
/// before allows. `None` elsewhere.
fn on_the_next_lines(input: &PostprocessInput) -> Option<String> {
    let cursor_line = lines::last_line(input.prefix);
    let rest_of_line = lines::first_line(input.suffix);
    if input.extent != Extent::MultiLine || cursor_line.trim().is_empty() || !rest_of_line.trim().is_empty() {
        return None;
    }
    let line_break = ["\r\n", "\n", "\r"].into_iter().find(|b| input.completion.starts_with(b))?;
    let below = &input.completion[line_break.len()..];
    let prefix = format!("{}{line_break}", input.prefix);
    let shown = postprocess(&PostprocessInput { completion: below, prefix: &prefix, ..*input });
    Some(if shown.is_empty() { shown } else { format!("{line_break}{shown}") })
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
    let text = rules::keep_the_code_below_reachable(text, &context);
    let mut shown = rules::trim_whitespace(text, &context).to_owned();
    if !shown.is_empty() {
        shown.push_str(&code_moved_down);
        shown.push_str(closers_keep_their_indentation(&shown, &context));
    }
    shown
}

/// What follows a suggestion that ends with a line break in front of the
/// closing characters after the cursor (`    $0}`, `    call($0)`): the
/// indentation of the cursor's line, which those closers then keep on
/// the line they move to, instead of landing at column 0.
fn closers_keep_their_indentation<'a>(shown: &str, context: &Surroundings<'a>) -> &'a str {
    let ends_with_break = shown.ends_with('\n') || shown.ends_with('\r');
    let closers = context.rest_of_line.trim();
    let before_closers = !closers.is_empty() && closing_only(context.rest_of_line);
    // A first line that writes the closers itself is placed over them.
    let writes_the_closers = lines::first_line(shown).trim_end().ends_with(closers);
    if context.inserts_lines_above || !before_closers || !ends_with_break || writes_the_closers {
        return "";
    }
    lines::leading_ws(context.cursor_line)
}
