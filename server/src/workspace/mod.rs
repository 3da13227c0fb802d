//! Reading the user's workspace for context: definitions found in the files
//! of the workspace folders.
//!
//! The rules: only files inside the workspace folders (links are not
//! followed out of them), `.gitignore` and friends honoured, hidden files
//! and folders (a name starting with `.`: `.env`, `.npmrc`, `.git`) always
//! skipped, whatever a `.gitignore` negation says, binary files (a NUL
//! byte in the first 8 KiB) and files over [`MAX_FILE_BYTES`] skipped, at
//! most [`MAX_FILES`] files. cria only reads here; it never writes the
//! user's files and sends nothing anywhere.

use std::path::{Path, PathBuf};

use crate::context::{definitions, Definition, SourceFile};
use crate::documents::Language;

/// Files larger than this are not indexed.
pub const MAX_FILE_BYTES: u64 = 512 * 1024;
/// At most this many files are indexed per workspace.
pub const MAX_FILES: usize = 5000;

/// The definitions of every indexable file under `roots`, with paths shown
/// relative to their root.
pub fn index_definitions(roots: &[PathBuf]) -> Vec<Definition> {
    let mut found = Vec::new();
    let mut files = 0;
    for root in roots {
        // `hidden(true)` alone lets a `.gitignore` negation (`!.env`) bring
        // a hidden file back; the filter keeps every hidden name out.
        let walker = ignore::WalkBuilder::new(root)
            .follow_links(false)
            .hidden(true)
            .git_ignore(true)
            .require_git(false)
            .filter_entry(|entry| entry.depth() == 0 || !entry.file_name().as_encoded_bytes().starts_with(b"."))
            .build();
        for entry in walker.flatten() {
            if files >= MAX_FILES {
                return found;
            }
            let path = entry.path();
            if !entry.file_type().is_some_and(|t| t.is_file()) || !path.starts_with(root) {
                continue;
            }
            let Some(language) = path.to_str().and_then(Language::from_path) else {
                continue;
            };
            let Some(text) = read_text(path) else {
                continue;
            };
            files += 1;
            let shown = path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
            found.extend(file_definitions(&shown, &text, &language));
        }
    }
    found
}

/// A file's text if it is small, not binary and UTF-8.
fn read_text(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Parses one text and lists its definitions.
pub fn file_definitions(path: &str, text: &str, language: &Language) -> Vec<Definition> {
    let Some(grammar) = language.grammar() else {
        return Vec::new();
    };
    let mut parser = tree_sitter::Parser::new();
    if parser.set_language(&grammar).is_err() {
        return Vec::new();
    }
    let Some(tree) = parser.parse(text, None) else {
        return Vec::new();
    };
    definitions(&SourceFile { path, text, tree: Some(&tree), language })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_definitions_honouring_gitignore_and_skipping_binary_and_huge_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "generated/\n").unwrap();
        std::fs::create_dir_all(root.join("generated")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/shapes.py"), "def circle_area(r):\n    return 3.14 * r * r\n").unwrap();
        std::fs::write(root.join("generated/skip.py"), "def ignored_by_git():\n    pass\n").unwrap();
        std::fs::write(root.join("src/blob.py"), b"def binary():\0\n").unwrap();
        let huge = format!("def huge():\n    pass\n{}", "# padding\n".repeat(60_000));
        std::fs::write(root.join("src/huge.py"), huge).unwrap();
        let names: Vec<String> = index_definitions(&[root.to_path_buf()]).into_iter().map(|d| format!("{}:{}", d.path, d.name)).collect();
        assert_eq!(names, vec!["src/shapes.py:circle_area".to_string()]);
    }

    #[test]
    fn hidden_files_stay_out_whatever_gitignore_negations_say() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "!.hidden.py\n!.secrets/\n!.secrets/*\n").unwrap();
        std::fs::write(root.join(".hidden.py"), "def leaked_secret():\n    pass\n").unwrap();
        std::fs::create_dir_all(root.join(".secrets")).unwrap();
        std::fs::write(root.join(".secrets/keys.py"), "def leaked_key():\n    pass\n").unwrap();
        std::fs::write(root.join("shown.py"), "def shown():\n    pass\n").unwrap();
        let names: Vec<String> = index_definitions(&[root.to_path_buf()]).into_iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["shown".to_string()]);
    }
}
