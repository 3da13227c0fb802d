//! The suggestion's brackets add up.
//!
//! Two kinds of imbalance are cut away (in the known languages; plain text
//! has no reliable bracket syntax and is left alone):
//!
//! - **A closer that matches nothing**: one of a different kind than the
//!   innermost open bracket (the suggestion's own, or else the one open at
//!   the cursor), or any closer when nothing is open. The suggestion is cut
//!   right before it: the model has closed more than was open.
//! - **A bracket of its own left open across lines.** A multi-line suggestion
//!   that ends inside a bracket it opened (`if ready {\n    start();`, cut off
//!   by the deadline or by an earlier rule) would leave the user's code
//!   unbalanced. It is cut back to the end of its last line that ended with
//!   none of its own brackets open, or to nothing, unless the text after the
//!   cursor closes exactly those brackets and still closes the ones it closed
//!   before (`value_map = {` + entries, with the `}` already below the
//!   cursor). A single-line suggestion
//!   may leave its bracket open (`if ready {`, `foo(`): that is how a line
//!   opening a block reads, and the user is typing on that line anyway.
//!
//! A bracket open at the cursor may stay open: the suffix closes it, or the
//! user will.

use crate::postprocess::surroundings::Fate;
use crate::postprocess::lexer::{Lexer, Token};
use crate::postprocess::Surroundings;

/// Cuts `completion` before its first closer that matches nothing, and cuts
/// a multi-line suggestion back so that none of its own brackets stays open.
pub fn balance_brackets<'c>(completion: &'c str, context: &Surroundings) -> &'c str {
    if !context.knows_brackets() {
        return completion;
    }
    let mut lexer = context.lexer.clone();
    let mut own: Vec<u8> = Vec::new();
    let mut outer = context.open.len();
    let mut end = completion.len();
    let mut multi_line = false;
    let mut last_balanced_break: Option<usize> = None;
    let mut interrupted = false;
    for token in lexer.tokens(completion) {
        match token {
            Token::Open { kind, .. } => own.push(kind),
            Token::Close { at, kind } => {
                if let Some(&top) = own.last() {
                    if top != kind {
                        end = at;
                        interrupted = true;
                        break;
                    }
                    own.pop();
                    continue;
                }
                match outer.checked_sub(1).and_then(|j| context.open.get(j)) {
                    Some(bracket) if bracket.kind == kind => outer -= 1,
                    _ => {
                        end = at;
                        interrupted = true;
                        break;
                    }
                }
            }
            Token::LineBreak { at, .. } => {
                multi_line = true;
                if own.is_empty() {
                    last_balanced_break = Some(at);
                }
            }
        }
    }
    let closed_below = || !interrupted && suffix_closes(&own, outer, lexer, context);
    let end = if own.is_empty() || !multi_line || closed_below() {
        end
    } else {
        last_balanced_break.unwrap_or(0)
    };
    completion.get(..end).unwrap_or(completion)
}

/// Whether the text after the cursor, read from `lexer` (the state at the end
/// of the suggestion), closes the suggestion's own open brackets `own` in
/// order and then still closes every bracket open at the cursor that it
/// closed without the suggestion. Then the suggestion is the first part of a
/// bracket the user already finished below the cursor. `outer` is how many of
/// the brackets open at the cursor are still open after the suggestion.
fn suffix_closes(own: &[u8], outer: usize, mut lexer: Lexer, context: &Surroundings) -> bool {
    let outer = &context.open[..outer.min(context.open.len())];
    let must_close = outer.iter().filter(|b| b.fate == Fate::ClosedBySuffix).count();
    let floor = outer.len() - must_close;
    let mut stack: Vec<u8> = outer.iter().map(|b| b.kind).chain(own.iter().copied()).collect();
    for piece in [context.rest_of_line, "\n", context.next_lines] {
        for token in lexer.tokens(piece) {
            match token {
                Token::Open { kind, .. } => stack.push(kind),
                Token::Close { kind, .. } => {
                    if stack.last() != Some(&kind) {
                        return false;
                    }
                    stack.pop();
                    if stack.len() <= floor {
                        return true;
                    }
                }
                Token::LineBreak { .. } => {}
            }
        }
    }
    false
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
        expect.assert_eq(&render(balance_brackets(completion, &context)));
    }

    #[test]
    fn python_extra_paren_is_cut() {
        check(
            "python",
            "    print(len(items$0",
            "))) + 1",
            expect![[r#"
            |))
        "#]],
        );
    }

    #[test]
    fn javascript_mismatched_closer_is_cut() {
        check(
            "javascript",
            "const xs = [1, 2$0",
            ", 3});\nfoo();",
            expect![[r#"
            |, 3
        "#]],
        );
    }

    #[test]
    fn rust_block_left_open_across_lines_is_cut_back() {
        check(
            "rust",
            "fn main() {\n    $0\n}\n",
            "let ready = check();\n    if ready {\n        start();",
            expect![[r#"
                |let ready = check();
            "#]],
        );
    }

    #[test]
    fn python_dict_closed_by_the_suffix_is_kept() {
        // HumanEval/19: the hole is the dict's opening and entries; its `}` is
        // already below the cursor.
        check(
            "python",
            "def f(numbers):\n$0\n    }\n    return value_map\n",
            "    value_map = {\n        'zero': 0,\n        'one': 1,",
            expect![[r#"
                |    value_map = {
                |        'zero': 0,
                |        'one': 1,
            "#]],
        );
    }

    #[test]
    fn rust_block_is_not_closed_by_the_enclosing_functions_brace() {
        // The `}` below the cursor closes `fn main`, not the suggestion's `if`.
        check(
            "rust",
            "fn main() {\n    $0\n}\n",
            "if ready {\n        start();\n        stop();",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn go_single_line_opening_a_block_is_kept() {
        check(
            "go",
            "func main() {\n\t$0\n}\n",
            "for i := 0; i < 10; i++ {",
            expect![[r#"
            |for i := 0; i < 10; i++ {
        "#]],
        );
    }

    #[test]
    fn cpp_brackets_in_strings_and_comments_do_not_count() {
        check(
            "cpp",
            "int main() {\n    $0\n}\n",
            "std::cout << \")\" << std::endl; // (\n    return 0;",
            expect![[r#"
                |std::cout << ")" << std::endl; // (
                |    return 0;
            "#]],
        );
    }

    #[test]
    fn java_open_call_on_the_first_line_leaves_nothing() {
        check(
            "java",
            "class A {\n    void f() {\n        $0\n    }\n}\n",
            "list.forEach(item -> {\n            System.out.println(item);",
            expect![[r#"(empty)"#]],
        );
    }

    #[test]
    fn c_closing_the_users_open_paren_is_fine() {
        check(
            "c",
            "    if (x > 0 && $0",
            "y > 0) {",
            expect![[r#"
            |y > 0) {
        "#]],
        );
    }

    #[test]
    fn plain_text_is_left_alone() {
        check(
            "markdown",
            "Steps:\n$0",
            "1) install\n2) run",
            expect![[r#"
            |1) install
            |2) run
        "#]],
        );
    }
}
