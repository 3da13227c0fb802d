//! Code Llama's whole path without its weights: a tiny GGUF shaped like Code
//! Llama (its real SentencePiece vocabulary and infilling tokens) is resolved
//! by name, loaded, prompted in both FIM orders with ids checked against the
//! reference layout, and generates until `▁<EOT>`.

mod support;

use cria::completion::{resolve_model, start, CompletionInput, Model, Settings};
use cria::context::CursorText;
use cria::engine::gguf::GgufFile;
use cria::engine::{CancelFlag, EngineOptions, StopReason, Tokenizer};
use cria::models::{CriaHome, FimOrder};
use support::tiny_codellama::{self, EOT, MID, PRE, SUF};

const PREFIX: &str = "def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n    return";
const SUFFIX: &str = "\n\n\nprint(add(1, 2))\n";

struct Fixture {
    _dir: tempfile::TempDir,
    home: CriaHome,
    tokenizer: Tokenizer,
    hello: u32,
    world: u32,
}

fn fixture() -> Fixture {
    let vocab = support::vocab("llama-spm");
    let tokenizer = Tokenizer::from_gguf(&GgufFile::open(&vocab).unwrap()).unwrap();
    let hello = tokenizer.token_id("\u{2581}hello").unwrap();
    let world = tokenizer.token_id("\u{2581}world").unwrap();
    // Token healing takes `▁return` off the prompt and has the model write
    // it again: after the token before it, `▁return` is the model's choice.
    let prefix_tokens = tokenizer.encode(PREFIX).unwrap();
    let last_of_prefix = prefix_tokens[prefix_tokens.len() - 1];
    let before_last = prefix_tokens[prefix_tokens.len() - 2];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    // Named as the codellama-7b config expects, so it resolves by name.
    let dest = dir.path().join("models/codellama-7b.Q4_K_M.gguf");
    tiny_codellama::write(
        &vocab,
        &dest,
        &[(before_last, last_of_prefix), (last_of_prefix, hello), (MID, last_of_prefix), (hello, world), (world, EOT)],
    );
    let home = CriaHome::new(dir.path());
    Fixture { _dir: dir, home, tokenizer, hello, world }
}

fn start_model(f: &Fixture, order: Option<FimOrder>) -> Model {
    let resolved = resolve_model("codellama-7b", &f.home).expect("resolves by name");
    assert!(resolved.gguf.starts_with(f.home.models_dir()));
    start(resolved, EngineOptions { context_length: 512, ..Default::default() }, order, Box::new(|_| {}))
        .unwrap()
        .finish_blocking()
        .expect("loads and passes the config's vocabulary check")
}

fn complete(model: &Model) -> (Vec<u32>, cria::engine::Completion) {
    let cursor = CursorText { prefix: PREFIX.into(), suffix: SUFFIX.into() };
    let input = CompletionInput { cursor: &cursor, context: &[], line_comment: "#", path: None };
    let (request, prompt) = model.request(&input, &Settings::default(), None, CancelFlag::new()).unwrap();
    let completion = model.generator.generate(request).blocking_recv().unwrap().unwrap();
    (prompt.tokens, completion)
}

/// The prefix's tokens less the last (`▁return`), which token healing
/// leaves for the model to write (SentencePiece's leading-space convention:
/// its bytes are ` return`, the end of the prefix).
fn healed_prefix(tokenizer: &Tokenizer) -> Vec<u32> {
    let mut tokens = tokenizer.encode(PREFIX).unwrap();
    assert_eq!(tokenizer.token_bytes(tokens.pop().unwrap()), b" return");
    tokens
}

#[test]
fn suffix_prefix_middle_matches_the_reference_layout_and_stops_at_eot() {
    let f = fixture();
    let model = start_model(&f, None);
    assert_eq!(model.name, "codellama-7b");
    assert_eq!(model.template.order, FimOrder::Spm, "Code Llama prefers suffix-prefix-middle");
    let (prompt, completion) = complete(&model);
    let mut expected = vec![1, PRE, SUF];
    expected.extend(f.tokenizer.encode_continuation(SUFFIX).unwrap());
    expected.push(MID);
    expected.extend(healed_prefix(&f.tokenizer));
    assert_eq!(prompt, expected);
    assert_ne!(f.tokenizer.encode_continuation(SUFFIX).unwrap(), f.tokenizer.encode(SUFFIX).unwrap());
    let return_ = f.tokenizer.token_id("\u{2581}return").unwrap();
    assert_eq!(completion.tokens, vec![return_, f.hello, f.world]);
    assert_eq!(completion.text, " hello world");
    assert_eq!(completion.stop_reason, StopReason::Eos);
}

#[test]
fn prefix_suffix_middle_matches_the_reference_layout_and_stops_at_eot() {
    let f = fixture();
    let model = start_model(&f, Some(FimOrder::Psm));
    let (prompt, completion) = complete(&model);
    let mut expected = vec![1, PRE];
    expected.extend(healed_prefix(&f.tokenizer));
    expected.push(SUF);
    expected.extend(f.tokenizer.encode_continuation(SUFFIX).unwrap());
    expected.push(MID);
    assert_eq!(prompt, expected);
    assert_eq!(completion.text, " hello world");
    assert_eq!(completion.stop_reason, StopReason::Eos);
}
