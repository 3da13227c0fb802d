//! When generation was cut short, its unfinished last line goes.
//!
//! A deadline or token limit stops the model anywhere, often mid-token
//! (`retu`, `foo(a, `). Lines before the last line break are complete; the
//! text after it is dropped. When there is no complete line at all:
//!
//! - in multi-line mode nothing is shown: the model was meant to go on past
//!   this line and was stopped before even finishing it, so there is no sign
//!   that the line is done;
//! - in single-line mode the fragment is shown only when it looks finished:
//!   it has a letter or digit, it leaves none of its own brackets open and no
//!   string it opened unterminated, and it does not end with a character that
//!   needs more after it (`,`, `.`, an operator, `\`, an opening bracket).
//!   `x.len()` is shown; `x.len(` and `a +` are not. A token limit usually
//!   strikes at a token boundary, so a fragment passing these checks is
//!   usually a whole expression, and a single line is cheap to reject by
//!   typing on.

use crate::postprocess::lexer::Token;
use crate::postprocess::{Extent, Surroundings};

use super::has_alphanumeric;

/// The complete lines of `text`: everything before its last line break
/// (`\n`, `\r\n` or a lone `\r`), the break itself excluded; empty when there
/// is no line break. The server uses it when the latency budget expires and
/// the streamed text so far must be shown.
pub fn cut_to_complete_lines(text: &str) -> &str {
    match text.rfind(['\n', '\r']) {
        Some(i) => {
            let before = text.get(..i).unwrap_or("");
            if text.as_bytes().get(i) == Some(&b'\n') {
                before.strip_suffix('\r').unwrap_or(before)
            } else {
                before
            }
        }
        None => "",
    }
}

/// Drops the unfinished last line of a `truncated` completion (see the module
/// documentation for the case of no complete line); an untruncated
/// completion is returned as it is.
pub fn cut_incomplete_line<'c>(
    completion: &'c str,
    extent: Extent,
    truncated: bool,
    context: &Surroundings,
) -> &'c str {
    if !truncated {
        return completion;
    }
    if completion.contains(['\n', '\r']) {
        return cut_to_complete_lines(completion);
    }
    match extent {
        Extent::MultiLine => "",
        Extent::SingleLine if looks_finished(completion, context) => completion,
        Extent::SingleLine => "",
    }
}

/// Characters after which a line cannot end: it needs an operand, an
/// argument or a member next.
const CONTINUATIONS: &[char] = &[
    ',', '.', '+', '-', '*', '/', '%', '=', '&', '|', '^', '\\', '(', '[', '{',
];

/// Whether a one-line fragment reads as a finished piece of code.
fn looks_finished(fragment: &str, context: &Surroundings) -> bool {
    let Some(last) = fragment.trim_end().chars().last() else {
        return false;
    };
    if !has_alphanumeric(fragment) || CONTINUATIONS.contains(&last) {
        return false;
    }
    let mut lexer = context.lexer.clone();
    let mut own: Vec<u8> = Vec::new();
    for token in lexer.tokens(fragment) {
        match token {
            Token::Open { kind, .. } => own.push(kind),
            Token::Close { kind, .. } => match own.pop() {
                Some(open) if open != kind => return false,
                _ => {}
            },
            Token::LineBreak { .. } => {}
        }
    }
    let opened_a_string = lexer.in_string() && !context.lexer.in_string();
    own.is_empty() && !opened_a_string
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::documents::Language;
    use crate::postprocess::test_support::{input, render};

    fn check_mode(extent: Extent, language: &str, doc: &str, completion: &str, expect: Expect) {
        let language = Language::from_language_id(language);
        let context = Surroundings::new(&input(&language, doc, completion));
        expect.assert_eq(&render(cut_incomplete_line(
            completion, extent, true, &context,
        )));
    }

    fn check(language: &str, doc: &str, completion: &str, expect: Expect) {
        check_mode(Extent::MultiLine, language, doc, completion, expect);
    }

    fn check_single(language: &str, doc: &str, completion: &str, expect: Expect) {
        check_mode(Extent::SingleLine, language, doc, completion, expect);
    }

    #[test]
    fn python_half_statement_goes() {
        check(
            "python",
            "def mean(xs):\n    $0",
            "total = sum(xs)\n    count = len(xs)\n    retu",
            expect![[r#"
                |total = sum(xs)
                |    count = len(xs)
            "#]],
        );
    }

    #[test]
    fn rust_half_call_goes_with_crlf() {
        check(
            "rust",
            "fn main() {\r\n    $0\r\n}",
            "let args: Vec<String> = env::args().collect();\r\n    let path = args.get(1).unwr",
            expect![[r#"
                |let args: Vec<String> = env::args().collect();
            "#]],
        );
    }

    #[test]
    fn go_no_complete_line_in_multi_line_mode_is_nothing() {
        check(
            "go",
            "func main() {\n\t$0\n}",
            "fmt.Println(\"hello, wor",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn typescript_finished_fragment_is_kept_in_single_line_mode() {
        check_single(
            "typescript",
            "const names = users$0",
            ".filter((u) => u.active).map((u) => u.name)",
            expect![[r#"
                |.filter((u) => u.active).map((u) => u.name)
            "#]],
        );
    }

    #[test]
    fn java_open_call_is_rejected_in_single_line_mode() {
        check_single(
            "java",
            "    List<String> names = $0",
            "users.stream().map(User::getName",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn c_dangling_operator_is_rejected_in_single_line_mode() {
        check_single(
            "c",
            "    int area = $0",
            "width * height +",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn cpp_unterminated_string_is_rejected_in_single_line_mode() {
        check_single(
            "cpp",
            "    std::cout << $0",
            "\"Result: \" << result << \"\\n",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn python_closing_the_users_bracket_is_finished() {
        check_single(
            "python",
            "    total = sum($0",
            "item.price for item in cart)",
            expect![[r#"
            |item.price for item in cart)
        "#]],
        );
    }

    #[test]
    fn complete_lines_of_streamed_text() {
        assert_eq!(cut_to_complete_lines("a\nb"), "a");
        assert_eq!(cut_to_complete_lines("a\r\nb\r\n"), "a\r\nb");
        assert_eq!(cut_to_complete_lines("a\rb"), "a");
        assert_eq!(cut_to_complete_lines("no break"), "");
        assert_eq!(cut_to_complete_lines(""), "");
        assert_eq!(cut_to_complete_lines("🦀\n🦀"), "🦀");
    }
}
