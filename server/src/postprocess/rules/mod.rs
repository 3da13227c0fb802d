//! The postprocessing rules, one per file, each a pure function of the text
//! so far and the [`Surroundings`](super::Surroundings). Each returns a prefix of its
//! input, except [`match_indentation_style`], which rewrites leading
//! whitespace only, and [`drop_retyped_cursor_text`] (for answers that could
//! not be token-healed), which drops what the answer re-types of the text
//! before the cursor. [`postprocess`](super::postprocess) chains them; the order
//! and the reasons for it are in the module documentation above.

mod block_end;
mod brackets;
mod cursor_overlap;
mod dead_code;
mod incomplete_line;
mod indentation;
mod parse_check;
mod repetition;
mod single_line;
mod suffix;
mod whitespace;

pub use block_end::stop_at_block_end;
pub use brackets::balance_brackets;
pub use cursor_overlap::drop_retyped_cursor_text;
pub use dead_code::keep_the_code_below_reachable;
pub use incomplete_line::{cut_incomplete_line, cut_to_complete_lines};
pub use indentation::match_indentation_style;
pub use parse_check::{breaks_python_indentation, cut_to_parsable};
pub use repetition::drop_repetition;
pub use single_line::keep_first_line;
pub use suffix::drop_suffix_overlap;
pub use whitespace::trim_whitespace;

/// Whether `text` has a letter or digit: a line without one (`}`, `);`, a
/// blank line) says too little to be compared or kept on its own.
pub(crate) fn has_alphanumeric(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}
