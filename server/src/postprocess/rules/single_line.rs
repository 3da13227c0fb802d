//! In single-line mode only the first line is shown.
//!
//! The server asks for a single line where the editor expects one (typing in
//! the middle of a line, or a client that cannot show more); the model may
//! still write several. When the first line is empty (the model started a new
//! line), nothing is shown: the next line is not the cursor's line.

use crate::postprocess::lines::lines;

/// The first line of `completion`, line break excluded. Used in
/// [`Extent::SingleLine`](crate::postprocess::Extent::SingleLine), where anything
/// after the cursor's line is not wanted.
pub fn keep_first_line(completion: &str) -> &str {
    let end = lines(completion)
        .next()
        .map_or(completion.len(), |line| line.end);
    completion.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::postprocess::test_support::render;

    fn check(completion: &str, expect: Expect) {
        expect.assert_eq(&render(keep_first_line(completion)));
    }

    #[test]
    fn python_call_keeps_the_call() {
        // def area(r):\n    return math.pi * $0
        check(
            "r ** 2\n\ndef perimeter(r):\n    return 2 * math.pi * r",
            expect![[r#"
            |r ** 2
        "#]],
        );
    }

    #[test]
    fn rust_statement_with_crlf() {
        // let total: u32 = $0
        check(
            "items.iter().map(|i| i.price).sum();\r\n    total",
            expect![[r#"
            |items.iter().map(|i| i.price).sum();
        "#]],
        );
    }

    #[test]
    fn go_new_line_first_shows_nothing() {
        // if err != nil {$0
        check("\n\t\treturn err\n\t}", expect![[r#"(empty)"#]]);
    }

    #[test]
    fn java_single_line_is_kept_whole() {
        check(
            "System.out.println(\"done\");",
            expect![[r#"
            |System.out.println("done");
        "#]],
        );
    }
}
