//! What goes into a prompt besides the template: the text around the cursor,
//! chosen to fit the token budget, and what kind of suggestion the cursor
//! calls for.
//!
//! This layer is pure: no I/O, no tokio, no LSP types. Token counts come from
//! a counting function the caller passes in.

mod crossfile;
mod cursor;
mod mode;
mod window;

pub use crossfile::{definitions, neighbourhood, relevant_definitions, similar_chunks, Definition, SourceFile, CHUNK_LINES};
pub use cursor::{split_at_line_column, CursorError, CursorText};
pub use mode::{completion_mode, cursor_line_indent, ends_a_written_line, CompletionMode};
pub use window::{cursor_windows, whole_prefix_fits, WindowBudget, ALIGN_LINES};
