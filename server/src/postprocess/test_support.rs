//! Test helpers: documents written with a `$0` cursor marker, and a rendering
//! of results that makes whitespace visible in snapshots.

use super::lines::lines;
use super::{Extent, PostprocessInput};
use crate::documents::Language;

/// A multi-line, untruncated input for `completion` at the `$0` in `doc` (the
/// end of `doc` when it has no marker).
pub(crate) fn input<'a>(
    language: &'a Language,
    doc: &'a str,
    completion: &'a str,
) -> PostprocessInput<'a> {
    let (prefix, suffix) = doc.split_once("$0").unwrap_or((doc, ""));
    PostprocessInput {
        completion,
        prefix,
        suffix,
        language,
        extent: Extent::MultiLine,
        truncated: false,
    }
}

/// Shows a result for a snapshot: each line after a `|`, tabs as `→`,
/// trailing spaces as `·`, a CRLF break as `␍`; `(empty)` for nothing.
pub(crate) fn render(text: &str) -> String {
    if text.is_empty() {
        return "(empty)".to_owned();
    }
    let mut out = String::new();
    for line in lines(text) {
        let content = line.text.trim_end_matches(' ');
        let trailing = line.text.len() - content.len();
        out.push('|');
        out.push_str(&content.replace('\t', "→"));
        out.push_str(&"·".repeat(trailing));
        if text.get(line.end..line.next) == Some("\r\n") {
            out.push('␍');
        }
        out.push('\n');
    }
    out
}
