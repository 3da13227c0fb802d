//! Prefix and suffix windows around the cursor, in whole lines, within a
//! token budget, keeping what matters most: the lines nearest the cursor, and
//! from farther away the file's imports and the headers of the scopes that
//! enclose the cursor (function signature, class or impl header).
//!
//! The window's first line is aligned to a multiple of [`ALIGN_LINES`], so
//! while the user types, the start of the prompt does not move and the
//! model's KV cache stays valid: only the cursor line and what follows it are
//! recomputed.

use tree_sitter::{Node, Tree};

use crate::documents::{line_starts, Language};

use super::CursorText;

/// Window starts are rounded to this many lines for prompt stability.
pub const ALIGN_LINES: usize = 16;
/// The text typed since the held line (the cursor line's head, and the
/// lines typed below the anchor) is reserved room in steps of this many
/// tokens.
const HEAD_RESERVE_STEP: usize = 16;
/// A prefix longer than this many bytes per budget token is not counted
/// whole (it cannot fit unless its tokens are unusually long).
const WHOLE_PREFIX_BYTES_PER_TOKEN: usize = 8;
/// Header (imports and enclosing signatures) takes at most this share of the
/// prefix budget.
const HEADER_SHARE: usize = 3;

/// Tokens available on each side of the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowBudget {
    /// For the text before the cursor (header included).
    pub prefix_tokens: usize,
    /// For the text after the cursor.
    pub suffix_tokens: usize,
}

/// Whether all the text before `cursor` takes at most `prefix_tokens`:
/// then it is the prefix window, whose start never moves. A prefix longer
/// than a generous number of bytes per token is not even counted: counting
/// a long file's head on every keystroke would cost more than the whole
/// prompt.
pub fn whole_prefix_fits(text: &str, cursor: usize, prefix_tokens: usize, count: &dyn Fn(&str) -> usize) -> bool {
    let cursor = floor_char_boundary(text, cursor.min(text.len()));
    cursor <= prefix_tokens.saturating_mul(WHOLE_PREFIX_BYTES_PER_TOKEN) && count(&text[..cursor]) <= prefix_tokens
}

/// Chooses the text before and after the cursor (`cursor` is a byte offset
/// into `text` on a char boundary). `count` gives the number of tokens of a
/// piece of text.
///
/// Where the prefix does not fit whole, it opens with a header: with
/// `stable_head`, the file's own first lines up to its last import where the
/// file opens with imports, comments and docstrings only and they fit the
/// header's share ([`preamble_end`]), else the file's imports; then the first
/// line of each scope around the cursor. The file's head is the same text
/// wherever the cursor is, and the same as the start of a prompt that holds
/// the whole prefix, so after a far jump within the file the KV cache keeps
/// it and only the rest is computed.
///
/// `held` is the line start the prompt's middle begins at (the document's
/// anchor, `completion::anchor`), at or before the cursor's line; `None`:
/// the cursor's line. The prefix window is chosen for that line, and what
/// was typed since is reserved room in steps: Enter and the lines typed
/// below the anchor leave the window's start (and the KV cache) where it
/// was, also in a small window that does not take the whole file.
pub fn cursor_windows(
    text: &str,
    cursor: usize,
    held: Option<usize>,
    tree: Option<&Tree>,
    budget: WindowBudget,
    stable_head: bool,
    count: &dyn Fn(&str) -> usize,
) -> CursorText {
    let cursor = floor_char_boundary(text, cursor.min(text.len()));
    let starts = line_starts(text);
    let cursor_line = starts.partition_point(|&s| s <= cursor) - 1;
    let held_line = held.and_then(|at| starts[..=cursor_line].binary_search(&at).ok()).unwrap_or(cursor_line);
    let held_start = starts[held_line];

    // Suffix: whole lines from the cursor while they fit.
    let suffix_ends: Vec<usize> = starts[cursor_line + 1..].iter().copied().chain(std::iter::once(text.len())).collect();
    let suffix_end = last_fitting(&suffix_ends, |end| count(&text[cursor..end]) <= budget.suffix_tokens).unwrap_or(cursor);
    let suffix = text[cursor..suffix_end].to_string();

    // Prefix: all of it when it fits.
    if whole_prefix_fits(text, cursor, budget.prefix_tokens, count) {
        return CursorText { prefix: text[..cursor].to_string(), suffix };
    }
    let header = tree.map(|t| header_lines(text, t, cursor)).unwrap_or_default();
    let header: Vec<(usize, usize)> = header.into_iter().filter(|&(s, e)| e <= held_start && s < e).collect();
    // The file's head in place of its imports, where it fits.
    let head = tree.filter(|_| stable_head).and_then(|t| preamble_end(text, t, held_start)).map(|end| {
        let after_head = header.iter().copied().filter(|&(s, _)| s >= end);
        std::iter::once((0, end)).chain(after_head).collect::<Vec<_>>()
    });
    let fitting = |ranges: Vec<(usize, usize)>| {
        let header_text: String = ranges.iter().map(|&(s, e)| &text[s..e]).collect();
        let header_tokens = count(&header_text);
        (header_tokens <= budget.prefix_tokens / HEADER_SHARE).then_some((header_text, header_tokens, ranges))
    };
    let (header_text, header_tokens, header) =
        head.and_then(fitting).or_else(|| fitting(header)).unwrap_or_else(|| (String::new(), 0, Vec::new()));
    let room = budget.prefix_tokens.saturating_sub(header_tokens);
    let candidates = &starts[..=held_line];
    // The lines before the held line must fit beside a reserve for what was
    // typed since (the cursor line's head, the lines below the anchor) that
    // grows in steps: typing on the line and Enter do not move the window's
    // start (and the KV cache keeps it), which matters most for small,
    // quick prompts, where a line's worth of tokens would otherwise move
    // the start on every keystroke.
    let head_reserve = (count(&text[held_start..cursor]) / HEAD_RESERVE_STEP + 1) * HEAD_RESERVE_STEP;
    // Lines are found from the earliest start that fits, then aligned.
    let fits = |s: usize| count(&text[s..held_start]) + head_reserve <= room;
    let first_fit = fits(held_start).then(|| first_fitting(candidates, held_line, fits));
    let line = match first_fit {
        Some(line) => aligned(line, held_line),
        None => held_line,
    };
    let window_start = starts[line];
    // Header lines already inside the window are not repeated (the file's
    // head is cut where the window starts).
    let header_text = if header.iter().any(|&(_, e)| e > window_start) {
        header.iter().filter(|&&(s, _)| s < window_start).map(|&(s, e)| &text[s..e.min(window_start)]).collect()
    } else {
        header_text
    };
    let mut prefix = header_text;
    let window = &text[window_start..cursor];
    if prefix.is_empty() && count(window) > room {
        // Not even the cursor line fits: keep its end.
        let keep = window.char_indices().map(|(i, _)| i).find(|&i| count(&window[i..]) <= room).unwrap_or(window.len());
        prefix.push_str(&window[keep..]);
    } else {
        prefix.push_str(window);
    }
    CursorText { prefix, suffix }
}

/// The smallest index in `..=from` whose start satisfies `fits`, given that
/// `starts[from]` does (fitting is monotone: later starts are shorter).
/// The search gallops outward from `from` in doubling steps, then bisects,
/// so the text it measures stays within a few times the window's size
/// however long the file is.
fn first_fitting(starts: &[usize], from: usize, fits: impl Fn(usize) -> bool) -> usize {
    let (mut good, mut step) = (from, 1);
    let bad = loop {
        if good == 0 {
            return 0;
        }
        let probe = good.saturating_sub(step);
        if fits(starts[probe]) {
            good = probe;
            step *= 2;
        } else {
            break probe;
        }
    };
    let (mut lo, mut hi) = (bad + 1, good);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fits(starts[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The last end that satisfies `fits` (shorter fits more), galloping from
/// the first end and then bisecting, for the same reason as [`first_fitting`].
fn last_fitting(ends: &[usize], fits: impl Fn(usize) -> bool) -> Option<usize> {
    let mut good = None;
    let mut step = 1;
    let bad = loop {
        let probe = good.map_or(0, |g: usize| g + step);
        if probe >= ends.len() {
            break ends.len();
        }
        if fits(ends[probe]) {
            if good.is_some() {
                step *= 2;
            }
            good = Some(probe);
        } else {
            break probe;
        }
    };
    let (mut lo, mut hi) = (good.map_or(0, |g| g + 1), bad);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fits(ends[mid]) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo.checked_sub(1).map(|i| ends[i])
}

/// Rounds a window's first line up to the alignment grid, never past the
/// held line (the cursor's, or the anchor's). A small window (a quick
/// prompt) would lose most of its lines to a 16-line grid: it takes a finer
/// one that keeps at least two thirds of the lines that fit.
fn aligned(line: usize, held_line: usize) -> usize {
    let fitting = held_line - line.min(held_line);
    let mut step = ALIGN_LINES;
    loop {
        let start = line.div_ceil(step).saturating_mul(step).min(held_line);
        if step == 1 || (held_line - start) * 3 >= fitting * 2 {
            return start;
        }
        step /= 2;
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Node kinds that open a scope worth naming (the registry's, any grammar).
fn is_scope(kind: &str) -> bool {
    Language::is_scope_kind(kind)
}

fn is_import(kind: &str) -> bool {
    Language::is_import_kind(kind)
}

/// The end of the file's head (a line end) where the file opens with
/// imports, comments and docstrings only, up to `limit`: the end of the
/// line of the last import in that run. `None` where the run holds no
/// import (nothing at the top worth keeping whole).
fn preamble_end(text: &str, tree: &Tree, limit: usize) -> Option<usize> {
    let root = tree.root_node();
    let mut walker = root.walk();
    let mut end = None;
    for child in root.children(&mut walker) {
        if child.end_byte() > limit {
            break;
        }
        let kind = child.kind();
        if is_import(kind) {
            end = Some(child.end_byte());
        } else if !(kind.contains("comment") || kind == "package_clause" || is_docstring(child)) {
            break;
        }
    }
    let end = end?;
    let line_end = text[end..].find('\n').map_or(text.len(), |at| end + at + 1);
    (line_end <= limit).then_some(line_end)
}

/// A statement that is only a string: a module docstring, `"use strict"`.
fn is_docstring(node: Node) -> bool {
    node.kind() == "expression_statement" && node.named_child_count() == 1 && node.named_child(0).is_some_and(|c| c.kind() == "string")
}

/// Whole lines (byte ranges, line break included) of the file's imports and
/// of the first line of each scope enclosing the cursor, in file order.
fn header_lines(text: &str, tree: &Tree, cursor: usize) -> Vec<(usize, usize)> {
    let starts = line_starts(text);
    let whole_line = |node: Node| {
        let first = starts.partition_point(|&s| s <= node.start_byte()) - 1;
        let last = starts.partition_point(|&s| s <= node.end_byte().saturating_sub(1)) - 1;
        let end = starts.get(last + 1).copied().unwrap_or(text.len());
        (starts[first], end)
    };
    let mut ranges = Vec::new();
    let root = tree.root_node();
    let mut walker = root.walk();
    for child in root.children(&mut walker) {
        if is_import(child.kind()) && child.end_byte() <= cursor {
            ranges.push(whole_line(child));
        }
    }
    // The last non-blank character before the cursor sits inside the scopes
    // the cursor is in (the cursor itself may be past a scope's last node).
    let anchor = text[..cursor].trim_end().len().saturating_sub(1);
    let mut node = root.descendant_for_byte_range(anchor, anchor);
    while let Some(n) = node {
        if is_scope(n.kind()) && n.start_byte() < cursor {
            // Only the scope's first line: its signature or header.
            let (start, _) = whole_line(n);
            let first_line_end = starts.get(starts.partition_point(|&s| s <= start)).copied().unwrap_or(text.len());
            ranges.push((start, first_line_end));
        }
        node = n.parent();
    }
    ranges.sort_unstable();
    ranges.dedup();
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn python(text: &str) -> Tree {
        let mut parser = tree_sitter::Parser::new();
        parser.set_language(&tree_sitter_python::LANGUAGE.into()).unwrap();
        parser.parse(text, None).unwrap()
    }

    #[test]
    fn the_galloping_searches_agree_with_a_scan() {
        let mut seed = 7u64;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..500 {
            let len = 1 + next(60);
            let points: Vec<usize> = (0..len).collect();
            let limit = next(len + 2);
            // Later starts are shorter: a start fits when it is at least `limit`.
            let from = len - 1;
            if from >= limit {
                let scan = (0..=from).find(|&i| i >= limit).unwrap();
                assert_eq!(first_fitting(&points, from, |s| s >= limit), scan, "len {len} limit {limit}");
            }
            // Shorter ends fit: an end fits when it is below `limit`.
            let scan = points.iter().copied().rfind(|&e| e < limit);
            assert_eq!(last_fitting(&points, |e| e < limit), scan, "len {len} limit {limit}");
        }
    }

    #[test]
    fn a_long_files_windows_measure_only_text_near_the_cursor() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("value_{i} = compute({i}) + offset\n"));
        }
        let cursor = text.len() / 2;
        let measured = std::cell::Cell::new(0usize);
        let count = |s: &str| {
            measured.set(measured.get() + s.len());
            words(s)
        };
        let w = cursor_windows(&text, cursor, None, None, WindowBudget { prefix_tokens: 300, suffix_tokens: 100 }, true, &count);
        assert!(!w.prefix.is_empty() && !w.suffix.is_empty());
        let window = w.prefix.len() + w.suffix.len();
        assert!(measured.get() < 20 * window, "measured {} bytes for a {window}-byte window of a {}-byte file", measured.get(), text.len());
    }

    #[test]
    fn small_files_are_taken_whole() {
        let text = "import os\n\ndef f():\n    return 1\n";
        let at = text.find("return").unwrap();
        let w = cursor_windows(text, at, None, None, WindowBudget { prefix_tokens: 100, suffix_tokens: 100 }, true, &words);
        assert_eq!(w.prefix, &text[..at]);
        assert_eq!(w.suffix, &text[at..]);
    }

    /// Forty lines of five words each: a file a 40-word window holds only
    /// the end of.
    fn forty_short_lines() -> String {
        (0..40).map(|i| format!("a{i} = b{i} + c{i}\n")).collect()
    }

    #[test]
    fn typing_on_the_cursor_line_keeps_a_small_windows_start() {
        let mut text = forty_short_lines();
        let line_start = text.len();
        // 15 words: within one step of the head's reserve.
        text.push_str("total = a1 + a2 + a3 + a4 + a5 + a6 + a7");
        let budget = WindowBudget { prefix_tokens: 40, suffix_tokens: 0 };
        let starts: Vec<usize> = (line_start + 1..=text.len())
            .map(|cursor| {
                let w = cursor_windows(&text[..cursor], cursor, None, None, budget, true, &words);
                cursor - w.prefix.len()
            })
            .collect();
        let moves = starts.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(moves, 0, "the window's start moved while typing one line: {starts:?}");
    }

    #[test]
    fn enter_and_lines_typed_below_the_anchor_keep_a_small_windows_start() {
        let text = forty_short_lines();
        let anchor = text.len();
        let budget = WindowBudget { prefix_tokens: 40, suffix_tokens: 0 };
        let mut starts = Vec::new();
        // A loop header, Enter, a word, Enter, a line, Enter: the keys of the
        // lines below an anchor that the middle marker stays at.
        for typed in ["", "\n    ", "\n    if", "\n    if x:\n        ", "\n    if x:\n        y = x + 1\n    "] {
            let doc = format!("{text}for x in items:{typed}");
            let w = cursor_windows(&doc, doc.len(), Some(anchor), None, budget, true, &words);
            assert!(words(&w.prefix) <= budget.prefix_tokens, "{typed:?}: {} words", words(&w.prefix));
            starts.push(doc.len() - w.prefix.len());
        }
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "the window's start moved on Enter: {starts:?}");
    }

    #[test]
    fn the_suffix_is_cut_at_a_line_end() {
        let text = "x = 1\ny = 2\nz = 3\nw = 4\n";
        let w = cursor_windows(text, 2, None, None, WindowBudget { prefix_tokens: 100, suffix_tokens: 6 }, true, &words);
        assert_eq!(w.suffix, "= 1\ny = 2\n");
    }

    #[test]
    fn far_prefix_keeps_imports_and_the_enclosing_signature() {
        let mut text = String::from("import os\nimport sys\n\n\nclass Store:\n    def load(self, path):\n");
        for i in 0..60 {
            text.push_str(&format!("        step_{i} = os.path.join(path, 'part{i}')\n"));
        }
        text.push_str("        return ");
        let cursor = text.len();
        let tree = python(&text);
        let w = cursor_windows(&text, cursor, None, Some(&tree), WindowBudget { prefix_tokens: 120, suffix_tokens: 10 }, true, &words);
        assert!(w.prefix.starts_with("import os\nimport sys\nclass Store:\n    def load(self, path):\n"), "{}", w.prefix);
        assert!(w.prefix.ends_with("step_59 = os.path.join(path, 'part59')\n        return "));
        assert!(!w.prefix.contains("step_0 "));
        assert!(words(&w.prefix) <= 120);
    }

    #[test]
    fn a_far_prefix_opens_with_the_files_head_wherever_the_cursor_is() {
        let mut text = String::from(
            "\"\"\"Paths of stored parts.\"\"\"\n\n# Parts are joined under a root.\nimport os\nimport sys\n\nROOT = '/srv'\n\n",
        );
        let head = "\"\"\"Paths of stored parts.\"\"\"\n\n# Parts are joined under a root.\nimport os\nimport sys\n";
        for f in 0..6 {
            text.push_str(&format!("def load_{f}(path):\n"));
            for i in 0..40 {
                text.push_str(&format!("    step_{i} = os.path.join(path, 'part{i}')\n"));
            }
            text.push_str("    return path\n\n");
        }
        let tree = python(&text);
        let budget = WindowBudget { prefix_tokens: 150, suffix_tokens: 10 };
        let at = |marker: &str| text.find(marker).unwrap();
        let in_load_3 = at("def load_3(path):\n") + text[at("def load_3(path):\n")..].find("    step_30").unwrap();
        for cursor in [in_load_3, at("    return path\n\ndef load_5")] {
            let w = cursor_windows(&text, cursor, None, Some(&tree), budget, true, &words);
            assert!(w.prefix.starts_with(head), "the file's head first: {}", w.prefix);
            assert!(!w.prefix.contains("ROOT") && words(&w.prefix) <= 150, "{}", w.prefix);
            let scope = &w.prefix[head.len()..];
            assert!(scope.starts_with("def load_"), "then the enclosing signature: {scope}");
            // Without it: the imports only, as before.
            let w = cursor_windows(&text, cursor, None, Some(&tree), budget, false, &words);
            assert!(w.prefix.starts_with("import os\nimport sys\ndef load_"), "{}", w.prefix);
        }
        // Near the top, where the prefix fits whole, it starts the same way.
        let near = at("def load_0(path):\n    step_0");
        assert!(cursor_windows(&text, near, None, Some(&tree), budget, true, &words).prefix.starts_with(head));
        // A head larger than the header's share gives way to the imports.
        let small = WindowBudget { prefix_tokens: 45, suffix_tokens: 10 };
        let w = cursor_windows(&text, at("    return path\n\ndef load_5"), None, Some(&tree), small, true, &words);
        assert!(w.prefix.starts_with("import os\nimport sys\n"), "{}", w.prefix);
    }

    #[test]
    fn the_window_start_is_stable_while_typing_on_the_cursor_line() {
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!("value_{i} = compute({i}) + offset\n"));
        }
        let budget = WindowBudget { prefix_tokens: 300, suffix_tokens: 0 };
        let mut starts = std::collections::HashSet::new();
        for typed in ["r", "re", "res", "resu", "result = ", "result = value_1 +"] {
            let doc = format!("{text}{typed}");
            let w = cursor_windows(&doc, doc.len(), None, None, budget, true, &words);
            starts.insert(w.prefix.lines().next().unwrap().to_string());
        }
        assert_eq!(starts.len(), 1, "{starts:?}");
    }
}
