//! Which language a document is in, and which tree-sitter grammar parses it.
//!
//! The editor's LSP `languageId` decides; the file extension is the fallback
//! when the id is empty or unknown. A language without a bundled grammar is
//! still a first-class document: plain text, no syntax tree.

/// A document's language, as far as cria cares: either one with a bundled
/// grammar, or plain text carrying the editor's id for logs and prompts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// Rust (`.rs`).
    Rust,
    /// Python (`.py`, `.pyi`).
    Python,
    /// JavaScript, JSX included (`.js`, `.jsx`, `.mjs`, `.cjs`).
    JavaScript,
    /// TypeScript without JSX (`.ts`, `.mts`, `.cts`).
    TypeScript,
    /// TypeScript with JSX (`.tsx`); a grammar of its own.
    Tsx,
    /// Go (`.go`).
    Go,
    /// C (`.c`, `.h`).
    C,
    /// C++ (`.cc`, `.cpp`, `.hpp`, ...).
    Cpp,
    /// Java (`.java`).
    Java,
    /// Any other language, kept as text; holds the editor's language id.
    PlainText(String),
}

impl Language {
    /// Maps an LSP `languageId` to a language; unknown ids become plain text
    /// keeping the id.
    pub fn from_language_id(id: &str) -> Self {
        match id {
            "rust" => Self::Rust,
            "python" => Self::Python,
            "javascript" | "javascriptreact" | "jsx" => Self::JavaScript,
            "typescript" => Self::TypeScript,
            "typescriptreact" | "tsx" => Self::Tsx,
            "go" => Self::Go,
            "c" => Self::C,
            "cpp" | "c++" | "cuda-cpp" => Self::Cpp,
            "java" => Self::Java,
            other => Self::PlainText(other.to_owned()),
        }
    }

    /// Maps a file extension (without the dot, any case) to a language with a
    /// grammar, for editors that send no useful language id.
    pub fn from_extension(ext: &str) -> Option<Self> {
        let lang = match ext.to_ascii_lowercase().as_str() {
            "rs" => Self::Rust,
            "py" | "pyi" | "pyw" => Self::Python,
            "js" | "jsx" | "mjs" | "cjs" => Self::JavaScript,
            "ts" | "mts" | "cts" => Self::TypeScript,
            "tsx" => Self::Tsx,
            "go" => Self::Go,
            // `.h` is ambiguous; the C grammar is the conservative choice.
            "c" | "h" => Self::C,
            "cc" | "cpp" | "cxx" | "c++" | "hh" | "hpp" | "hxx" | "h++" | "ipp" | "inl" | "cu" => {
                Self::Cpp
            }
            "java" => Self::Java,
            _ => return None,
        };
        Some(lang)
    }

    /// Finds the language from the extension of a path or URI's last segment
    /// (query and fragment ignored).
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let (stem, ext) = name.rsplit_once('.')?;
        if stem.is_empty() {
            return None;
        }
        Self::from_extension(ext)
    }

    /// Decides a document's language: the language id when it names a known
    /// language (or is an explicit `plaintext`), else the URI's extension,
    /// else plain text with the id.
    pub fn resolve(language_id: &str, uri: &str) -> Self {
        let by_id = Self::from_language_id(language_id);
        if !matches!(by_id, Self::PlainText(_)) || language_id == "plaintext" {
            return by_id;
        }
        Self::from_path(uri).unwrap_or(by_id)
    }

    /// The tree-sitter grammar for this language; `None` for plain text.
    pub fn grammar(&self) -> Option<tree_sitter::Language> {
        let lang = match self {
            Self::Rust => tree_sitter_rust::LANGUAGE,
            Self::Python => tree_sitter_python::LANGUAGE,
            Self::JavaScript => tree_sitter_javascript::LANGUAGE,
            Self::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT,
            Self::Tsx => tree_sitter_typescript::LANGUAGE_TSX,
            Self::Go => tree_sitter_go::LANGUAGE,
            Self::C => tree_sitter_c::LANGUAGE,
            Self::Cpp => tree_sitter_cpp::LANGUAGE,
            Self::Java => tree_sitter_java::LANGUAGE,
            Self::PlainText(_) => return None,
        };
        Some(lang.into())
    }

    /// The canonical LSP language id, for logs and prompt headers.
    pub fn id(&self) -> &str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::JavaScript => "javascript",
            Self::TypeScript => "typescript",
            Self::Tsx => "typescriptreact",
            Self::Go => "go",
            Self::C => "c",
            Self::Cpp => "cpp",
            Self::Java => "java",
            Self::PlainText(id) => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_ids_map_to_grammars() {
        let ids = [
            ("rust", Language::Rust),
            ("python", Language::Python),
            ("javascript", Language::JavaScript),
            ("javascriptreact", Language::JavaScript),
            ("typescript", Language::TypeScript),
            ("typescriptreact", Language::Tsx),
            ("go", Language::Go),
            ("c", Language::C),
            ("cpp", Language::Cpp),
            ("java", Language::Java),
        ];
        for (id, want) in ids {
            let lang = Language::from_language_id(id);
            assert_eq!(lang, want);
            assert!(lang.grammar().is_some(), "{id}");
        }
        let md = Language::from_language_id("markdown");
        assert_eq!(md, Language::PlainText("markdown".to_owned()));
        assert!(md.grammar().is_none());
        assert_eq!(md.id(), "markdown");
    }

    #[test]
    fn every_grammar_loads_into_a_parser() {
        let langs = [
            Language::Rust,
            Language::Python,
            Language::JavaScript,
            Language::TypeScript,
            Language::Tsx,
            Language::Go,
            Language::C,
            Language::Cpp,
            Language::Java,
        ];
        for lang in langs {
            let mut parser = tree_sitter::Parser::new();
            let grammar = lang.grammar();
            assert!(
                grammar.is_some_and(|g| parser.set_language(&g).is_ok()),
                "{lang:?}"
            );
            assert_eq!(Language::from_language_id(lang.id()), lang);
        }
    }

    #[test]
    fn the_extension_is_the_fallback() {
        assert_eq!(
            Language::from_path("file:///src/main.RS"),
            Some(Language::Rust)
        );
        assert_eq!(Language::from_path("/a/b.tsx?x=1#y"), Some(Language::Tsx));
        assert_eq!(Language::from_path("C:\\x\\y.hpp"), Some(Language::Cpp));
        assert_eq!(Language::from_path("/a/.rs"), None);
        assert_eq!(Language::from_path("/a/Makefile"), None);
        assert_eq!(Language::resolve("", "file:///a.py"), Language::Python);
        assert_eq!(Language::resolve("weird", "file:///a.go"), Language::Go);
        assert_eq!(Language::resolve("rust", "file:///a.py"), Language::Rust);
        let plain = Language::PlainText("plaintext".to_owned());
        assert_eq!(Language::resolve("plaintext", "file:///a.rs"), plain);
        let unknown = Language::PlainText("weird".to_owned());
        assert_eq!(Language::resolve("weird", "file:///a.txt"), unknown);
    }
}
