//! Whitespace at the end goes, and whitespace alone is nothing.
//!
//! Trailing spaces and blank lines would be inserted into the document for no
//! reason, and the cuts of the other rules often leave a dangling line break
//! and indentation. One exception: when text follows the cursor on its line,
//! trailing whitespace is kept as the model wrote it, because it separates the
//! suggestion from that text (`"hello |world"`) or puts it on a line of its
//! own (`foo(\n    a,\n|)`).

use crate::postprocess::Surroundings;

/// Removes trailing whitespace (unless text follows the cursor on its line)
/// and turns a whitespace-only suggestion into nothing.
pub fn trim_whitespace<'c>(completion: &'c str, context: &Surroundings) -> &'c str {
    if completion.trim().is_empty() {
        ""
    } else if context.rest_of_line.trim().is_empty() {
        completion.trim_end()
    } else {
        completion
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::documents::Language;
    use crate::postprocess::test_support::{input, render};

    fn check(language: &str, doc: &str, completion: &str, expect: Expect) {
        let language = Language::from_language_id(language);
        let context = Surroundings::new(&input(&language, doc, completion));
        expect.assert_eq(&render(trim_whitespace(completion, &context)));
    }

    #[test]
    fn python_trailing_blank_lines_go() {
        check(
            "python",
            "def f(x):\n    $0",
            "return x * 2\n\n    \n",
            expect![[r#"
            |return x * 2
        "#]],
        );
    }

    #[test]
    fn rust_whitespace_only_is_nothing() {
        check(
            "rust",
            "fn main() {\n    $0\n}",
            "\n    \n\t",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn javascript_space_before_the_rest_of_the_line_is_kept() {
        check(
            "javascript",
            "const greeting = \"hello $0world\";",
            "big ",
            expect![[r#"
            |big·
        "#]],
        );
    }

    #[test]
    fn c_trailing_spaces_and_crlf_go() {
        check(
            "c",
            "int main(void) {\r\n    $0\r\n}",
            "return 0;   \r\n",
            expect![[r#"
            |return 0;
        "#]],
        );
    }
}
