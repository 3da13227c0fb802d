//! Filling a [`FimTemplate`] with text: prefix, suffix and extra context chunks,
//! each encoded separately and fitted into a token budget.
//!
//! The budget is the context length minus the tokens to generate. The suffix
//! gets at most its configured share; context chunks at most theirs; the
//! prefix gets the rest. Text is cut at line boundaries: the prefix keeps the
//! lines nearest the cursor, the suffix its first lines, so the model sees
//! whole lines and the start of the prompt moves as little as possible.

use crate::documents::line_starts;
use crate::engine::{EngineError, Tokenizer};
use crate::models::{FimOrder, SuffixEncoding};

use super::template::{FimTemplate, Segment};

/// A snippet from elsewhere (another file, a definition) shown before the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextChunk {
    /// Where it comes from, shown to the model as a file path.
    pub path: String,
    /// The snippet itself.
    pub text: String,
}

/// What to put in a prompt and how many tokens it may take.
#[derive(Debug, Clone)]
pub struct PromptInput<'a> {
    /// Text before the cursor.
    pub prefix: &'a str,
    /// Text after the cursor.
    pub suffix: &'a str,
    /// Snippets from elsewhere, most relevant last (nearest the prefix).
    pub context: &'a [ContextChunk],
    /// How the language writes a line comment (for context headers when the
    /// model has no file separator token), e.g. `//` or `#`.
    pub line_comment: &'a str,
    /// Tokens available to the whole prompt (context length − max new tokens).
    pub budget: usize,
    /// Share of the budget the suffix may take (0..=1).
    pub suffix_share: f32,
    /// Share of the budget context chunks may take (0 turns them off).
    pub context_share: f32,
    /// The current file's path, named after the context files in
    /// repository-level formats (`<|file_sep|>path`).
    pub current_path: Option<&'a str>,
    /// In prefix-suffix-middle layouts, put the cursor line's text after the
    /// middle marker instead of at the end of the prefix (as llama.vim does):
    /// typing on that line then changes only the prompt's last tokens, and
    /// the suffix keeps its place in the KV cache.
    pub cursor_line_after_middle: bool,
    /// With `cursor_line_after_middle`: how many bytes at the end of the
    /// prefix go after the middle marker when that is more than the cursor
    /// line's head: the lines typed since the anchor (`completion::anchor`),
    /// so that Enter does not move the prompt's prefix end. Ignored unless
    /// it starts a line inside the prefix; `None`: the cursor line's head.
    pub middle_bytes: Option<usize>,
    /// Token healing: leave the last token or two of the text before the
    /// cursor out of the prompt when the text may end inside a token (see
    /// [`Prompt::healed_text`]).
    pub heal: Healing,
}

/// How much of the text before the cursor token healing may take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Healing {
    /// None: the prompt ends with the text before the cursor as encoded.
    Off,
    /// Only indentation (the cursor after Enter), whose healed text is
    /// whitespace the answer's start can be compared with: for a backend
    /// that cannot hold generation to the healed text (a remote engine),
    /// which drops what the answer writes of it afterwards.
    Indentation,
    /// Any partial token; the engine must write the healed text first.
    Full,
}

/// A prompt ready for the engine, with what was kept of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Token ids, control tokens included.
    pub tokens: Vec<u32>,
    /// Bytes of the prefix that made it in (its end).
    pub prefix_bytes: usize,
    /// Bytes of the suffix that made it in (its start).
    pub suffix_bytes: usize,
    /// Context chunks that made it in.
    pub context_chunks: usize,
    /// Token healing: the end of the text before the cursor, left out of
    /// `tokens`, that generation must write first. A prompt ending in `= de`
    /// asks a model for a token split it never saw in training (` de` +
    /// `faultdict`); without ` de` in the prompt and with it forced back as
    /// the start of the answer, the model picks ` defaultdict` itself.
    /// Empty when nothing was left out.
    pub healed_text: String,
    /// How many tokens `healed_text` took in the prompt.
    pub healed_tokens: usize,
}

/// Builds the prompt's token ids from the template and the input.
pub fn build_prompt(template: &FimTemplate, tokenizer: &Tokenizer, input: &PromptInput) -> Result<Prompt, EngineError> {
    let available = input.budget.saturating_sub(template.control_token_count());
    let encode_suffix = |text: &str| match template.suffix_encoding {
        SuffixEncoding::Infill => tokenizer.encode_continuation(text),
        SuffixEncoding::Plain => tokenizer.encode(text),
    };
    let (suffix_tokens, suffix_bytes) = if template.uses_suffix() {
        let limit = (available as f32 * input.suffix_share.clamp(0.0, 1.0)) as usize;
        fit_head(input.suffix, limit, &encode_suffix)?
    } else {
        (Vec::new(), 0)
    };
    let context_limit = (available as f32 * input.context_share.clamp(0.0, 1.0)) as usize;
    let (context_tokens, context_chunks) = encode_context(template, tokenizer, input, context_limit)?;
    let ends_with_middle = template.order == FimOrder::Psm && matches!(template.segments.last(), Some(Segment::Token(_)));
    let split = match input.prefix.rfind(['\n', '\r']) {
        Some(at) if input.cursor_line_after_middle && ends_with_middle => {
            let head = at + 1;
            let anchored = input.middle_bytes.and_then(|n| input.prefix.len().checked_sub(n)).filter(|&start| {
                start > 0 && start <= head && input.prefix.is_char_boundary(start) && input.prefix[..start].ends_with(['\n', '\r'])
            });
            Some(anchored.unwrap_or(head))
        }
        _ => None,
    };
    let (prefix_text, line_head) = match split {
        Some(at) => input.prefix.split_at(at),
        None => (input.prefix, ""),
    };
    let mut middle_tokens = tokenizer.encode_continuation(line_head)?;
    let prefix_limit = available.saturating_sub(suffix_tokens.len() + context_tokens.len() + middle_tokens.len());
    // After inline context (comment headers), the prefix continues that text.
    let inline_context = template.file_separator.is_none() && !context_tokens.is_empty();
    let (mut prefix_tokens, prefix_bytes) = if inline_context {
        fit_tail(prefix_text, prefix_limit, &|t| tokenizer.encode_continuation(t))?
    } else {
        fit_tail(prefix_text, prefix_limit, &|t| tokenizer.encode(t))?
    };
    let prefix_bytes = prefix_bytes + line_head.len();
    // The cursor line's head ends the prompt when it follows the middle
    // marker; otherwise the prefix's tokens end the text before the cursor.
    let (healed_text, healed_tokens) = match (input.heal, middle_tokens.is_empty()) {
        (Healing::Off, _) => (String::new(), 0),
        (_, false) if ends_in_indentation(line_head) => heal_indentation(&mut middle_tokens, line_head, tokenizer)?,
        (_, true) if ends_in_indentation(prefix_text) => heal_indentation(&mut prefix_tokens, prefix_text, tokenizer)?,
        (Healing::Indentation, _) => (String::new(), 0),
        (Healing::Full, false) => back_off_partial_token(&mut middle_tokens, line_head, tokenizer),
        (Healing::Full, true) => back_off_partial_token(&mut prefix_tokens, prefix_text, tokenizer),
    };

    let mut tokens = Vec::with_capacity(input.budget);
    let mut context_placed = false;
    for segment in &template.segments {
        match segment {
            Segment::Token(id) => {
                // Repository-level context (file separators) goes before the
                // first control token after BOS, as such models were trained.
                if !inline_context && !context_placed && Some(*id) != tokenizer.bos() {
                    tokens.extend_from_slice(&context_tokens);
                    context_placed = true;
                }
                tokens.push(*id);
            }
            Segment::Prefix => {
                if !context_placed {
                    tokens.extend_from_slice(&context_tokens);
                    context_placed = true;
                }
                tokens.extend_from_slice(&prefix_tokens);
            }
            Segment::Suffix => tokens.extend_from_slice(&suffix_tokens),
        }
    }
    tokens.extend_from_slice(&middle_tokens);
    if tokens.is_empty() {
        // An empty document with a prefix-only template: start from BOS or
        // end-of-text, so the model has something to condition on.
        tokens.extend(tokenizer.bos().or(tokenizer.eos()));
    }
    Ok(Prompt { tokens, prefix_bytes, suffix_bytes, context_chunks, healed_text, healed_tokens })
}

/// Most tokens token healing takes back.
const MAX_HEALED_TOKENS: usize = 3;

/// Token healing: removes the tokens at the end of `tokens` (the encoding of
/// `text`) that the tokenizer might have merged with what comes after the
/// cursor, and returns their text and count. Always the last token (unless
/// it holds a line break: healing stays on the cursor's line); one more when
/// the two together start a longer token (` =` + `=` could be ` ==`...), or
/// when the text left out would not start on a character boundary. The
/// removed text must be exactly the end of `text` (SentencePiece's added
/// leading space is not), or nothing is removed.
fn back_off_partial_token(tokens: &mut Vec<u32>, text: &str, tokenizer: &Tokenizer) -> (String, usize) {
    let mut removed: Vec<u8> = Vec::new();
    let mut count = 0;
    while let Some(&last) = tokens.get(tokens.len().wrapping_sub(count + 1)) {
        let bytes = tokenizer.token_bytes(last);
        if bytes.is_empty() || bytes.iter().any(|b| matches!(b, b'\n' | b'\r')) || count == MAX_HEALED_TOKENS {
            break;
        }
        let mut joined = bytes.to_vec();
        joined.extend_from_slice(&removed);
        let mid_character = removed.first().is_some_and(|b| b & 0xC0 == 0x80);
        if count > 0 && !mid_character && !tokenizer.has_token_extending(&joined) {
            break;
        }
        removed = joined;
        count += 1;
    }
    match String::from_utf8(removed) {
        Ok(healed) if count > 0 && text.ends_with(healed.as_str()) => {
            tokens.truncate(tokens.len() - count);
            (healed, count)
        }
        _ => (String::new(), 0),
    }
}

/// Whether the text's last line is indentation only (spaces, tabs): the
/// cursor at the start of a line's code, as after Enter.
fn ends_in_indentation(text: &str) -> bool {
    let line = &text[text.rfind(['\n', '\r']).map_or(0, |i| i + 1)..];
    !line.is_empty() && line.bytes().all(|b| b == b' ' || b == b'\t')
}

/// Token healing for text that ends in indentation (`tokens` encode `text`,
/// or its end): the tokens of its last line become those the tokenizer
/// gives the indentation when code follows it, and the rest of the
/// indentation is left for the model to write. Byte-level BPE splits
/// sixteen spaces before code as fifteen spaces and ` code` (SentencePiece
/// likewise ends a run of `▁` before `▁code`); a prompt that ends in a
/// sixteen-space token puts the model where it never was in training (a
/// word right after a whole indentation token), and it wrote a space too
/// many, or healed with the whole run free, spaces on and on. Here the
/// prompt ends in the fifteen, and the model must start with the space:
/// ` archive_root`. The same holds whether the line follows the middle
/// marker (PSM) or ends the prefix (prompt-only models, SPM order). When
/// code does not merge with the indentation (tabs), nothing changes.
fn heal_indentation(tokens: &mut Vec<u32>, text: &str, tokenizer: &Tokenizer) -> Result<(String, usize), EngineError> {
    const NOTHING: (String, usize) = (String::new(), 0);
    // The tokens that hold the last line: back to the one with its line
    // break (which may carry indentation too), or all of them.
    let (mut count, mut bytes) = (0, 0);
    for &token in tokens.iter().rev() {
        let piece = tokenizer.token_bytes(token);
        (count, bytes) = (count + 1, bytes + piece.len());
        if piece.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            break;
        }
    }
    let held: Vec<u8> = tokens[tokens.len() - count..].iter().flat_map(|&t| tokenizer.token_bytes(t).iter().copied()).collect();
    let Some(tail) = text.len().checked_sub(bytes).and_then(|start| text.get(start..)).filter(|t| t.as_bytes() == held) else {
        return Ok(NOTHING);
    };
    let before_code = tokenizer.encode_continuation(&format!("{tail}x"))?;
    let mut covered = 0;
    let mut kept = Vec::new();
    for token in before_code {
        let bytes = tokenizer.token_bytes(token);
        match tail.as_bytes().get(covered..covered + bytes.len()) {
            Some(piece) if !bytes.is_empty() && piece == bytes => {
                kept.push(token);
                covered += bytes.len();
            }
            _ => break,
        }
    }
    if covered >= tail.len() || !tail.is_char_boundary(covered) || tail[covered..].contains(['\n', '\r']) {
        return Ok(NOTHING);
    }
    let healed = tail[covered..].to_string();
    let taken = count.saturating_sub(kept.len()).max(1);
    tokens.truncate(tokens.len() - count);
    tokens.extend(kept);
    Ok((healed, taken))
}

fn encode_context(
    template: &FimTemplate,
    tokenizer: &Tokenizer,
    input: &PromptInput,
    limit: usize,
) -> Result<(Vec<u32>, usize), EngineError> {
    let mut blocks: Vec<Vec<u32>> = Vec::new();
    let mut used = 0;
    // Most relevant chunks are last; fill from the end, then restore order.
    for chunk in input.context.iter().rev() {
        let block = match template.file_separator {
            Some(sep) => {
                let mut block = vec![sep];
                block.extend(tokenizer.encode(&format!("{}\n{}\n", chunk.path, chunk.text.trim_end_matches('\n')))?);
                block
            }
            None => tokenizer.encode(&format!("{} {}\n{}\n", input.line_comment, chunk.path, chunk.text.trim_end_matches('\n')))?,
        };
        if used + block.len() > limit {
            break;
        }
        used += block.len();
        blocks.push(block);
    }
    let count = blocks.len();
    blocks.reverse();
    if let (Some(sep), Some(path), true) = (template.file_separator, input.current_path, count > 0) {
        let mut own = vec![sep];
        own.extend(tokenizer.encode(&format!("{path}\n"))?);
        if used + own.len() <= limit {
            blocks.push(own);
        }
    }
    Ok((blocks.concat(), count))
}

type Encoder<'a> = dyn Fn(&str) -> Result<Vec<u32>, EngineError> + 'a;

/// The longest tail of `text` starting at a line start that encodes to at
/// most `limit` tokens (binary search over line starts).
fn fit_tail(text: &str, limit: usize, encode: &Encoder) -> Result<(Vec<u32>, usize), EngineError> {
    let whole = encode(text)?;
    if whole.len() <= limit {
        return Ok((whole, text.len()));
    }
    let starts = line_starts(text);
    let (mut lo, mut hi) = (0, starts.len() - 1);
    let mut best = (Vec::new(), 0);
    // starts[lo] too early (too many tokens) ... find the earliest start that fits.
    while lo < hi {
        let mid = (lo + hi) / 2 + 1;
        let tail = &text[starts[mid]..];
        let tokens = encode(tail)?;
        if tokens.len() <= limit {
            best = (tokens, tail.len());
            hi = mid - 1;
        } else {
            lo = mid;
        }
    }
    if best.1 == 0 {
        // Not even the cursor's line fits: keep its last tokens.
        let last = &text[starts[starts.len() - 1]..];
        let tokens = encode(last)?;
        let keep = tokens.len().min(limit);
        return Ok((tokens[tokens.len() - keep..].to_vec(), last.len()));
    }
    Ok(best)
}

/// The longest head of `text` ending at a line end that encodes to at most
/// `limit` tokens.
fn fit_head(text: &str, limit: usize, encode: &Encoder) -> Result<(Vec<u32>, usize), EngineError> {
    if limit == 0 || text.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let whole = encode(text)?;
    if whole.len() <= limit {
        return Ok((whole, text.len()));
    }
    let mut ends = line_starts(text);
    ends.remove(0);
    let (mut lo, mut hi) = (0usize, ends.len());
    let mut best = (Vec::new(), 0);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let head = &text[..ends[mid]];
        let tokens = encode(head)?;
        if tokens.len() <= limit {
            best = (tokens, head.len());
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Result<Vec<u32>, EngineError> {
        Ok(text.split_whitespace().map(|w| w.len() as u32).collect())
    }

    #[test]
    fn tail_keeps_whole_lines_nearest_the_cursor() {
        let text = "a b c\nd e\nf g h\nij";
        let (tokens, bytes) = fit_tail(text, 4, &words).unwrap();
        assert_eq!(&text[text.len() - bytes..], "f g h\nij");
        assert_eq!(tokens.len(), 4);
    }

    #[test]
    fn tail_of_a_single_long_line_keeps_its_end() {
        let (tokens, _) = fit_tail("a bb ccc dddd", 2, &words).unwrap();
        assert_eq!(tokens, vec![3, 4]);
    }

    #[test]
    fn head_keeps_whole_lines_after_the_cursor() {
        let text = "x y\nz\nw v u\n";
        let (tokens, bytes) = fit_head(text, 3, &words).unwrap();
        assert_eq!(&text[..bytes], "x y\nz\n");
        assert_eq!(tokens.len(), 3);
    }
}
