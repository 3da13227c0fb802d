//! What serving many clients needs from the engine, on a real model: KV
//! cache slots that give the same greedy output and keep their own
//! prefixes, and streamed text that adds up to the final text.

mod support;

use cria::engine::{Engine, EngineError, EngineOptions, GenerationRequest};

fn request(prompt: &[u32], max_new: usize) -> GenerationRequest {
    GenerationRequest::new(prompt.to_vec(), max_new, vec![])
}

#[test]
fn every_slot_gives_the_same_greedy_output_and_keeps_its_own_prefix() {
    let mut engine = Engine::load(&support::smollm2(), &EngineOptions { context_length: 512 }, &mut |_| {}).unwrap();
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
    let mut engine = Engine::load(&support::smollm2(), &EngineOptions { context_length: 512 }, &mut |_| {}).unwrap();
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
