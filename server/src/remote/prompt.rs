//! Turning the prompt cria built (token ids, exactly what the resident model
//! would run) into what a remote engine's API takes: the ids themselves,
//! their text, or the text before and after the cursor for llama.cpp's
//! `/infill`, which lays out the FIM prompt on its side.
//!
//! Splitting is unambiguous because user text never encodes to a control
//! token: the template's control tokens mark where the prefix and the suffix
//! begin and end.

use crate::engine::{TokenKind, Tokenizer};
use crate::models::SuffixEncoding;
use crate::prompt::{FimTemplate, Segment};

/// The prompt as text: control tokens written as their vocabulary text (the
/// remote tokenizer turns them back into control tokens), other tokens as
/// their bytes. A leading BOS is left out, since servers add their own.
pub fn prompt_text(tokenizer: &Tokenizer, tokens: &[u32]) -> String {
    let tokens = match (tokens.first(), tokenizer.bos()) {
        (Some(first), Some(bos)) if *first == bos => &tokens[1..],
        _ => tokens,
    };
    let mut bytes = Vec::new();
    for &id in tokens {
        let piece = tokenizer.token_bytes(id);
        if piece.is_empty() && tokenizer.kind_of(id) == Some(TokenKind::Control) {
            bytes.extend_from_slice(tokenizer.piece(id).unwrap_or_default().as_bytes());
        } else {
            bytes.extend_from_slice(piece);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The text before and after the cursor that a prompt holds, and the
/// snippets of other files placed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfillText {
    /// Text before the cursor (with inline context comments, if any), up to
    /// what the prompt puts after the middle marker.
    pub prefix: String,
    /// The cursor line's text placed after the middle marker (llama.cpp's
    /// `prompt` field); empty when the layout keeps it in the prefix.
    pub middle: String,
    /// Text after the cursor.
    pub suffix: String,
    /// Repository-level context: (file name, text) of each snippet, in order.
    pub extra: Vec<(String, String)>,
}

/// Finds the prefix, suffix and after-middle text in a prompt laid out by
/// `template` (the prefix and the middle text together are the text before
/// the cursor that the prompt kept), and the
/// repository-level context (file-separator blocks `path\ntext`) before the
/// template's first control token, which llama.cpp takes as separate files.
/// `None` when the tokens do not follow the template.
pub fn split_infill(template: &FimTemplate, tokenizer: &Tokenizer, tokens: &[u32]) -> Option<InfillText> {
    let mut at = 0;
    let mut prefix = String::new();
    let mut suffix = String::new();
    let mut extra = Vec::new();
    let segments = &template.segments;
    for (index, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Token(id) => {
                // Context (and BOS) may come before the first control token.
                let skip = tokens.get(at..)?.iter().position(|t| t == id)?;
                if index == 0 || segments[..index].iter().all(|s| matches!(s, Segment::Token(t) if Some(*t) == tokenizer.bos())) {
                    extra.extend(context_files(template, tokenizer, &tokens[at..at + skip]));
                }
                at += skip + 1;
            }
            Segment::Prefix | Segment::Suffix => {
                let next_token = segments[index + 1..].iter().find_map(|s| match s {
                    Segment::Token(id) => Some(*id),
                    _ => None,
                });
                let rest = tokens.get(at..)?;
                let len = match next_token {
                    Some(id) => rest.iter().position(|t| *t == id)?,
                    None => rest.len(),
                };
                let ids = &rest[..len];
                at += len;
                if *segment == Segment::Prefix {
                    let ids = ids.strip_prefix(&[tokenizer.bos().unwrap_or(u32::MAX)][..]).unwrap_or(ids);
                    prefix = tokenizer.decode(ids, true);
                } else {
                    suffix = tokenizer.decode(ids, template.suffix_encoding == SuffixEncoding::Plain);
                }
            }
        }
    }
    // Text after the last control token continues the prefix (the cursor
    // line, in prefix-suffix-middle layouts that put it there).
    let middle = tokenizer.decode(tokens.get(at..)?, false);
    Some(InfillText { prefix, suffix, middle, extra })
}

/// The file-separator blocks among `tokens`: `(path, text)` of each one
/// with text (the current file's own block names only its path).
fn context_files(template: &FimTemplate, tokenizer: &Tokenizer, tokens: &[u32]) -> Vec<(String, String)> {
    let Some(separator) = template.file_separator else { return Vec::new() };
    tokens
        .split(|t| *t == separator)
        .skip(1)
        .filter_map(|block| {
            let text = tokenizer.decode(block, true);
            let (path, body) = text.split_once('\n')?;
            (!body.is_empty()).then(|| (path.to_string(), body.to_string()))
        })
        .collect()
}
