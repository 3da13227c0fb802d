//! Token healing's hold on generation: the text taken off the end of the
//! prompt (see `prompt::Prompt::healed_text`) must come back first, in
//! whichever tokens the model prefers.
//!
//! While some of that text remains, a token may be chosen only if its bytes
//! are a start of what remains (` d` for ` de`) or what remains is a start of
//! its bytes (` defaultdict` for ` de`); every other token's logit is set to
//! minus infinity before sampling, control tokens included (they have no
//! bytes). The text the model wrote past the forced part is the answer.
//!
//! Speculative decoding needs nothing special: drafted tokens are checked
//! against the token the loop chose, after this mask, and each row of logits
//! depends only on the tokens before it.

use super::Tokenizer;

/// What remains of the forced text.
#[derive(Debug, Clone, Default)]
pub struct ForcedText {
    remaining: Vec<u8>,
}

impl ForcedText {
    /// Generation must begin with `text`.
    pub fn new(text: &str) -> Self {
        Self { remaining: text.as_bytes().to_vec() }
    }

    /// Whether some of the forced text is still to be written.
    pub fn is_active(&self) -> bool {
        !self.remaining.is_empty()
    }

    /// Whether a token with these bytes may come next.
    pub fn allows(&self, token: &[u8]) -> bool {
        !token.is_empty() && (self.remaining.starts_with(token) || token.starts_with(&self.remaining))
    }

    /// Masks the logits of every token that cannot come next; false when no
    /// token is left (only with a vocabulary other than the prompt's).
    pub fn mask(&self, logits: &mut [f32], tokenizer: &Tokenizer) -> bool {
        let mut any = false;
        for (id, logit) in logits.iter_mut().enumerate() {
            if self.allows(tokenizer.token_bytes(id as u32)) {
                any = true;
            } else {
                *logit = f32::NEG_INFINITY;
            }
        }
        any
    }

    /// Takes a chosen token's bytes (one that [`Self::allows`]) and returns
    /// the part past the forced text: what the answer gains.
    pub fn consume<'b>(&mut self, token: &'b [u8]) -> &'b [u8] {
        if self.remaining.is_empty() {
            return token;
        }
        let forced = self.remaining.len().min(token.len());
        self.remaining.drain(..forced);
        &token[forced..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_agree_with_the_forced_text_until_it_is_written() {
        let mut forced = ForcedText::new(" de");
        assert!(forced.allows(b" d") && forced.allows(b" de") && forced.allows(b" defaultdict"));
        assert!(!forced.allows(b"d") && !forced.allows(b" df") && !forced.allows(b""));
        assert_eq!(forced.consume(b" d"), b"");
        assert!(forced.allows(b"e") && forced.allows(b"efault") && !forced.allows(b" e"));
        assert_eq!(forced.consume(b"efault"), b"fault");
        assert!(!forced.is_active());
        assert!(forced.allows(b"anything"));
        assert_eq!(forced.consume(b"dict"), b"dict");
    }

    #[test]
    fn a_token_that_runs_past_the_forced_text_keeps_its_own_end() {
        let mut forced = ForcedText::new("    ");
        assert_eq!(forced.consume(b"   "), b"");
        assert_eq!(forced.consume(b" return"), b"return");
    }
}
