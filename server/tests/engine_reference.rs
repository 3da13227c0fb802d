//! The forward pass against candle-transformers' reference models on both real
//! GGUF files, and KV-cache reuse against a cold cache: for cria's own CPU
//! pass, and for the device pass (candle operations, what a GPU runs) on the
//! CPU.

mod support;

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use cria::engine::{ComputeDevice, Engine, EngineOptions, GenerationRequest, SpeculationStats};

const PROGRAM: &str = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\ndef main():\n    for i in range(10):\n        print(i, fibonacci(i))\n";

fn load(path: &Path) -> Engine {
    load_on(path, ComputeDevice::Cpu)
}

fn load_on(path: &Path, device: ComputeDevice) -> Engine {
    Engine::load(path, &EngineOptions { device, ..EngineOptions::default() }, &mut |_| {}).expect("model loads")
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

/// Compares the next-token distributions. Both engines quantize activations
/// to 8 bits before every product, and that rounding turns the last bit of any
/// difference in summation order into visible differences: perturbing every
/// product of candle's own computation by one ulp (measured) moves these
/// logits by up to 0.5 and the probabilities by up to 4%. Only an engine that
/// repeats candle's operations bit for bit gets closer, so the bounds are on
/// the distribution (and the exact arithmetic is pinned down by the F32 tests
/// below): the same top token, the reference's top 3 among ours top 5, a small KL divergence, and logits
/// within a few percent of their scale.
fn assert_logits_match(path: &Path, device: ComputeDevice) {
    let mut engine = load_on(path, device);
    let tokens = engine.tokenizer().encode(PROGRAM).unwrap();
    assert!(tokens.len() > 40);
    let ours = engine.prompt_logits(&tokens).unwrap();
    let reference = reference_logits(path, &tokens);
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 0.05 * scale.max(1.0), "{device}: max |Δlogit| = {worst} (logit scale {scale})");
    let softmax = |v: &[f32]| {
        let max = v.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f64> = v.iter().map(|x| ((x - max) as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|x| x / sum).collect::<Vec<f64>>()
    };
    let (p, q) = (softmax(&reference), softmax(&ours));
    let kl: f64 = p.iter().zip(&q).filter(|(a, _)| **a > 0.0).map(|(a, b)| a * (a / b.max(1e-300)).ln()).sum();
    assert!(kl < 1e-2, "{device}: KL(reference || ours) = {kl}");
    let top = |v: &[f32], n: usize| {
        let mut ids: Vec<usize> = (0..v.len()).collect();
        ids.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
        ids.truncate(n);
        ids
    };
    let (theirs, mine) = (top(&reference, 3), top(&ours, 5));
    assert_eq!(mine[0], theirs[0], "{device}: top token");
    assert!(theirs.iter().all(|t| mine.contains(t)), "{device}: reference top 3 {theirs:?} within our top 5 {mine:?}");
}

#[test]
fn llama_logits_match_candle_transformers_on_smollm2() {
    assert_logits_match(&support::smollm2(), ComputeDevice::Cpu);
}

#[test]
fn qwen2_logits_match_candle_transformers_on_qwen_coder() {
    assert_logits_match(&support::qwen(), ComputeDevice::Cpu);
}

#[test]
fn device_pass_on_the_cpu_matches_candle_transformers_on_smollm2() {
    assert_logits_match(&support::smollm2(), ComputeDevice::CandleCpu);
}

#[test]
fn device_pass_on_the_cpu_matches_candle_transformers_on_qwen_coder() {
    assert_logits_match(&support::qwen(), ComputeDevice::CandleCpu);
}

fn greedy(engine: &mut Engine, prompt: &[u32], n: usize) -> cria::engine::Completion {
    engine.generate(&GenerationRequest::new(prompt.to_vec(), n, vec![])).unwrap()
}

fn assert_reuse_matches_cold(path: &Path, device: ComputeDevice) {
    let mut warm = load_on(path, device);
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

    let mut cold = load_on(path, device);
    let fresh = greedy(&mut cold, &edited, 12);
    assert_eq!(fresh.reused_tokens, 0);
    assert_eq!(reused.tokens, fresh.tokens, "reuse changes nothing in greedy output");
    assert_eq!(reused.text, fresh.text);

    // The same prompt again reuses all but its last token.
    let again = greedy(&mut warm, &edited, 12);
    assert_eq!(again.reused_tokens, edited.len() - 1);
    assert_eq!(again.tokens, fresh.tokens);

    if device.uses_candle() {
        // Candle's batched products are not bit-identical row by row.
        assert!(!warm.speculative(), "no speculative decoding on the device pass");
        assert_eq!(reused.drafted_tokens + fresh.drafted_tokens + again.drafted_tokens, 0);
    }
}

#[test]
fn kv_reuse_after_an_edit_matches_a_cold_cache_on_smollm2() {
    assert_reuse_matches_cold(&support::smollm2(), ComputeDevice::Cpu);
}

#[test]
fn kv_reuse_after_an_edit_matches_a_cold_cache_on_qwen_coder() {
    assert_reuse_matches_cold(&support::qwen(), ComputeDevice::Cpu);
}

#[test]
fn device_pass_kv_reuse_after_an_edit_matches_a_cold_cache_on_smollm2() {
    assert_reuse_matches_cold(&support::smollm2(), ComputeDevice::CandleCpu);
}

#[test]
fn device_pass_kv_reuse_after_an_edit_matches_a_cold_cache_on_qwen_coder() {
    assert_reuse_matches_cold(&support::qwen(), ComputeDevice::CandleCpu);
}

/// A tiny random model with F32 weights: without 8-bit activations (whose
/// rounding amplifies the last bit of any difference in summation order into
/// logit differences of a few tenths on the real models), the forward pass
/// must match candle-transformers' to float precision. This pins down
/// attention, rotary embeddings (both layouts), grouped-query heads, biases
/// and norms exactly.
fn tiny_f32_model(arch: &str, dest: &Path) {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    let (vocab, embd, heads, kv_heads, ff, layers) = (97usize, 64usize, 4usize, 2usize, 96usize, 2usize);
    let head_dim = embd / heads;
    let mut seed = 7u64;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let tensor = |data: Vec<f32>, shape: &[usize]| -> QTensor {
        QTensor::quantize(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), tensor(rand(vocab * embd, 1.0), &[vocab, embd])),
        ("output.weight".into(), tensor(rand(vocab * embd, 0.3), &[vocab, embd])),
        ("output_norm.weight".into(), tensor(rand(embd, 1.0).iter().map(|x| 1.0 + x / 2.0).collect(), &[embd])),
    ];
    for layer in 0..layers {
        let p = |s: &str| format!("blk.{layer}.{s}");
        for (name, rows, cols) in [
            ("attn_q", embd, embd),
            ("attn_k", kv_heads * head_dim, embd),
            ("attn_v", kv_heads * head_dim, embd),
            ("attn_output", embd, embd),
            ("ffn_gate", ff, embd),
            ("ffn_up", ff, embd),
            ("ffn_down", embd, ff),
        ] {
            tensors.push((p(&format!("{name}.weight")), tensor(rand(rows * cols, 0.4), &[rows, cols])));
        }
        for name in ["attn_norm", "ffn_norm"] {
            tensors.push((p(&format!("{name}.weight")), tensor(rand(embd, 1.0).iter().map(|x| 1.0 + x / 2.0).collect(), &[embd])));
        }
        if arch == "qwen2" {
            for (name, n) in [("attn_q", embd), ("attn_k", kv_heads * head_dim), ("attn_v", kv_heads * head_dim)] {
                tensors.push((p(&format!("{name}.bias")), tensor(rand(n, 0.5), &[n])));
            }
        }
    }
    let key = |k: &str| format!("{arch}.{k}");
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (key("context_length"), Value::U32(256)),
        (key("embedding_length"), Value::U32(embd as u32)),
        (key("block_count"), Value::U32(layers as u32)),
        (key("feed_forward_length"), Value::U32(ff as u32)),
        (key("attention.head_count"), Value::U32(heads as u32)),
        (key("attention.head_count_kv"), Value::U32(kv_heads as u32)),
        (key("rope.dimension_count"), Value::U32(head_dim as u32)),
        (key("rope.freq_base"), Value::F32(10_000.0)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (key("vocab_size"), Value::U32(vocab as u32)),
    ];
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(dest).unwrap(), &metadata_refs, &tensor_refs).unwrap();
}

fn assert_exact_math(arch: &str, device: ComputeDevice) {
    use cria::engine::gguf::GgufFile;
    use cria::engine::network::Network;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("tiny-{arch}.gguf"));
    tiny_f32_model(arch, &path);
    let mut file = GgufFile::open(&path).unwrap();
    let model = Network::load(&mut file, 256, device, &mut |_| {}).unwrap();
    assert_eq!(matches!(model, Network::Device(_)), device.uses_candle());
    let tokens: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 97).collect();
    for len in [1, 2, 7, 40] {
        let mut cache = model.new_cache(256).unwrap();
        let ours = model.forward(&tokens[..len], &mut cache).unwrap().to_vec1::<f32>().unwrap();
        let reference = reference_logits(&path, &tokens[..len]);
        assert_eq!(ours.len(), reference.len());
        let worst = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(worst <= 1e-5 * scale.max(1.0), "{arch} on {device}, {len} tokens: max |Δlogit| = {worst} (scale {scale})");
    }
}

#[test]
fn llama_forward_matches_candle_transformers_exactly_with_f32_weights() {
    assert_exact_math("llama", ComputeDevice::Cpu);
}

#[test]
fn qwen2_forward_matches_candle_transformers_exactly_with_f32_weights() {
    assert_exact_math("qwen2", ComputeDevice::Cpu);
}

#[test]
fn llama_device_pass_matches_candle_transformers_exactly_with_f32_weights() {
    assert_exact_math("llama", ComputeDevice::CandleCpu);
}

#[test]
fn qwen2_device_pass_matches_candle_transformers_exactly_with_f32_weights() {
    assert_exact_math("qwen2", ComputeDevice::CandleCpu);
}

/// Code that repeats itself: the case prompt-lookup speculation is for.
const REPEATING: &str = "def area_square(side):\n    \"\"\"Area of a square.\"\"\"\n    return side * side\n\n\ndef area_rectangle(width, height):\n    \"\"\"Area of a rectangle.\"\"\"\n    return width * height\n\n\ndef perimeter_square(side):\n    \"\"\"Perimeter of a square.\"\"\"\n    return 4 * side\n\n\ndef perimeter_rectangle(width, height):\n    \"\"\"Perimeter of a rectangle.\"\"\"\n    return 2 * (width + height)\n\n\ndef area_triangle(";

fn assert_speculation_changes_nothing(path: &Path) {
    let mut engine = load(path);
    let prompt = engine.tokenizer().encode(REPEATING).unwrap();
    let run = |engine: &mut Engine, speculative: bool| {
        // Start from an empty cache each time.
        engine.prompt_logits(&prompt[..1]).unwrap();
        let request = GenerationRequest { speculative, ..GenerationRequest::new(prompt.clone(), 48, vec![]) };
        engine.generate(&request).unwrap()
    };
    let plain = run(&mut engine, false);
    // Passes priced so that guessing always pays: this checks the output,
    // whatever the machine's speed makes the engine choose.
    engine.set_speculation_stats(SpeculationStats::known(1.0, 0.0));
    let fast = run(&mut engine, true);
    assert_eq!(plain.drafted_tokens, 0);
    assert!(fast.accepted_tokens > 0, "some guesses are right on repeating code ({} drafted)", fast.drafted_tokens);
    assert_eq!(fast.tokens, plain.tokens, "speculation changes nothing in greedy output");
    assert_eq!(fast.text, plain.text);
    assert_eq!(fast.stop_reason, plain.stop_reason);
    // The cache holds what it computed, guesses included: reusing it is exact too.
    let again = engine.generate(&GenerationRequest::new(prompt.clone(), 48, vec![])).unwrap();
    assert_eq!(again.reused_tokens, prompt.len() - 1);
    assert_eq!(again.tokens, plain.tokens);
}

#[test]
fn speculative_decoding_gives_the_same_tokens_on_smollm2() {
    assert_speculation_changes_nothing(&support::smollm2());
}

#[test]
fn speculative_decoding_gives_the_same_tokens_on_qwen_coder() {
    assert_speculation_changes_nothing(&support::qwen());
}
