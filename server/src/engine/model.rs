//! The transformer forward pass for the `llama` and `qwen2` GGUF architectures
//! on the CPU, reading keys and values from the project's own [`KvCache`]
//! (its CPU-memory store). The same network on a GPU is
//! [`super::device_model`]; the hyper-parameters and rotary tables here serve
//! both.
//!
//! Both architectures are pre-norm decoders with RMSNorm, rotary position
//! embeddings, grouped-query attention and a SwiGLU feed-forward. They differ
//! in two places, both read from the file: Qwen2 has biases on the q/k/v
//! projections, and it rotates the two halves of each head (NeoX order) where
//! llama.cpp's `llama` rotates adjacent pairs.
//!
//! The pass runs on the CPU over plain `f32` buffers: the weight products are
//! cria's own quantized kernels ([`QuantMatrix`]), everything else is in
//! [`super::ops`]. Candle reads the file and multiplies the tensor types that
//! have no kernel here. Every step computes a token's row from that row alone,
//! so logits do not depend on how many tokens run together: a batch of drafted
//! tokens (speculative decoding) gets exactly the logits that decoding them one
//! by one would. Work is spread over the current rayon pool.
//!
//! Grouped-query attention reads each key/value head once for the query heads
//! that share it (no repeated keys and values).

use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::gguf::GgufFile;
use super::kv_cache::{HostKv, KvCache};
use super::ops;
use super::quant::{QuantMatrix, Scratch};
use super::EngineError;

/// The architectures whose forward pass this module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// `llama`: Llama 2, Code Llama, DeepSeek-Coder, SmolLM2.
    Llama,
    /// `qwen2`: Qwen2 and Qwen2.5(-Coder).
    Qwen2,
}

impl ModelFamily {
    /// The name GGUF uses in `general.architecture` and as key prefix.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }
}

/// The shape of the network, read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Hyperparams {
    /// Which forward pass to run.
    pub family: ModelFamily,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (fewer than query heads with grouped-query attention).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Rotary base frequency.
    pub rope_theta: f32,
    /// Linear rope scaling: positions are divided by this (1 = none).
    pub rope_linear_factor: f32,
    /// The context length the model was trained for.
    pub trained_context: usize,
    /// Rows of the embedding table.
    pub vocab_size: usize,
}

impl Hyperparams {
    /// Reads and checks the hyper-parameters of a supported architecture.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, EngineError> {
        let arch = file.string("general.architecture")?;
        let family = match arch {
            "llama" => ModelFamily::Llama,
            "qwen2" => ModelFamily::Qwen2,
            other => {
                return Err(EngineError::UnsupportedArchitecture {
                    path: file.path().to_path_buf(),
                    architecture: other.to_string(),
                })
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let n_embd = file.usize(&key("embedding_length"))?;
        let n_heads = file.usize(&key("attention.head_count"))?;
        let n_kv_heads = file.opt_usize(&key("attention.head_count_kv")).unwrap_or(n_heads);
        let bad = |k: &str, reason: &str| EngineError::Metadata {
            path: file.path().to_path_buf(),
            key: key(k),
            reason: reason.to_string(),
        };
        if n_heads == 0 || n_embd % n_heads != 0 {
            return Err(bad("attention.head_count", "must divide embedding_length"));
        }
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(bad("attention.head_count_kv", "must divide head_count"));
        }
        let head_dim = n_embd / n_heads;
        if let Some(rope_dim) = file.opt_usize(&key("rope.dimension_count")) {
            if rope_dim != head_dim {
                return Err(bad("rope.dimension_count", "partial rotary embeddings are not supported"));
            }
        }
        let rope_linear_factor = match file.opt_string(&key("rope.scaling.type")) {
            Some("linear") => file.opt_f32(&key("rope.scaling.factor")).unwrap_or(1.0),
            Some("none") | None => file.opt_f32(&key("rope.scale_linear")).unwrap_or(1.0),
            Some(other) => {
                tracing::warn!(scaling = other, "rope scaling type not supported; using unscaled positions");
                1.0
            }
        };
        let vocab_size = file
            .opt_usize(&key("vocab_size"))
            .or_else(|| file.strings("tokenizer.ggml.tokens").ok().map(|t| t.len()))
            .ok_or_else(|| bad("vocab_size", "missing, and no tokenizer vocabulary"))?;
        Ok(Self {
            family,
            n_layers: file.usize(&key("block_count"))?,
            n_embd,
            n_heads,
            n_kv_heads,
            head_dim,
            rms_eps: file.opt_f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            rope_theta: file.opt_f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_linear_factor: if rope_linear_factor > 0.0 { rope_linear_factor } else { 1.0 },
            trained_context: file.opt_usize(&key("context_length")).unwrap_or(4096),
            vocab_size,
        })
    }
}

/// The tensors every block must have.
const BLOCK_TENSORS: [&str; 9] = [
    "attn_norm.weight",
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_output.weight",
    "ffn_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
];

impl Hyperparams {
    /// Checks the shape against the file's tensor directory before anything
    /// is sized from it: as many blocks as `block_count` says, each with its
    /// tensors, and an embedding table as wide as `embedding_length`. The
    /// header check already bounded every tensor by the file's size, so
    /// what is sized from these numbers afterwards is bounded too.
    pub fn check_tensors(&self, file: &GgufFile) -> Result<(), EngineError> {
        let arch = self.family.gguf_name();
        let bad = |key: &str, reason: String| EngineError::Metadata { path: file.path().to_path_buf(), key: format!("{arch}.{key}"), reason };
        // Each block has several tensors, so a count past the directory's
        // size is refused before a name is even formatted.
        if self.n_layers == 0 || self.n_layers > file.tensor_count() {
            return Err(bad("block_count", format!("is {}, but the file holds {} tensors", self.n_layers, file.tensor_count())));
        }
        for i in 0..self.n_layers {
            if let Some(missing) = BLOCK_TENSORS.iter().map(|t| format!("blk.{i}.{t}")).find(|name| !file.has_tensor(name)) {
                return Err(bad("block_count", format!("is {}, but tensor `{missing}` is missing", self.n_layers)));
            }
        }
        match file.tensor_dims("token_embd.weight") {
            Some(&[_, width]) if width == self.n_embd => Ok(()),
            Some(dims) => Err(bad("embedding_length", format!("is {}, but token_embd.weight is {dims:?}", self.n_embd))),
            None => Err(EngineError::Corrupt { path: file.path().to_path_buf(), reason: "tensor `token_embd.weight` is missing".into() }),
        }
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v projections stacked: one product per layer instead of three.
    qkv: QuantMatrix,
    /// Their biases (qwen2), zeros where a projection has none.
    qkv_bias: Option<Vec<f32>>,
    wo: QuantMatrix,
    ffn_norm: Vec<f32>,
    /// Gate and up projections stacked.
    gate_up: QuantMatrix,
    down: QuantMatrix,
}

/// Buffers reused across forward passes (sized for the largest batch seen).
#[derive(Default)]
struct Workspace {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    scratch: Scratch,
}

/// The resident network: weights (quantized as stored) and rotary tables.
pub struct Transformer {
    hp: Hyperparams,
    embeddings: Arc<QuantMatrix>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: Arc<QuantMatrix>,
    /// Rotary cosines and sines, `[positions, head_dim / 2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    device: Device,
    work: Mutex<Workspace>,
}

/// Quantization types candle has kernels for (the CPU's, and the device
/// forward pass's on every device).
pub(super) fn supported_dtype(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::Q8_1 | GgmlDType::Q8K)
}

impl Transformer {
    /// Loads every tensor, reporting progress as a fraction in `0..=1`.
    /// `max_context` bounds the rotary tables (and so the usable window).
    pub fn load(file: &mut GgufFile, max_context: usize, device: &Device, progress: &mut dyn FnMut(f32)) -> Result<Self, EngineError> {
        let hp = Hyperparams::from_gguf(file)?;
        hp.check_tensors(file)?;
        if !device.is_cpu() {
            return Err(EngineError::Compute(candle_core::Error::Msg(
                "cria's own forward pass runs on the CPU; other devices take the device forward pass".into(),
            )));
        }
        check_dtypes(file)?;
        let corrupt = |file: &GgufFile, reason: String| EngineError::Corrupt { path: file.path().to_path_buf(), reason };
        let embeddings = file.tensor("token_embd.weight", device)?;
        let (rows, width) = embeddings.shape().dims2()?;
        if width != hp.n_embd || rows < hp.vocab_size.min(rows) {
            return Err(corrupt(file, format!("token_embd.weight is {rows}x{width}, expected width {}", hp.n_embd)));
        }
        // Untied embeddings are only looked up: no need to repack them.
        let (embeddings, output) = if file.has_tensor("output.weight") {
            (Arc::new(QuantMatrix::for_lookup(embeddings)?), Arc::new(QuantMatrix::new(file.tensor("output.weight", device)?)?))
        } else {
            let tied = Arc::new(QuantMatrix::new(embeddings)?);
            (tied.clone(), tied)
        };
        if output.cols() != hp.n_embd {
            return Err(corrupt(file, format!("output.weight has width {}, expected {}", output.cols(), hp.n_embd)));
        }
        let norm = dense(file, "output_norm.weight", hp.n_embd, device)?;
        let (q_width, kv_width) = (hp.n_heads * hp.head_dim, hp.n_kv_heads * hp.head_dim);
        let mut layers = Vec::with_capacity(hp.n_layers);
        for i in 0..hp.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            // `rows: None` takes the tensor's own (the feed-forward width).
            let mut matrix = |s: &str, rows: Option<usize>, cols: usize| -> Result<QuantMatrix, EngineError> {
                let m = QuantMatrix::new(file.tensor(&p(s), device)?)?;
                if rows.is_some_and(|rows| rows != m.rows()) || m.cols() != cols {
                    return Err(EngineError::Corrupt {
                        path: file.path().to_path_buf(),
                        reason: format!("{} is {}x{}, expected {}x{cols}", p(s), m.rows(), m.cols(), rows.map_or("?".into(), |r| r.to_string())),
                    });
                }
                Ok(m)
            };
            let wq = matrix("attn_q.weight", Some(q_width), hp.n_embd)?;
            let wk = matrix("attn_k.weight", Some(kv_width), hp.n_embd)?;
            let wv = matrix("attn_v.weight", Some(kv_width), hp.n_embd)?;
            let wo = matrix("attn_output.weight", Some(hp.n_embd), q_width)?;
            let w_gate = matrix("ffn_gate.weight", None, hp.n_embd)?;
            let n_ff = w_gate.rows();
            let w_up = matrix("ffn_up.weight", Some(n_ff), hp.n_embd)?;
            let down = matrix("ffn_down.weight", Some(hp.n_embd), n_ff)?;
            let mut biases = Vec::new();
            let mut any_bias = false;
            for (s, width) in [("attn_q.bias", q_width), ("attn_k.bias", kv_width), ("attn_v.bias", kv_width)] {
                if file.has_tensor(&p(s)) {
                    biases.extend(dense(file, &p(s), width, device)?);
                    any_bias = true;
                } else {
                    biases.extend(std::iter::repeat_n(0.0, width));
                }
            }
            layers.push(Layer {
                attn_norm: dense(file, &p("attn_norm.weight"), hp.n_embd, device)?,
                qkv: QuantMatrix::stack(vec![wq, wk, wv])?,
                qkv_bias: any_bias.then_some(biases),
                wo,
                ffn_norm: dense(file, &p("ffn_norm.weight"), hp.n_embd, device)?,
                gate_up: QuantMatrix::stack(vec![w_gate, w_up])?,
                down,
            });
            progress((i + 1) as f32 / hp.n_layers as f32);
        }
        let freq_factors = if file.has_tensor("rope_freqs.weight") {
            let q = file.tensor("rope_freqs.weight", device)?;
            Some(q.dequantize(device)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        let (cos, sin) = rotary_tables(&hp, max_context, freq_factors.as_deref());
        Ok(Self { hp, embeddings, layers, norm, output, cos, sin, device: device.clone(), work: Mutex::new(Workspace::default()) })
    }

    /// The network's shape.
    pub fn hyperparams(&self) -> &Hyperparams {
        &self.hp
    }

    /// Positions the rotary tables cover: the largest usable context.
    pub fn max_context(&self) -> usize {
        self.cos.len() / (self.hp.head_dim / 2).max(1)
    }

    /// Width of a row of logits.
    pub fn vocab(&self) -> usize {
        self.output.rows()
    }

    /// Whether a token's logits are the same bits whatever else is in its
    /// batch: true unless some weight type went to candle's products.
    pub fn batch_invariant(&self) -> bool {
        let matrices = self.layers.iter().flat_map(|l| [&l.qkv, &l.wo, &l.gate_up, &l.down]);
        matrices.chain([&*self.output]).all(|m| !m.has_fallback())
    }

    /// A KV cache in CPU memory sized for this network and `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache, EngineError> {
        KvCache::on_host(self.hp.n_layers, self.hp.n_kv_heads, self.hp.head_dim, capacity.min(self.max_context()))
    }

    /// Runs `tokens` after what `cache` holds, appends their keys and values,
    /// and returns the logits of the last token (`[vocab]`).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, EngineError> {
        Ok(self.forward_unless(tokens, cache, &|_| false)?.expect("never stopped"))
    }

    /// Like [`Self::forward`], but gives up between two layers once
    /// `give_up` says so, given the share of layers done, leaving `cache` as
    /// it was (`None`): a background prefill chunk can give way to a
    /// keystroke within a layer's time, not a chunk's.
    pub fn forward_unless(&self, tokens: &[u32], cache: &mut KvCache, give_up: &dyn Fn(f32) -> bool) -> Result<Option<Tensor>, EngineError> {
        let Some(logits) = self.run(tokens, cache, false, give_up)? else {
            return Ok(None);
        };
        let vocab = logits.len();
        Ok(Some(Tensor::from_vec(logits, vocab, &self.device)?))
    }

    /// Like [`Self::forward`], but returns the logits of every token,
    /// `[tokens.len() * vocab]` row by row: what verifying drafted tokens needs.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, EngineError> {
        Ok(self.run(tokens, cache, true, &|_| false)?.expect("never stopped"))
    }

    fn run(&self, tokens: &[u32], cache: &mut KvCache, all_logits: bool, give_up: &dyn Fn(f32) -> bool) -> Result<Option<Vec<f32>>, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.hp.vocab_size.min(self.embeddings.rows())) {
            return Err(EngineError::Tokenizer(format!("token id {bad} is outside the model's vocabulary")));
        }
        let pos = cache.len();
        let m = tokens.len();
        if pos + m > cache.capacity() || pos + m > self.max_context() {
            return Err(EngineError::ContextOverflow { prompt: pos + m, max_new: 0, context: cache.capacity() });
        }
        let kv = cache.host_mut()?;
        // A panic elsewhere cannot leave the buffers inconsistent: they are
        // fully rewritten before use.
        let mut guard = self.work.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let ws = &mut *guard;
        let d = self.hp.n_embd;
        ws.x.resize(m * d, 0.0);
        for (row, &t) in ws.x.chunks_exact_mut(d).zip(tokens) {
            self.embeddings.dequantize_row(t as usize, row)?;
        }
        for (index, layer) in self.layers.iter().enumerate() {
            if give_up(index as f32 / self.layers.len() as f32) {
                // Keys and values written past the cache's length are
                // overwritten by the next run: nothing to undo.
                return Ok(None);
            }
            self.attention_block(index, layer, pos, m, kv, ws)?;
            self.feed_forward_block(layer, m, ws)?;
        }
        cache.commit(tokens);
        let first = if all_logits { 0 } else { m - 1 };
        let rows = m - first;
        ws.h.resize(rows * d, 0.0);
        for (x, h) in ws.x[first * d..].chunks_exact(d).zip(ws.h.chunks_exact_mut(d)) {
            ops::rms_norm(x, &self.norm, self.hp.rms_eps, h);
        }
        let mut logits = vec![0f32; rows * self.output.rows()];
        self.output.matmul(&ws.h, rows, &mut logits, &mut ws.scratch)?;
        Ok(Some(logits))
    }

    fn attention_block(&self, index: usize, layer: &Layer, pos: usize, m: usize, cache: &mut HostKv, ws: &mut Workspace) -> Result<(), EngineError> {
        let hp = &self.hp;
        let (d, hd) = (hp.n_embd, hp.head_dim);
        let (q_width, kv_width) = (hp.n_heads * hd, hp.n_kv_heads * hd);
        let width = q_width + 2 * kv_width;
        norm_rows(&ws.x, &layer.attn_norm, hp.rms_eps, d, &mut ws.h);
        ws.qkv.resize(m * width, 0.0);
        layer.qkv.matmul(&ws.h[..m * d], m, &mut ws.qkv, &mut ws.scratch)?;
        let halves = hp.family == ModelFamily::Qwen2;
        let half = hd / 2;
        for (i, row) in ws.qkv.chunks_exact_mut(width).enumerate() {
            if let Some(bias) = &layer.qkv_bias {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
            let p = pos + i;
            let (cos, sin) = (&self.cos[p * half..(p + 1) * half], &self.sin[p * half..(p + 1) * half]);
            for head in row[..q_width + kv_width].chunks_exact_mut(hd) {
                ops::rope(head, cos, sin, halves);
            }
            let (k, v) = row[q_width..].split_at(kv_width);
            for h in 0..hp.n_kv_heads {
                cache.write(index, h, p, &k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd])?;
            }
        }
        let (keys, values) = cache.layer(index);
        let capacity = cache.capacity();
        let group = hp.n_heads / hp.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        ws.attn.resize(m * q_width, 0.0);
        let qkv = &ws.qkv;
        // One task per (token, query head); query head h reads key/value head h / group.
        ws.attn.par_chunks_mut(hd).enumerate().for_each_init(Vec::new, |scores, (task, out)| {
            let (i, h) = (task / hp.n_heads, task % hp.n_heads);
            let q = &qkv[i * width + h * hd..i * width + (h + 1) * hd];
            let kv = h / group;
            let span = kv * capacity * hd..(kv + 1) * capacity * hd;
            ops::attend(q, &keys[span.clone()], capacity, &values[span], pos + i + 1, scale, scores, out);
        });
        ws.proj.resize(m * d, 0.0);
        layer.wo.matmul(&ws.attn, m, &mut ws.proj, &mut ws.scratch)?;
        ws.x.iter_mut().zip(&ws.proj).for_each(|(x, p)| *x += p);
        Ok(())
    }

    fn feed_forward_block(&self, layer: &Layer, m: usize, ws: &mut Workspace) -> Result<(), EngineError> {
        let d = self.hp.n_embd;
        let n_ff = layer.down.cols();
        norm_rows(&ws.x, &layer.ffn_norm, self.hp.rms_eps, d, &mut ws.h);
        ws.gate_up.resize(m * 2 * n_ff, 0.0);
        layer.gate_up.matmul(&ws.h[..m * d], m, &mut ws.gate_up, &mut ws.scratch)?;
        ws.act.resize(m * n_ff, 0.0);
        let gate_up = &ws.gate_up;
        let gated = |(row, act): (usize, &mut [f32])| {
            let (gate, up) = gate_up[row * 2 * n_ff..(row + 1) * 2 * n_ff].split_at(n_ff);
            act.copy_from_slice(gate);
            ops::silu_mul(act, up);
        };
        if m > 1 {
            ws.act.par_chunks_mut(n_ff).enumerate().for_each(gated);
        } else {
            ws.act.chunks_mut(n_ff).enumerate().for_each(gated);
        }
        ws.proj.resize(m * d, 0.0);
        layer.down.matmul(&ws.act, m, &mut ws.proj, &mut ws.scratch)?;
        ws.x.iter_mut().zip(&ws.proj).for_each(|(x, p)| *x += p);
        Ok(())
    }
}

/// RMSNorm of every `d`-wide row of `x` into `out` (resized to match).
fn norm_rows(x: &[f32], weight: &[f32], eps: f32, d: usize, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    for (x, h) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        ops::rms_norm(x, weight, eps, h);
    }
}

/// Refuses a file with a tensor type no kernel here multiplies.
pub(super) fn check_dtypes(file: &GgufFile) -> Result<(), EngineError> {
    for name in file.tensor_names() {
        if let Some(dtype) = file.tensor_dtype(name) {
            if !supported_dtype(dtype) {
                return Err(EngineError::UnsupportedQuantization {
                    path: file.path().to_path_buf(),
                    tensor: name.to_string(),
                    dtype: format!("{dtype:?}"),
                });
            }
        }
    }
    Ok(())
}

/// A small f32 tensor (norm weights, biases) of exactly `len` values.
fn dense(file: &mut GgufFile, name: &str, len: usize, device: &Device) -> Result<Vec<f32>, EngineError> {
    let q: QTensor = file.tensor(name, device)?;
    let v = q.dequantize(device)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if v.len() != len {
        return Err(EngineError::Corrupt { path: file.path().to_path_buf(), reason: format!("{name} has {} values, expected {len}", v.len()) });
    }
    Ok(v)
}

/// Rotary cosines and sines for positions `0..positions`, `[positions,
/// head_dim / 2]` each: shared by both forward passes.
pub(super) fn rotary_tables(hp: &Hyperparams, positions: usize, freq_factors: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let half = hp.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let f = 1.0 / hp.rope_theta.powf((2 * i) as f32 / hp.head_dim as f32);
            match freq_factors.and_then(|ff| ff.get(i)) {
                Some(factor) if *factor > 0.0 => f / factor,
                _ => f,
            }
        })
        .collect();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        let p = p as f32 / hp.rope_linear_factor;
        for f in &inv_freq {
            cos.push((p * f).cos());
            sin.push((p * f).sin());
        }
    }
    (cos, sin)
}

/// Index of the largest logit: greedy decoding's choice.
pub fn argmax(logits: &Tensor) -> Result<u32, EngineError> {
    Ok(super::sampling::greedy(&logits.flatten_all()?.to_vec1::<f32>()?))
}
