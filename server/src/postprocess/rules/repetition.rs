//! A model stuck in a loop is cut after the first round.
//!
//! Small models fall into cycles: the same line again and again, or the same
//! few lines (`a += 1; b += 1;`, a test case with the same arguments) until
//! the token limit. A cycle is a run of lines that repeats with a period of
//! 1 to 16 lines for at least two full rounds and one more line: three times
//! the same line, or `A B A B A`. Its block must have a line with a letter or
//! digit (three `}` lines in a row are the ends of nested blocks, not a
//! loop). Lines are compared without their indentation and trailing
//! whitespace, since loops often drift in indentation. The suggestion is cut
//! after the cycle's first round: what came before the loop and one copy of
//! it are kept.
//!
//! Twice the same line is not a loop: `x.push(1);` twice is plausible code.

use crate::postprocess::lines::{lines, Line};

use super::has_alphanumeric;

/// The longest cycle looked for, in lines.
const MAX_PERIOD: usize = 16;

/// Lines looked at; a suggestion longer than this has other problems, and the
/// search stays cheap on any input.
const MAX_LINES: usize = 1000;

/// Cuts `completion` after the first round of the first cycle of repeated
/// lines it contains; returns it unchanged when it has none.
pub fn drop_repetition(completion: &str) -> &str {
    let all: Vec<Line> = lines(completion).take(MAX_LINES).collect();
    let same = |a: usize, b: usize| match (all.get(a), all.get(b)) {
        (Some(x), Some(y)) => x.text.trim() == y.text.trim(),
        _ => false,
    };
    for start in 0..all.len() {
        for period in 1..=MAX_PERIOD {
            let run = 2 * period + 1;
            if start + run > all.len() {
                break;
            }
            let meaningful = all
                .iter()
                .skip(start)
                .take(period)
                .any(|l| has_alphanumeric(l.text));
            if meaningful && (start + period..start + run).all(|i| same(i, i - period)) {
                let end = all
                    .get(start + period - 1)
                    .map_or(completion.len(), |l| l.end);
                return completion.get(..end).unwrap_or(completion);
            }
        }
    }
    completion
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::postprocess::test_support::render;

    fn check(completion: &str, expect: Expect) {
        expect.assert_eq(&render(drop_repetition(completion)));
    }

    #[test]
    fn python_same_line_three_times() {
        check(
            "import os\nimport sys\nimport sys\nimport sys\nimport sys\nimport sy",
            expect![[r#"
                |import os
                |import sys
            "#]],
        );
    }

    #[test]
    fn c_two_line_cycle() {
        check(
            "x = 0;\n    a[i] = b[i];\n    i++;\n    a[i] = b[i];\n    i++;\n    a[i] = b[i];\n",
            expect![[r#"
                |x = 0;
                |    a[i] = b[i];
                |    i++;
            "#]],
        );
    }

    #[test]
    fn java_cycle_drifting_in_indentation() {
        check(
            "assertEquals(1, f(1));\n        assertEquals(1, f(1));\n            assertEquals(1, f(1));",
            expect![[r#"
                |assertEquals(1, f(1));
            "#]],
        );
    }

    #[test]
    fn rust_closing_braces_are_not_a_loop() {
        check(
            "if a {\n            if b {\n                c();\n            }\n        }\n    }",
            expect![[r#"
                |if a {
                |            if b {
                |                c();
                |            }
                |        }
                |    }
            "#]],
        );
    }

    #[test]
    fn go_a_line_twice_is_kept() {
        check(
            "buf.WriteString(sep)\n\tbuf.WriteString(sep)\n\treturn buf.String()",
            expect![[r#"
            |buf.WriteString(sep)
            |→buf.WriteString(sep)
            |→return buf.String()
        "#]],
        );
    }

    #[test]
    fn typescript_repeated_function_blocks() {
        check(
            "test('adds', () => {\n  expect(add(1, 2)).toBe(3);\n});\ntest('adds', () => {\n  expect(add(1, 2)).toBe(3);\n});\ntest('adds', () => {\n  expect(add(1, 2)).toBe(3);\n});",
            expect![[r#"
                |test('adds', () => {
                |  expect(add(1, 2)).toBe(3);
                |});
            "#]],
        );
    }
}
