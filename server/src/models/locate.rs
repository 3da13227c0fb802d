//! Maps between places in a TOML text and key paths (`fim.psm[2]`), so that
//! config errors can name both the key and the line.
//!
//! toml's errors carry a byte span but not the key; serde's checks carry neither.
//! Both are recovered here by walking toml's spanned document tree.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted path of the innermost key whose key or value covers `span`; empty
/// when the span is empty or outside every key (or the text does not parse).
pub(crate) fn key_at(text: &str, span: Range<usize>) -> String {
    let Ok(root) = DeTable::parse(text) else {
        return String::new();
    };
    let mut best = Best::default();
    walk_table(root.get_ref(), &span, &mut String::new(), &mut best);
    best.path
}

/// The line where the value at the dotted `key` (as built by the validator)
/// starts; `None` when the key is not found or the text does not parse.
pub(crate) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for segment in key.split('.') {
        let (name, indices) = split_indices(segment)?;
        let table = match value {
            None => root.get_ref(),
            Some(v) => v.get_ref().as_table()?,
        };
        let mut current = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == name)
            .map(|(_, v)| v)?;
        for index in indices {
            current = current.get_ref().as_array()?.get(index)?;
        }
        value = Some(current);
    }
    value.map(|v| line_at(text, v.span().start))
}

/// `psm[2][0]` → (`psm`, [2, 0]).
fn split_indices(segment: &str) -> Option<(&str, Vec<usize>)> {
    let (name, mut rest) = segment
        .split_once('[')
        .map_or((segment, ""), |(n, r)| (n, r));
    let mut indices = Vec::new();
    while !rest.is_empty() {
        let (number, after) = rest.split_once(']')?;
        indices.push(number.parse().ok()?);
        rest = after.strip_prefix('[').unwrap_or(after);
    }
    Some((name, indices))
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && inner.start < inner.end
}

/// The narrowest match so far. A table opened by a `[header]` has only the
/// header as its span, so every node is visited, not only those that cover.
#[derive(Default)]
struct Best {
    width: Option<usize>,
    path: String,
}

impl Best {
    fn offer(&mut self, node: &Range<usize>, span: &Range<usize>, path: &str) {
        let width = node.end - node.start;
        if covers(node, span) && self.width.is_none_or(|best| width <= best) {
            self.width = Some(width);
            self.path = path.to_owned();
        }
    }
}

fn walk_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut String, best: &mut Best) {
    for (key, value) in table {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        best.offer(&key.span(), span, path);
        walk_value(value, span, path, best);
        path.truncate(len);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut String,
    best: &mut Best,
) {
    best.offer(&value.span(), span, path);
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, span, path, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_value(item, span, path, best);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"x\"\n[fim]\norders = [\"psm\"]\npsm = [\"a\", \"b\"]\nx = { y = [1, { z = 2 }] }\n";

    #[test]
    fn finds_the_key_around_a_span() {
        let at = |needle: &str| {
            let start = TEXT.find(needle).unwrap();
            key_at(TEXT, start..start + needle.len())
        };
        assert_eq!(at("\"x\""), "name");
        assert_eq!(at("orders"), "fim.orders");
        assert_eq!(at("\"b\""), "fim.psm[1]");
        assert_eq!(at("[fim]"), "fim");
        assert_eq!(at("z"), "fim.x.y[1].z");
        assert_eq!(at("2"), "fim.x.y[1].z");
        assert_eq!(key_at(TEXT, 0..0), "");
    }

    #[test]
    fn finds_the_line_of_a_key() {
        assert_eq!(line_of_key(TEXT, "name"), Some(1));
        assert_eq!(line_of_key(TEXT, "fim.psm[1]"), Some(4));
        assert_eq!(line_of_key(TEXT, "fim.nothing"), None);
        assert_eq!(line_of_key(TEXT, "name[3]"), None);
    }
}
