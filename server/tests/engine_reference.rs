//! The forward pass against candle-transformers' reference models on both real
//! GGUF files, and KV-cache reuse against a cold cache.

mod support;

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use cria::engine::{Engine, EngineOptions, GenerationRequest};

const PROGRAM: &str = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\ndef main():\n    for i in range(10):\n        print(i, fibonacci(i))\n";

fn load(path: &Path) -> Engine {
    Engine::load(path, &EngineOptions::default(), &mut |_| {}).expect("model loads")
}

fn reference_logits(path: &Path, tokens: &[u32]) -> Vec<f32> {
    let mut file = std::fs::File::open(path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let arch = content.metadata["general.architecture"].to_string().unwrap().clone();
    let input = Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = match arch.as_str() {
        "llama" => quantized_llama::ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
            .unwrap()
            .forward(&input, 0)
            .unwrap(),
        "qwen2" => quantized_qwen2::ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
            .unwrap()
            .forward(&input, 0)
            .unwrap(),
        other => panic!("no reference for {other}"),
    };
    logits.squeeze(0).unwrap().to_vec1().unwrap()
}

fn assert_logits_match(path: &Path) {
    let mut engine = load(path);
    let tokens = engine.tokenizer().encode(PROGRAM).unwrap();
    assert!(tokens.len() > 40);
    let ours = engine.prompt_logits(&tokens).unwrap();
    let reference = reference_logits(path, &tokens);
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-3 * scale.max(1.0), "max |Δlogit| = {worst} (logit scale {scale})");
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(argmax(&ours), argmax(&reference));
}

#[test]
fn llama_logits_match_candle_transformers_on_smollm2() {
    assert_logits_match(&support::smollm2());
}

#[test]
fn qwen2_logits_match_candle_transformers_on_qwen_coder() {
    assert_logits_match(&support::qwen());
}

fn greedy(engine: &mut Engine, prompt: &[u32], n: usize) -> cria::engine::Completion {
    engine.generate(&GenerationRequest::new(prompt.to_vec(), n, vec![])).unwrap()
}

fn assert_reuse_matches_cold(path: &Path) {
    let mut warm = load(path);
    let tok = warm.tokenizer();
    let first = tok.encode(PROGRAM).unwrap();
    let edited_text = PROGRAM.replace("print(i, fibonacci(i))", "print(\"fib\", i, fibonacci(i))");
    let edited = tok.encode(&edited_text).unwrap();
    let done = greedy(&mut warm, &first, 6);
    assert_eq!(done.reused_tokens, 0);
    let common = warm.cached_tokens().iter().zip(&edited).take_while(|(a, b)| a == b).count();
    assert!(common > 20 && common < edited.len(), "the edit is near the end ({common} of {})", edited.len());
    let reused = greedy(&mut warm, &edited, 12);
    assert_eq!(reused.reused_tokens, common);
    assert_eq!(reused.computed_tokens(), edited.len() - common, "only the tokens after the common prefix run");

    let mut cold = load(path);
    let fresh = greedy(&mut cold, &edited, 12);
    assert_eq!(fresh.reused_tokens, 0);
    assert_eq!(reused.tokens, fresh.tokens, "reuse changes nothing in greedy output");
    assert_eq!(reused.text, fresh.text);

    // The same prompt again reuses all but its last token.
    let again = greedy(&mut warm, &edited, 12);
    assert_eq!(again.reused_tokens, edited.len() - 1);
    assert_eq!(again.tokens, fresh.tokens);
}

#[test]
fn kv_reuse_after_an_edit_matches_a_cold_cache_on_smollm2() {
    assert_reuse_matches_cold(&support::smollm2());
}

#[test]
fn kv_reuse_after_an_edit_matches_a_cold_cache_on_qwen_coder() {
    assert_reuse_matches_cold(&support::qwen());
}
