//! FIM templates resolved to token ids: which control tokens surround the
//! prefix and the suffix, in which order, and how the suffix is encoded.
//!
//! Templates come from the model's config; for a GGUF file without one, the
//! template is inferred from the control tokens its vocabulary has.

use crate::engine::{TokenKind, Tokenizer};
use crate::models::{FimOrder, ModelConfig, SuffixEncoding, TemplatePart};

/// One element of a template, with control tokens already resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A control token, inserted by id (never by tokenizing its text).
    Token(u32),
    /// The text before the cursor.
    Prefix,
    /// The text after the cursor.
    Suffix,
}

/// A ready-to-fill prompt layout for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct FimTemplate {
    /// Which layout this is.
    pub order: FimOrder,
    /// The layout itself.
    pub segments: Vec<Segment>,
    /// Whether the suffix drops SentencePiece's leading space.
    pub suffix_encoding: SuffixEncoding,
    /// Token that separates files in repository-level prompts, if the model has one.
    pub file_separator: Option<u32>,
    /// Tokens that end generation.
    pub stop_tokens: Vec<u32>,
    /// Text that ends generation.
    pub stop_strings: Vec<String>,
}

/// Why a template could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The config has no template for the order asked for.
    #[error("model `{model}` has no `{order:?}` template (it supports {supported:?})")]
    UnsupportedOrder {
        /// Config name.
        model: String,
        /// Requested order.
        order: FimOrder,
        /// What it has.
        supported: Vec<FimOrder>,
    },
    /// A template names a token the config does not define.
    #[error("model `{model}`: template token `{token}` is not defined in [tokens]")]
    UnknownToken {
        /// Config name.
        model: String,
        /// Token name.
        token: String,
    },
}

impl FimTemplate {
    /// The template of `order` (or the config's preferred one) from a config.
    pub fn from_config(config: &ModelConfig, order: Option<FimOrder>) -> Result<Self, TemplateError> {
        let order = order.unwrap_or_else(|| config.preferred_order());
        let parts = config.fim.template(order).ok_or_else(|| TemplateError::UnsupportedOrder {
            model: config.name.clone(),
            order,
            supported: config.fim.orders.clone(),
        })?;
        let mut segments = Vec::with_capacity(parts.len());
        for part in parts {
            segments.push(match part {
                TemplatePart::Prefix => Segment::Prefix,
                TemplatePart::Suffix => Segment::Suffix,
                TemplatePart::Token(name) => Segment::Token(
                    config
                        .token(name)
                        .ok_or_else(|| TemplateError::UnknownToken { model: config.name.clone(), token: name.clone() })?
                        .id,
                ),
            });
        }
        Ok(Self {
            order,
            segments,
            suffix_encoding: config.fim.suffix_encoding,
            file_separator: config.token("file_sep").map(|t| t.id),
            stop_tokens: config.stop_token_ids(),
            stop_strings: config.stop.strings.clone(),
        })
    }

    /// Infers a template from the vocabulary of a model without a config:
    /// Qwen/StarCoder-style `<|fim_*|>` or `<fim_*>`, Code Llama's `▁<PRE>`,
    /// DeepSeek-Coder's `<｜fim▁*｜>`; otherwise plain continuation of the prefix.
    pub fn infer(tokenizer: &Tokenizer) -> Self {
        let control = |text: &str| tokenizer.token_id(text).filter(|id| tokenizer.kind_of(*id) != Some(TokenKind::Normal) || text.starts_with('<'));
        let bos = if tokenizer.add_bos() { tokenizer.bos() } else { None };
        let stop_tokens = tokenizer.control_tokens();
        let with_bos = |mut segments: Vec<Segment>| {
            if let Some(bos) = bos {
                segments.insert(0, Segment::Token(bos));
            }
            segments
        };
        let families: [(&str, &str, &str, SuffixEncoding); 4] = [
            ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", SuffixEncoding::Plain),
            ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", SuffixEncoding::Plain),
            ("\u{2581}<PRE>", "\u{2581}<SUF>", "\u{2581}<MID>", SuffixEncoding::Infill),
            ("<\u{ff5c}fim\u{2581}begin\u{ff5c}>", "<\u{ff5c}fim\u{2581}hole\u{ff5c}>", "<\u{ff5c}fim\u{2581}end\u{ff5c}>", SuffixEncoding::Plain),
        ];
        for (pre, suf, mid, suffix_encoding) in families {
            if let (Some(pre), Some(suf), Some(mid)) = (control(pre), control(suf), control(mid)) {
                let segments = with_bos(vec![
                    Segment::Token(pre),
                    Segment::Prefix,
                    Segment::Token(suf),
                    Segment::Suffix,
                    Segment::Token(mid),
                ]);
                let file_separator = control("<|file_sep|>").or_else(|| control("<file_sep>"));
                let mut stop_tokens = stop_tokens.clone();
                if let Some(eot) = control("\u{2581}<EOT>") {
                    stop_tokens.push(eot);
                }
                return Self { order: FimOrder::Psm, segments, suffix_encoding, file_separator, stop_tokens, stop_strings: Vec::new() };
            }
        }
        Self {
            order: FimOrder::Prefix,
            segments: with_bos(vec![Segment::Prefix]),
            suffix_encoding: SuffixEncoding::Plain,
            file_separator: None,
            stop_tokens,
            stop_strings: Vec::new(),
        }
    }

    /// Whether the model sees the text after the cursor at all.
    pub fn uses_suffix(&self) -> bool {
        self.segments.contains(&Segment::Suffix)
    }

    /// Number of control tokens the layout adds around the text.
    pub fn control_token_count(&self) -> usize {
        self.segments.iter().filter(|s| matches!(s, Segment::Token(_))).count()
    }
}
