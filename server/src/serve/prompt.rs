//! Text prompts for `cria serve`: like the engines it stands in for, the
//! texts of control tokens (`<|fim_prefix|>`, `<fim_middle>`...) in a text
//! prompt become those tokens, so a FIM prompt can be written by hand or by
//! a client that only sends text. Everything between them is encoded as
//! text. (Token-id prompts are used as they are.)

use crate::engine::{EngineError, TokenKind, Tokenizer};

/// The vocabulary's control-token texts, longest first.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    pieces: Vec<(String, u32)>,
}

impl SpecialTokens {
    /// Collects control tokens, and user-defined tokens written like
    /// markers (`<...>`), from the vocabulary.
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let mut pieces: Vec<(String, u32)> = (0..tokenizer.vocab_size() as u32)
            .filter_map(|id| {
                let piece = tokenizer.piece(id)?;
                let special = match tokenizer.kind_of(id)? {
                    TokenKind::Control => !piece.is_empty(),
                    TokenKind::UserDefined => piece.len() > 2 && piece.starts_with('<') && piece.ends_with('>'),
                    _ => false,
                };
                special.then(|| (piece.to_string(), id))
            })
            .collect();
        pieces.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        Self { pieces }
    }

    /// The earliest control-token text in `text`, longest on a tie.
    fn find(&self, text: &str) -> Option<(usize, usize, u32)> {
        let mut best: Option<(usize, usize, u32)> = None;
        for (piece, id) in &self.pieces {
            if let Some(at) = text.find(piece.as_str()) {
                if best.is_none_or(|(b, _, _)| at < b) {
                    best = Some((at, piece.len(), *id));
                }
            }
        }
        best
    }

    /// Encodes a text prompt: control-token texts become their ids, the
    /// rest is text (SentencePiece's leading space only at the very start),
    /// with BOS first when the model wants it.
    pub fn encode(&self, tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, EngineError> {
        let mut tokens = Vec::new();
        if tokenizer.add_bos() {
            tokens.extend(tokenizer.bos());
        }
        let mut rest = text;
        let mut first = true;
        while !rest.is_empty() {
            let (plain, special) = match self.find(rest) {
                Some((at, len, id)) => (&rest[..at], Some((at + len, id))),
                None => (rest, None),
            };
            if !plain.is_empty() {
                tokens.extend(if first { tokenizer.encode(plain)? } else { tokenizer.encode_continuation(plain)? });
            }
            first = false;
            match special {
                Some((end, id)) => {
                    // A prompt written with its BOS text gets BOS once.
                    let repeated_bos = Some(id) == tokenizer.bos() && tokens == [id];
                    if !repeated_bos {
                        tokens.push(id);
                    }
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        Ok(tokens)
    }
}
