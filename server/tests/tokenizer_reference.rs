//! The tokenizers built from GGUF metadata against llama.cpp's reference
//! tokenizations (`ggml-vocab-*.gguf` with `.inp`/`.out`), plus round trips
//! on code and the rule that control tokens never come from plain text.

mod support;

use cria::engine::gguf::GgufFile;
use cria::engine::Tokenizer;

const VOCABS: [&str; 6] = ["llama-spm", "llama-bpe", "qwen2", "starcoder", "deepseek-coder", "gpt-2"];

fn tokenizer(name: &str) -> Tokenizer {
    let file = GgufFile::open(&support::vocab(name)).expect("vocab file opens");
    Tokenizer::from_gguf(&file).expect("tokenizer builds")
}

/// The cases of a `.inp`/`.out` pair, split as llama.cpp's test-tokenizer-0 does.
fn reference_cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let path = support::vocab(name);
    let raw = std::fs::read_to_string(path.with_extension("gguf.inp")).expect(".inp file");
    let out = std::fs::read_to_string(path.with_extension("gguf.out")).expect(".out file");
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        match raw[pos..].find(sep) {
            Some(next) => {
                inputs.push(raw[pos..pos + next].to_string());
                pos += next + sep.len();
            }
            None => {
                inputs.push(raw[pos..].to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().expect("id")).collect())
        .collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: .inp and .out disagree on the number of cases");
    inputs.into_iter().zip(outputs).collect()
}

#[test]
fn every_reference_case_encodes_to_llama_cpp_ids() {
    let mut failures = Vec::new();
    let mut total = 0;
    for name in VOCABS {
        let tok = tokenizer(name);
        for (text, expected) in reference_cases(name) {
            total += 1;
            let got = tok.encode(&text).expect("encodes");
            if got != expected {
                failures.push(format!("{name}: {text:?}\n  expected {expected:?}\n  got      {got:?}"));
            }
        }
    }
    assert!(total > 100, "only {total} reference cases found");
    assert!(failures.is_empty(), "{} of {total} cases differ:\n{}", failures.len(), failures.join("\n"));
}

const CODE: &str = "fn main() {\r\n\tlet s = \"héllo wörld — 🦀 日本語\";\r\n    if s.len() > 0 {\r\n        println!(\"{s}\");\r\n    }\r\n}\n\n\n                    x = 1\t\t# trailing tabs\t\n\u{00a0}nbsp and \u{200b}zero-width\n";

#[test]
fn decode_inverts_encode_on_code() {
    for name in VOCABS {
        let tok = tokenizer(name);
        for text in [CODE, " leading space", "  two leading spaces", "x", "\n", "", "a\rb\r\nc"] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids, true), text, "{name}: round trip of {text:?}");
        }
    }
}

#[test]
fn continuation_encoding_drops_only_sentencepiece_leading_space() {
    let spm = tokenizer("llama-spm");
    let plain = spm.encode("return x").unwrap();
    let cont = spm.encode_continuation("return x").unwrap();
    assert_ne!(plain, cont);
    assert_eq!(spm.decode(&plain, false), " return x");
    assert_eq!(spm.decode(&cont, false), "return x");
    let bpe = tokenizer("qwen2");
    assert_eq!(bpe.encode("return x").unwrap(), bpe.encode_continuation("return x").unwrap());
}

#[test]
fn control_tokens_are_never_produced_from_text() {
    for name in VOCABS {
        let tok = tokenizer(name);
        let controls = tok.control_tokens();
        assert!(!controls.is_empty(), "{name} has control tokens");
        let mut text = String::new();
        for id in &controls {
            text.push_str(tok.piece(*id).unwrap());
            text.push(' ');
        }
        let ids = tok.encode(&text).unwrap();
        let leaked: Vec<_> = ids.iter().filter(|id| controls.contains(id)).collect();
        assert!(leaked.is_empty(), "{name}: control tokens {leaked:?} produced from text");
        assert_eq!(tok.decode(&ids, true), text, "{name}: control-token text survives as text");
    }
}
