//! The suggestion does not break the file's syntax.
//!
//! The text rules before this one reason about lines, indentation and
//! brackets; they cannot tell that `for c in s:` followed by a re-typed loop
//! body leaves Python with an unexpected indent, or that a suggestion stops
//! half-way through a statement the suffix does not finish. The syntax tree
//! can: the windows around the cursor are parsed with the suggestion in place
//! and without it, and the suggestion may not add syntax errors (tree-sitter
//! `ERROR` and `MISSING` nodes). The whole suggestion is kept when it parses,
//! or when no cut of it at a line end leaves fewer errors; otherwise the
//! shortest cut with the fewest errors is shown (the first whole statement or
//! block that fits: a re-typed copy of the code below the cursor usually
//! follows it). Whatever is kept may not have more errors than the file
//! without the suggestion; if it would, nothing is shown: a suggestion that
//! breaks the file at every line is wrong.
//!
//! Only multi-line suggestions in a language with a grammar are checked: a
//! single-line suggestion is the rest of a line the user is still typing, and
//! a line cut of it would be empty. Comparing error counts, not demanding
//! none, keeps the rule useful in files that are being edited and so rarely
//! parse cleanly.

use tree_sitter::{Node, Parser};

use crate::documents::Language;
use crate::postprocess::lexer::{Lexer, Token};
use crate::postprocess::lines::{self, indent_width, lines};
use crate::postprocess::{Extent, PostprocessInput};

/// Bytes of the prefix (its end) and of the suffix (its start) parsed around
/// the suggestion. Cut at line starts; a construct cut in half by the window
/// gives the same errors with and without the suggestion.
const PREFIX_WINDOW: usize = 16 * 1024;
const SUFFIX_WINDOW: usize = 8 * 1024;

/// Line cuts tried at most; a longer suggestion is checked whole only.
const MAX_CUTS: usize = 32;

/// Cuts `completion` back to a line end where it adds no syntax errors
/// (see the module documentation). `after` is appended after the suggestion
/// in the parsed text (a line break and the cursor line's indentation when
/// the suggestion is inserted above the cursor's line).
pub fn cut_to_parsable<'c>(completion: &'c str, input: &PostprocessInput, after: &str) -> &'c str {
    if input.extent != Extent::MultiLine || completion.trim().is_empty() {
        return completion;
    }
    let Some(grammar) = input.language.grammar() else {
        return completion;
    };
    let mut parser = Parser::new();
    if parser.set_language(&grammar).is_err() {
        return completion;
    }
    let prefix = line_aligned_tail(input.prefix, PREFIX_WINDOW);
    let suffix = line_aligned_head(input.suffix, SUFFIX_WINDOW);
    let mut errors = |middle: &str| -> Option<usize> {
        let text = format!("{prefix}{middle}{after}{suffix}");
        let indentation = match input.language {
            Language::Python => python_indentation_errors(&text),
            _ => 0,
        };
        parser.parse(&text, None).map(|tree| error_count(tree.root_node()) + indentation)
    };
    let Some(baseline) = errors("") else {
        return completion;
    };
    let Some(whole) = errors(completion) else {
        return completion;
    };
    if whole == 0 {
        return completion;
    }
    // The fewest errors any line cut leaves, and the shortest cut with them.
    let mut best: Option<(usize, &str)> = None;
    let ends = lines(completion)
        .filter(|l| l.has_break() && !l.is_blank())
        .map(|l| l.end)
        .take(MAX_CUTS);
    for end in ends {
        let Some(cut) = completion.get(..end) else {
            continue;
        };
        if let Some(e) = errors(cut) {
            if best.is_none_or(|(fewest, _)| e < fewest) {
                best = Some((e, cut));
            }
            if e == 0 {
                // Nothing has fewer, and longer cuts only tie: stop parsing.
                break;
            }
        }
    }
    match best {
        Some((fewest, cut)) if fewest < whole && fewest <= baseline => cut,
        Some((fewest, _)) if fewest < whole => "",
        _ if whole <= baseline => completion,
        _ => "",
    }
}

/// Whether `line`, shown at the cursor, gives Python an unexpected indent
/// the file without it does not have: a line deeper than the one before
/// without that line opening a block. The multi-line check above cuts such a
/// line; this is for a suggestion shown as one line after that cut, which
/// is not parsed (the rest of a line being typed usually does not parse).
/// A block's opening line alone (`for x in xs:`, its body to come) is not
/// refused.
pub fn breaks_python_indentation(line: &str, input: &PostprocessInput) -> bool {
    if !matches!(input.language, Language::Python) || line.trim().is_empty() {
        return false;
    }
    let prefix = line_aligned_tail(input.prefix, PREFIX_WINDOW);
    let suffix = line_aligned_head(input.suffix, SUFFIX_WINDOW);
    let unexpected = |text: &str| python_indentation(text).unexpected_indents;
    unexpected(&format!("{prefix}{line}{suffix}")) > unexpected(&format!("{prefix}{suffix}"))
}

/// The end of `text`, at most `max` bytes, starting at a line start.
fn line_aligned_tail(text: &str, max: usize) -> &str {
    let (tail, cut) = lines::tail(text, max);
    if !cut {
        return tail;
    }
    match tail.find('\n') {
        Some(i) => &tail[i + 1..],
        None => tail,
    }
}

/// The start of `text`, at most `max` bytes, ending after a line break.
fn line_aligned_head(text: &str, max: usize) -> &str {
    let (head, cut) = lines::head(text, max);
    if !cut {
        return head;
    }
    match head.rfind('\n') {
        Some(i) => &head[..=i],
        None => head,
    }
}

/// Lines whose indentation Python would refuse: deeper than the logical line
/// before without that line opening a block (`:`), or not deeper after one.
/// tree-sitter's Python grammar accepts both silently, and they are the
/// typical mark of a suggestion that re-types the body below the cursor.
fn python_indentation_errors(text: &str) -> usize {
    let counts = python_indentation(text);
    counts.unexpected_indents + counts.missing_blocks
}

/// The two kinds of [`python_indentation_errors`].
struct PythonIndentation {
    /// Lines deeper than the logical line before, which opens no block.
    unexpected_indents: usize,
    /// Lines not deeper than the logical line before, which opens a block.
    missing_blocks: usize,
}

fn python_indentation(text: &str) -> PythonIndentation {
    let mut lexer = Lexer::new(&Language::Python);
    let mut depth = 0usize;
    let mut starts = vec![0];
    for token in lexer.tokens(text) {
        match token {
            Token::Open { .. } => depth += 1,
            Token::Close { .. } => depth = depth.saturating_sub(1),
            Token::LineBreak { next, in_code, .. } => {
                let line = text.get(starts.last().copied().unwrap_or(0)..next).unwrap_or("");
                let continued = line.trim_end().ends_with('\\');
                if in_code && depth == 0 && !continued {
                    starts.push(next);
                }
            }
        }
    }
    let mut counts = PythonIndentation { unexpected_indents: 0, missing_blocks: 0 };
    let mut previous: Option<(usize, bool)> = None;
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let Some(logical) = text.get(start..end) else {
            continue;
        };
        let first = lines::first_line(logical);
        let code = first.trim();
        if code.is_empty() || code.starts_with('#') {
            continue;
        }
        let indent = indent_width(first, 8);
        if let Some((before, opens_block)) = previous {
            if indent > before && !opens_block {
                counts.unexpected_indents += 1;
            } else if opens_block && indent <= before {
                counts.missing_blocks += 1;
            }
        }
        let last = logical.trim_end().rsplit('\n').next().unwrap_or("");
        let last = last.find(" #").map_or(last, |i| &last[..i]).trim_end();
        previous = Some((indent, last.ends_with(':')));
    }
    counts
}

/// `ERROR` and `MISSING` nodes in the tree under `node`.
fn error_count(node: Node) -> usize {
    if !node.has_error() {
        return 0;
    }
    let own = usize::from(node.is_error() || node.is_missing());
    let mut cursor = node.walk();
    let children: usize = node.children(&mut cursor).map(error_count).sum();
    own + children
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::Language;

    fn check(language: Language, doc: &str, completion: &str) -> String {
        let (prefix, suffix) = doc.split_once("$0").unwrap();
        let input = PostprocessInput { completion, prefix, suffix, language: &language, extent: Extent::MultiLine, truncated: false };
        cut_to_parsable(completion, &input, "").to_owned()
    }

    #[test]
    fn python_loop_header_whose_body_the_suffix_has_keeps_only_the_header() {
        // HumanEval/36: the body is below the cursor; the re-typed body and
        // return would be indented wrongly after it.
        // The cursor is at column 0 in front of the body: the suggestion
        // goes in above it, followed by a line break.
        let (prefix, suffix) = ("def f(s):\n    ans = 0\n", "        ans += (c == '7')\n    return ans\n");
        let completion = "    for c in s:\n        if c == '7': ans += 1\n    return ans";
        let input =
            PostprocessInput { completion, prefix, suffix, language: &Language::Python, extent: Extent::MultiLine, truncated: false };
        assert_eq!(cut_to_parsable(completion, &input, "\n"), "    for c in s:");
    }

    #[test]
    fn python_indentation_errors_are_counted_outside_strings_and_brackets() {
        assert_eq!(python_indentation_errors("def f():\n    x = 1\n        y = 2\n"), 1);
        assert_eq!(python_indentation_errors("if x:\ny = 1\n"), 1);
        let fine = "def f(a,\n        b):\n    \"\"\"Doc.\n\n        indented text\n    \"\"\"\n    return (a +\n            b)  # done:\n";
        assert_eq!(python_indentation_errors(fine), 0);
    }

    #[test]
    fn a_suggestion_that_parses_is_kept_whole() {
        let doc = "def total(xs):\n$0\n";
        let completion = "    s = 0\n    for x in xs:\n        s += x\n    return s";
        assert_eq!(check(Language::Python, doc, completion), completion);
    }

    #[test]
    fn errors_already_in_the_file_do_not_count_against_the_suggestion() {
        let doc = "fn main() {\n    let x = ;\n    $0\n}\n";
        let completion = "let y = 2;\n    println!(\"{y}\");";
        assert_eq!(check(Language::Rust, doc, completion), completion);
    }

    #[test]
    fn a_rust_suggestion_breaking_every_line_is_dropped() {
        let doc = "fn main() {\n    $0\n}\n";
        assert_eq!(check(Language::Rust, doc, "let = = 1;\n    ) foo(\n"), "");
    }

    #[test]
    fn plain_text_and_single_line_mode_are_left_alone() {
        let language = Language::PlainText("text".into());
        assert_eq!(check(language, "a\n$0\n", ") ) (\n"), ") ) (\n");
        let input = PostprocessInput {
            completion: "x = (",
            prefix: "",
            suffix: "",
            language: &Language::Python,
            extent: Extent::SingleLine,
            truncated: false,
        };
        assert_eq!(cut_to_parsable("x = (", &input, ""), "x = (");
    }
}
