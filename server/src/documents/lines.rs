//! Where lines start in a text, by the LSP's rule for line breaks (`\n`,
//! `\r\n` or a lone `\r`): the one helper the layers above share (prompt
//! windows, cursor positions, prompt fitting), so they never disagree on
//! what a line is.

/// Byte offsets where lines start: 0, then the byte after each line break.
pub fn line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            starts.push(i + 1);
        }
    }
    starts
}

/// Whether the rest of a line after a cursor holds only closing characters
/// (or nothing): a suggestion there goes in front of them without making
/// the cursor "mid-line". Where code follows instead, a suggestion either
/// joins it on the line or, after only indentation, is whole lines
/// inserted above it.
pub fn closing_only(rest: &str) -> bool {
    rest.trim().chars().all(|c| ")]}>\"'`;,:".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_starts_follow_lsp_line_breaks() {
        assert_eq!(line_starts("a\r\nb\rc\nd"), vec![0, 3, 5, 7]);
        assert_eq!(line_starts(""), vec![0]);
        assert_eq!(line_starts("x\n"), vec![0, 2]);
        assert_eq!(line_starts("\r\r\n\n"), vec![0, 1, 3, 4]);
    }
}
