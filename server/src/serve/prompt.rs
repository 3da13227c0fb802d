//! Text prompts for `cria serve`: like the engines it stands in for, the
//! texts of control tokens (`<|fim_prefix|>`, `<fim_middle>`...) in a text
//! prompt become those tokens, so a FIM prompt can be written by hand or by
//! a client that only sends text. Everything between them is encoded as
//! text. (Token-id prompts are used as they are.)
//!
//! The control-token texts are found in one pass over the prompt
//! (Aho-Corasick, leftmost-longest), so the time is linear in the prompt's
//! length whatever it holds.
//!
//! A `prompt` with a `suffix` (OpenAI's insertion parameter) becomes a
//! fill-in-the-middle prompt in the model's own layout and order
//! ([`fim_tokens`]), with both texts encoded as text.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::engine::{EngineError, TokenKind, Tokenizer};
use crate::models::FimOrder;
use crate::prompt::{build_prompt, FimTemplate, Healing, PromptInput};

/// Why a `prompt` and `suffix` cannot become a fill-in-the-middle prompt.
#[derive(Debug, thiserror::Error)]
pub enum FimError {
    /// The model was not trained to fill in the middle (its config has no
    /// FIM template), so a suffix would be ignored or misread.
    #[error("`suffix` needs a fill-in-the-middle model, and this one only continues its prompt (its config has no FIM template)")]
    NoFim,
    /// Prefix, suffix and the layout's control tokens do not fit.
    #[error("the prompt and suffix take more than the {budget} tokens this server's context leaves for them")]
    TooLong {
        /// Tokens available to the prompt.
        budget: usize,
    },
    /// The tokenizer failed.
    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(#[from] EngineError),
}

/// The fill-in-the-middle prompt for text before (`prefix`) and after
/// (`suffix`) the insertion point, laid out by the model's template (its
/// FIM tokens, in its order: prefix-suffix-middle or suffix-prefix-middle)
/// within `budget` tokens. Nothing is cut: a prompt that does not fit is
/// refused, as an API caller expects its text to be used whole. Both texts
/// are encoded as text (a control token's text in them stays text), and
/// nothing after the middle marker: the model writes the middle.
pub fn fim_tokens(template: &FimTemplate, tokenizer: &Tokenizer, prefix: &str, suffix: &str, budget: usize) -> Result<Vec<u32>, FimError> {
    if template.order == FimOrder::Prefix || !template.uses_suffix() {
        return Err(FimError::NoFim);
    }
    let input = PromptInput {
        prefix,
        suffix,
        context: &[],
        line_comment: "",
        budget,
        // The suffix may take what the prefix leaves; a cut is refused below.
        suffix_share: 1.0,
        context_share: 0.0,
        current_path: None,
        cursor_line_after_middle: false,
        middle_bytes: None,
        heal: Healing::Off,
    };
    let prompt = build_prompt(template, tokenizer, &input)?;
    if prompt.prefix_bytes < prefix.len() || prompt.suffix_bytes < suffix.len() {
        return Err(FimError::TooLong { budget });
    }
    Ok(prompt.tokens)
}

/// The vocabulary's control-token texts and their matcher.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    /// Texts and ids, in the matcher's pattern order.
    pieces: Vec<(String, u32)>,
    /// `None` when there are no control tokens (or they could not be compiled).
    matcher: Option<AhoCorasick>,
    /// The most bytes one token of the vocabulary stands for.
    longest_token: usize,
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
        let matcher = if pieces.is_empty() {
            None
        } else {
            let built = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(pieces.iter().map(|(p, _)| p.as_str()));
            match built {
                Ok(matcher) => Some(matcher),
                Err(e) => {
                    tracing::warn!("control-token texts cannot be matched in text prompts: {e}");
                    None
                }
            }
        };
        let longest_token = (0..tokenizer.vocab_size() as u32)
            .map(|id| tokenizer.token_bytes(id).len())
            .chain(pieces.iter().map(|(p, _)| p.len()))
            .max()
            .unwrap_or(1)
            // An unknown character (up to 4 bytes) may be one token.
            .max(4);
        Self { pieces, matcher, longest_token }
    }

    /// The earliest control-token text in `text`, longest on a tie.
    fn find(&self, text: &str) -> Option<(usize, usize, u32)> {
        let found = self.matcher.as_ref()?.find(text)?;
        Some((found.start(), found.len(), self.pieces[found.pattern().as_usize()].1))
    }

    /// The fewest tokens `text` can encode to: its length over the longest
    /// token's. A prompt is refused on this before it is tokenized.
    pub fn fewest_tokens(&self, text: &str) -> usize {
        text.len().div_ceil(self.longest_token)
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::gguf::GgufFile;

    /// Qwen2.5-Coder's vocabulary (only the metadata of the file fetched by
    /// scripts/fetch-models is read): its FIM control tokens, `<|fim_pad|>`
    /// among them.
    fn qwen_vocab() -> Tokenizer {
        let home = std::env::var_os("CRIA_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cria"));
        let path = home.join("models/qwen2.5-coder-0.5b-instruct-q5_0.gguf");
        let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("run scripts/fetch-models first: {e}"));
        Tokenizer::from_gguf(&file).expect("the qwen2 vocabulary")
    }

    #[test]
    fn control_token_texts_become_their_ids_in_one_pass() {
        let tokenizer = qwen_vocab();
        let specials = SpecialTokens::new(&tokenizer);
        let id = |piece: &str| tokenizer.token_id(piece).unwrap_or_else(|| panic!("{piece}"));
        let (prefix, suffix, middle, pad) = (id("<|fim_prefix|>"), id("<|fim_suffix|>"), id("<|fim_middle|>"), id("<|fim_pad|>"));
        let tokens = specials.encode(&tokenizer, "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>").unwrap();
        let def_f = tokenizer.encode_continuation("def f(").unwrap();
        let mut expected = vec![prefix];
        expected.extend(def_f);
        expected.push(suffix);
        expected.extend(tokenizer.encode_continuation(")").unwrap());
        expected.push(middle);
        assert_eq!(tokens, expected);
        // 2 MB of control-token texts: 45 minutes with a search per token
        // text per match, well under a second in one pass.
        let text = "<|fim_pad|>".repeat(190_000);
        let started = Instant::now();
        let tokens = specials.encode(&tokenizer, &text).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_eq!(tokens.iter().filter(|&&t| t == pad).count(), 190_000);
    }

    #[test]
    fn a_suffix_makes_a_fim_prompt_in_the_models_order_or_a_clear_refusal() {
        use crate::models::builtin;
        let tokenizer = qwen_vocab();
        let config = builtin("qwen2.5-coder-0.5b-instruct").unwrap();
        let id = |piece: &str| tokenizer.token_id(piece).unwrap_or_else(|| panic!("{piece}"));
        let psm = FimTemplate::from_config(&config, Some(FimOrder::Psm)).unwrap();
        let tokens = fim_tokens(&psm, &tokenizer, "def f(x):\n    return ", "\n\nprint(f(2))\n", 512).unwrap();
        // The same tokens as the FIM prompt written by hand with the model's
        // control-token texts (which a text prompt turns into those tokens).
        let by_hand = "<|fim_prefix|>def f(x):\n    return <|fim_suffix|>\n\nprint(f(2))\n<|fim_middle|>";
        assert_eq!(tokens, SpecialTokens::new(&tokenizer).encode(&tokenizer, by_hand).unwrap());
        assert_eq!(tokens.last(), Some(&id("<|fim_middle|>")), "the model writes the middle");
        // A control token's text in the user's text stays text.
        let tokens = fim_tokens(&psm, &tokenizer, "a = '<|fim_middle|>'", "", 512).unwrap();
        assert_eq!(tokens.iter().filter(|&&t| t == id("<|fim_middle|>")).count(), 1);
        // Too long for the budget: refused, not cut.
        let long = "x = 1\n".repeat(400);
        assert!(matches!(fim_tokens(&psm, &tokenizer, &long, "", 256), Err(FimError::TooLong { budget: 256 })));
        assert!(matches!(fim_tokens(&psm, &tokenizer, "", &long, 256), Err(FimError::TooLong { budget: 256 })));
        // A model without FIM (SmolLM2's config): refused before any tokenizing.
        let plain = FimTemplate::from_config(&builtin("smollm2-135m-instruct").unwrap(), None).unwrap();
        let refused = fim_tokens(&plain, &tokenizer, "a", "b", 512).unwrap_err();
        assert!(matches!(refused, FimError::NoFim) && refused.to_string().contains("fill-in-the-middle"), "{refused}");
    }

    #[test]
    fn the_fewest_tokens_of_a_text_never_overcounts() {
        let tokenizer = qwen_vocab();
        let specials = SpecialTokens::new(&tokenizer);
        for text in ["", "x", "hello world", &" ".repeat(5000), &"<|fim_pad|>".repeat(100), &"def f(x):\n    return x\n".repeat(300)] {
            let tokens = specials.encode(&tokenizer, text).unwrap();
            assert!(specials.fewest_tokens(text) <= tokens.len(), "{} tokens, fewest said {}", tokens.len(), specials.fewest_tokens(text));
        }
    }
}
