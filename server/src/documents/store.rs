//! Every document the editor has open, keyed by its URI string.
//!
//! The protocol layer owns one store (behind whatever lock it likes), feeds it
//! open/change/close notifications, and hands snapshots to completion work.
//! Documents are never read from disk: the editor's text is the truth.

use std::collections::hash_map::{Entry, HashMap};

use super::document::{ChangeReport, Document, DocumentLimits, DocumentSnapshot, TextChange};
use super::encoding::PositionEncoding;
use super::language::Language;

/// A notification or request named a document the store does not hold; the
/// protocol layer logs it and carries on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No document is open under this URI (never opened, or already closed).
    #[error("document not open: {uri}")]
    UnknownDocument {
        /// The URI that was asked for.
        uri: String,
    },
}

/// The open documents, with the limits every new document gets.
#[derive(Debug, Default)]
pub struct DocumentStore {
    /// Open documents by URI string, exactly as the editor spelled it.
    docs: HashMap<String, Document>,
    /// Given to every document opened from now on.
    limits: DocumentLimits,
}

impl DocumentStore {
    /// An empty store whose documents use `limits` (size rule for parsing and
    /// completion; see [`Document`]).
    pub fn new(limits: DocumentLimits) -> Self {
        Self {
            docs: HashMap::new(),
            limits,
        }
    }

    /// Opens a document; an already open one under the same URI is replaced,
    /// as a re-sent `didOpen` means the editor's text is authoritative again.
    /// The language comes from `language_id`, or the URI's extension.
    pub fn open(&mut self, uri: &str, language_id: &str, version: i32, text: &str) -> &Document {
        let language = Language::resolve(language_id, uri);
        let doc = Document::with_limits(text, language, version, self.limits);
        match self.docs.entry(uri.to_owned()) {
            Entry::Occupied(mut slot) => {
                slot.insert(doc);
                slot.into_mut()
            }
            Entry::Vacant(slot) => slot.insert(doc),
        }
    }

    /// Applies a batch of changes to an open document and records its version.
    pub fn change(
        &mut self,
        uri: &str,
        version: i32,
        changes: &[TextChange],
        enc: PositionEncoding,
    ) -> Result<ChangeReport, StoreError> {
        let doc = self.docs.get_mut(uri).ok_or_else(|| unknown(uri))?;
        Ok(doc.apply_changes(version, changes, enc))
    }

    /// Marks an open document stale: a change to it was refused (see
    /// [`Document::mark_stale`]).
    pub fn mark_stale(&mut self, uri: &str) -> Result<(), StoreError> {
        let doc = self.docs.get_mut(uri).ok_or_else(|| unknown(uri))?;
        doc.mark_stale();
        Ok(())
    }

    /// Closes a document and frees its text and tree.
    pub fn close(&mut self, uri: &str) -> Result<(), StoreError> {
        self.docs.remove(uri).map(drop).ok_or_else(|| unknown(uri))
    }

    /// The open document under `uri`.
    pub fn get(&self, uri: &str) -> Option<&Document> {
        self.docs.get(uri)
    }

    /// A snapshot of the open document under `uri`, for work off this thread.
    pub fn snapshot(&self, uri: &str) -> Result<DocumentSnapshot, StoreError> {
        self.docs
            .get(uri)
            .map(Document::snapshot)
            .ok_or_else(|| unknown(uri))
    }

    /// The URIs of all open documents, in no particular order.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.docs.keys().map(String::as_str)
    }

    /// How many documents are open.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when no document is open.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// The error for a URI that is not open.
fn unknown(uri: &str) -> StoreError {
    StoreError::UnknownDocument {
        uri: uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{Position, Range, SkipReason};

    const URI: &str = "file:///src/lib.rs";

    #[test]
    fn open_change_snapshot_close() {
        let mut store = DocumentStore::default();
        let doc = store.open(URI, "rust", 1, "fn a() {}\n");
        assert_eq!(doc.language(), &Language::Rust);
        let change = TextChange::replace(Range::new(Position::new(0, 3), Position::new(0, 4)), "b");
        let report = store.change(URI, 2, &[change], PositionEncoding::Utf16);
        assert_eq!(report, Ok(ChangeReport::default()));
        let snap = store.snapshot(URI);
        assert_eq!(
            snap.as_ref().map(|s| (s.text(), s.version())),
            Ok(("fn b() {}\n".to_owned(), 2))
        );
        assert!(snap.is_ok_and(|s| s.tree().is_some()));
        assert_eq!(store.uris().collect::<Vec<_>>(), vec![URI]);
        assert_eq!(store.close(URI), Ok(()));
        assert!(store.is_empty());
    }

    #[test]
    fn reopening_replaces_the_document() {
        let mut store = DocumentStore::default();
        store.open(URI, "rust", 1, "fn a() {}");
        let doc = store.open(URI, "", 5, "x = 1");
        assert_eq!((doc.text().as_str(), doc.version()), ("x = 1", 5));
        // An empty id falls back to the extension.
        assert_eq!(doc.language(), &Language::Rust);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn unknown_documents_are_typed_errors() {
        let mut store = DocumentStore::default();
        let err = StoreError::UnknownDocument {
            uri: URI.to_owned(),
        };
        let change = TextChange::full("x");
        assert_eq!(
            store.change(URI, 1, &[change], PositionEncoding::Utf8),
            Err(err.clone())
        );
        assert_eq!(store.close(URI), Err(err.clone()));
        assert_eq!(store.snapshot(URI).err(), Some(err));
        assert!(store.get(URI).is_none());
        store.open(URI, "rust", 1, "");
        assert!(store.close(URI).is_ok());
        assert!(store.close(URI).is_err());
    }

    #[test]
    fn a_refused_change_marks_the_document_stale_until_it_is_reopened() {
        let mut store = DocumentStore::default();
        assert!(store.mark_stale(URI).is_err());
        store.open(URI, "rust", 1, "fn a() {}");
        assert_eq!(store.mark_stale(URI), Ok(()));
        assert_eq!(store.snapshot(URI).ok().and_then(|s| s.skip_reason()), Some(SkipReason::Stale));
        store.open(URI, "rust", 2, "fn a() {}");
        assert_eq!(store.snapshot(URI).ok().and_then(|s| s.skip_reason()), None);
    }

    #[test]
    fn the_store_applies_its_limits() {
        let mut store = DocumentStore::new(DocumentLimits { max_bytes: 4 });
        let doc = store.open(URI, "rust", 1, "fn a() {}");
        assert_eq!(
            doc.skip_reason(),
            Some(SkipReason::TooLarge { bytes: 9, limit: 4 })
        );
        assert_eq!(doc.text(), "fn a() {}");
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DocumentStore>();
    }
}
