//! Token healing's exact splicing, as a property over real code: cursors at
//! random places inside real lines of the eight languages cria knows, with
//! real vocabularies (Qwen2.5-Coder's, DeepSeek-Coder's, Llama's
//! SentencePiece, SmolLM2's). For each cursor:
//!
//! - the prompt with healing is the prompt without it, less the healed
//!   tokens, and those tokens' bytes are exactly the healed text, which is the
//!   end of the text before the cursor, on the cursor's line;
//! - a model that writes the truth (healed text + the rest of the line, in
//!   the tokenizer's own split) gets every token through the healing mask and
//!   its answer is exactly the rest of the line;
//! - a model that picks any allowed tokens (random logits through the mask,
//!   then random tokens) answers exactly what it wrote past the healed text:
//!   text before the cursor + answer = prompt's text + everything written.
//!
//! No character lost, none doubled: every case is checked, none skipped.

mod support;

use std::path::{Path, PathBuf};

use cria::engine::gguf::GgufFile;
use cria::engine::healing::ForcedText;
use cria::engine::Tokenizer;
use cria::prompt::{build_prompt, FimTemplate, Healing, PromptInput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cursors per file and vocabulary.
const CURSORS: usize = 24;

/// A Go function, written here (no Go sources on the build machines).
const GO: &str = r#"package ledger

import (
	"fmt"
	"sort"
	"strings"
)

// Totals sums the amounts of each month, transfers left out.
func Totals(transactions []Transaction) map[string]int64 {
	totals := make(map[string]int64)
	for _, tx := range transactions {
		if tx.IsTransfer() {
			continue
		}
		totals[tx.Month()] += tx.AmountCents
	}
	return totals
}

// Report prints one line per month, sorted.
func Report(totals map[string]int64, width int) string {
	months := make([]string, 0, len(totals))
	for month := range totals {
		months = append(months, month)
	}
	sort.Strings(months)
	var b strings.Builder
	for _, month := range months {
		fmt.Fprintf(&b, "%-*s %10.2f\n", width, month, float64(totals[month])/100)
	}
	return b.String()
}
"#;

/// A Java class, written here (no Java sources on the build machines).
const JAVA: &str = r#"package org.example.ledger;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

public final class Ledger {
    private final List<Transaction> transactions = new ArrayList<>();

    public void add(Transaction transaction) {
        if (transaction.amount().signum() == 0) {
            throw new IllegalArgumentException("empty transaction: " + transaction);
        }
        transactions.add(transaction);
    }

    public Map<String, BigDecimal> monthlyTotals() {
        Map<String, BigDecimal> totals = new TreeMap<>();
        for (Transaction tx : transactions) {
            if (tx.isTransfer()) {
                continue;
            }
            totals.merge(tx.month(), tx.amount(), BigDecimal::add);
        }
        return totals;
    }
}
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A file of a crate in Cargo's registry (tree-sitter grammars, esaxx...):
/// real code in C, C++ and JavaScript that every build of cria downloads.
fn registry_file(crate_prefix: &str, relative: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let src = cargo_home.join("registry/src");
    for index in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let index = index.unwrap().path();
        let mut crates: Vec<PathBuf> = std::fs::read_dir(&index)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.strip_prefix(crate_prefix).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect();
        crates.sort();
        if let Some(path) = crates.last().map(|c| c.join(relative)).filter(|p| p.is_file()) {
            return path;
        }
    }
    panic!("{crate_prefix}*/{relative} not found under {}", src.display())
}

/// Real code of the eight languages: (language, text).
fn sources() -> Vec<(&'static str, String)> {
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    vec![
        ("rust", read(repo().join("server/src/engine/generate.rs"))),
        ("python", read(repo().join("benches/data/header_value_parser.py"))),
        ("typescript", read(repo().join("editors/vscode/src/inline.ts"))),
        ("javascript", read(registry_file("tree-sitter-javascript-", "grammar.js"))),
        ("c", read(registry_file("tree-sitter-python-", "src/scanner.c"))),
        ("cpp", read(registry_file("esaxx-rs-", "src/esaxx.cpp"))),
        ("go", GO.to_string()),
        ("java", JAVA.to_string()),
    ]
}

fn tokenizers() -> Vec<(&'static str, Tokenizer)> {
    let load = |p: PathBuf| Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
    vec![
        ("qwen2", load(support::vocab("qwen2"))),
        ("deepseek-coder", load(support::vocab("deepseek-coder"))),
        ("llama-spm", load(support::vocab("llama-spm"))),
        ("smollm2", load(support::smollm2())),
    ]
}

/// A cursor inside a non-blank line: (byte offset, the rest of its line).
fn random_cursor(text: &str, rng: &mut StdRng) -> (usize, String) {
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .scan(0, |at, line| {
            let start = *at;
            *at += line.len();
            Some((start, line.trim_end_matches(['\n', '\r'])))
        })
        .filter(|(_, l)| l.trim().len() >= 2)
        .collect();
    let (start, line) = lines[rng.random_range(0..lines.len())];
    let boundaries: Vec<usize> = line.char_indices().map(|(i, _)| i).skip(1).chain([line.len()]).collect();
    let column = boundaries[rng.random_range(0..boundaries.len())];
    (start + column, line[column..].to_string())
}

/// Forty lines before the cursor and ten after: enough for a prompt, cheap
/// to encode in a debug build.
fn around(text: &str, cursor: usize) -> (&str, &str) {
    let before = &text[..cursor];
    let from = before.match_indices('\n').rev().nth(40).map_or(0, |(i, _)| i + 1);
    let after = &text[cursor..];
    let to = after.match_indices('\n').nth(10).map_or(after.len(), |(i, _)| i + 1);
    (&before[from..], &after[..to])
}

/// The healed prompt for Python text around a cursor, the cursor line after
/// the middle marker where the layout has one.
fn healed_prompt(template: &FimTemplate, tokenizer: &Tokenizer, prefix: &str, suffix: &str) -> cria::prompt::Prompt {
    let input = PromptInput {
        prefix,
        suffix,
        context: &[],
        line_comment: "#",
        budget: 2048,
        suffix_share: 0.3,
        context_share: 0.0,
        current_path: None,
        cursor_line_after_middle: true,
        middle_bytes: None,
        heal: Healing::Full,
    };
    build_prompt(template, tokenizer, &input).unwrap()
}

fn bytes_of(tokenizer: &Tokenizer, tokens: &[u32]) -> Vec<u8> {
    tokens.iter().flat_map(|&t| tokenizer.token_bytes(t).to_vec()).collect()
}

#[test]
fn healing_splices_exactly_at_random_cursors_in_real_code() {
    let sources = sources();
    let mut healed_cases = 0;
    let mut indentation_cases = 0;
    let mut cases = 0;
    for (vocab_name, tokenizer) in tokenizers() {
        let template = FimTemplate::infer(&tokenizer);
        let vocab = tokenizer.vocab_size();
        for (language, text) in &sources {
            let mut rng = StdRng::seed_from_u64(cases as u64 + 7);
            for n in 0..CURSORS {
                let (cursor, rest_of_line) = random_cursor(text, &mut rng);
                let (prefix, suffix) = around(text, cursor);
                let after_middle = n % 2 == 0;
                let input = |heal| PromptInput {
                    prefix,
                    suffix,
                    context: &[],
                    line_comment: "//",
                    budget: 2048,
                    suffix_share: 0.3,
                    context_share: 0.0,
                    current_path: None,
                    cursor_line_after_middle: after_middle,
                    middle_bytes: None,
                    heal,
                };
                let case = format!(
                    "{vocab_name} {language} cursor {cursor} (after middle: {after_middle}) {:?}|{:?}",
                    &prefix[prefix.len().saturating_sub(30)..],
                    rest_of_line
                );
                let plain = build_prompt(&template, &tokenizer, &input(Healing::Off)).unwrap();
                let healed = build_prompt(&template, &tokenizer, &input(Healing::Full)).unwrap();
                cases += 1;

                // The prompt side: the healed tokens were taken out, nothing else.
                let k = healed.healed_tokens;
                let line_head = &prefix[prefix.rfind(['\n', '\r']).map_or(0, |i| i + 1)..];
                let indentation = !line_head.is_empty() && line_head.bytes().all(|b| b == b' ' || b == b'\t');
                if indentation {
                    // Indentation (after the middle marker or at the end of
                    // the prefix) is split as before code, the rest of it
                    // healed: the same text either way.
                    // The healed text is taken out where the prefix ends,
                    // the end of the prompt or before the suffix.
                    let (plain_bytes, healed_bytes) = (bytes_of(&tokenizer, &plain.tokens), bytes_of(&tokenizer, &healed.tokens));
                    let same_start = plain_bytes.iter().zip(&healed_bytes).take_while(|(a, b)| a == b).count();
                    let same_end = plain_bytes.iter().rev().zip(healed_bytes.iter().rev()).take_while(|(a, b)| a == b).count();
                    assert_eq!(plain_bytes.len(), healed_bytes.len() + healed.healed_text.len(), "{case}");
                    assert!(same_start + same_end >= healed_bytes.len(), "{case}: more than the healed text changed");
                    indentation_cases += 1;
                } else if k == plain.tokens.len() {
                    // All the text was healed (a prompt-only template at the
                    // file's first word): the prompt is the start token alone.
                    assert_eq!(healed.tokens.len(), 1, "{case}");
                    assert_eq!(bytes_of(&tokenizer, &plain.tokens), healed.healed_text.as_bytes(), "{case}");
                } else {
                    assert_eq!(plain.tokens.len(), healed.tokens.len() + k, "{case}");
                    let same_start = plain.tokens.iter().zip(&healed.tokens).take_while(|(a, b)| a == b).count();
                    let at = same_start.min(healed.tokens.len());
                    let at = (0..=at)
                        .rev()
                        .find(|&i| plain.tokens[i + k..] == healed.tokens[i..])
                        .unwrap_or_else(|| panic!("{case}: more than the healed tokens changed"));
                    assert_eq!(bytes_of(&tokenizer, &plain.tokens[at..at + k]), healed.healed_text.as_bytes(), "{case}");
                }
                assert!(
                    prefix.ends_with(&healed.healed_text),
                    "{case}: {:?} is not the end of the text before the cursor",
                    healed.healed_text
                );
                assert!(!healed.healed_text.contains(['\n', '\r']), "{case}: healing crossed a line");
                if k == 0 {
                    continue;
                }
                healed_cases += 1;

                // A model that writes the truth, split as the tokenizer splits it.
                let written = format!("{}{}", healed.healed_text, rest_of_line);
                let mut forced = ForcedText::new(&healed.healed_text);
                let mut answer = Vec::new();
                for token in tokenizer.encode_continuation(&written).unwrap() {
                    let bytes = tokenizer.token_bytes(token);
                    assert!(forced.allows(bytes), "{case}: the truth's token {:?} was masked", String::from_utf8_lossy(bytes));
                    answer.extend_from_slice(forced.consume(bytes));
                }
                assert_eq!(String::from_utf8(answer).unwrap(), rest_of_line, "{case}");

                // A model that picks any token the mask allows, then anything.
                let mut forced = ForcedText::new(&healed.healed_text);
                let (mut written, mut answer) = (Vec::new(), Vec::new());
                for _ in 0..8 {
                    let token = if forced.is_active() {
                        let mut logits: Vec<f32> = (0..vocab).map(|_| rng.random::<f32>()).collect();
                        assert!(forced.mask(&mut logits, &tokenizer), "{case}: no token allowed");
                        let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
                        assert!(logits[best as usize].is_finite());
                        best
                    } else {
                        rng.random_range(0..vocab as u32)
                    };
                    let bytes = tokenizer.token_bytes(token);
                    written.extend_from_slice(bytes);
                    answer.extend_from_slice(forced.consume(bytes));
                }
                assert!(!forced.is_active(), "{case}: eight tokens did not write {:?}", healed.healed_text);
                let mut spliced = prefix.as_bytes().to_vec();
                spliced.extend_from_slice(&answer);
                let mut model_view = prefix.as_bytes()[..prefix.len() - healed.healed_text.len()].to_vec();
                model_view.extend_from_slice(&written);
                assert_eq!(spliced, model_view, "{case}: lost or doubled text");
            }
        }
    }
    // Healing must actually happen on most cursors inside lines.
    assert!(healed_cases * 10 >= cases * 8, "only {healed_cases} of {cases} cursors were healed");
    assert!(indentation_cases > 0, "no cursor after a line's indentation was tried");
}

/// On a real model (SmolLM2): a prompt ending inside a word is healed, the
/// model writes the word on, and speculative decoding (which drafts tokens
/// from the prompt and checks them in batches) gives the same tokens as
/// plain decoding under the healing mask.
#[test]
fn healed_generation_continues_the_word_with_and_without_speculation() {
    use cria::engine::{Engine, EngineOptions, GenerationRequest};
    let mut engine = Engine::load(&support::smollm2(), &EngineOptions { context_length: 512, ..Default::default() }, &mut |_| {}).unwrap();
    let tokenizer = engine.tokenizer();
    let text = "def fibonacci(n):\n    if n <= 1:\n        return n\n    return fibonacci(n - 1) + fibon";
    let template = FimTemplate::infer(&tokenizer);
    let input = PromptInput {
        prefix: text,
        suffix: "",
        context: &[],
        line_comment: "#",
        budget: 400,
        suffix_share: 0.0,
        context_share: 0.0,
        current_path: None,
        cursor_line_after_middle: false,
        middle_bytes: None,
        heal: Healing::Full,
    };
    let prompt = build_prompt(&template, &tokenizer, &input).unwrap();
    assert!(prompt.healed_tokens > 0 && "fibon".ends_with(prompt.healed_text.trim_start()), "{prompt:?}");
    let answers: Vec<_> = [false, true]
        .into_iter()
        .map(|speculative| {
            let request = GenerationRequest {
                speculative,
                healed_text: prompt.healed_text.clone(),
                ..GenerationRequest::new(prompt.tokens.clone(), 12 + prompt.healed_tokens, vec![])
            };
            engine.generate(&request).unwrap()
        })
        .collect();
    assert_eq!(answers[0].tokens, answers[1].tokens);
    assert_eq!(answers[0].text, answers[1].text);
    let written = bytes_of(&tokenizer, &answers[0].tokens);
    assert!(written.starts_with(prompt.healed_text.as_bytes()), "{:?}", String::from_utf8_lossy(&written));
    assert_eq!(written[prompt.healed_text.len()..], *answers[0].text.as_bytes());
    assert!(format!("fibon{}", answers[0].text).starts_with("fibonacci("), "{:?}", answers[0].text);
}

/// A cursor after a line's indentation (after Enter): the prompt ends in
/// the indentation's tokens as they are before code, and the model is left
/// the rest. On Qwen's vocabulary sixteen spaces before code are fifteen
/// and ` code`, so the prompt ends in the fifteen and the model must write
/// one space first (a prompt ending in a sixteen-space token made the
/// model write a space too many, or, healed whole, only spaces).
#[test]
fn indentation_before_code_is_split_as_before_code() {
    let tokenizer = Tokenizer::from_gguf(&GgufFile::open(&support::qwen()).unwrap()).unwrap();
    let config = cria::models::builtin("qwen2.5-coder-0.5b-instruct").unwrap();
    let template = FimTemplate::from_config(&config, None).unwrap();
    let indent = " ".repeat(16);
    let prefix = format!("class Packer:\n    def run(self):\n        if self.ready:\n{indent}");
    let prompt = healed_prompt(&template, &tokenizer, &prefix, "\n        return self\n");
    assert_eq!(prompt.healed_text, " ");
    let last = *prompt.tokens.last().unwrap();
    assert_eq!(tokenizer.token_bytes(last), " ".repeat(15).as_bytes(), "the prompt ends in the indentation as split before code");
    let before_code = tokenizer.encode_continuation(&format!("{indent}archive")).unwrap();
    assert_eq!(tokenizer.token_bytes(before_code[1]), b" archive", "the model's first token can be the word with its space");
}

/// The same at the end of a prompt that ends with the prefix: a model
/// without FIM tokens (SmolLM2) and Code Llama's SPM order, where the text
/// before the cursor comes last. A prompt ending in the whole indentation
/// made SmolLM2 write ` return` after four spaces, one space too deep.
#[test]
fn indentation_at_the_end_of_the_prefix_is_split_as_before_code() {
    let code_llama = cria::models::builtin("codellama-7b").unwrap();
    let smollm2 = cria::models::builtin("smollm2-135m-instruct").unwrap();
    let cases = [
        ("smollm2", support::smollm2(), FimTemplate::from_config(&smollm2, None).unwrap()),
        ("llama-spm", support::vocab("llama-spm"), FimTemplate::from_config(&code_llama, Some(cria::models::FimOrder::Spm)).unwrap()),
    ];
    for (name, file, template) in cases {
        let tokenizer = Tokenizer::from_gguf(&GgufFile::open(&file).unwrap()).unwrap();
        for indent in [" ".repeat(4), " ".repeat(8)] {
            let prefix = format!("def total(rows):\n    for row in rows:\n        if row:\n{indent}");
            let prompt = healed_prompt(&template, &tokenizer, &prefix, "\n    return rows\n");
            let case = format!("{name}, {} spaces", indent.len());
            assert!(!prompt.healed_text.is_empty() && indent.ends_with(&prompt.healed_text), "{case}: healed {:?}", prompt.healed_text);
            // What the prompt ends with is exactly how the tokenizer splits
            // the line before code, and the code's first token can follow.
            let line = format!("\n{indent}return");
            let before_code = tokenizer.encode_continuation(&line).unwrap();
            let kept = bytes_of(&tokenizer, &before_code).len() - bytes_of(&tokenizer, &before_code[before_code.len() - 1..]).len();
            let ending = &line.as_bytes()[..kept];
            assert!(bytes_of(&tokenizer, &prompt.tokens).ends_with(ending), "{case}: the prompt does not end as the line does before code");
            let first_word = tokenizer.token_bytes(*before_code.last().unwrap());
            assert!(first_word.starts_with(prompt.healed_text.as_bytes()), "{case}: {:?} cannot start the code", prompt.healed_text);
        }
    }
}
