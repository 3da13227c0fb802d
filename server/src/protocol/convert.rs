//! Conversions between LSP types and the plain types of the inner layers.
//! Positions are converted on the rope by `documents::encoding`, which clamps
//! out-of-range positions instead of failing.

use tower_lsp_server::gen_lsp_types as lsp;

use crate::documents::{PositionEncoding, Position, Range, TextChange};

/// An LSP position as the documents layer's plain position.
pub fn position(p: lsp::Position) -> Position {
    Position { line: p.line, character: p.character }
}

/// A plain position as an LSP position.
pub fn to_lsp_position(p: Position) -> lsp::Position {
    lsp::Position { line: p.line, character: p.character }
}

/// An LSP content change as a plain text change.
pub fn text_change(change: lsp::TextDocumentContentChangeEvent) -> TextChange {
    match change {
        lsp::TextDocumentContentChangeEvent::TextDocumentContentChangePartial(p) => TextChange {
            range: Some(Range { start: position(p.range.start), end: position(p.range.end) }),
            text: p.text,
        },
        lsp::TextDocumentContentChangeEvent::TextDocumentContentChangeWholeDocument(w) => TextChange { range: None, text: w.text },
    }
}

/// The encoding to use, from what the client offers (utf-8 preferred).
pub fn negotiate_encoding(params: &lsp::InitializeParams) -> PositionEncoding {
    let offered: Vec<String> = params
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.clone())
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect();
    PositionEncoding::negotiate(offered.iter().map(String::as_str))
}

/// The LSP name of an encoding.
pub fn encoding_kind(encoding: PositionEncoding) -> lsp::PositionEncodingKind {
    match encoding {
        PositionEncoding::Utf8 => lsp::PositionEncodingKind::UTF8,
        PositionEncoding::Utf16 => lsp::PositionEncodingKind::UTF16,
        PositionEncoding::Utf32 => lsp::PositionEncodingKind::UTF32,
    }
}

/// A language id as the string the client sent.
pub fn language_id(kind: &lsp::LanguageKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
