//! A tiny GGUF shaped like Code Llama, for proving the Code Llama path without
//! its weights (which cannot be fetched here).
//!
//! Vocabulary: llama.cpp's `ggml-vocab-llama-spm.gguf` (Llama 2's SentencePiece
//! vocabulary, which Code Llama extends), grown to 32016 entries with the four
//! infilling tokens at 32007–32010 as Code Llama has them. Weights: two small
//! layers with grouped-query attention, seeded random, with the layers scaled
//! down so the output is dominated by the last token's embedding. The output
//! matrix then encodes a chain of "next tokens" (`links`): after token `a` the
//! greedy choice is `b`. That makes generation deterministic and checkable
//! (including the stop on `▁<EOT>`) while every part of the real forward pass,
//! tokenizer and prompt layout runs.
#![allow(dead_code)]

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Code Llama's infilling tokens.
pub const PRE: u32 = 32007;
/// Code Llama's suffix marker.
pub const SUF: u32 = 32008;
/// Code Llama's middle marker.
pub const MID: u32 = 32009;
/// Code Llama's end of infilling.
pub const EOT: u32 = 32010;
const VOCAB: usize = 32016;
const EMBD: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FF: usize = 128;
const LAYERS: usize = 2;

fn gaussian(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random::<f32>().max(1e-7);
            let u2: f32 = rng.random::<f32>();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos() * scale
        })
        .collect()
}

fn q8(data: Vec<f32>, rows: usize, cols: usize) -> QTensor {
    let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::Q8_0).unwrap()
}

fn f32_tensor(data: Vec<f32>) -> QTensor {
    let n = data.len();
    let t = Tensor::from_vec(data, n, &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::F32).unwrap()
}

/// Writes the tiny model to `dest`, with greedy successors given by `links`
/// (pairs `(after, next)`).
pub fn write(vocab_gguf: &Path, dest: &Path, links: &[(u32, u32)]) {
    let mut file = std::fs::File::open(vocab_gguf).unwrap();
    let vocab = gguf_file::Content::read(&mut file).unwrap();
    let md = |k: &str| vocab.metadata.get(k).unwrap_or_else(|| panic!("{k} in vocab")).clone();
    let Value::Array(mut tokens) = md("tokenizer.ggml.tokens") else { panic!("tokens") };
    let Value::Array(mut scores) = md("tokenizer.ggml.scores") else { panic!("scores") };
    let Value::Array(mut types) = md("tokenizer.ggml.token_type") else { panic!("types") };
    assert_eq!(tokens.len(), 32000);
    for id in 32000..VOCAB as u32 {
        let (text, kind) = match id {
            PRE => ("\u{2581}<PRE>".to_string(), 3),
            SUF => ("\u{2581}<SUF>".to_string(), 3),
            MID => ("\u{2581}<MID>".to_string(), 3),
            EOT => ("\u{2581}<EOT>".to_string(), 3),
            other => (format!("<codellama_reserved_{other}>"), 5),
        };
        tokens.push(Value::String(text));
        scores.push(Value::F32(0.0));
        types.push(Value::I32(kind));
    }

    let mut rng = StdRng::seed_from_u64(20231);
    let embeddings = gaussian(&mut rng, VOCAB * EMBD, 1.0);
    let mut output = gaussian(&mut rng, VOCAB * EMBD, 0.01);
    for &(after, next) in links {
        let e = &embeddings[after as usize * EMBD..(after as usize + 1) * EMBD];
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        for (o, x) in output[next as usize * EMBD..(next as usize + 1) * EMBD].iter_mut().zip(e) {
            *o += x / norm;
        }
    }
    let head_dim = EMBD / HEADS;
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), q8(embeddings, VOCAB, EMBD)),
        ("output.weight".into(), q8(output, VOCAB, EMBD)),
        ("output_norm.weight".into(), f32_tensor(vec![1.0; EMBD])),
    ];
    for layer in 0..LAYERS {
        let mut add = |name: &str, rows: usize, cols: usize| {
            let data = gaussian(&mut rng, rows * cols, 0.001);
            tensors.push((format!("blk.{layer}.{name}.weight"), q8(data, rows, cols)));
        };
        add("attn_q", EMBD, EMBD);
        add("attn_k", KV_HEADS * head_dim, EMBD);
        add("attn_v", KV_HEADS * head_dim, EMBD);
        add("attn_output", EMBD, EMBD);
        add("ffn_gate", FF, EMBD);
        add("ffn_up", FF, EMBD);
        add("ffn_down", EMBD, FF);
        tensors.push((format!("blk.{layer}.attn_norm.weight"), f32_tensor(vec![1.0; EMBD])));
        tensors.push((format!("blk.{layer}.ffn_norm.weight"), f32_tensor(vec![1.0; EMBD])));
    }

    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("tiny-codellama-shaped".into())),
        ("llama.context_length", Value::U32(16384)),
        ("llama.embedding_length", Value::U32(EMBD as u32)),
        ("llama.block_count", Value::U32(LAYERS as u32)),
        ("llama.feed_forward_length", Value::U32(FF as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.rope.freq_base", Value::F32(1_000_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.scores", Value::Array(scores)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ];
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(dest).unwrap();
    gguf_file::write(&mut out, &metadata_refs, &tensor_refs).unwrap();
}
