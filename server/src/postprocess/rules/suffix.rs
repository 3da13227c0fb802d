//! The suggestion does not re-type what follows the cursor.
//!
//! A fill-in-the-middle model sees the suffix and often ends its middle by
//! writing the suffix's start again. Inserted as is, that text would appear
//! twice. Two overlaps are removed:
//!
//! - **The rest of the cursor's line.** When text follows the cursor on its
//!   line (`);`, `") {`, `world";`), the model tends to write it again at the
//!   end of its line. If the suggestion's first line (when more lines follow)
//!   or the whole suggestion (after trailing whitespace) ends with that text,
//!   trimmed, the suggestion is cut just before it, and any lines after the
//!   first line go too: they would land between the suggestion and the rest
//!   of the line. The editor keeps its own copy of the rest of the line, so
//!   `foo(` + `a, b);` before `);` shows `a, b`. The overlap must be the whole
//!   rest of the line, and the cut must not split the suggestion's own
//!   brackets: with `)` after the cursor, `bar(x)` stays `bar(x)`, since its
//!   `)` closes its own `(`.
//! - **The next lines.** When a line of the suggestion (after its first, or
//!   any line when the cursor is alone on a blank line, where the first line
//!   is a whole new line too) equals the first non-blank line after the
//!   cursor, and the lines after it
//!   go on equalling the suffix's lines (blank lines skipped, compared
//!   without surrounding whitespace), the suggestion is cut before it. The
//!   overlap must be meaningful: either it runs to the end of the suggestion,
//!   or it is at least two lines long with one of them holding a letter or
//!   digit (the model re-typed existing code and went on past it; what follows
//!   is no better). A line without letters or digits (`}`, `);`) matches only
//!   at the same indentation, so that the end of the suggestion's own block
//!   is not taken for the end of the document's.

use crate::postprocess::lexer::Token;
use crate::postprocess::lines::{indent_width, lines, Line};
use crate::postprocess::Context;

use super::has_alphanumeric;

/// Non-blank lines of the suffix compared at most.
const MAX_SUFFIX_LINES: usize = 64;

/// Cuts `completion` before the part of it that repeats the text after the
/// cursor (see the module documentation); returns it unchanged when there is
/// no meaningful overlap.
pub fn drop_suffix_overlap<'c>(completion: &'c str, context: &Context) -> &'c str {
    let text = drop_rest_of_line(completion, context);
    drop_next_lines(text, context)
}

/// Cuts before a copy of the rest of the cursor's line at the end of the
/// suggestion's first line or of the whole suggestion.
fn drop_rest_of_line<'c>(completion: &'c str, context: &Context) -> &'c str {
    let rest = context.rest_of_line.trim();
    if rest.is_empty() {
        return completion;
    }
    let first = lines(completion).next();
    let multi_line = first.is_some_and(|l| l.has_break());
    let first_end = first.map_or(0, |l| l.text.trim_end().len());
    let whole_end = completion.trim_end().len();
    let ends = if multi_line {
        [Some(first_end), Some(whole_end)]
    } else {
        [Some(whole_end), None]
    };
    for end in ends.into_iter().flatten() {
        let Some(text) = completion.get(..end) else {
            continue;
        };
        let Some(kept) = text.strip_suffix(rest) else {
            continue;
        };
        if own_depth(kept, context) == 0 {
            return kept;
        }
    }
    completion
}

/// How many of its own brackets `text` leaves open, reading it from the
/// cursor's lexer state.
fn own_depth(text: &str, context: &Context) -> usize {
    let mut lexer = context.lexer.clone();
    let mut depth: usize = 0;
    for token in lexer.tokens(text) {
        match token {
            Token::Open { .. } => depth += 1,
            Token::Close { .. } => depth = depth.saturating_sub(1),
            Token::LineBreak { .. } => {}
        }
    }
    depth
}

/// Cuts before the first line from which the suggestion repeats the lines
/// after the cursor.
fn drop_next_lines<'c>(completion: &'c str, context: &Context) -> &'c str {
    let suffix: Vec<Line> = lines(context.next_lines)
        .filter(|l| !l.is_blank())
        .take(MAX_SUFFIX_LINES)
        .collect();
    if suffix.is_empty() {
        return completion;
    }
    let tab = context.tab();
    let same = |ours: &Line, theirs: &Line| {
        ours.text.trim() == theirs.text.trim()
            && (has_alphanumeric(ours.text)
                || indent_width(ours.text, tab) == indent_width(theirs.text, tab))
    };
    let ours: Vec<Line> = lines(completion).collect();
    let cursor_line_is_new =
        context.cursor_line.trim().is_empty() && context.rest_of_line.trim().is_empty();
    let first = usize::from(!cursor_line_is_new);
    for (i, line) in ours.iter().enumerate().skip(first) {
        if line.is_blank() {
            continue;
        }
        let mut matched = 0;
        let mut meaningful = false;
        let mut to_the_end = true;
        for candidate in ours.iter().skip(i).filter(|l| !l.is_blank()) {
            match suffix.get(matched) {
                Some(theirs) if same(candidate, theirs) => {
                    matched += 1;
                    meaningful |= has_alphanumeric(candidate.text);
                }
                _ => {
                    to_the_end = false;
                    break;
                }
            }
        }
        if (matched >= 1 && to_the_end) || (matched >= 2 && meaningful) {
            let end = i
                .checked_sub(1)
                .and_then(|j| ours.get(j))
                .map_or(0, |l| l.end);
            return completion.get(..end).unwrap_or(completion);
        }
    }
    completion
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::documents::Language;
    use crate::postprocess::test_support::{input, render};

    fn check(language: &str, doc: &str, completion: &str, expect: Expect) {
        let language = Language::from_language_id(language);
        let context = Context::new(&input(&language, doc, completion));
        expect.assert_eq(&render(drop_suffix_overlap(completion, &context)));
    }

    #[test]
    fn python_next_line_retyped() {
        check(
            "python",
            "def total(xs):\n    s = 0\n    $0\n    return s\n",
            "for x in xs:\n        s += x\n    return s",
            expect![[r#"
                |for x in xs:
                |        s += x
            "#]],
        );
    }

    #[test]
    fn rust_rest_of_line_retyped() {
        check(
            "rust",
            "    let n = parse($0);\n",
            "input, 10);",
            expect![[r#"
            |input, 10
        "#]],
        );
    }

    #[test]
    fn rust_own_closing_paren_is_kept() {
        check(
            "rust",
            "    let n = parse($0)\n",
            "input.trim()",
            expect![[r#"
            |input.trim()
        "#]],
        );
    }

    #[test]
    fn javascript_string_end_retyped() {
        check(
            "javascript",
            "const msg = \"Hello, $0\";\n",
            "world\";",
            expect![[r#"
            |world
        "#]],
        );
    }

    #[test]
    fn go_rest_of_line_then_more_lines() {
        check(
            "go",
            "func f() {\n\tif err := run($0); err != nil {\n\t\treturn\n\t}\n}\n",
            "ctx); err != nil {\n\t\tlog.Fatal(err)\n\t}",
            expect![[r#"
                |ctx
            "#]],
        );
    }

    #[test]
    fn c_retyped_lines_then_more_are_cut() {
        check(
            "c",
            "int main(void) {\n    int x = read();\n    $0\n    printf(\"%d\\n\", x);\n    return 0;\n}\n",
            "x *= 2;\n    printf(\"%d\\n\", x);\n    return 0;\n}\n\nint read(void) {",
            expect![[r#"
                |x *= 2;
            "#]],
        );
    }

    #[test]
    fn java_closing_brace_of_own_block_is_not_the_suffix() {
        check(
            "java",
            "    void run() {\n        $0\n    }\n",
            "if (ready) {\n            start();\n        }",
            expect![[r#"
                |if (ready) {
                |            start();
                |        }
            "#]],
        );
    }

    #[test]
    fn python_blank_cursor_line_retyping_the_next_line_shows_nothing() {
        check(
            "python",
            "def total(xs):\n    s = sum(xs)\n$0\n    return s\n",
            "    return s\n",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn typescript_one_retyped_line_in_the_middle_is_kept() {
        check(
            "typescript",
            "function f(a: number) {\n  $0\n  return a;\n}\n",
            "if (a < 0) {\n    return a;\n  }\n  a += 1;",
            expect![[r#"
                |if (a < 0) {
                |    return a;
                |  }
                |  a += 1;
            "#]],
        );
    }
}
