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

#![warn(missing_docs)]

mod context;
mod indent;
mod lexer;
mod lines;
pub mod rules;
#[cfg(test)]
pub(crate) mod test_support;

pub use context::Context;
pub use indent::{indentation_style, IndentStyle};
pub use rules::cut_to_complete_lines;

use crate::documents::Language;

/// Whether the server asked the model for the rest of the line or for a
/// block: the editor shows these differently, and the cut rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
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
    pub mode: Mode,
    /// Generation was cut by the deadline or the token limit, so the last
    /// line may be unfinished.
    pub truncated: bool,
}
