//! What an answer re-types of the text before the cursor, when generation
//! could not be healed.
//!
//! The resident engine heals the prompt's last token (`prompt::Prompt::
//! healed_text`), so its answers continue the text exactly. A remote backend
//! cannot be held to a token prefix, and a model asked to go on after `= de`
//! or after `in ` often answers as if the partial word or the space were not
//! there: ` defaultdict(...)`, ` transactions:`. Accepted, that writes
//! `= de defaultdict(...)` or `in  transactions:`. Two overlaps are dropped:
//!
//! - the cursor follows a space or tab on a line with code before it, and
//!   the answer starts with spaces or tabs: they go (indentation at the
//!   start of a line is left to the indentation rule);
//! - the cursor follows the start of a word (`de`), and the answer starts
//!   with whitespace and a longer word that starts the same way
//!   (` defaultdict`): the whitespace and the typed start go (`faultdict`).
//!
//! Unlike the other rules this one returns an end of its input, never a
//! start: what it drops is already in the document.

/// The answer without what it re-types of the text before the cursor.
pub fn drop_retyped_cursor_text<'c>(completion: &'c str, prefix: &str) -> &'c str {
    let line = prefix.rsplit(['\n', '\r']).next().unwrap_or("");
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    if line.ends_with([' ', '\t']) && !line.trim().is_empty() {
        return completion.trim_start_matches([' ', '\t']);
    }
    let word_start = line.trim_end_matches(is_word);
    let word = &line[word_start.len()..];
    if word.is_empty() || !word.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        return completion;
    }
    let answer = completion.trim_start_matches([' ', '\t']);
    let next_word_len = answer.find(|c: char| !is_word(c)).unwrap_or(answer.len());
    if answer.len() < completion.len() && next_word_len > word.len() && answer.starts_with(word) {
        return &answer[word.len()..];
    }
    completion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubled_space_goes() {
        assert_eq!(drop_retyped_cursor_text(" = defaultdict(Decimal)", "    totals "), "= defaultdict(Decimal)");
        assert_eq!(drop_retyped_cursor_text(" transactions:", "x\n    for tx in "), "transactions:");
        assert_eq!(drop_retyped_cursor_text("\ttransactions", "for tx in\t"), "transactions");
    }

    #[test]
    fn a_retyped_word_start_goes() {
        assert_eq!(drop_retyped_cursor_text(" defaultdict(Decimal)", "    out = de"), "faultdict(Decimal)");
        assert_eq!(drop_retyped_cursor_text("  get_balance()", "self.get"), "_balance()");
    }

    #[test]
    fn everything_else_is_kept() {
        // A new word after a whole one.
        assert_eq!(drop_retyped_cursor_text(" x + 1", "    return"), " x + 1");
        // The answer continues the word already.
        assert_eq!(drop_retyped_cursor_text("fault", "x = de"), "fault");
        // The same word again, no longer: not a continuation.
        assert_eq!(drop_retyped_cursor_text(" de", "x = de"), " de");
        // Indentation at the start of a line.
        assert_eq!(drop_retyped_cursor_text("    return x", "def f():\n    "), "    return x");
        // After a number or an operator.
        assert_eq!(drop_retyped_cursor_text(" 12", "x = 12"), " 12");
        assert_eq!(drop_retyped_cursor_text(" 1", "x ="), " 1");
        assert_eq!(drop_retyped_cursor_text("", "x = de"), "");
    }
}
