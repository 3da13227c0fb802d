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
//! - **Reworded next lines.** The model sometimes re-types the next lines in
//!   its own words and then goes on verbatim: after `for c in s:` it writes
//!   `if c == '7': ans += 1` for the suffix's `ans += (c == '7')`, then the
//!   suffix's `return ans`. When the suggestion's last lines equal the
//!   suffix's lines from its second, third or fourth non-blank line on (at the
//!   same indentation, one of them holding a letter or digit), and the lines
//!   just before them stand where the skipped suffix lines stand (one for
//!   one, each at the same indentation), all of those lines are a copy: the
//!   suggestion is cut before the reworded ones.

use crate::postprocess::lexer::Token;
use crate::postprocess::lines::{indent_width, lines, Line};
use crate::postprocess::Surroundings;

use super::has_alphanumeric;

/// Non-blank lines of the suffix compared at most.
const MAX_SUFFIX_LINES: usize = 64;

/// Cuts `completion` before the part of it that repeats the text after the
/// cursor (see the module documentation); returns it unchanged when there is
/// no meaningful overlap.
pub fn drop_suffix_overlap<'c>(completion: &'c str, context: &Surroundings) -> &'c str {
    let text = drop_rest_of_line(completion, context);
    drop_next_lines(text, context)
}

/// Cuts before a copy of the rest of the cursor's line at the end of the
/// suggestion's first line or of the whole suggestion.
fn drop_rest_of_line<'c>(completion: &'c str, context: &Surroundings) -> &'c str {
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
fn own_depth(text: &str, context: &Surroundings) -> usize {
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
fn drop_next_lines<'c>(completion: &'c str, context: &Surroundings) -> &'c str {
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
    drop_reworded_lines(completion, &suffix, first, tab)
}

/// Suffix lines that may be reworded before the verbatim copy starts.
const MAX_REWORDED: usize = 3;

/// Cuts before a reworded copy of the suffix's first lines that goes on as a
/// verbatim copy of the following ones to the end (see the module docs).
fn drop_reworded_lines<'c>(completion: &'c str, suffix: &[Line], first: usize, tab: usize) -> &'c str {
    let ours: Vec<(usize, Line)> = lines(completion)
        .enumerate()
        .filter(|(_, l)| !l.is_blank())
        .collect();
    let indent = |l: &Line| indent_width(l.text, tab);
    for skipped in 1..=MAX_REWORDED.min(suffix.len().saturating_sub(1)) {
        // The verbatim tail: our last lines against suffix[skipped..].
        for tail in (1..=ours.len()).rev() {
            let start = ours.len() - tail;
            let Some(theirs) = suffix.get(skipped..skipped + tail) else {
                continue;
            };
            let verbatim = ours[start..].iter().zip(theirs).all(|((_, o), t)| {
                o.text.trim() == t.text.trim() && indent(o) == indent(t)
            });
            if !verbatim || !ours[start..].iter().any(|(_, l)| has_alphanumeric(l.text)) {
                continue;
            }
            // The reworded part: the `skipped` lines before the tail, one for
            // each skipped suffix line, at the same indentation.
            let Some(reworded_start) = start.checked_sub(skipped) else {
                continue;
            };
            let aligned = ours[reworded_start..start]
                .iter()
                .zip(&suffix[..skipped])
                .all(|((_, o), t)| indent(o) == indent(t));
            let (line_index, _) = ours[reworded_start];
            if !aligned || line_index < first {
                continue;
            }
            let end = line_index
                .checked_sub(1)
                .and_then(|j| lines(completion).nth(j))
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
        let context = Surroundings::new(&input(&language, doc, completion));
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
    fn python_reworded_next_line_then_verbatim_copy() {
        // HumanEval/36: the hole is `for c in s:`.
        check(
            "python",
            "def f(s):\n    ans = 0\n$0\n        ans += (c == '7')\n    return ans\n",
            "    for c in s:\n        if c == '7': ans += 1\n    return ans",
            expect![[r#"
                |    for c in s:
            "#]],
        );
    }

    #[test]
    fn python_own_return_differently_indented_is_kept() {
        check(
            "python",
            "def f(xs):\n    $0\n    log(xs)\n    return None\n",
            "if not xs:\n        return None",
            expect![[r#"
                |if not xs:
                |        return None
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
