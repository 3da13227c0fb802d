//! Property tests of the whole pipeline: on any input (arbitrary Unicode,
//! `\r\n`, lone `\r`, emoji, combining marks, code-like fragments) it does
//! not panic, and it shows nothing that was not in the completion.
//!
//! The invariant that states "nothing new": every rule cuts its input to a
//! prefix, except the indentation rule, which rewrites leading spaces and
//! tabs only. So with leading whitespace removed from every line, the output
//! is a prefix of the completion; and it is at most 7 bytes per tab longer
//! (a tab becomes at most 8 spaces).

use proptest::prelude::*;

use super::lines::{leading_ws, lines};
use super::test_support::render;
use super::{postprocess, Extent, PostprocessInput};
use crate::documents::Language;

/// `text` with each line's leading spaces and tabs removed; line breaks kept
/// as they are.
fn skeleton(text: &str) -> String {
    let mut out = String::new();
    for line in lines(text) {
        out.push_str(line.text.get(leading_ws(line.text).len()..).unwrap_or(""));
        out.push_str(text.get(line.end..line.next).unwrap_or(""));
    }
    out
}

const PIECES: &[&str] = &[
    "a",
    "x1",
    "é",
    "e\u{301}",
    "🦀",
    "👩‍💻",
    "\u{3000}",
    "\n",
    "\r",
    "\r\n",
    " ",
    "    ",
    "\t",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "`",
    "\"\"\"",
    "r#\"",
    "\"#",
    "/",
    "//",
    "/*",
    "*/",
    "*",
    "#",
    ":",
    ";",
    ",",
    "\\",
    "def f():",
    "fn main() {",
    "return x;",
    "if (x) {",
    "} else {",
    "foo(a, b)",
    "$0",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|p| p.concat()),
        any::<String>(),
    ]
}

fn language() -> impl Strategy<Value = Language> {
    // Every language of the registry, and plain text.
    let mut languages = Language::ALL.to_vec();
    languages.push(Language::PlainText("yaml".to_owned()));
    prop::sample::select(languages)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn output_is_derived_from_the_completion(
        completion in text(),
        prefix in text(),
        suffix in text(),
        language in language(),
        single_line in any::<bool>(),
        truncated in any::<bool>(),
    ) {
        let extent = if single_line { Extent::SingleLine } else { Extent::MultiLine };
        let input = PostprocessInput {
            completion: &completion,
            prefix: &prefix,
            suffix: &suffix,
            language: &language,
            extent,
            truncated,
        };
        let full = postprocess(&input);
        let shown = render(&full);
        // At column 0 in front of code, or after the indentation in front of
        // more than closing characters, the lines shown end with one added
        // line break and that indentation, which move that code down.
        let cursor_line = crate::postprocess::lines::last_line(&prefix);
        let rest_of_line = crate::postprocess::lines::first_line(&suffix);
        let inserts_above = extent == Extent::MultiLine
            && cursor_line.trim().is_empty()
            && !rest_of_line.trim().is_empty()
            && (cursor_line.is_empty() || !crate::documents::closing_only(rest_of_line));
        // In front of closing characters only, a suggestion that ends with
        // a line break is followed by the cursor line's indentation.
        let before_closers = !inserts_above && !rest_of_line.trim().is_empty() && crate::documents::closing_only(rest_of_line);
        let indentation = super::lines::leading_ws(cursor_line);
        let out = if inserts_above && !full.is_empty() {
            let (lf, crlf) = (format!("\n{cursor_line}"), format!("\r\n{cursor_line}"));
            prop_assert!(full.ends_with(&lf), "{shown}");
            let body = full.strip_suffix(&crlf).or_else(|| full.strip_suffix(&lf));
            body.unwrap_or(&full).to_string()
        } else if before_closers
            && !super::lines::first_line(&full).trim_end().ends_with(rest_of_line.trim())
            && full.strip_suffix(indentation).is_some_and(|body| body.ends_with(['\n', '\r']))
        {
            full[..full.len() - indentation.len()].to_string()
        } else {
            full.clone()
        };
        prop_assert!(skeleton(&completion).starts_with(&skeleton(&out)), "{shown}");
        let tabs = completion.matches('\t').count();
        prop_assert!(out.len() <= completion.len() + 7 * tabs, "{shown}");
        prop_assert!(out.is_empty() || !out.trim().is_empty(), "{shown}");
        if extent == Extent::SingleLine {
            prop_assert!(!out.contains(['\n', '\r']), "{shown}");
        }
        let rest_of_line = super::lines::first_line(&suffix);
        if rest_of_line.trim().is_empty() {
            prop_assert_eq!(out.trim_end(), out.as_str());
        }
    }
}

#[test]
fn huge_inputs_are_handled() {
    let prefix = "fn f() {\n".repeat(20_000) + "    let s = \"é";
    let suffix = "}\n".repeat(20_000);
    let completion = "(\n".repeat(5_000) + &"x\n".repeat(5_000);
    for language in [
        Language::Rust,
        Language::Python,
        Language::PlainText("txt".into()),
    ] {
        let input = PostprocessInput {
            completion: &completion,
            prefix: &prefix,
            suffix: &suffix,
            language: &language,
            extent: Extent::MultiLine,
            truncated: true,
        };
        let out = postprocess(&input);
        assert!(out.len() <= completion.len());
    }
}

#[test]
fn pathological_brackets_stay_fast() {
    let prefix = "(".repeat(60_000);
    let suffix = "]".repeat(60_000);
    let completion = "[".repeat(30_000) + &")".repeat(30_000);
    let started = std::time::Instant::now();
    for language in [Language::Rust, Language::Python] {
        let input = PostprocessInput {
            completion: &completion,
            prefix: &prefix,
            suffix: &suffix,
            language: &language,
            extent: Extent::MultiLine,
            truncated: false,
        };
        let _ = postprocess(&input);
    }
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
}
