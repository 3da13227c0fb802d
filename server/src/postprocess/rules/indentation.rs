//! The suggestion indents the way the file does.
//!
//! Models learned mostly from space-indented code and write four spaces in a
//! tab-indented Go file; some write tabs in a two-space file. When the file's
//! style is known (see [`indentation_style`](crate::postprocess::indentation_style))
//! and the suggestion's lines indent the other way, each line's leading
//! whitespace is measured in columns and rewritten in the file's style:
//!
//! - spaces to tabs: one tab per level of the suggestion's own space width
//!   (its most common indentation step, 4 when it has only one level), the
//!   remainder kept as spaces;
//! - tabs to spaces: each tab advances to the next stop of the file's width.
//!
//! Only tabs against spaces is converted. A different space width (2 against
//! 4) is left alone: the suggestion's first level is relative to indentation
//! the file already has, and rescaling it would guess at the meaning of every
//! column. The first line is converted only when the cursor's line has
//! nothing but whitespace before the cursor (it then holds indentation);
//! otherwise it continues text in the middle of a line.

use std::borrow::Cow;

use crate::postprocess::indent::{IndentStats, IndentStyle};
use crate::postprocess::lines::{advance_columns, leading_ws, lines};
use crate::postprocess::Surroundings;

/// Rewrites the leading whitespace of the suggestion's lines in the file's
/// style when the suggestion uses tabs where the file uses spaces, or the
/// reverse; otherwise returns it untouched.
pub fn match_indentation_style<'c>(completion: &'c str, context: &Surroundings) -> Cow<'c, str> {
    let first_is_indentation = context.cursor_line.trim().is_empty();
    // The suggestion's own style: from its lines after the first (the first
    // starts at the cursor's column, so its width says nothing of the step),
    // the first counting only for tabs against spaces.
    let mut stats = IndentStats::default();
    stats.add(completion, false);
    if first_is_indentation {
        stats.add_indentation(leading_ws(completion));
    }
    // What to write for a line indented by `columns`, and the width of a tab
    // when measuring the suggestion's columns.
    let (to_tabs, tab) = match (context.style, stats.style()) {
        (IndentStyle::Tabs, IndentStyle::Spaces(width)) => (Some(width), width),
        (IndentStyle::Spaces(width), IndentStyle::Tabs) => (None, width),
        _ => return Cow::Borrowed(completion),
    };
    let mut out = String::with_capacity(completion.len() + completion.len() / 2);
    for (i, line) in lines(completion).enumerate() {
        let ws = leading_ws(line.text);
        if i > 0 || first_is_indentation {
            let columns = advance_columns(0, ws, tab);
            match to_tabs {
                Some(width) => {
                    out.extend(std::iter::repeat_n('\t', columns / width));
                    out.extend(std::iter::repeat_n(' ', columns % width));
                }
                None => out.extend(std::iter::repeat_n(' ', columns)),
            }
            out.push_str(line.text.get(ws.len()..).unwrap_or(""));
        } else {
            out.push_str(line.text);
        }
        out.push_str(completion.get(line.end..line.next).unwrap_or(""));
    }
    Cow::Owned(out)
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
        expect.assert_eq(&render(&match_indentation_style(completion, &context)));
    }

    #[test]
    fn go_spaces_become_tabs() {
        check(
            "go",
            "func sum(xs []int) int {\n\ttotal := 0\n\t$0\n}\n",
            "for _, x := range xs {\n        total += x\n    }\n    return total",
            expect![[r#"
                |for _, x := range xs {
                |→→total += x
                |→}
                |→return total
            "#]],
        );
    }

    #[test]
    fn javascript_tabs_become_two_spaces() {
        check(
            "javascript",
            "function f(items) {\n  if (items.length) {\n    log(items);\n  }\n  $0\n}\n",
            "for (const item of items) {\n\t\tsend(item);\n\t}",
            expect![[r#"
                |for (const item of items) {
                |    send(item);
                |  }
            "#]],
        );
    }

    #[test]
    fn c_blank_cursor_line_converts_the_first_line_too() {
        check(
            "c",
            "int main(void) {\n\tint x = 1;\n$0\n}\n",
            "    if (x) {\n        return 1;\n    }",
            expect![[r#"
                |→if (x) {
                |→→return 1;
                |→}
            "#]],
        );
    }

    #[test]
    fn python_same_style_is_untouched() {
        check(
            "python",
            "class A:\n    def f(self):\n        $0",
            "if self.x:\n            return 1\n        return 2",
            expect![[r#"
                |if self.x:
                |            return 1
                |        return 2
            "#]],
        );
    }

    #[test]
    fn rust_unknown_file_style_is_untouched() {
        check(
            "rust",
            "fn main() {$0}",
            "\n\tprintln!(\"hi\");\n",
            expect![[r#"
            |
            |→println!("hi");
            |
        "#]],
        );
    }
}
