//! Which language a document is in, and what cria knows about it (its
//! grammar, comment marker, tag query...: the registry, `registry.rs`).
//!
//! The editor's LSP `languageId` decides; the file extension is the fallback
//! when the id is empty or unknown. A language without a bundled grammar is
//! still a first-class document: plain text, no syntax tree.

use super::registry::{plain_line_comment, spec_of, LanguageSpec, LexicalSyntax, PLAIN_LEXICAL};

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
    /// Every language with a grammar, each with its entry in the registry
    /// ([`Language::spec`]).
    pub const ALL: [Language; 9] = [
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

    /// What cria knows about this language; `None` for plain text.
    pub fn spec(&self) -> Option<&'static LanguageSpec> {
        spec_of(self)
    }

    /// Maps an LSP `languageId` to a language; unknown ids become plain text
    /// keeping the id.
    pub fn from_language_id(id: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|l| l.spec().is_some_and(|s| s.language_ids.contains(&id)))
            .unwrap_or_else(|| Self::PlainText(id.to_owned()))
    }

    /// Maps a file extension (without the dot, any case) to a language with a
    /// grammar, for editors that send no useful language id.
    pub fn from_extension(ext: &str) -> Option<Self> {
        let ext = ext.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.spec().is_some_and(|s| s.extensions.contains(&ext.as_str())))
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
        self.spec().map(|s| (s.grammar)())
    }

    /// The canonical LSP language id, for logs and prompt headers.
    pub fn id(&self) -> &str {
        match self {
            Self::PlainText(id) => id,
            _ => self.spec().map_or("", |s| s.language_ids[0]),
        }
    }

    /// The line-comment marker; for plain text, a guess from its id.
    pub fn line_comment(&self) -> &'static str {
        match self {
            Self::PlainText(id) => {
                let named = Self::from_extension(id).unwrap_or_else(|| Self::from_language_id(id));
                named.spec().map_or_else(|| plain_line_comment(id), |s| s.line_comment)
            }
            _ => self.spec().map_or("#", |s| s.line_comment),
        }
    }

    /// The tag query that finds definitions; `None` for plain text.
    pub fn tags_query(&self) -> Option<&'static str> {
        self.spec().map(|s| s.tags_query)
    }

    /// What the postprocessor's bracket lexer needs; plain text has no
    /// strings or comments.
    pub fn lexical(&self) -> &'static LexicalSyntax {
        self.spec().map_or(&PLAIN_LEXICAL, |s| s.lexical)
    }

    /// Whether a syntax node of this kind opens a scope worth naming, in
    /// any grammar cria has (node kinds mean the same in each).
    pub fn is_scope_kind(kind: &str) -> bool {
        Self::ALL.iter().any(|l| l.spec().is_some_and(|s| s.scope_kinds.contains(&kind)))
    }

    /// Whether a syntax node of this kind is an import, in any grammar.
    pub fn is_import_kind(kind: &str) -> bool {
        Self::ALL.iter().any(|l| l.spec().is_some_and(|s| s.import_kinds.contains(&kind)))
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
        for lang in Language::ALL {
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
