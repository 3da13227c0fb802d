//! Context from other files: snippets of open documents and recently edited
//! places that look like the code around the cursor, and the definitions of
//! identifiers used near the cursor (found with tree-sitter tag queries).
//!
//! What counts as "around the cursor" leaves out the cursor's own line, so
//! the chosen snippets stay the same while the user types on one line and
//! the prompt's start (where the snippets go) keeps its KV cache. Snippets
//! are returned in a stable order (by path and line), not by score.

use std::collections::HashSet;

use tree_sitter::{Query, QueryCursor, StreamingIterator, Tree};

use crate::documents::Language;
use crate::prompt::ContextChunk;

/// A file that may lend context.
#[derive(Clone, Copy)]
pub struct SourceFile<'a> {
    /// Path (or URI) shown to the model.
    pub path: &'a str,
    /// Its text.
    pub text: &'a str,
    /// Its syntax tree, if parsed.
    pub tree: Option<&'a Tree>,
    /// Its language.
    pub language: &'a Language,
}

/// A definition found by a tag query: a name and the first lines of its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The defined name.
    pub name: String,
    /// File it is in.
    pub path: String,
    /// 0-based line where the definition starts.
    pub line: usize,
    /// Its first lines (signature, docstring start).
    pub text: String,
}

/// Lines of a definition shown to the model.
const DEFINITION_LINES: usize = 4;
/// Lines per snippet of a similar file region.
pub const CHUNK_LINES: usize = 16;

fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| w.len() >= 3 && !w.starts_with(|c: char| c.is_ascii_digit()))
}

/// Identifiers in the lines near the cursor, the cursor's line excluded:
/// up to 40 lines before it and 10 after it.
pub fn neighbourhood(prefix: &str, suffix: &str) -> HashSet<String> {
    let before: Vec<&str> = prefix.lines().collect();
    let before = &before[..before.len().saturating_sub(1)];
    let before = &before[before.len().saturating_sub(40)..];
    let after = suffix.lines().skip(1).take(10);
    before.iter().copied().chain(after).flat_map(identifiers).map(str::to_string).collect()
}

/// The definitions in one file, by its language's tag query.
pub fn definitions(file: &SourceFile) -> Vec<Definition> {
    let (Some(tree), Some(grammar), Some(source)) = (file.tree, file.language.grammar(), file.language.tags_query()) else {
        return Vec::new();
    };
    let Ok(query) = Query::new(&grammar, source) else {
        return Vec::new();
    };
    let Some(name_index) = query.capture_index_for_name("name") else {
        return Vec::new();
    };
    let definition_indices: Vec<u32> = query
        .capture_names()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.starts_with("definition."))
        .map(|(i, _)| i as u32)
        .collect();
    let mut cursor = QueryCursor::new();
    let mut found = Vec::new();
    let mut matches = cursor.matches(&query, tree.root_node(), file.text.as_bytes());
    while let Some(m) = matches.next() {
        let name = m.nodes_for_capture_index(name_index).next().and_then(|n| n.utf8_text(file.text.as_bytes()).ok());
        let node = definition_indices.iter().find_map(|&i| m.nodes_for_capture_index(i).next());
        if let (Some(name), Some(node)) = (name, node) {
            let start = node.start_byte();
            let line_start = file.text[..start].rfind('\n').map_or(0, |i| i + 1);
            let text: String = file.text[line_start..].lines().take(DEFINITION_LINES).collect::<Vec<_>>().join("\n");
            found.push(Definition { name: name.to_string(), path: file.path.to_string(), line: node.start_position().row, text });
        }
    }
    found
}

/// Definitions (from `index`) of identifiers in `wanted`, at most `max`,
/// skipping those in `current_path` (already in the prompt).
pub fn relevant_definitions(wanted: &HashSet<String>, index: &[Definition], current_path: &str, max: usize) -> Vec<ContextChunk> {
    let mut picked: Vec<&Definition> = index.iter().filter(|d| d.path != current_path && wanted.contains(&d.name)).collect();
    picked.sort_by(|a, b| (a.path.as_str(), a.line).cmp(&(b.path.as_str(), b.line)));
    picked.dedup_by(|a, b| a.path == b.path && a.line == b.line);
    picked.truncate(max);
    picked.into_iter().map(|d| ContextChunk { path: d.path.clone(), text: d.text.clone() }).collect()
}

/// Regions of other files most similar to the neighbourhood (Jaccard
/// similarity of identifier sets), at most `max`, each `CHUNK_LINES` long on
/// an aligned grid, plus a bonus for regions holding a recent edit
/// (`recent`: path and 0-based line).
pub fn similar_chunks(wanted: &HashSet<String>, files: &[SourceFile], recent: &[(String, usize)], max: usize) -> Vec<ContextChunk> {
    if wanted.is_empty() || max == 0 {
        return Vec::new();
    }
    let mut scored: Vec<(f32, &str, usize, String)> = Vec::new();
    for file in files {
        let lines: Vec<&str> = file.text.lines().collect();
        for (index, chunk) in lines.chunks(CHUNK_LINES).enumerate() {
            let first = index * CHUNK_LINES;
            let ids: HashSet<&str> = chunk.iter().flat_map(|l| identifiers(l)).collect();
            if ids.is_empty() {
                continue;
            }
            let common = ids.iter().filter(|id| wanted.contains(**id)).count();
            let union = ids.len() + wanted.len() - common;
            let mut score = common as f32 / union.max(1) as f32;
            if recent.iter().any(|(p, l)| p == file.path && (first..first + CHUNK_LINES).contains(l)) {
                score += 0.25;
            }
            if score >= 0.05 {
                scored.push((score, file.path, first, chunk.join("\n")));
            }
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)).then(a.2.cmp(&b.2)));
    scored.truncate(max);
    scored.sort_by(|a, b| (a.1, a.2).cmp(&(b.1, b.2)));
    scored.into_iter().map(|(_, path, _, text)| ContextChunk { path: path.to_string(), text }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(language: &Language, text: &str) -> Tree {
        let mut parser = tree_sitter::Parser::new();
        parser.set_language(&language.grammar().unwrap()).unwrap();
        parser.parse(text, None).unwrap()
    }

    #[test]
    fn tag_queries_find_definitions_in_several_languages() {
        let cases = [
            (Language::Python, "class Store:\n    def load(self, path):\n        return path\n", vec!["Store", "load"]),
            (Language::Rust, "struct Point { x: f32 }\nfn distance(a: &Point) -> f32 { a.x }\n", vec!["Point", "distance"]),
            (Language::Go, "package m\nfunc Area(r float64) float64 { return r }\n", vec!["Area"]),
            (Language::JavaScript, "function render(view) { return view; }\nclass Widget {}\n", vec!["render", "Widget"]),
        ];
        for (language, text, expected) in cases {
            let tree = parse(&language, text);
            let file = SourceFile { path: "f", text, tree: Some(&tree), language: &language };
            let names: Vec<String> = definitions(&file).into_iter().map(|d| d.name).collect();
            for e in expected {
                assert!(names.iter().any(|n| n == e), "{language:?}: {e} not in {names:?}");
            }
        }
    }

    #[test]
    fn definitions_of_nearby_identifiers_are_picked_in_a_stable_order() {
        let lang = Language::Python;
        let text = "def area(radius):\n    \"\"\"Area of a circle.\"\"\"\n    return 3.14 * radius ** 2\n\ndef unrelated():\n    pass\n";
        let tree = parse(&lang, text);
        let index = definitions(&SourceFile { path: "geometry.py", text, tree: Some(&tree), language: &lang });
        let wanted = neighbourhood("import geometry\nsize = geometry.area(2)\nprint(", "");
        let picked = relevant_definitions(&wanted, &index, "main.py", 5);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].path, "geometry.py");
        assert!(picked[0].text.starts_with("def area(radius):"));
    }

    #[test]
    fn the_cursor_line_does_not_change_the_neighbourhood() {
        let a = neighbourhood("total_price = 0\nfor item in basket:\n    total_pr", "\nreturn total_price\n");
        let b = neighbourhood("total_price = 0\nfor item in basket:\n    total_price += item.price", "\nreturn total_price\n");
        assert_eq!(a, b);
    }

    #[test]
    fn similar_regions_win_and_recent_edits_get_a_bonus() {
        let lang = Language::PlainText("text".into());
        let other = "fn parse_header(bytes: &[u8]) -> Header {\n    let magic = read_magic(bytes);\n}\n";
        let noise = "completely different words here\nnothing shared at all\n";
        let files = [
            SourceFile { path: "a.rs", text: other, tree: None, language: &lang },
            SourceFile { path: "b.rs", text: noise, tree: None, language: &lang },
        ];
        let wanted = neighbourhood("let magic = read_magic(bytes);\nlet header = parse_header(bytes);\n\n", "");
        let picked = similar_chunks(&wanted, &files, &[], 3);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].path, "a.rs");
        let picked = similar_chunks(&neighbourhood("unmatched identifiers\n\n", ""), &files, &[("a.rs".into(), 1)], 1);
        assert_eq!(picked[0].path, "a.rs", "a recently edited region is offered even without shared words");
    }
}
