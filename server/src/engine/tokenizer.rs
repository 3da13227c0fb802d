//! The model's tokenizer, built from the GGUF metadata with the `tokenizers`
//! crate, so that text is split exactly as the model was trained on.
//!
//! Two vocabulary kinds are supported, as llama.cpp names them in
//! `tokenizer.ggml.model`:
//! - `gpt2`: byte-level BPE with a pre-tokenizer chosen by `tokenizer.ggml.pre`
//!   (Qwen2, SmolLM2, StarCoder, DeepSeek-Coder, Llama 3, GPT-2);
//! - `llama`: SentencePiece BPE with byte fallback (Llama 2, Code Llama). Its
//!   merges are derived from the piece scores, as SentencePiece ranks them.
//!
//! Control tokens (BOS, FIM markers, end-of-text) are never produced by encoding
//! text: a file that contains the characters `<|fim_prefix|>` is encoded as
//! those characters. Prompts get control tokens by id only.
//!
//! Decoding goes through a table of each token's bytes, so generation can be
//! streamed token by token and cut at any byte.

use std::collections::HashMap;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::gguf::GgufFile;
use super::EngineError;

/// What llama.cpp records about each vocabulary entry (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Ordinary text piece.
    Normal,
    /// The unknown token.
    Unknown,
    /// Control token (BOS, EOS, FIM markers): never rendered, never matched in text.
    Control,
    /// Added piece matched verbatim in text (as the reference tokenizers do).
    UserDefined,
    /// Reserved, never produced.
    Unused,
    /// A raw byte (`<0x0A>`) for SentencePiece byte fallback.
    Byte,
}

impl TokenKind {
    fn from_gguf(v: i64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// Which family of tokenizer the vocabulary belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// Byte-level BPE (`gpt2` in GGUF).
    ByteLevelBpe,
    /// SentencePiece BPE with byte fallback (`llama` in GGUF).
    SentencePiece,
}

/// A tokenizer for one model: encoding through `tokenizers`, decoding through a
/// byte table. Cheap to share (`Arc`) between the editor side and the engine.
pub struct Tokenizer {
    kind: VocabKind,
    /// Encodes text as it appears in a file.
    encoder: tokenizers::Tokenizer,
    /// SentencePiece only: encodes without the leading space SentencePiece adds,
    /// for text that continues other text (Code Llama's infill suffix).
    encoder_continuation: Option<tokenizers::Tokenizer>,
    pieces: Vec<String>,
    kinds: Vec<TokenKind>,
    bytes: Vec<Vec<u8>>,
    by_text: HashMap<String, u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    /// The text tokens' ids in the order of their bytes (built at load, off
    /// the keystroke path): which tokens start with given bytes is a binary
    /// search.
    by_bytes: Vec<u32>,
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, EngineError> {
        let model = file.string("tokenizer.ggml.model")?.to_string();
        let pieces: Vec<String> = file.strings("tokenizer.ggml.tokens")?.into_iter().map(str::to_string).collect();
        let n = pieces.len();
        let kinds: Vec<TokenKind> = match file.opt_i64s("tokenizer.ggml.token_type") {
            Some(types) if types.len() == n => types.into_iter().map(TokenKind::from_gguf).collect(),
            _ => vec![TokenKind::Normal; n],
        };
        let bos = file.opt_usize("tokenizer.ggml.bos_token_id").map(|v| v as u32).filter(|&v| (v as usize) < n);
        let eos = file.opt_usize("tokenizer.ggml.eos_token_id").map(|v| v as u32).filter(|&v| (v as usize) < n);
        let spec = VocabSpec { pieces: &pieces, kinds: &kinds };
        match model.as_str() {
            "gpt2" => {
                let merges = file.strings("tokenizer.ggml.merges")?;
                let pre = file.opt_string("tokenizer.ggml.pre").unwrap_or("default");
                let encoder = build_byte_level(&spec, &merges, pre)?;
                let bytes = pieces
                    .iter()
                    .zip(&kinds)
                    .map(|(p, k)| match k {
                        TokenKind::Control | TokenKind::Unused | TokenKind::Unknown => Vec::new(),
                        TokenKind::UserDefined => p.as_bytes().to_vec(),
                        _ => byte_level_decode(p),
                    })
                    .collect();
                let add_bos = file.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
                Ok(Self::assemble(VocabKind::ByteLevelBpe, encoder, None, pieces, kinds, bytes, bos, eos, add_bos))
            }
            "llama" => {
                let scores = file
                    .opt_f32s("tokenizer.ggml.scores")
                    .filter(|s| s.len() == n)
                    .ok_or_else(|| EngineError::Tokenizer("SentencePiece vocabulary without `tokenizer.ggml.scores`".into()))?;
                let add_space = file.opt_bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                let encoder = build_sentencepiece(&spec, &scores, add_space)?;
                let continuation = if add_space { Some(build_sentencepiece(&spec, &scores, false)?) } else { None };
                let bytes = pieces
                    .iter()
                    .zip(&kinds)
                    .map(|(p, k)| match k {
                        TokenKind::Control | TokenKind::Unused | TokenKind::Unknown => Vec::new(),
                        TokenKind::Byte => parse_byte_piece(p).map(|b| vec![b]).unwrap_or_default(),
                        _ => p.replace('\u{2581}', " ").into_bytes(),
                    })
                    .collect();
                let add_bos = file.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(true);
                Ok(Self::assemble(VocabKind::SentencePiece, encoder, continuation, pieces, kinds, bytes, bos, eos, add_bos))
            }
            other => Err(EngineError::Tokenizer(format!("unsupported tokenizer model `{other}` (supported: gpt2, llama)"))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        kind: VocabKind,
        encoder: tokenizers::Tokenizer,
        encoder_continuation: Option<tokenizers::Tokenizer>,
        pieces: Vec<String>,
        kinds: Vec<TokenKind>,
        bytes: Vec<Vec<u8>>,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
    ) -> Self {
        let mut by_text = HashMap::with_capacity(pieces.len());
        for (id, piece) in pieces.iter().enumerate() {
            by_text.entry(piece.clone()).or_insert(id as u32);
        }
        let mut by_bytes: Vec<u32> = (0..bytes.len() as u32).filter(|&id| !bytes[id as usize].is_empty()).collect();
        by_bytes.sort_unstable_by(|&a, &b| bytes[a as usize].cmp(&bytes[b as usize]));
        Self { kind, encoder, encoder_continuation, pieces, kinds, bytes, by_text, bos, eos, add_bos, by_bytes }
    }

    /// Encodes text as it appears at the start of a document or after a
    /// control token (SentencePiece adds its leading space here).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        encode_with(&self.encoder, text)
    }

    /// Encodes text that continues other text: identical to [`Self::encode`]
    /// for byte-level BPE; for SentencePiece, without the leading space (Code
    /// Llama's `encode_infilling`).
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        match &self.encoder_continuation {
            Some(encoder) => encode_with(encoder, text),
            None => self.encode(text),
        }
    }

    /// The bytes a token stands for; empty for control tokens.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether some text token is longer than `bytes` and starts with them:
    /// then text ending in `bytes` may end inside what the tokenizer would
    /// merge with the characters that come next (token healing asks this).
    pub fn has_token_extending(&self, bytes: &[u8]) -> bool {
        let at = self.by_bytes.partition_point(|&id| self.token_bytes(id) <= bytes);
        self.by_bytes.get(at).is_some_and(|&id| self.token_bytes(id).starts_with(bytes))
    }

    /// Decodes ids to text (invalid UTF-8 replaced). With `strip_leading_space`,
    /// SentencePiece's added leading space is removed, undoing [`Self::encode`].
    pub fn decode(&self, ids: &[u32], strip_leading_space: bool) -> String {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        let mut text = String::from_utf8_lossy(&out).into_owned();
        if strip_leading_space && self.kind == VocabKind::SentencePiece && self.encoder_continuation.is_some() && text.starts_with(' ') {
            text.remove(0);
        }
        text
    }

    /// The id of a piece by its exact vocabulary text.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.by_text.get(piece).copied()
    }

    /// The vocabulary text of an id, for config validation and diagnostics.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// How llama.cpp classifies a token.
    pub fn kind_of(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    /// Number of entries in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The family of the vocabulary.
    pub fn vocab_kind(&self) -> VocabKind {
        self.kind
    }

    /// Beginning-of-sequence token, if the vocabulary has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token, if the vocabulary has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether the model expects BOS at the start of every prompt.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids of every control token: generation stops on any of them by default,
    /// since none of them can be part of code shown to a user.
    pub fn control_tokens(&self) -> Vec<u32> {
        self.kinds.iter().enumerate().filter(|(_, k)| **k == TokenKind::Control).map(|(id, _)| id as u32).collect()
    }
}

fn encode_with(encoder: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>, EngineError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    encoder.encode_fast(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| EngineError::Tokenizer(e.to_string()))
}

struct VocabSpec<'a> {
    pieces: &'a [String],
    kinds: &'a [TokenKind],
}

impl VocabSpec<'_> {
    /// Entries the BPE model may produce: everything but control and unused
    /// tokens, each text once (the first id wins, as in llama.cpp).
    fn model_vocab(&self) -> Vocab {
        let mut vocab = Vocab::default();
        for (id, (piece, kind)) in self.pieces.iter().zip(self.kinds).enumerate() {
            if matches!(kind, TokenKind::Control | TokenKind::Unused) {
                continue;
            }
            vocab.entry(piece.clone()).or_insert(id as u32);
        }
        vocab
    }

    /// User-defined pieces, matched verbatim before the model runs, except
    /// those that look like markup tokens (`<...>`): such a marker in a file is
    /// text, not an instruction to the model.
    fn verbatim_tokens(&self) -> Vec<AddedToken> {
        self.pieces
            .iter()
            .zip(self.kinds)
            .filter(|(piece, kind)| {
                **kind == TokenKind::UserDefined && !(piece.len() > 2 && piece.starts_with('<') && piece.ends_with('>'))
            })
            .map(|(piece, _)| AddedToken::from(piece.clone(), false).normalized(false))
            .collect()
    }
}

/// Pre-tokenizer regexes per `tokenizer.ggml.pre`, as llama.cpp applies them
/// (each splits the pieces the previous one produced).
fn pre_tokenizer_patterns(pre: &str) -> Result<&'static [&'static str], EngineError> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const STARCODER: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    Ok(match pre {
        "default" | "gpt-2" | "gpt2" => &[GPT2],
        "llama3" | "llama-v3" | "llama-bpe" => &[LLAMA3],
        "qwen2" => &[QWEN2],
        "starcoder" | "smollm" | "refact" | "command-r" => &[r"\p{N}", STARCODER],
        "deepseek-coder" => &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[\u{4e00}-\u{9fa5}\u{0800}-\u{4e00}\u{ac00}-\u{d7ff}]+", r"\p{N}"],
        other => {
            return Err(EngineError::Tokenizer(format!(
                "unsupported pre-tokenizer `{other}` (supported: qwen2, smollm, starcoder, deepseek-coder, llama-bpe, gpt-2)"
            )))
        }
    })
}

fn build_byte_level(spec: &VocabSpec, merges: &[&str], pre: &str) -> Result<tokenizers::Tokenizer, EngineError> {
    let merges: Vec<(String, String)> =
        merges.iter().filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string()))).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(spec.model_vocab(), merges)
        .ignore_merges(matches!(pre, "llama3" | "llama-v3" | "llama-bpe"))
        .build()
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for pattern in pre_tokenizer_patterns(pre)? {
        let split = Split::new(SplitPattern::Regex(pattern.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| EngineError::Tokenizer(format!("pre-tokenizer regex: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(PreSequence::new(steps)));
    tokenizer.add_tokens(spec.verbatim_tokens()).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

fn build_sentencepiece(spec: &VocabSpec, scores: &[f32], add_space_prefix: bool) -> Result<tokenizers::Tokenizer, EngineError> {
    let vocab = spec.model_vocab();
    let merges = sentencepiece_merges(spec, scores, &vocab);
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unk) = spec.kinds.iter().position(|k| *k == TokenKind::Unknown) {
        builder = builder.unk_token(spec.pieces[unk].clone());
    }
    let bpe = builder.build().map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new("\u{2581}".into()).into());
    }
    normalizers.push(Replace::new(" ", "\u{2581}").map_err(|e| EngineError::Tokenizer(e.to_string()))?.into());
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers))).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    tokenizer.add_tokens(spec.verbatim_tokens()).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// SentencePiece BPE merges two pieces when their concatenation is in the
/// vocabulary, best score first. Every such pair becomes a BPE merge, ranked by
/// the score of the piece it makes.
fn sentencepiece_merges(spec: &VocabSpec, scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, String, String)> = Vec::new();
    for (piece, &id) in vocab.iter() {
        if !matches!(spec.kinds[id as usize], TokenKind::Normal | TokenKind::UserDefined) {
            continue;
        }
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                ranked.push((scores[id as usize], id, left.to_string(), right.to_string()));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.into_iter().map(|(_, _, l, r)| (l, r)).collect()
}

fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-level alphabet maps each byte to a printable character; this
/// is its inverse, applied to a vocabulary piece.
fn byte_level_decode(piece: &str) -> Vec<u8> {
    piece.chars().filter_map(byte_of_char).collect()
}

fn byte_of_char(c: char) -> Option<u8> {
    static TABLE: std::sync::OnceLock<Vec<Option<u8>>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let mut table = vec![None; 512];
        let mut next_unprintable = 256;
        for byte in 0u32..256 {
            if printable(byte) {
                table[byte as usize] = Some(byte as u8);
            } else {
                // The non-printable bytes were assigned 256, 257, ... in byte order.
                table[next_unprintable] = Some(byte as u8);
                next_unprintable += 1;
            }
        }
        table
    });
    table.get(c as usize).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_round_trips_every_byte() {
        // 'Ġ' is the space, 'Ċ' the newline in GPT-2's alphabet.
        assert_eq!(byte_level_decode("Ġ"), b" ");
        assert_eq!(byte_level_decode("Ċ"), b"\n");
        assert_eq!(byte_level_decode("ĉ"), b"\t");
        assert_eq!(byte_level_decode("hello"), b"hello");
    }

    #[test]
    fn byte_pieces_parse() {
        assert_eq!(parse_byte_piece("<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece("<0xFF>"), Some(255));
        assert_eq!(parse_byte_piece("<s>"), None);
    }
}
