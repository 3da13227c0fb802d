//! Unit tests for document edits: multi-byte text, line-break seams, full
//! replacement, batches, the size rule and snapshots. After every edit the
//! incremental tree must equal a fresh parse of the text.

use super::*;
use crate::documents::encoding::Position;
use expect_test::expect;
use PositionEncoding::{Utf16, Utf8};

/// Every node as (kind, byte range, start point, end point), in walk order.
fn nodes(tree: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = tree.walk();
    'walk: loop {
        let node = cursor.node();
        out.push(format!(
            "{} {:?} {} {}",
            node.kind(),
            node.byte_range(),
            node.start_position(),
            node.end_position()
        ));
        if cursor.goto_first_child() || cursor.goto_next_sibling() {
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                break 'walk;
            }
            if cursor.goto_next_sibling() {
                break;
            }
        }
    }
    out
}

/// Asserts the document's tree is what a fresh parse of its text gives, and
/// that its lone-`\r` bookkeeping matches a recount.
fn assert_consistent(doc: &Document) {
    let text = doc.text();
    let recount = syntax::count_lone_crs(doc.rope(), 0..doc.rope().len_bytes());
    assert_eq!(doc.lone_crs(), recount, "lone CR count for {text:?}");
    let grammar = doc
        .language()
        .grammar()
        .filter(|_| doc.skip_reason().is_none());
    let Some(grammar) = grammar else {
        assert!(doc.tree().is_none());
        return;
    };
    let mut parser = tree_sitter::Parser::new();
    assert!(parser.set_language(&grammar).is_ok());
    let fresh = parser.parse(&text, None);
    let (Some(fresh), Some(tree)) = (fresh, doc.tree()) else {
        panic!("no tree for {text:?}");
    };
    assert_eq!(
        tree.root_node().to_sexp(),
        fresh.root_node().to_sexp(),
        "{text:?}"
    );
    assert_eq!(nodes(tree), nodes(&fresh), "{text:?}");
}

fn range(l1: u32, c1: u32, l2: u32, c2: u32) -> Range {
    Range::new(Position::new(l1, c1), Position::new(l2, c2))
}

fn edit(doc: &mut Document, r: Range, text: &str, enc: PositionEncoding) -> ChangeReport {
    let version = doc.version() + 1;
    let report = doc.apply_change(version, &TextChange::replace(r, text), enc);
    assert_consistent(doc);
    report
}

#[test]
fn opening_parses_the_text() {
    let doc = Document::new("fn main() {}\n", Language::Rust, 3);
    assert_eq!(doc.version(), 3);
    assert_eq!(doc.skip_reason(), None);
    let sexp = doc.tree().map(|t| t.root_node().to_sexp());
    expect![[r#"
        Some(
            "(source_file (function_item name: (identifier) parameters: (parameters) body: (block)))",
        )
    "#]]
    .assert_debug_eq(&sexp);
    assert_consistent(&doc);
}

#[test]
fn edits_after_an_emoji_count_utf16_units() {
    let mut doc = Document::new("let s = \"🦀\";\nlet t = 1;\n", Language::Rust, 0);
    // In UTF-16 the crab takes columns 9 and 10; the closing quote is at 11.
    edit(&mut doc, range(0, 11, 0, 11), "x", Utf16);
    assert_eq!(doc.text(), "let s = \"🦀x\";\nlet t = 1;\n");
    // The same spot in UTF-8 is byte 13.
    edit(&mut doc, range(0, 14, 0, 14), "y", Utf8);
    assert_eq!(doc.text(), "let s = \"🦀xy\";\nlet t = 1;\n");
    // Mid-surrogate rounds down, before the crab.
    let report = edit(&mut doc, range(0, 10, 0, 10), "z", Utf16);
    assert_eq!(doc.text(), "let s = \"z🦀xy\";\nlet t = 1;\n");
    assert_eq!(
        report.clamped,
        vec![ClampedChange {
            index: 0,
            clamp: Clamp::InsideCharacter
        }]
    );
    assert_eq!(doc.version(), 3);
}

#[test]
fn crlf_edits_keep_positions_and_tree_in_step() {
    let mut doc = Document::new("fn a() {}\r\nfn b() {}\r\n", Language::Rust, 0);
    edit(&mut doc, range(1, 3, 1, 4), "bee", Utf16);
    assert_eq!(doc.text(), "fn a() {}\r\nfn bee() {}\r\n");
    // Past the end of line 0 clamps before its `\r\n`.
    let report = edit(&mut doc, range(0, 40, 0, 40), " // end", Utf16);
    assert_eq!(doc.text(), "fn a() {} // end\r\nfn bee() {}\r\n");
    assert_eq!(report.clamped[0].clamp, Clamp::CharacterPastLineEnd);
}

#[test]
fn a_newline_after_a_lone_cr_joins_them_into_one_break() {
    let mut doc = Document::new("fn a() {}\rfn b() {}", Language::Rust, 0);
    assert_eq!(doc.lone_crs(), 1);
    edit(&mut doc, range(1, 0, 1, 0), "\n", Utf16);
    assert_eq!(doc.text(), "fn a() {}\r\nfn b() {}");
    assert_eq!(doc.lone_crs(), 0);
    assert_eq!(doc.rope().len_lines(), 2);
}

#[test]
fn inserting_between_cr_and_lf_splits_the_break() {
    // Only a full replacement can address the seam; the diff lands there.
    let mut doc = Document::new("x = 1\r\ny = 2\n", Language::Python, 0);
    doc.apply_change(1, &TextChange::full("x = 1\rz = 3\ny = 2\n"), Utf16);
    assert_eq!(doc.text(), "x = 1\rz = 3\ny = 2\n");
    assert_eq!(doc.lone_crs(), 1);
    assert_consistent(&doc);
    doc.apply_change(2, &TextChange::full("x = 1\r\ny = 2\n"), Utf16);
    assert_eq!(doc.lone_crs(), 0);
    assert_consistent(&doc);
}

#[test]
fn deleting_a_line_break_joins_lines() {
    let mut doc = Document::new("def f():\n    return 1\n\nx = f()\n", Language::Python, 0);
    edit(&mut doc, range(2, 0, 3, 0), "", Utf16);
    assert_eq!(doc.text(), "def f():\n    return 1\nx = f()\n");
    edit(&mut doc, range(1, 12, 2, 0), "", Utf16);
    assert_eq!(doc.text(), "def f():\n    return 1x = f()\n");
    let mut crlf = Document::new("a\r\nb", Language::Rust, 0);
    edit(&mut crlf, range(0, 1, 1, 0), "", Utf8);
    assert_eq!(crlf.text(), "ab");
}

#[test]
fn full_replacement_replaces_everything() {
    let mut doc = Document::new("fn a() {}", Language::Rust, 0);
    for text in [
        "",
        "struct S;",
        "fn a() {}\nfn b() {}",
        "fn 🦀() {}",
        "fn é() {}",
        "x",
    ] {
        let report = doc.apply_change(1, &TextChange::full(text), Utf16);
        assert_eq!(doc.text(), text);
        assert!(report.clamped.is_empty());
        assert_consistent(&doc);
    }
}

#[test]
fn a_batch_applies_in_order_and_reparses_once() {
    let mut doc = Document::new("fn main() {\n}\n", Language::Rust, 0);
    let changes = [
        TextChange::replace(range(1, 0, 1, 0), "    let x = 1;\n"),
        TextChange::replace(range(2, 0, 2, 0), "    x + 1\n"),
        TextChange::replace(range(0, 3, 0, 7), "run"),
        TextChange::replace(range(99, 0, 99, 0), "// tail\n"),
    ];
    let report = doc.apply_changes(7, &changes, Utf16);
    assert_eq!(
        doc.text(),
        "fn run() {\n    let x = 1;\n    x + 1\n}\n// tail\n"
    );
    assert_eq!(
        report.clamped,
        vec![ClampedChange {
            index: 3,
            clamp: Clamp::LinePastEnd
        }]
    );
    assert_eq!(doc.version(), 7);
    assert_consistent(&doc);
}

#[test]
fn plain_text_documents_have_no_tree() {
    let mut doc = Document::new("# Title\n", Language::from_language_id("markdown"), 0);
    edit(&mut doc, range(0, 2, 0, 7), "Heading", Utf16);
    assert_eq!(doc.text(), "# Heading\n");
    assert!(doc.tree().is_none());
    assert!(doc.syntax_error().is_none());
    assert_eq!(doc.skip_reason(), None);
}

#[test]
fn a_nul_byte_marks_binary_until_removed() {
    let mut doc = Document::new("fn a() {}\0", Language::Rust, 0);
    assert!(doc.binary());
    assert_eq!(doc.skip_reason(), Some(SkipReason::Binary));
    assert!(doc.tree().is_none());
    edit(&mut doc, range(0, 9, 0, 10), "", Utf8);
    assert!(!doc.binary());
    assert_eq!(doc.text(), "fn a() {}");
    assert!(doc.tree().is_some());
    edit(&mut doc, range(0, 0, 0, 0), "\0", Utf8);
    assert!(doc.tree().is_none());
    assert!(doc.snapshot().tree().is_none());
}

#[test]
fn a_document_over_the_limit_keeps_its_text_but_no_tree() {
    let limits = DocumentLimits { max_bytes: 16 };
    let mut doc = Document::with_limits("fn a() {}", Language::Rust, 0, limits);
    assert!(doc.tree().is_some());
    doc.apply_change(
        1,
        &TextChange::replace(range(0, 9, 0, 9), "\nfn b() {}"),
        Utf16,
    );
    assert_eq!(doc.text(), "fn a() {}\nfn b() {}");
    assert!(doc.too_large_for_context());
    assert_eq!(
        doc.skip_reason(),
        Some(SkipReason::TooLarge {
            bytes: 19,
            limit: 16
        })
    );
    assert!(doc.tree().is_none());
    // Edits still apply while skipped, and shrinking brings the tree back.
    doc.apply_change(2, &TextChange::replace(range(0, 0, 1, 0), ""), Utf16);
    assert_eq!(doc.text(), "fn b() {}");
    assert!(!doc.too_large_for_context());
    assert_consistent(&doc);
}

#[test]
fn snapshots_are_shareable_and_frozen() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DocumentSnapshot>();
    assert_send_sync::<Document>();

    let mut doc = Document::new("fn a() {}", Language::Rust, 1);
    let snap = doc.snapshot();
    edit(&mut doc, range(0, 3, 0, 4), "b", Utf16);
    assert_eq!(snap.text(), "fn a() {}");
    assert_eq!(snap.version(), 1);
    let name = snap.tree().map(|t| t.root_node().to_sexp());
    assert_eq!(name, doc.tree().map(|t| t.root_node().to_sexp()));
    let worker = std::thread::spawn(move || snap.rope().len_bytes());
    assert_eq!(worker.join().ok(), Some(9));
}

#[test]
fn an_edit_in_a_large_file_reparses_incrementally() {
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("fn f{i}(x: u32) -> u32 {{ x + {i} }}\n"));
    }
    let mut doc = Document::new(&text, Language::Rust, 0);
    let before = doc.snapshot();
    edit(&mut doc, range(10_000, 3, 10_000, 9), "renamed", Utf16);
    assert!(doc
        .text()
        .contains("\nfn renamed(x: u32) -> u32 { x + 10000 }\n"));
    // Subtrees away from the edit are reused: a reused node keeps its id.
    let (Some(old), Some(new)) = (before.tree(), doc.tree()) else {
        panic!("no tree");
    };
    let (old, new) = (old.root_node(), new.root_node());
    assert_eq!(old.named_child_count(), 20_000);
    for i in [0, 5_000, 10_002, 19_999] {
        let (a, b) = (old.named_child(i), new.named_child(i));
        assert_eq!(
            a.map(|n| n.id()),
            b.map(|n| n.id()),
            "function {i} was not reused"
        );
    }
    assert_ne!(
        old.named_child(10_000).map(|n| n.id()),
        new.named_child(10_000).map(|n| n.id())
    );
}

#[test]
fn a_stale_document_ignores_ranged_changes_until_a_whole_text_change() {
    let mut doc = Document::new("fn a() {}\n", Language::Rust, 1);
    doc.mark_stale();
    assert!(doc.is_stale());
    assert_eq!(doc.skip_reason(), Some(SkipReason::Stale));
    assert_eq!(doc.snapshot().skip_reason(), Some(SkipReason::Stale));
    // Ranged changes refer to the editor's text, which this may not be.
    let report = doc.apply_change(2, &TextChange::replace(range(0, 3, 0, 4), "b"), Utf16);
    assert_eq!(report.ignored_while_stale, 1);
    assert_eq!(doc.text(), "fn a() {}\n");
    assert!(doc.tree().is_some(), "the tree still matches the text");
    // A whole-text change in a batch repairs it; ranged changes after it apply.
    let changes = [
        TextChange::replace(range(0, 0, 0, 0), "lost"),
        TextChange::full("fn c() {}\n"),
        TextChange::replace(range(0, 3, 0, 4), "d"),
    ];
    let report = doc.apply_changes(3, &changes, Utf16);
    assert_eq!(report.ignored_while_stale, 1);
    assert_eq!(doc.text(), "fn d() {}\n");
    assert!(!doc.is_stale());
    assert_eq!(doc.skip_reason(), None);
    assert_consistent(&doc);
}

#[test]
fn a_stale_document_over_the_size_limit_is_still_too_large() {
    let mut doc = Document::with_limits("fn a() {}", Language::Rust, 0, DocumentLimits { max_bytes: 4 });
    doc.mark_stale();
    assert!(doc.too_large_for_context());
    assert_eq!(doc.skip_reason(), Some(SkipReason::Stale));
}
