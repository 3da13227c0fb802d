//! A deliberately small lexer: just enough to find the brackets that are code,
//! not text inside strings or comments, and where lines break.
//!
//! It knows each language's comment markers and string quotes (from the
//! language registry, `documents::Language::lexical`), and nothing
//! else: no keywords, no nesting of template-literal interpolation, no regex
//! literals, no C++ raw strings. That is enough to count brackets reliably in
//! ordinary code; when a scan starts inside a block comment or string it does
//! not know about (the window of the prefix starts there), it is wrong in the
//! way a human skimming the text would be, and no rule relies on it for more
//! than a cut of the suggestion.
//!
//! The lexer's state carries over from one text to the next, so the prefix is
//! scanned first and the suggestion continues in whatever string or comment
//! the cursor sits in. It looks only at ASCII bytes, so every position it
//! reports is a char boundary.

use crate::documents::{Language, LexicalSyntax};

/// What the lexer reports: brackets in code and line breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// An opening bracket (`(`, `[` or `{`) at this byte offset.
    Open { at: usize, kind: u8 },
    /// A closing bracket at this byte offset; `kind` is the matching opener.
    Close { at: usize, kind: u8 },
    /// A line break from `at` up to `next`; `in_code` tells whether the new
    /// line starts in code (not inside a multi-line string or comment).
    LineBreak {
        at: usize,
        next: usize,
        in_code: bool,
    },
}

/// Which quote ends the current string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quote {
    /// `"` or `'`, ending at the line break unless the language allows more.
    One(u8),
    /// `"""` or `'''`.
    Three(u8),
    /// A backtick; the flag says whether `\` escapes.
    Backtick(bool),
    /// A Rust raw string closed by `"` and this many `#`.
    Raw(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Code,
    LineComment,
    BlockComment(u32),
    Str { quote: Quote, escaped: bool },
}

/// The lexer: a language's syntax and the state reached so far.
#[derive(Clone, Debug)]
pub(crate) struct Lexer {
    syntax: &'static LexicalSyntax,
    state: State,
}

impl Lexer {
    /// A lexer for `language`, starting in code.
    pub fn new(language: &Language) -> Self {
        Self {
            syntax: language.lexical(),
            state: State::Code,
        }
    }

    /// A lexer of the same language in code, as it is right after a
    /// bracket token (only code has brackets): to look ahead from one.
    pub fn in_code_again(&self) -> Self {
        Self {
            syntax: self.syntax,
            state: State::Code,
        }
    }

    /// Whether the lexer is inside a string.
    pub fn in_string(&self) -> bool {
        matches!(self.state, State::Str { .. })
    }

    /// Whether the lexer is in code (not in a string or comment).
    pub fn in_code(&self) -> bool {
        self.state == State::Code
    }

    /// The tokens of `text`, continuing from the current state; the lexer's
    /// state follows the iteration.
    pub fn tokens<'t>(&mut self, text: &'t str) -> Tokens<'_, 't> {
        Tokens {
            lexer: self,
            text: text.as_bytes(),
            full: text,
            pos: 0,
        }
    }
}

/// Iterator returned by [`Lexer::tokens`].
pub(crate) struct Tokens<'l, 't> {
    lexer: &'l mut Lexer,
    text: &'t [u8],
    full: &'t str,
    pos: usize,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn closer_kind(b: u8) -> Option<u8> {
    match b {
        b')' => Some(b'('),
        b']' => Some(b'['),
        b'}' => Some(b'{'),
        _ => None,
    }
}

impl Tokens<'_, '_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.text.get(i).copied()
    }

    fn starts_with(&self, i: usize, pat: &[u8]) -> bool {
        self.text.get(i..).is_some_and(|rest| rest.starts_with(pat))
    }

    /// Bytes taken by a Rust char literal starting with the `'` at `i`, or
    /// `None` for a lifetime or label (`'a`, `'static`).
    fn rust_char_len(&self, i: usize) -> Option<usize> {
        let rest = self.full.get(i + 1..)?;
        let mut chars = rest.chars();
        match chars.next()? {
            '\\' => {
                // An escape: `'\n'`, `'\''`, `'\u{1F980}'`. The closing quote
                // comes within a dozen bytes, after the escaped character.
                let bytes = rest.as_bytes();
                let body = bytes.get(2..bytes.len().min(14))?;
                body.iter().position(|b| *b == b'\'').map(|p| 1 + 2 + p + 1)
            }
            c => rest
                .get(c.len_utf8()..)?
                .starts_with('\'')
                .then(|| 1 + c.len_utf8() + 1),
        }
    }

    /// The number of `#` after a Rust raw-string `r` at `i` when one starts
    /// there (`r"`, `r#"`, `br"`), else `None`.
    fn rust_raw_start(&self, i: usize) -> Option<usize> {
        let before = i.checked_sub(1).and_then(|j| self.at(j));
        let standalone = match before {
            None => true,
            Some(b'b') => i
                .checked_sub(2)
                .and_then(|j| self.at(j))
                .is_none_or(|b| !is_ident(b)),
            Some(b) => !is_ident(b),
        };
        if !standalone {
            return None;
        }
        let mut hashes = 0;
        while self.at(i + 1 + hashes) == Some(b'#') {
            hashes += 1;
        }
        (self.at(i + 1 + hashes) == Some(b'"')).then_some(hashes)
    }

    /// Advances over one code byte (or construct) at `i`; returns the new
    /// position and a bracket token if the byte was one.
    fn code(&mut self, i: usize, b: u8) -> (usize, Option<Token>) {
        let syntax = self.lexer.syntax;
        if let Some(marker) = syntax.line_comment {
            if self.starts_with(i, marker) {
                self.lexer.state = State::LineComment;
                return (i + marker.len(), None);
            }
        }
        if syntax.block_comments && self.starts_with(i, b"/*") {
            self.lexer.state = State::BlockComment(1);
            return (i + 2, None);
        }
        let string = |quote| State::Str {
            quote,
            escaped: false,
        };
        match b {
            b'"' if syntax.triple_double && self.starts_with(i, b"\"\"\"") => {
                self.lexer.state = string(Quote::Three(b'"'));
                (i + 3, None)
            }
            b'\'' if syntax.triple_single && self.starts_with(i, b"'''") => {
                self.lexer.state = string(Quote::Three(b'\''));
                (i + 3, None)
            }
            b'\'' if syntax.rust_quotes => (i + self.rust_char_len(i).unwrap_or(1), None),
            b'"' | b'\'' if syntax.strings => {
                self.lexer.state = string(Quote::One(b));
                (i + 1, None)
            }
            b'`' if syntax.backtick.is_some() => {
                self.lexer.state = string(Quote::Backtick(syntax.backtick == Some(true)));
                (i + 1, None)
            }
            b'r' if syntax.rust_raw => match self.rust_raw_start(i) {
                Some(hashes) => {
                    self.lexer.state = string(Quote::Raw(hashes));
                    (i + 2 + hashes, None)
                }
                None => (i + 1, None),
            },
            b'(' | b'[' | b'{' if syntax.brackets => (i + 1, Some(Token::Open { at: i, kind: b })),
            _ => match closer_kind(b).filter(|_| syntax.brackets) {
                Some(kind) => (i + 1, Some(Token::Close { at: i, kind })),
                None => (i + 1, None),
            },
        }
    }

    /// Advances over one byte inside a string.
    fn string(&mut self, i: usize, b: u8, quote: Quote, escaped: bool) -> usize {
        let set = |lexer: &mut Lexer, escaped| lexer.state = State::Str { quote, escaped };
        if escaped {
            set(self.lexer, false);
            return i + 1;
        }
        let escapes = !matches!(quote, Quote::Raw(_) | Quote::Backtick(false));
        if b == b'\\' && escapes {
            set(self.lexer, true);
            return i + 1;
        }
        let closes = match quote {
            Quote::One(q) => (b == q).then_some(1),
            Quote::Three(q) => (b == q && self.starts_with(i, &[q, q, q])).then_some(3),
            Quote::Backtick(_) => (b == b'`').then_some(1),
            Quote::Raw(hashes) => (b == b'"' && (1..=hashes).all(|k| self.at(i + k) == Some(b'#')))
                .then_some(1 + hashes),
        };
        match closes {
            Some(len) => {
                self.lexer.state = State::Code;
                i + len
            }
            None => i + 1,
        }
    }

    /// The state change at a line break: line comments and one-line strings
    /// end there (an escaped break continues a string, as in C and Python).
    fn line_break(&mut self) {
        let syntax = self.lexer.syntax;
        self.lexer.state = match self.lexer.state {
            State::LineComment => State::Code,
            State::Str {
                quote,
                escaped: true,
            } => State::Str {
                quote,
                escaped: false,
            },
            State::Str {
                quote: Quote::One(_),
                ..
            } if !syntax.multiline_strings => State::Code,
            other => other,
        };
    }
}

impl Iterator for Tokens<'_, '_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        while let Some(b) = self.at(self.pos) {
            let i = self.pos;
            if b == b'\n' || b == b'\r' {
                let len = if b == b'\r' && self.at(i + 1) == Some(b'\n') {
                    2
                } else {
                    1
                };
                self.line_break();
                self.pos = i + len;
                return Some(Token::LineBreak {
                    at: i,
                    next: i + len,
                    in_code: self.lexer.in_code(),
                });
            }
            match self.lexer.state {
                State::Code => {
                    let (next, token) = self.code(i, b);
                    self.pos = next;
                    if token.is_some() {
                        return token;
                    }
                }
                State::LineComment => self.pos = i + 1,
                State::BlockComment(depth) => {
                    if self.starts_with(i, b"*/") {
                        self.lexer.state = match depth {
                            0 | 1 => State::Code,
                            d => State::BlockComment(d - 1),
                        };
                        self.pos = i + 2;
                    } else if self.lexer.syntax.nested_comments && self.starts_with(i, b"/*") {
                        self.lexer.state = State::BlockComment(depth.saturating_add(1));
                        self.pos = i + 2;
                    } else {
                        self.pos = i + 1;
                    }
                }
                State::Str { quote, escaped } => self.pos = self.string(i, b, quote, escaped),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The brackets `text` has in code, as a string of bracket characters.
    fn brackets(language: Language, text: &str) -> String {
        let mut lexer = Lexer::new(&language);
        let mut out = String::new();
        for token in lexer.tokens(text) {
            match token {
                Token::Open { at, .. } | Token::Close { at, .. } => {
                    out.push_str(text.get(at..at + 1).unwrap_or("?"));
                }
                Token::LineBreak { .. } => out.push('/'),
            }
        }
        out
    }

    #[test]
    fn strings_and_comments_hide_brackets() {
        let rust =
            "fn f<'a>(x: &'a str) -> char { let c = '('; let s = r#\"{\"#; /* ( /* ) */ [ */ '}' }";
        assert_eq!(brackets(Language::Rust, rust), "(){}");
        let python = "x = f('(', \"[\")  # ) comment\ny = \"\"\"\n(\n\"\"\" + g()";
        assert_eq!(brackets(Language::Python, python), "()///()");
        let js = "const s = `${a}(`; f('it\\'s (');\nlet r = [1] // ]";
        assert_eq!(brackets(Language::JavaScript, js), "()/[]");
        let go = "s := `\\`; f(\"\\\")\")";
        assert_eq!(brackets(Language::Go, go), "()");
        let c = "char c = '{'; /* { */ int a[2] = {1, 2};";
        assert_eq!(brackets(Language::C, c), "[]{}");
        let java = "String s = \"\"\"\n  ( \"quoted\"\n  \"\"\"; f(x);";
        assert_eq!(brackets(Language::Java, java), "//()");
    }

    #[test]
    fn state_carries_over_between_texts() {
        let mut lexer = Lexer::new(&Language::Python);
        for _ in lexer.tokens("print(\"hello, (") {}
        assert!(lexer.in_string());
        let tokens: Vec<Token> = lexer.tokens("world\")").collect();
        assert_eq!(tokens, [Token::Close { at: 6, kind: b'(' }]);
        assert!(lexer.in_code());
    }

    #[test]
    fn one_line_strings_end_at_the_line_break() {
        // An unterminated quote in C must not swallow the rest of the file.
        assert_eq!(brackets(Language::C, "x = 'a;\nf(y);"), "/()");
        // Rust strings may span lines.
        assert_eq!(brackets(Language::Rust, "let s = \"a\n(\";\nf()"), "//()");
        assert_eq!(
            brackets(Language::PlainText("md".into()), "1) don't ("),
            ")("
        );
    }
}
