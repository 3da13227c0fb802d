//! The transformer forward pass for the `llama` and `qwen2` GGUF architectures
//! on candle, reading keys and values from the project's own [`KvCache`].
//!
//! Both architectures are pre-norm decoders with RMSNorm, rotary position
//! embeddings, grouped-query attention and a SwiGLU feed-forward. They differ
//! in two places, both read from the file: Qwen2 has biases on the q/k/v
//! projections, and it rotates the two halves of each head (NeoX order) where
//! llama.cpp's `llama` rotates adjacent pairs.
//!
//! Grouped-query attention is computed without repeating keys and values: the
//! query heads that share a key/value head are stacked into one matrix product.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::gguf::GgufFile;
use super::kv_cache::KvCache;
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

struct Layer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    wo: QMatMul,
    ffn_norm: Tensor,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
}

/// The resident network: weights (quantized as stored) and rotary tables.
pub struct Transformer {
    hp: Hyperparams,
    embeddings: QMatMul,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Quantization types candle has CPU kernels for.
fn supported_dtype(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::Q8_1 | GgmlDType::Q8K)
}

impl Transformer {
    /// Loads every tensor, reporting progress as a fraction in `0..=1`.
    /// `max_context` bounds the rotary tables (and so the usable window).
    pub fn load(file: &mut GgufFile, max_context: usize, device: &Device, progress: &mut dyn FnMut(f32)) -> Result<Self, EngineError> {
        let hp = Hyperparams::from_gguf(file)?;
        for name in file.tensor_names().map(str::to_string).collect::<Vec<_>>() {
            if let Some(dtype) = file.tensor_dtype(&name) {
                if !supported_dtype(dtype) {
                    return Err(EngineError::UnsupportedQuantization {
                        path: file.path().to_path_buf(),
                        tensor: name,
                        dtype: format!("{dtype:?}"),
                    });
                }
            }
        }
        let embeddings = Arc::new(file.tensor("token_embd.weight", device)?);
        let (rows, width) = embeddings.shape().dims2()?;
        if width != hp.n_embd || rows < hp.vocab_size.min(rows) {
            return Err(EngineError::Corrupt {
                path: file.path().to_path_buf(),
                reason: format!("token_embd.weight is {rows}x{width}, expected width {}", hp.n_embd),
            });
        }
        let output = if file.has_tensor("output.weight") {
            QMatMul::from_qtensor(file.tensor("output.weight", device)?)?
        } else {
            QMatMul::from_arc(embeddings.clone())?
        };
        let norm = dense(file, "output_norm.weight", device)?;
        let mut layers = Vec::with_capacity(hp.n_layers);
        for i in 0..hp.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            let mut matmul = |s: &str| -> Result<QMatMul, EngineError> { Ok(QMatMul::from_qtensor(file.tensor(&p(s), device)?)?) };
            let wq = matmul("attn_q.weight")?;
            let wk = matmul("attn_k.weight")?;
            let wv = matmul("attn_v.weight")?;
            let wo = matmul("attn_output.weight")?;
            let w_gate = matmul("ffn_gate.weight")?;
            let w_up = matmul("ffn_up.weight")?;
            let w_down = matmul("ffn_down.weight")?;
            let bias = |file: &mut GgufFile, s: &str| -> Result<Option<Tensor>, EngineError> {
                if file.has_tensor(&p(s)) {
                    Ok(Some(dense(file, &p(s), device)?))
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: dense(file, &p("attn_norm.weight"), device)?,
                bq: bias(file, "attn_q.bias")?,
                bk: bias(file, "attn_k.bias")?,
                bv: bias(file, "attn_v.bias")?,
                ffn_norm: dense(file, &p("ffn_norm.weight"), device)?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
            progress((i + 1) as f32 / hp.n_layers as f32);
        }
        let freq_factors = if file.has_tensor("rope_freqs.weight") {
            Some(dense(file, "rope_freqs.weight", device)?.to_vec1::<f32>()?)
        } else {
            None
        };
        let (cos, sin) = rotary_tables(&hp, max_context, freq_factors.as_deref(), device)?;
        Ok(Self { hp, embeddings: QMatMul::from_arc(embeddings)?, layers, norm, output, cos, sin, device: device.clone() })
    }

    /// The network's shape.
    pub fn hyperparams(&self) -> &Hyperparams {
        &self.hp
    }

    /// Positions the rotary tables cover: the largest usable context.
    pub fn max_context(&self) -> usize {
        self.cos.dims()[0]
    }

    /// A KV cache sized for this network and `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache, EngineError> {
        KvCache::new(self.hp.n_layers, self.hp.n_kv_heads, self.hp.head_dim, capacity.min(self.max_context()), &self.device)
    }

    /// Runs `tokens` after what `cache` holds, appends their keys and values,
    /// and returns the logits of the last token (`[vocab]`).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, EngineError> {
        let hidden = self.forward_hidden(tokens, cache)?;
        let seq = tokens.len();
        let last = hidden.narrow(0, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.hp.rms_eps)?;
        Ok(self.output.forward(&last)?.squeeze(0)?)
    }

    fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.hp.vocab_size) {
            return Err(EngineError::Tokenizer(format!("token id {bad} is outside the model's vocabulary")));
        }
        let pos = cache.len();
        let seq = tokens.len();
        if pos + seq > cache.capacity() {
            return Err(EngineError::ContextOverflow { prompt: pos + seq, max_new: 0, context: cache.capacity() });
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embeddings.embedding(&ids)?;
        let mask = if seq > 1 { Some(causal_mask(seq, pos, &self.device)?) } else { None };
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.hp.rms_eps)?;
            let attn = self.attention(index, layer, &h, cache, mask.as_ref(), &cos, &sin)?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.hp.rms_eps)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(gate * up)?)?)?;
        }
        cache.commit(tokens);
        Ok(x)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        index: usize,
        layer: &Layer,
        h: &Tensor,
        cache: &mut KvCache,
        mask: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor, EngineError> {
        let hp = &self.hp;
        let seq = h.dim(0)?;
        let project = |w: &QMatMul, b: &Option<Tensor>| -> Result<Tensor, EngineError> {
            let y = w.forward(h)?;
            Ok(match b {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            })
        };
        // [seq, heads*dim] -> [1, heads, seq, dim], the layout the rope kernels take.
        let heads = |t: Tensor, n: usize| -> Result<Tensor, EngineError> {
            Ok(t.reshape((1, seq, n, hp.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(project(&layer.wq, &layer.bq)?, hp.n_heads)?;
        let k = heads(project(&layer.wk, &layer.bk)?, hp.n_kv_heads)?;
        let v = heads(project(&layer.wv, &layer.bv)?, hp.n_kv_heads)?;
        let (q, k) = match hp.family {
            ModelFamily::Qwen2 => (candle_nn::rotary_emb::rope(&q, cos, sin)?, candle_nn::rotary_emb::rope(&k, cos, sin)?),
            ModelFamily::Llama => (candle_nn::rotary_emb::rope_i(&q, cos, sin)?, candle_nn::rotary_emb::rope_i(&k, cos, sin)?),
        };
        let (keys, values) = cache.append(index, &k.squeeze(0)?, &v.squeeze(0)?)?;
        let total = keys.dim(1)?;
        let group = hp.n_heads / hp.n_kv_heads;
        // Query heads sharing a key/value head are adjacent: stack them.
        let q = q.reshape((hp.n_kv_heads, group * seq, hp.head_dim))?;
        let scale = 1.0 / (hp.head_dim as f64).sqrt();
        let scores = (q.matmul(&keys.t()?)? * scale)?;
        let scores = match mask {
            Some(mask) => scores
                .reshape((hp.n_kv_heads, group, seq, total))?
                .broadcast_add(mask)?
                .reshape((hp.n_kv_heads, group * seq, total))?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = weights.matmul(&values)?;
        let y = y
            .reshape((hp.n_heads, seq, hp.head_dim))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((seq, hp.n_embd))?;
        Ok(layer.wo.forward(&y)?)
    }
}

fn dense(file: &mut GgufFile, name: &str, device: &Device) -> Result<Tensor, EngineError> {
    let q: QTensor = file.tensor(name, device)?;
    Ok(q.dequantize(device)?.to_dtype(DType::F32)?)
}

/// Additive causal mask for `seq` new positions after `past` cached ones.
fn causal_mask(seq: usize, past: usize, device: &Device) -> Result<Tensor, EngineError> {
    let total = past + seq;
    let mut data = vec![0f32; seq * total];
    for i in 0..seq {
        for j in (past + i + 1)..total {
            data[i * total + j] = f32::NEG_INFINITY;
        }
    }
    Ok(Tensor::from_vec(data, (seq, total), device)?)
}

fn rotary_tables(hp: &Hyperparams, positions: usize, freq_factors: Option<&[f32]>, device: &Device) -> Result<(Tensor, Tensor), EngineError> {
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
    let mut angles = Vec::with_capacity(positions * half);
    for p in 0..positions {
        let p = p as f32 / hp.rope_linear_factor;
        angles.extend(inv_freq.iter().map(|f| p * f));
    }
    let angles = Tensor::from_vec(angles, (positions, half), device)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Index of the largest logit: greedy decoding's choice.
pub fn argmax(logits: &Tensor) -> Result<u32, EngineError> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
