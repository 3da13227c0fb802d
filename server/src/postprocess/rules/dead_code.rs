//! Lines inserted above code do not end that code's block.
//!
//! After the indentation in front of code (or at column 0 in front of it),
//! the suggestion is lines inserted above that code (see
//! [`Surroundings`](crate::postprocess::Surroundings)). A model often writes
//! the end of a function there: `return total`, which would leave the code
//! below it unreachable. A line at the code's indentation (or shallower)
//! that leaves the block (`return`, `raise`, `throw`, `break`, `continue`)
//! cannot be what goes above code that follows; the suggestion is cut
//! before it, and shows nothing when that was its first line.

use crate::postprocess::lines::{advance_columns, first_line, indent_width, leading_ws, lines};
use crate::postprocess::Surroundings;

/// The statements that leave a block, in the languages cria knows.
const LEAVES_THE_BLOCK: &[&str] = &["return", "raise", "throw", "break", "continue"];

/// Cuts lines inserted above code before the first one that would leave the
/// code's block at its indentation; returns the text unchanged elsewhere.
pub fn keep_the_code_below_reachable<'c>(completion: &'c str, context: &Surroundings) -> &'c str {
    if !context.inserts_lines_above {
        return completion;
    }
    let tab = context.tab();
    let cursor_column = indent_width(context.cursor_line, tab);
    // The code's line is the first of the next lines (the cursor's line is
    // blank for the rules); at column 0 its indentation is after the cursor.
    let code_column = advance_columns(cursor_column, leading_ws(first_line(context.next_lines)), tab);
    for (index, line) in lines(completion).enumerate() {
        // The first line starts at the cursor.
        let column = if index == 0 { advance_columns(cursor_column, leading_ws(line.text), tab) } else { indent_width(line.text, tab) };
        if column <= code_column && leaves_the_block(line.text.trim_start()) {
            return &completion[..line.start];
        }
    }
    completion
}

/// Whether a line starts with a statement that leaves its block.
fn leaves_the_block(line: &str) -> bool {
    LEAVES_THE_BLOCK.iter().any(|word| {
        line.strip_prefix(word).is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
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
        expect.assert_eq(&render(keep_the_code_below_reachable(completion, &context)));
    }

    #[test]
    fn a_return_above_code_is_cut() {
        let doc = "def mean(xs):\n    $0s = 0\n    for x in xs:\n        s += x\n    return s / len(xs)\n";
        check("python", doc, "return total(xs) / n\n    ", expect!["(empty)"]);
        // At column 0 the code's indentation is after the cursor: a return
        // deeper than the code is kept, one at its level is not.
        let column_zero = "def f(s):\n    ans = 0\n$0    return ans\n";
        check(
            "python",
            column_zero,
            "    for c in s:\n        if c == '7':\n            return ans\n",
            expect![[r#"
                |    for c in s:
                |        if c == '7':
                |            return ans
                |
            "#]],
        );
        check("python", column_zero, "    return ans + 1\n", expect!["(empty)"]);
        check(
            "python",
            doc,
            "xs = list(xs)\n    return sum(xs) / len(xs)\n",
            expect![[r#"
                |xs = list(xs)
                |
            "#]],
        );
        check(
            "rust",
            "fn f(v: &[i32]) -> i32 {\n    $0let s = 0;\n    s\n}\n",
            "if v.is_empty() {\n        return 0;\n    }\n    ",
            expect![[r#"
                |if v.is_empty() {
                |        return 0;
                |    }
                |····
            "#]],
        );
    }

    #[test]
    fn elsewhere_and_for_words_that_only_start_alike_nothing_is_cut() {
        let doc = "def mean(xs):\n    $0s = 0\n";
        check(
            "python",
            doc,
            "returned = []\n    ",
            expect![[r#"
                |returned = []
                |····
            "#]],
        );
        check(
            "python",
            "def mean(xs):\n    $0\n",
            "return sum(xs)",
            expect![[r#"
                |return sum(xs)
            "#]],
        );
    }
}
