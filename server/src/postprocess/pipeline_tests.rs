//! Tests of the whole pipeline on realistic raw model output: the rules
//! together, in their order, as the server calls them.

use expect_test::{expect, Expect};

use super::test_support::{input, render};
use super::{postprocess, Extent};
use crate::documents::Language;

fn run(language: &str, doc: &str, completion: &str, extent: Extent, truncated: bool, expect: Expect) {
    let language = Language::from_language_id(language);
    let input = super::PostprocessInput { extent, truncated, ..input(&language, doc, completion) };
    expect.assert_eq(&render(&postprocess(&input)));
}

fn multi(language: &str, doc: &str, completion: &str, expect: Expect) {
    run(language, doc, completion, Extent::MultiLine, false, expect);
}

#[test]
fn python_body_then_next_function_then_truncation() {
    run(
        "python",
        "import math\n\n\ndef area(r):\n    $0\n\n\ndef main():\n    print(area(2))\n",
        "return math.pi * r ** 2\n\n\ndef main():\n    print(area(2))\n\n\nif __name__ == \"__ma",
        Extent::MultiLine,
        true,
        expect![[r#"
            |return math.pi * r ** 2
        "#]],
    );
}

#[test]
fn rust_closing_paren_already_after_the_cursor() {
    run(
        "rust",
        "fn main() {\n    let name = \"cria\";\n    println!(\"hello, {}\", $0);\n}\n",
        "name);\n}\n",
        Extent::SingleLine,
        false,
        expect![[r#"
            |name
        "#]],
    );
}

#[test]
fn go_spaces_converted_then_block_closed_by_the_suffix_cut() {
    multi(
        "go",
        "func sum(xs []int) int {\n\ttotal := 0\n\t$0\n}\n",
        "for _, x := range xs {\n        total += x\n    }\n    return total\n}\n\nfunc main() {",
        expect![[r#"
            |for _, x := range xs {
            |→→total += x
            |→}
            |→return total
        "#]],
    );
}

#[test]
fn javascript_model_retypes_the_rest_of_the_function() {
    multi(
        "javascript",
        "function greet(user) {\n  const name = user.name;\n  $0\n  return message;\n}\n",
        "const message = `Hello, ${name}!`;\n  return message;\n}\n",
        expect![[r#"
            |const message = `Hello, ${name}!`;
        "#]],
    );
}

#[test]
fn typescript_loop_is_cut_after_one_round() {
    multi(
        "typescript",
        "describe('add', () => {\n  $0\n});\n",
        "it('adds', () => expect(add(1, 2)).toBe(3));\n  it('adds', () => expect(add(1, 2)).toBe(3));\n  it('adds', () => expect(add(1, 2)).toBe(3));\n  it('adds', () => expect(add(1, 2)).toBe(3));\n  it('a",
        expect![[r#"
            |it('adds', () => expect(add(1, 2)).toBe(3));
        "#]],
    );
}

#[test]
fn c_truncated_inside_a_new_block_is_cut_back() {
    run(
        "c",
        "int main(void) {\n    int n = 10;\n    $0\n}\n",
        "int total = 0;\n    for (int i = 0; i < n; i++) {\n        total += i;\n        printf(\"%d\\n\", to",
        Extent::MultiLine,
        true,
        expect![[r#"
            |int total = 0;
        "#]],
    );
}

#[test]
fn cpp_single_line_truncated_but_finished() {
    run(
        "cpp",
        "    auto it = std::find($0\n",
        "v.begin(), v.end(), target)",
        Extent::SingleLine,
        true,
        expect![[r#"
            |v.begin(), v.end(), target)
        "#]],
    );
}

#[test]
fn java_method_with_crlf_line_endings() {
    multi(
        "java",
        "class Greeter {\r\n    String greet(String name) {\r\n        $0\r\n    }\r\n}\r\n",
        "return \"Hello, \" + name;\r\n    }\r\n\r\n    String bye(String name) {\r\n",
        expect![[r#"
            |return "Hello, " + name;
        "#]],
    );
}

#[test]
fn python_whitespace_only_output_is_nothing() {
    multi("python", "def f():\n    pass\n$0", "\n\n   \n", expect![[r#"(empty)"#]]);
}

#[test]
fn rust_block_at_end_of_file_keeps_its_closing_brace() {
    multi(
        "rust",
        "use std::env;\n\nfn main() {\n    let args: Vec<String> = env::args().collect();\n    $0",
        "if args.len() < 2 {\n        eprintln!(\"usage: {} FILE\", args[0]);\n        return;\n    }\n    run(&args[1]);\n}\n\nfn run(path: &str) {\n",
        expect![[r#"
            |if args.len() < 2 {
            |        eprintln!("usage: {} FILE", args[0]);
            |        return;
            |    }
            |    run(&args[1]);
            |}
        "#]],
    );
}

#[test]
fn python_extra_closing_paren_before_the_users_paren() {
    run(
        "python",
        "def show(a, b):\n    print($0)\n",
        "foo(a, b))\n",
        Extent::SingleLine,
        false,
        expect![[r#"
            |foo(a, b)
        "#]],
    );
}

#[test]
fn python_column_zero_in_front_of_the_body_inserts_the_header_above_it() {
    // HumanEval/36 in the dataset's own layout: the cursor is at column 0 of
    // the loop body's line; the model writes the header, a reworded body and
    // the return again.
    multi(
        "python",
        "def fizz(s):\n    ans = 0\n$0        ans += (c == '7')\n    return ans\n",
        "    for c in s:\n        if c == '7': ans += 1\n    return ans",
        expect![[r#"
            |    for c in s:
            |
        "#]],
    );
}

#[test]
fn after_the_indentation_in_front_of_code_lines_go_in_above_it_and_the_code_keeps_its_indentation() {
    // The cursor after the indentation of `s = 0` (Home in an editor): a
    // statement shown there as one line would run into the code after it
    // (`s = []s = 0`). It is a line inserted above, the code moved down
    // to its own indentation.
    let doc = "def total(xs):\n    $0s = 0\n    for x in xs:\n        s += x\n    return s\n";
    multi(
        "python",
        doc,
        "\"\"\"The sum of xs.\"\"\"\n    ",
        expect![[r#"
            |"""The sum of xs."""
            |····
        "#]],
    );
    // Without a line break of its own (the model stopped there).
    multi(
        "python",
        doc,
        "xs = list(xs)",
        expect![[r#"
            |xs = list(xs)
            |····
        "#]],
    );
    // Writing the line that is there already shows nothing.
    multi("python", doc, "s = 0\n    for x in xs:\n", expect!["(empty)"]);
    // Nor does a line that would leave the code below unreachable.
    multi("python", doc, "return total(xs) / n\n    ", expect!["(empty)"]);
    multi(
        "rust",
        "fn main() {\n    $0let x = 1;\n    println!(\"{x}\");\n}\n",
        "let y = 2;\n    ",
        expect![[r#"
            |let y = 2;
            |····
        "#]],
    );
    // In front of closing characters it is the cursor's own line; a line
    // break at its end leaves the closer its indentation.
    multi(
        "rust",
        "fn main() {\n    if ready {\n        go();\n    $0}\n}\n",
        "stop();\n",
        expect![[r#"
            |stop();
            |····
        "#]],
    );
}

#[test]
fn closers_after_the_cursor_keep_their_indentation_when_the_suggestion_ends_a_line() {
    // Arguments written one per line inside `call(` ... `)`: the `)` that
    // was after the cursor moves to a line of its own, under the call.
    multi(
        "python",
        "def main():\n    result = call($0)\n",
        "\n        first,\n        second,\n",
        expect![[r#"
            |
            |        first,
            |        second,
            |····
        "#]],
    );
    // Without a final line break the closer stays on the suggestion's line.
    multi(
        "python",
        "def main():\n    result = call($0)\n",
        "first, second",
        expect![[r#"
            |first, second
        "#]],
    );
}

#[test]
fn python_dict_opened_by_the_suggestion_and_closed_below_is_kept() {
    // HumanEval/19: the dict's `}` is already below the cursor.
    multi(
        "python",
        "def sort_numbers(numbers):\n    $0\n    }\n    return value_map\n",
        "value_map = {\n        'zero': 0,\n        'one': 1,\n        'two': 2,",
        expect![[r#"
            |value_map = {
            |        'zero': 0,
            |        'one': 1,
            |        'two': 2,
        "#]],
    );
}

#[test]
fn a_block_cut_short_still_shows_its_first_line() {
    // The body was cut by the token limit: the multi-line rules keep no line
    // of it (an opened block of its own would stay open), so the first
    // line alone is shown, as for a single-line request.
    run(
        "c",
        "int load(const char *opt_path) {\n    $0\n    return 0;\n}\n",
        "if (opt_path) {\n        read_config(opt_path, &config);\n        apply(&con",
        Extent::MultiLine,
        true,
        expect![[r#"
            |if (opt_path) {
        "#]],
    );
}

#[test]
fn nothing_stays_nothing_when_the_first_line_is_unfinished() {
    run(
        "c",
        "int load(const char *opt_path) {\n    $0\n    return 0;\n}\n",
        "if (opt_pa",
        Extent::MultiLine,
        true,
        expect![[r#"(empty)"#]],
    );
}

#[test]
fn at_the_end_of_a_written_line_the_lines_below_may_go_on_in_the_enclosing_block() {
    // What Enter leads to after an `if` body's last line: the `else:` of
    // that `if`, one level out, and its body; the function's end is not
    // written again.
    let doc = "def get_run(value):\n    run = []\n    while value:\n        if value[0] in WSP:\n            token, value = get_fws(value)$0\n        run.append(token)\n    return run, value\n";
    multi(
        "python",
        doc,
        "\n        else:\n            token, value = get_dtext(value)\n        run.append(token)\n    return run, value\n",
        expect![[r#"
            |
            |        else:
            |            token, value = get_dtext(value)
        "#]],
    );
    // The next line in the same block.
    multi(
        "python",
        "def f(xs):\n    total = 0$0\n    return total\n",
        "\n    for x in xs:\n        total += x\n    return total\n\n\ndef g():\n    pass\n",
        expect![[r#"
            |
            |    for x in xs:
            |        total += x
        "#]],
    );
}

#[test]
fn at_the_end_of_a_written_line_a_deeper_line_below_it_is_not_shown_where_python_refuses_it() {
    // `total = 0` opens no block: a line below it one level deeper is an
    // unexpected indent, also when the rules would show just that line.
    let doc = "def f(xs):\n    total = 0$0\n    for x in xs:\n        pass\n";
    multi("python", doc, "\n        total += 1\n", expect!["(empty)"]);
    multi("python", "def f(xs):\n    total = 0$0\n", "\n        total += 1\n    return total\n", expect!["(empty)"]);
    // A block's opening line alone, its body cut short, is shown.
    let doc = "def f(xs):\n    total = 0$0\n    return total\n";
    run("python", doc, "\n    for x in xs:\n        tot", Extent::MultiLine, true, expect![[r#"
        |
        |    for x in xs:
    "#]]);
    // After a line that opens a block, or inside brackets, deeper is right.
    multi("python", "def f(xs):\n    for x in xs:$0\n", "\n        total += x\n", expect![[r#"
        |
        |        total += x
    "#]]);
    multi("python", "def f(xs):\n    total = sum($0\n", "\n        xs)\n", expect![[r#"
        |
        |        xs)
    "#]]);
}
