//! What serving many clients and remote engines needs from the library, on
//! real models: KV cache slots that give the same greedy output and keep
//! their own prefixes, streamed text that adds up to the final text, and
//! prompts turned into what remote APIs take (text, or prefix and suffix
//! for llama.cpp's `/infill`) without losing or adding a character.

mod support;

use cria::engine::gguf::GgufFile;
use cria::engine::{Engine, EngineError, EngineOptions, GenerationRequest, Tokenizer};
use cria::models::{builtin, FimOrder};
use cria::prompt::{build_prompt, ContextChunk, FimTemplate, PromptInput};
use cria::remote::prompt::{prompt_text, split_infill};
use cria::serve::prompt::SpecialTokens;

const PREFIX: &str = "import math\n\n\ndef circle_area(radius):\n    \"\"\"Area of a circle.\"\"\"\n    return ";
const SUFFIX: &str = "\n\n\nprint(circle_area(2.0))  # é 🦀\n";

fn request(prompt: &[u32], max_new: usize) -> GenerationRequest {
    GenerationRequest::new(prompt.to_vec(), max_new, vec![])
}

#[test]
fn every_slot_gives_the_same_greedy_output_and_keeps_its_own_prefix() {
    let mut engine = Engine::load(&support::smollm2(), &EngineOptions { context_length: 512, ..Default::default() }, &mut |_| {}).unwrap();
    engine.set_slots(3).unwrap();
    assert_eq!(engine.slots(), 3);
    let tok = engine.tokenizer();
    let a = tok.encode("def add(a, b):\n    \"\"\"Sum of two numbers.\"\"\"\n    return").unwrap();
    let b = tok.encode("fn main() {\n    let greeting = \"hello\";\n    println!(").unwrap();

    let base = engine.generate(&request(&a, 12)).unwrap();
    let mut streamed = String::new();
    let in_two = engine.generate_in(2, &request(&a, 12), &mut |t| streamed.push_str(t)).unwrap();
    assert_eq!((in_two.tokens.clone(), in_two.reused_tokens), (base.tokens.clone(), 0), "slot 2 starts cold and agrees with slot 0");
    assert_eq!(streamed, in_two.text, "the streamed pieces are the text");

    // Another client's prompt in slot 1 leaves slots 0 and 2 alone.
    engine.generate_in(1, &request(&b, 12), &mut |_| {}).unwrap();
    assert!(engine.cached_tokens_in(1).starts_with(&b));
    for slot in [0, 2] {
        let again = engine.generate_in(slot, &request(&a, 12), &mut |_| {}).unwrap();
        assert_eq!(again.reused_tokens, a.len() - 1, "slot {slot} kept its prefix");
        assert_eq!(again.tokens, base.tokens);
    }
    let missing = engine.generate_in(3, &request(&a, 4), &mut |_| {});
    assert!(matches!(missing, Err(EngineError::NoSuchSlot { slot: 3, slots: 3 })), "{:?}", missing.err());
}

#[test]
fn streamed_text_never_runs_past_a_stop_string() {
    let mut engine = Engine::load(&support::smollm2(), &EngineOptions { context_length: 512, ..Default::default() }, &mut |_| {}).unwrap();
    let tok = engine.tokenizer();
    let prompt = tok.encode("# Three greetings in Python\nprint(\"hello\")\nprint(\"hi\")\n").unwrap();
    let free = engine.generate(&request(&prompt, 24)).unwrap();
    let stop = free.text.find('\n').map(|at| free.text[at..].chars().take(2).collect::<String>()).expect("a line break in 24 tokens");
    let mut with_stop = request(&prompt, 24);
    with_stop.stop_strings = vec![stop.clone()];
    let mut pieces = Vec::new();
    let done = engine.generate_in(0, &with_stop, &mut |t| pieces.push(t.to_string())).unwrap();
    assert!(!done.text.contains(&stop) && free.text.starts_with(&done.text), "{:?} then {:?}", free.text, done.text);
    assert_eq!(pieces.concat(), done.text, "no piece of the stop string was streamed: {pieces:?}");
}

fn tokenizer(path: &std::path::Path) -> Tokenizer {
    Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap()
}

fn fim_prompt(template: &FimTemplate, tokenizer: &Tokenizer) -> Vec<u32> {
    fim_prompt_with(template, tokenizer, &[], false)
}

fn fim_prompt_with(template: &FimTemplate, tokenizer: &Tokenizer, context: &[ContextChunk], cursor_line_after_middle: bool) -> Vec<u32> {
    let input = PromptInput {
        prefix: PREFIX,
        suffix: SUFFIX,
        context,
        line_comment: "#",
        budget: 1024,
        suffix_share: 0.4,
        context_share: if context.is_empty() { 0.0 } else { 0.3 },
        current_path: Some("shapes.py"),
        cursor_line_after_middle,
        middle_bytes: None,
        heal: false,
    };
    build_prompt(template, tokenizer, &input).unwrap().tokens
}

#[test]
fn infill_splits_give_back_the_exact_prefix_and_suffix() {
    let cases = [
        ("qwen2.5-coder-0.5b-instruct", support::qwen(), FimOrder::Psm),
        // Code Llama: SentencePiece, the suffix encoded without its leading space.
        ("codellama-7b", support::vocab("llama-spm"), FimOrder::Psm),
        ("codellama-7b", support::vocab("llama-spm"), FimOrder::Spm),
        ("smollm2-135m-instruct", support::smollm2(), FimOrder::Prefix),
    ];
    for (name, file, order) in cases {
        let config = builtin(name).unwrap();
        let template = FimTemplate::from_config(&config, Some(order)).unwrap();
        let tok = tokenizer(&file);
        let text = split_infill(&template, &tok, &fim_prompt(&template, &tok)).unwrap_or_else(|| panic!("{name} {order:?} splits"));
        assert_eq!((text.prefix.as_str(), text.middle.as_str()), (PREFIX, ""), "{name} {order:?}");
        let suffix = if template.uses_suffix() { SUFFIX } else { "" };
        assert_eq!(text.suffix, suffix, "{name} {order:?}");
        // With the cursor line after the middle marker (as the language
        // server lays out PSM prompts), it comes back as the middle text.
        let text = split_infill(&template, &tok, &fim_prompt_with(&template, &tok, &[], true)).unwrap();
        assert_eq!(format!("{}{}", text.prefix, text.middle), PREFIX, "{name} {order:?}");
        if order == FimOrder::Psm && template.uses_suffix() {
            assert_eq!(text.middle, "    return ", "{name}");
        }
    }
    // Tokens that do not follow the template are refused, not guessed at.
    let config = builtin("qwen2.5-coder-0.5b-instruct").unwrap();
    let template = FimTemplate::from_config(&config, None).unwrap();
    let tok = tokenizer(&support::qwen());
    assert_eq!(split_infill(&template, &tok, &tok.encode("no control tokens").unwrap()), None);

    // Repository-level context comes back as files for `input_extra`.
    let context = [
        ContextChunk { path: "geometry/units.py".into(), text: "PI = 3.14159\n".into() },
        ContextChunk { path: "geometry/square.py".into(), text: "def square_area(side):\n    return side * side".into() },
    ];
    let text = split_infill(&template, &tok, &fim_prompt_with(&template, &tok, &context, false)).unwrap();
    assert_eq!((text.prefix.as_str(), text.suffix.as_str()), (PREFIX, SUFFIX));
    let expected: Vec<(String, String)> = context.iter().map(|c| (c.path.clone(), format!("{}\n", c.text.trim_end()))).collect();
    assert_eq!(text.extra, expected);
}

#[test]
fn text_prompts_read_back_to_the_same_tokens() {
    for (name, file) in [("qwen2.5-coder-0.5b-instruct", support::qwen()), ("smollm2-135m-instruct", support::smollm2())] {
        let config = builtin(name).unwrap();
        let template = FimTemplate::from_config(&config, None).unwrap();
        let tok = tokenizer(&file);
        let tokens = fim_prompt_with(&template, &tok, &[], true);
        let text = prompt_text(&tok, &tokens);
        if template.uses_suffix() {
            assert!(
                text.starts_with("<|fim_prefix|>") && text.contains("<|fim_suffix|>") && text.ends_with("<|fim_middle|>    return "),
                "{text}"
            );
        }
        assert_eq!(SpecialTokens::new(&tok).encode(&tok, &text).unwrap(), tokens, "{name}: {text}");
    }
}
