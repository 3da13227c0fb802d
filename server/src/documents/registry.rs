//! What cria knows about each language with a grammar, in one table: the
//! editor's ids and the file extensions, the line-comment marker, the
//! tree-sitter grammar and tag query, the syntax node kinds that open a
//! scope or import something, and the lexical facts the postprocessor's
//! bracket lexer needs.
//!
//! Why one table: these facts used to be spread over `context` (tag
//! queries, scope kinds, comment markers by id), `postprocess` (lexer
//! tables) and this module (ids, extensions, grammars), so adding a
//! language meant finding every match, and a forgotten one failed silently
//! (a language without definitions, or without its comment marker). Now
//! [`Language::spec`] is the only match, and a unit test holds every entry
//! of [`Language::ALL`] to having all its fields, each one checked against
//! the grammar. The other modules read the table from here; `documents`
//! imports none of them.

use super::Language;

/// The lexical facts of one language that the postprocessor's lexer needs
/// to tell brackets in code from brackets in strings and comments.
#[derive(Debug, PartialEq, Eq)]
pub struct LexicalSyntax {
    /// `"` and `'` quote strings (or chars).
    pub strings: bool,
    /// The line-comment marker (`//`, `#`), if any.
    pub line_comment: Option<&'static [u8]>,
    /// `/* ... */` block comments.
    pub block_comments: bool,
    /// Block comments nest (Rust).
    pub nested_comments: bool,
    /// `"` strings may span lines (Rust).
    pub multiline_strings: bool,
    /// `'` starts a char literal or a lifetime, told apart by a look ahead
    /// (Rust); otherwise it starts a one-line string.
    pub rust_quotes: bool,
    /// Triple-quoted strings with `"""` (Java, Python).
    pub triple_double: bool,
    /// Triple-quoted strings with `'''` (Python).
    pub triple_single: bool,
    /// Backtick strings: JavaScript templates (`Some(true)`: with escapes)
    /// or Go raw strings (`Some(false)`: without).
    pub backtick: Option<bool>,
    /// `r"..."`, `r#"..."#` raw strings (Rust).
    pub rust_raw: bool,
    /// Whether brackets are reported at all.
    pub brackets: bool,
}

const C_LIKE: LexicalSyntax = LexicalSyntax {
    strings: true,
    line_comment: Some(b"//"),
    block_comments: true,
    nested_comments: false,
    multiline_strings: false,
    rust_quotes: false,
    triple_double: false,
    triple_single: false,
    backtick: None,
    rust_raw: false,
    brackets: true,
};

/// Plain text: no comments, no strings; brackets are still reported, and
/// it is up to each rule whether to trust them.
pub(super) const PLAIN_LEXICAL: LexicalSyntax = LexicalSyntax { strings: false, line_comment: None, block_comments: false, ..C_LIKE };

/// Everything cria knows about one language with a grammar.
#[derive(Debug)]
pub struct LanguageSpec {
    /// The LSP language ids that name it, the canonical one first.
    pub language_ids: &'static [&'static str],
    /// File extensions (lower case, no dot) for editors that send no
    /// useful language id.
    pub extensions: &'static [&'static str],
    /// The line-comment marker, for the file-path comment in prompts.
    pub line_comment: &'static str,
    /// The tree-sitter grammar.
    pub grammar: fn() -> tree_sitter::Language,
    /// The grammar's tag query, which finds definitions for snippets from
    /// other files (`context::crossfile`).
    pub tags_query: &'static str,
    /// Node kinds that open a scope worth naming: the enclosing signatures
    /// kept in a prompt window (`context::window`).
    pub scope_kinds: &'static [&'static str],
    /// Node kinds of imports, kept in a prompt window (`context::window`).
    pub import_kinds: &'static [&'static str],
    /// What the postprocessor's lexer needs (`postprocess::lexer`).
    pub lexical: &'static LexicalSyntax,
}

const RUST: LanguageSpec = LanguageSpec {
    language_ids: &["rust"],
    extensions: &["rs"],
    line_comment: "//",
    grammar: || tree_sitter_rust::LANGUAGE.into(),
    tags_query: tree_sitter_rust::TAGS_QUERY,
    scope_kinds: &["function_item", "impl_item", "trait_item", "mod_item", "struct_item", "enum_item"],
    import_kinds: &["use_declaration", "extern_crate_declaration"],
    lexical: &LexicalSyntax { nested_comments: true, multiline_strings: true, rust_quotes: true, rust_raw: true, ..C_LIKE },
};

const PYTHON: LanguageSpec = LanguageSpec {
    language_ids: &["python"],
    extensions: &["py", "pyi", "pyw"],
    line_comment: "#",
    grammar: || tree_sitter_python::LANGUAGE.into(),
    tags_query: tree_sitter_python::TAGS_QUERY,
    scope_kinds: &["function_definition", "class_definition", "decorated_definition"],
    import_kinds: &["import_statement", "import_from_statement", "future_import_statement"],
    lexical: &LexicalSyntax { line_comment: Some(b"#"), block_comments: false, triple_double: true, triple_single: true, ..C_LIKE },
};

const JAVASCRIPT_LEXICAL: LexicalSyntax = LexicalSyntax { backtick: Some(true), ..C_LIKE };

const JAVASCRIPT: LanguageSpec = LanguageSpec {
    language_ids: &["javascript", "javascriptreact", "jsx"],
    extensions: &["js", "jsx", "mjs", "cjs"],
    line_comment: "//",
    grammar: || tree_sitter_javascript::LANGUAGE.into(),
    tags_query: tree_sitter_javascript::TAGS_QUERY,
    scope_kinds: &["function_declaration", "method_definition", "class_declaration", "arrow_function"],
    import_kinds: &["import_statement"],
    lexical: &JAVASCRIPT_LEXICAL,
};

const TYPESCRIPT_SCOPES: &[&str] =
    &["function_declaration", "method_definition", "class_declaration", "arrow_function", "interface_declaration", "enum_declaration"];

const TYPESCRIPT: LanguageSpec = LanguageSpec {
    language_ids: &["typescript"],
    extensions: &["ts", "mts", "cts"],
    line_comment: "//",
    grammar: || tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
    tags_query: tree_sitter_typescript::TAGS_QUERY,
    scope_kinds: TYPESCRIPT_SCOPES,
    import_kinds: &["import_statement"],
    lexical: &JAVASCRIPT_LEXICAL,
};

const TSX: LanguageSpec = LanguageSpec {
    language_ids: &["typescriptreact", "tsx"],
    extensions: &["tsx"],
    grammar: || tree_sitter_typescript::LANGUAGE_TSX.into(),
    ..TYPESCRIPT
};

const GO: LanguageSpec = LanguageSpec {
    language_ids: &["go"],
    extensions: &["go"],
    line_comment: "//",
    grammar: || tree_sitter_go::LANGUAGE.into(),
    tags_query: tree_sitter_go::TAGS_QUERY,
    scope_kinds: &["function_declaration", "method_declaration", "type_declaration"],
    import_kinds: &["import_declaration"],
    lexical: &LexicalSyntax { backtick: Some(false), ..C_LIKE },
};

const C: LanguageSpec = LanguageSpec {
    language_ids: &["c"],
    // `.h` is ambiguous; the C grammar is the conservative choice.
    extensions: &["c", "h"],
    line_comment: "//",
    grammar: || tree_sitter_c::LANGUAGE.into(),
    tags_query: tree_sitter_c::TAGS_QUERY,
    scope_kinds: &["function_definition", "struct_specifier"],
    import_kinds: &["preproc_include"],
    lexical: &C_LIKE,
};

const CPP: LanguageSpec = LanguageSpec {
    language_ids: &["cpp", "c++", "cuda-cpp"],
    extensions: &["cc", "cpp", "cxx", "c++", "hh", "hpp", "hxx", "h++", "ipp", "inl", "cu"],
    line_comment: "//",
    grammar: || tree_sitter_cpp::LANGUAGE.into(),
    tags_query: tree_sitter_cpp::TAGS_QUERY,
    scope_kinds: &["function_definition", "class_specifier", "struct_specifier", "namespace_definition"],
    import_kinds: &["preproc_include", "using_declaration"],
    lexical: &C_LIKE,
};

const JAVA: LanguageSpec = LanguageSpec {
    language_ids: &["java"],
    extensions: &["java"],
    line_comment: "//",
    grammar: || tree_sitter_java::LANGUAGE.into(),
    tags_query: tree_sitter_java::TAGS_QUERY,
    scope_kinds: &["method_declaration", "class_declaration", "interface_declaration", "enum_declaration", "constructor_declaration"],
    import_kinds: &["import_declaration", "package_declaration"],
    lexical: &LexicalSyntax { triple_double: true, ..C_LIKE },
};

/// The entry of a language with a grammar; `None` for plain text. The one
/// place that matches on the languages.
pub(super) fn spec_of(language: &Language) -> Option<&'static LanguageSpec> {
    Some(match language {
        Language::Rust => &RUST,
        Language::Python => &PYTHON,
        Language::JavaScript => &JAVASCRIPT,
        Language::TypeScript => &TYPESCRIPT,
        Language::Tsx => &TSX,
        Language::Go => &GO,
        Language::C => &C,
        Language::Cpp => &CPP,
        Language::Java => &JAVA,
        Language::PlainText(_) => return None,
    })
}

/// The line-comment marker of a language cria has no grammar for, by its
/// editor id or file extension; `#` for unknown ones is a guess that reads
/// fine to a model.
pub(super) fn plain_line_comment(id: &str) -> &'static str {
    match id {
        "lua" | "sql" | "hs" | "haskell" => "--",
        "kt" | "kotlin" | "swift" | "cs" | "csharp" | "scala" | "dart" | "zig" | "php" => "//",
        _ => "#",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-source-of-truth check: every language has every field, and
    /// each field fits its grammar.
    #[test]
    fn every_language_has_every_registry_field() {
        for language in Language::ALL {
            let spec = language.spec().unwrap_or_else(|| panic!("{language:?} has no registry entry"));
            assert_eq!(language.id(), spec.language_ids[0], "{language:?}");
            for id in spec.language_ids {
                assert_eq!(Language::from_language_id(id), language, "{id}");
            }
            assert!(!spec.extensions.is_empty(), "{language:?} has no extensions");
            for ext in spec.extensions {
                assert_eq!(Language::from_extension(ext), Some(language.clone()), "{ext}");
            }
            assert!(!spec.line_comment.is_empty(), "{language:?}");
            assert_eq!(spec.lexical.line_comment, Some(spec.line_comment.as_bytes()), "{language:?}: the lexer's comment marker");
            let grammar = (spec.grammar)();
            let mut parser = tree_sitter::Parser::new();
            assert!(parser.set_language(&grammar).is_ok(), "{language:?}: the grammar loads");
            let query = tree_sitter::Query::new(&grammar, spec.tags_query);
            assert!(query.is_ok_and(|q| q.capture_names().iter().any(|n| n.starts_with("definition."))), "{language:?}: the tag query");
            assert!(!spec.scope_kinds.is_empty() && !spec.import_kinds.is_empty(), "{language:?}");
            for kind in spec.scope_kinds.iter().chain(spec.import_kinds) {
                assert_ne!(grammar.id_for_node_kind(kind, true), 0, "{language:?} has no node kind `{kind}`");
            }
        }
    }

    #[test]
    fn every_language_is_in_all() {
        // A language added to the enum but not to `ALL` would miss the check
        // above; every id and extension of the table must lead to `ALL`.
        let all: Vec<&LanguageSpec> = Language::ALL.iter().filter_map(Language::spec).collect();
        assert_eq!(all.len(), Language::ALL.len());
        for ext in ["rs", "py", "js", "ts", "tsx", "go", "c", "cpp", "java"] {
            let language = Language::from_extension(ext).unwrap();
            assert!(Language::ALL.contains(&language), "{language:?}");
        }
    }

    #[test]
    fn plain_text_has_a_comment_marker_by_its_id() {
        assert_eq!(Language::PlainText("lua".into()).line_comment(), "--");
        assert_eq!(Language::PlainText("kotlin".into()).line_comment(), "//");
        assert_eq!(Language::PlainText("shellscript".into()).line_comment(), "#");
        assert_eq!(Language::PlainText("weird".into()).line_comment(), "#");
        // An extension that names a language with a grammar takes its marker.
        assert_eq!(Language::PlainText("rs".into()).line_comment(), "//");
        assert_eq!(Language::Tsx.line_comment(), "//");
    }
}
