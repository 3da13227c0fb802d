//! One open document: its text as a rope, its language, its version and its
//! syntax tree, kept in step edit by edit.
//!
//! Edits arrive as editor ranges in the negotiated encoding. Each one is
//! clamped to the text (see [`crate::documents::encoding`]), described to the
//! old tree as a tree-sitter edit computed *before* the rope changes, then
//! applied to the rope; a batch is reparsed once, incrementally, at its end.
//!
//! The size rule: a document over [`DocumentLimits::max_bytes`] (2 MiB by
//! default) is "too large for context" and one containing a NUL byte is
//! "binary". Such a document keeps its full text, edits included (the user's
//! text is never dropped), but gets no syntax tree, and callers should skip
//! completion on it ([`Document::skip_reason`]). The rule is rechecked after
//! every batch, so a file that shrinks back under the limit is parsed again.

use ropey::Rope;
use tree_sitter::Tree;

use super::encoding::{range_to_bytes, Clamp, PositionEncoding, Range};
use super::language::Language;
use super::syntax::{self, Syntax, SyntaxError};

/// Limits that decide whether a document is worth parsing and completing in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Above this many bytes a document gets no tree and no completions:
    /// parsing and prompting on it would cost more than it helps.
    pub max_bytes: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self {
            max_bytes: 2 * 1024 * 1024,
        }
    }
}

/// Why callers should not offer completions in a document; its text is kept
/// regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// A change was refused ([`Document::mark_stale`]): the text may differ
    /// from the editor's until a whole-text change or a re-open.
    Stale,
    /// The text contains a NUL byte: probably not source code.
    Binary,
    /// The text is larger than the configured limit.
    TooLarge {
        /// The document's size in bytes.
        bytes: usize,
        /// The limit it exceeds.
        limit: usize,
    },
}

/// One content change as the editor sends it: replace `range` (in the
/// negotiated encoding) with `text`, or the whole document when `range` is
/// `None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TextChange {
    /// The span to replace; `None` replaces the whole text.
    pub range: Option<Range>,
    /// The new text for the span.
    pub text: String,
}

impl TextChange {
    /// A change that replaces `range` with `text`.
    pub fn replace(range: Range, text: impl Into<String>) -> Self {
        Self {
            range: Some(range),
            text: text.into(),
        }
    }

    /// A change that replaces the whole document with `text`.
    pub fn full(text: impl Into<String>) -> Self {
        Self {
            range: None,
            text: text.into(),
        }
    }
}

/// A change in a batch whose range had to be clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClampedChange {
    /// Index of the change in its batch.
    pub index: usize,
    /// The first clamping that happened to it.
    pub clamp: Clamp,
}

/// What happened while applying a batch, for the caller to log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChangeReport {
    /// Changes whose ranges were out of range or inside a character.
    pub clamped: Vec<ClampedChange>,
    /// Ranged changes left out because the document is stale: their
    /// ranges refer to a text this document does not have.
    pub ignored_while_stale: usize,
}

/// An open document, owned by the store and mutated by the protocol layer's
/// change notifications. Hand [`Document::snapshot`]s to other threads.
pub struct Document {
    /// The text; ropey counts `\n`, `\r\n` and `\r` as line breaks, as LSP does.
    rope: Rope,
    /// Decides the grammar; fixed for the document's life (a language change
    /// is a close and a re-open).
    language: Language,
    /// The editor's version of `rope`.
    version: i32,
    /// The size rule for this document.
    limits: DocumentLimits,
    /// `None` for languages without a grammar or whose grammar failed to load.
    syntax: Option<Syntax>,
    /// Why `syntax` is missing or failed, kept for the caller to log.
    syntax_error: Option<SyntaxError>,
    /// Lone `\r`s in the text; zero lets tree-sitter points use ropey's lines.
    lone_crs: usize,
    /// NUL bytes in the text; non-zero marks the document binary.
    nuls: usize,
    /// A change was refused: the text may not be the editor's.
    stale: bool,
}

impl Document {
    /// Opens a document with the default [`DocumentLimits`].
    pub fn new(text: &str, language: Language, version: i32) -> Self {
        Self::with_limits(text, language, version, DocumentLimits::default())
    }

    /// Opens a document, parsing it unless the size rule says to skip it.
    pub fn with_limits(
        text: &str,
        language: Language,
        version: i32,
        limits: DocumentLimits,
    ) -> Self {
        let rope = Rope::from_str(text);
        let (syntax, syntax_error) = match language.grammar().map(|g| Syntax::new(&g)) {
            None => (None, None),
            Some(Ok(syntax)) => (Some(syntax), None),
            Some(Err(err)) => (None, Some(err)),
        };
        let mut doc = Self {
            lone_crs: syntax::count_lone_crs(&rope, 0..rope.len_bytes()),
            nuls: text.bytes().filter(|b| *b == 0).count(),
            rope,
            language,
            version,
            limits,
            syntax,
            syntax_error,
            stale: false,
        };
        doc.refresh_syntax();
        doc
    }

    /// Applies one change and reparses; a batch of one for [`Self::apply_changes`].
    pub fn apply_change(
        &mut self,
        version: i32,
        change: &TextChange,
        enc: PositionEncoding,
    ) -> ChangeReport {
        self.apply_changes(version, std::slice::from_ref(change), enc)
    }

    /// Applies a batch of changes in order (each range refers to the text left
    /// by the previous change, as LSP specifies), records `version`, then
    /// reparses once.
    pub fn apply_changes(
        &mut self,
        version: i32,
        changes: &[TextChange],
        enc: PositionEncoding,
    ) -> ChangeReport {
        let mut report = ChangeReport::default();
        for (index, change) in changes.iter().enumerate() {
            match change.range {
                Some(_) if self.stale => {
                    report.ignored_while_stale += 1;
                    continue;
                }
                None => self.stale = false,
                Some(_) => {}
            }
            let clamp = self.apply_one(change, enc);
            if !clamp.is_exact() {
                report.clamped.push(ClampedChange { index, clamp });
            }
        }
        self.version = version;
        self.refresh_syntax();
        report
    }

    /// The whole text, copied; for tests and rare whole-file needs.
    pub fn text(&self) -> String {
        self.rope.to_string()
    }

    /// The text as a rope, for position conversions and slicing without copies.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// The current syntax tree; `None` for plain text and skipped documents.
    pub fn tree(&self) -> Option<&Tree> {
        self.syntax.as_ref().and_then(Syntax::tree)
    }

    /// The document's language.
    pub fn language(&self) -> &Language {
        &self.language
    }

    /// The editor's version of the text, as of the last open or change.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// Why completion should be skipped here, if it should (see the module docs).
    pub fn skip_reason(&self) -> Option<SkipReason> {
        if self.stale {
            return Some(SkipReason::Stale);
        }
        skip_reason(&self.rope, self.nuls, self.limits)
    }

    /// Marks the document out of step with the editor: a change to it was
    /// refused. Its text stays as it was; ranged changes are left out (they
    /// refer to a text it does not have) until a whole-text change, or a
    /// re-open, brings it back in step.
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// True after a refused change, until a whole-text change.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// True when the document exceeds the size limit.
    pub fn too_large_for_context(&self) -> bool {
        matches!(skip_reason(&self.rope, self.nuls, self.limits), Some(SkipReason::TooLarge { .. }))
    }

    /// True when the document contains a NUL byte.
    pub fn binary(&self) -> bool {
        self.nuls > 0
    }

    /// Why a language with a grammar has no tree, for the caller to log.
    pub fn syntax_error(&self) -> Option<&SyntaxError> {
        self.syntax_error.as_ref()
    }

    /// A cheap, immutable copy (rope and tree are shared, copy-on-write) to
    /// hand to a worker thread while this document keeps changing.
    pub fn snapshot(&self) -> DocumentSnapshot {
        DocumentSnapshot {
            rope: self.rope.clone(),
            tree: self.tree().cloned(),
            language: self.language.clone(),
            version: self.version,
            skip: self.skip_reason(),
        }
    }

    /// Lone `\r` count, for tests that check its bookkeeping.
    #[cfg(test)]
    pub(crate) fn lone_crs(&self) -> usize {
        self.lone_crs
    }

    /// Applies one change to the rope and describes it to the tree, without
    /// reparsing; returns how its range was clamped.
    fn apply_one(&mut self, change: &TextChange, enc: PositionEncoding) -> Clamp {
        match change.range {
            Some(range) => {
                let bytes = range_to_bytes(&self.rope, range, enc);
                self.edit_bytes(bytes.value, &change.text);
                bytes.clamp
            }
            None => {
                // A full replacement is usually a small change in disguise:
                // trimming the common prefix and suffix keeps the reparse
                // incremental.
                let (start, old_end, new_end) = self.diff_bounds(&change.text);
                match change.text.get(start..new_end) {
                    Some(middle) => self.edit_bytes(start..old_end, middle),
                    // Unreachable by construction; replacing everything is still right.
                    None => self.edit_bytes(0..self.rope.len_bytes(), &change.text),
                }
                Clamp::Exact
            }
        }
    }

    /// Finds the span where `text` differs from the current text, as
    /// `(start, old_end, new_end)` byte offsets on char boundaries.
    fn diff_bounds(&self, text: &str) -> (usize, usize, usize) {
        let (old_len, new) = (self.rope.len_bytes(), text.as_bytes());
        let mut prefix = 0;
        for chunk in self.rope.chunks() {
            let same = chunk
                .bytes()
                .zip(&new[prefix..])
                .take_while(|(a, b)| a == *b)
                .count();
            prefix += same;
            if same < chunk.len() {
                break;
            }
        }
        while !text.is_char_boundary(prefix) {
            prefix -= 1;
        }
        let max_suffix = old_len.min(new.len()) - prefix;
        let mut suffix = 0;
        let chunks = self.rope.chunks_at_byte(old_len).0.reversed();
        for chunk in chunks {
            let tail = &new[..new.len() - suffix];
            let same = chunk
                .bytes()
                .rev()
                .zip(tail.iter().rev())
                .take_while(|(a, b)| a == *b)
                .count();
            suffix += same;
            if same < chunk.len() || suffix >= max_suffix {
                break;
            }
        }
        suffix = suffix.min(max_suffix);
        while !text.is_char_boundary(new.len() - suffix) {
            suffix -= 1;
        }
        (prefix, old_len - suffix, new.len() - suffix)
    }

    /// Replaces a byte range (on char boundaries, within the text) with `text`,
    /// keeping the tree, the lone-`\r` count and the NUL count in step.
    fn edit_bytes(&mut self, bytes: std::ops::Range<usize>, text: &str) {
        // Callers pass valid ranges; clamping keeps a slip from panicking.
        let old_end = bytes.end.min(self.rope.len_bytes());
        let start = bytes.start.min(old_end);
        if start == old_end && text.is_empty() {
            return;
        }
        // Points of the old text, before the rope changes.
        let start_point = syntax::tree_point(&self.rope, start, self.lone_crs);
        let old_end_point = syntax::tree_point(&self.rope, old_end, self.lone_crs);
        let edit = syntax::input_edit(start, old_end, start_point, old_end_point, text);

        // A `\r` just before the edit may gain or lose its `\n`.
        let scan_from = start.saturating_sub(1);
        let crs_before = syntax::count_lone_crs(&self.rope, scan_from..old_end);
        let nuls_removed = syntax::count_nuls(&self.rope, start..old_end);

        let start_char = self.rope.byte_to_char(start);
        let end_char = self.rope.byte_to_char(old_end);
        self.rope.remove(start_char..end_char);
        self.rope.insert(start_char, text);

        let crs_after = syntax::count_lone_crs(&self.rope, scan_from..start + text.len());
        self.lone_crs = (self.lone_crs + crs_after).saturating_sub(crs_before);
        let nuls_added = text.bytes().filter(|b| *b == 0).count();
        self.nuls = (self.nuls + nuls_added).saturating_sub(nuls_removed);

        if let Some(syntax) = &mut self.syntax {
            syntax.edit(&edit);
        }
    }

    /// Reparses, or drops the tree when the size rule now skips the document.
    fn refresh_syntax(&mut self) {
        let skip = skip_reason(&self.rope, self.nuls, self.limits).is_some();
        let Some(syntax) = &mut self.syntax else {
            return;
        };
        if skip {
            syntax.clear();
            return;
        }
        self.syntax_error = syntax.refresh(&self.rope).err();
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("language", &self.language)
            .field("version", &self.version)
            .field("len_bytes", &self.rope.len_bytes())
            .field("skip", &self.skip_reason())
            .field("has_tree", &self.tree().is_some())
            .finish()
    }
}

/// The size rule, shared by documents and snapshots.
fn skip_reason(rope: &Rope, nuls: usize, limits: DocumentLimits) -> Option<SkipReason> {
    let bytes = rope.len_bytes();
    if nuls > 0 {
        Some(SkipReason::Binary)
    } else if bytes > limits.max_bytes {
        Some(SkipReason::TooLarge {
            bytes,
            limit: limits.max_bytes,
        })
    } else {
        None
    }
}

/// An immutable view of a document at one version: what completion works on,
/// on any thread, while the editor keeps typing. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct DocumentSnapshot {
    /// The text at `version`, sharing unchanged chunks with the document.
    rope: Rope,
    /// The tree matching `rope`, sharing unchanged subtrees.
    tree: Option<Tree>,
    /// The document's language.
    language: Language,
    /// The editor's version this snapshot shows.
    version: i32,
    /// The size rule's verdict at `version`.
    skip: Option<SkipReason>,
}

impl DocumentSnapshot {
    /// The text as a rope.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// The whole text, copied.
    pub fn text(&self) -> String {
        self.rope.to_string()
    }

    /// The syntax tree matching this text, if the document has one.
    pub fn tree(&self) -> Option<&Tree> {
        self.tree.as_ref()
    }

    /// The document's language.
    pub fn language(&self) -> &Language {
        &self.language
    }

    /// The editor's version this snapshot shows; lets a late result be dropped.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// Why completion should be skipped on this snapshot, if it should.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        self.skip
    }
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
