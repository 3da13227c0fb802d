//! The editor's open documents as ropes and syntax trees.
//!
//! This layer is pure: no tokio, no LSP types, no JSON, no I/O. The protocol
//! layer converts LSP types into the plain types here ([`Position`],
//! [`Range`], [`TextChange`]) and feeds a [`DocumentStore`]; completion work
//! takes a [`DocumentSnapshot`] to another thread.
//!
//! Invariants:
//! - Input never panics: out-of-range positions are clamped as the LSP spec
//!   says, and the clamping is reported ([`Clamp`]) for the caller to log.
//! - A document's tree, when it has one, belongs to its current text: every
//!   edit is described to tree-sitter before the incremental reparse. It is
//!   the tree tree-sitter's own incremental parse gives, which is a fresh
//!   parse's tree except where tree-sitter's recovery depends on history
//!   (see `server/tests/documents_props.rs`).
//! - A change that cannot be applied as the editor meant it is refused by
//!   the caller, never guessed at: the document is then marked stale
//!   ([`SkipReason::Stale`]) and ignores ranged changes until a whole-text
//!   change or a re-open puts it back in step with the editor.
//! - The user's text is never dropped: oversized or binary documents keep
//!   their text and only lose their tree ([`SkipReason`]).

#![warn(missing_docs)]

mod document;
pub mod encoding;
mod language;
mod lines;
mod registry;
mod store;
mod syntax;

pub use document::{
    ChangeReport, ClampedChange, Document, DocumentLimits, DocumentSnapshot, SkipReason, TextChange,
};
pub use encoding::{Clamp, Clamped, Position, PositionEncoding, Range};
pub use language::Language;
pub use lines::{closing_only, line_starts};
pub use registry::{LanguageSpec, LexicalSyntax};
pub use store::{DocumentStore, StoreError};
pub use syntax::SyntaxError;
