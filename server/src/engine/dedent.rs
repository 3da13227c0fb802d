//! Where generated code leaves the block it was written in, so generation
//! can end there instead of writing the rest of the file.
//!
//! A multi-line answer is cut where it leaves the cursor's block anyway
//! (`postprocess::rules::stop_at_block_end`), but the model goes on to its
//! token limit or the deadline first: on a laptop's CPU that is seconds of
//! decoding nobody sees, and an answer the deadline cut is not cached.
//! llama.cpp's server has the same idea (`n_indent`). This test is only
//! ever more lenient than the block rule: it looks at indentation, ignoring
//! lines inside brackets or triple-quoted strings the text opened, and
//! lines that start with a closer.

/// The byte offset of the first line of `text` that leaves the block, if
/// one has been written far enough to tell: a line after the first line
/// that begins after a line break, indented (in whitespace characters) less
/// than `block_indent` and less than that first line. `block_indent` is
/// the indentation of the line the text starts on (the cursor's); 0 never
/// stops.
pub fn leaves_block(text: &str, block_indent: usize) -> Option<usize> {
    if block_indent == 0 {
        return None;
    }
    let mut reference: Option<usize> = None;
    let mut depth = 0usize;
    let mut triple_quotes = 0usize;
    let mut start = 0;
    for (index, line) in text.split('\n').enumerate() {
        let body = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - body.len();
        let written = !body.trim().is_empty();
        if index > 0 && written && depth == 0 && triple_quotes.is_multiple_of(2) {
            match reference {
                None => reference = Some(indent.min(block_indent)),
                Some(least) if indent < least && !body.starts_with([')', ']', '}']) => return Some(start),
                Some(_) => {}
            }
        }
        for byte in line.bytes() {
            match byte {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        triple_quotes += line.matches("\"\"\"").count() + line.matches("'''").count();
        start += line.len() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::leaves_block;

    #[test]
    fn a_line_less_indented_than_the_block_ends_the_text_before_it() {
        // The body of a loop typed on a blank line at column 8.
        let text = "if tx.amount < 0:\n            totals[tx.category] += 1\n\n        return totals\n\n\ndef other():\n";
        assert_eq!(leaves_block(text, 8), Some(text.find("\n\ndef").unwrap() + 2), "`return` stays at 8; `def` leaves");
        assert_eq!(leaves_block(text, 12), Some(text.find("        return").unwrap()), "a block at 12");
        assert_eq!(leaves_block(text, 0), None, "column 0: nothing to leave");
        // Not before the line's first character: it may be deeper still.
        assert_eq!(leaves_block("x = 1\n    ", 8), None);
        assert_eq!(leaves_block("x = 1\n        y = 2\n    ", 8), None);
    }

    #[test]
    fn the_first_new_line_may_go_one_level_out_and_sets_the_block() {
        // At a written line's end at 12: `else:` at 8 is the block's.
        let text = "\n        else:\n            run()\n        done()\n    return run\n";
        assert_eq!(leaves_block(text, 12), Some(text.find("    return").unwrap()));
    }

    #[test]
    fn brackets_strings_and_closers_the_text_opened_are_not_left() {
        let call = "call(\n  a,\n  b,\n)\n    next()\nleft()\n";
        assert_eq!(leaves_block(call, 4), Some(call.find("left").unwrap()), "inside `call(` nothing ends; `)` neither");
        let doc = "\"\"\"Totals.\n\nMore.\n\"\"\"\n    return x\nleft\n";
        assert_eq!(leaves_block(doc, 4), Some(doc.find("left").unwrap()), "a docstring's lines at column 0 are not code");
        assert_eq!(leaves_block("x\n        y\n    }\nz\n", 8), Some("x\n        y\n    }\n".len()), "a closer's line is left to the block rule");
    }
}
