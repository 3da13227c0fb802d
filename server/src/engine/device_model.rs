//! The transformer forward pass built only from candle tensor operations, so
//! that it runs on any candle device: a CUDA GPU (feature `cuda`), Apple's
//! Metal (feature `metal`), or the CPU, which is how it is tested on machines
//! without a GPU.
//!
//! It computes the same network as [`super::model::Transformer`] (the CPU
//! pass on cria's own kernels), from the same hyper-parameters and rotary
//! tables: RMSNorm (`candle_nn::ops::rms_norm`), rotary embeddings
//! (`candle_nn::rotary_emb`: adjacent pairs for `llama`, halves for `qwen2`),
//! grouped-query attention, SwiGLU, with the weights kept quantized as stored
//! on the device and multiplied by candle's `QMatMul`. Keys and values live on
//! the device too, in the cache's [`DeviceKv`] store, written in place.
//!
//! Grouped-query attention is computed without repeating keys and values: the
//! query heads that share a key/value head are stacked into one matrix
//! product against it.
//!
//! Unlike the CPU pass, nothing here promises that a token's logits are the
//! same bits whatever else is in its batch (candle picks different kernels
//! for one row and for many), so speculative decoding stays off on this path:
//! [`DeviceTransformer::batch_invariant`] is false.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use super::gguf::GgufFile;
use super::kv_cache::{DeviceKv, KvCache};
use super::model::{check_dtypes, rotary_tables, Hyperparams, ModelFamily};
use super::EngineError;

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

/// The resident network on a candle device: weights quantized as stored,
/// rotary tables, all in the device's memory.
pub struct DeviceTransformer {
    hp: Hyperparams,
    embeddings: QMatMul,
    /// Rows of the embedding table: token ids at or past it are refused.
    embedding_rows: usize,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    /// Rows of the output projection: the width of a row of logits.
    vocab: usize,
    /// Rotary cosines and sines, `[positions, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl DeviceTransformer {
    /// Loads every tensor onto `device`, reporting progress as a fraction in
    /// `0..=1`. `max_context` bounds the rotary tables (and so the usable
    /// window).
    pub fn load(file: &mut GgufFile, max_context: usize, device: &Device, progress: &mut dyn FnMut(f32)) -> Result<Self, EngineError> {
        let hp = Hyperparams::from_gguf(file)?;
        hp.check_tensors(file)?;
        check_dtypes(file)?;
        let embedding = Arc::new(file.tensor("token_embd.weight", device)?);
        let (embedding_rows, width) = embedding.shape().dims2()?;
        if width != hp.n_embd {
            return Err(corrupt(file, format!("token_embd.weight is {embedding_rows}x{width}, expected width {}", hp.n_embd)));
        }
        let embeddings = QMatMul::from_arc(embedding)?;
        let (output, vocab) = if file.has_tensor("output.weight") {
            let output = file.tensor("output.weight", device)?;
            let (rows, cols) = output.shape().dims2()?;
            if cols != hp.n_embd {
                return Err(corrupt(file, format!("output.weight has width {cols}, expected {}", hp.n_embd)));
            }
            (QMatMul::from_qtensor(output)?, rows)
        } else {
            // Tied: the quantized table is shared, not copied.
            (embeddings.clone(), embedding_rows)
        };
        let norm = dense(file, "output_norm.weight", hp.n_embd, device)?;
        let (q_width, kv_width) = (hp.n_heads * hp.head_dim, hp.n_kv_heads * hp.head_dim);
        let mut layers = Vec::with_capacity(hp.n_layers);
        for i in 0..hp.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            let wq = matrix(file, &p("attn_q.weight"), Some(q_width), hp.n_embd, device)?;
            let wk = matrix(file, &p("attn_k.weight"), Some(kv_width), hp.n_embd, device)?;
            let wv = matrix(file, &p("attn_v.weight"), Some(kv_width), hp.n_embd, device)?;
            let wo = matrix(file, &p("attn_output.weight"), Some(hp.n_embd), q_width, device)?;
            let (w_gate, n_ff) = matrix_rows(file, &p("ffn_gate.weight"), None, hp.n_embd, device)?;
            let w_up = matrix(file, &p("ffn_up.weight"), Some(n_ff), hp.n_embd, device)?;
            let w_down = matrix(file, &p("ffn_down.weight"), Some(hp.n_embd), n_ff, device)?;
            let mut bias = |s: &str, width: usize| -> Result<Option<Tensor>, EngineError> {
                if file.has_tensor(&p(s)) {
                    Ok(Some(dense(file, &p(s), width, device)?))
                } else {
                    Ok(None)
                }
            };
            let (bq, bk, bv) = (bias("attn_q.bias", q_width)?, bias("attn_k.bias", kv_width)?, bias("attn_v.bias", kv_width)?);
            layers.push(Layer {
                attn_norm: dense(file, &p("attn_norm.weight"), hp.n_embd, device)?,
                ffn_norm: dense(file, &p("ffn_norm.weight"), hp.n_embd, device)?,
                wq,
                wk,
                wv,
                bq,
                bk,
                bv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
            progress((i + 1) as f32 / hp.n_layers as f32);
        }
        let freq_factors = if file.has_tensor("rope_freqs.weight") {
            let q = file.tensor("rope_freqs.weight", &Device::Cpu)?;
            Some(q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        let (cos, sin) = rotary_tables(&hp, max_context, freq_factors.as_deref());
        let half = hp.head_dim / 2;
        let cos = Tensor::from_vec(cos, (max_context, half), device)?;
        let sin = Tensor::from_vec(sin, (max_context, half), device)?;
        Ok(Self { hp, embeddings, embedding_rows, layers, norm, output, vocab, cos, sin, device: device.clone() })
    }

    /// The network's shape.
    pub fn hyperparams(&self) -> &Hyperparams {
        &self.hp
    }

    /// Positions the rotary tables cover: the largest usable context.
    pub fn max_context(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Width of a row of logits.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The device the weights and caches live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Always false: candle's products may give a row different bits in a
    /// batch of many than alone, which speculative decoding cannot allow.
    pub fn batch_invariant(&self) -> bool {
        false
    }

    /// A KV cache on this network's device, sized for `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache, EngineError> {
        KvCache::on_device(self.hp.n_layers, self.hp.n_kv_heads, self.hp.head_dim, capacity.min(self.max_context()), &self.device)
    }

    /// Runs `tokens` after what `cache` holds, appends their keys and values,
    /// and returns the logits of the last token (`[vocab]`, on the device).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, EngineError> {
        let hidden = self.hidden(tokens, cache)?;
        let last = hidden.narrow(0, tokens.len() - 1, 1)?;
        Ok(self.logits(&last)?.squeeze(0)?)
    }

    /// Like [`Self::forward`], but returns the logits of every token,
    /// `[tokens.len() * vocab]` row by row, copied to the host.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, EngineError> {
        let hidden = self.hidden(tokens, cache)?;
        Ok(self.logits(&hidden)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The final norm and output projection of `[rows, n_embd]` hidden states.
    fn logits(&self, hidden: &Tensor) -> Result<Tensor, EngineError> {
        let normed = candle_nn::ops::rms_norm(hidden, &self.norm, self.hp.rms_eps)?;
        Ok(self.output.forward(&normed)?)
    }

    /// The residual stream after the last block, `[tokens.len(), n_embd]`.
    fn hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.hp.vocab_size.min(self.embedding_rows)) {
            return Err(EngineError::Tokenizer(format!("token id {bad} is outside the model's vocabulary")));
        }
        let pos = cache.len();
        let seq = tokens.len();
        if pos + seq > cache.capacity() || pos + seq > self.max_context() {
            return Err(EngineError::ContextOverflow { prompt: pos + seq, max_new: 0, context: cache.capacity() });
        }
        let kv = cache.device_mut()?;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embeddings.embedding(&ids)?;
        let mask = if seq > 1 { Some(causal_mask(seq, pos, &self.device)?) } else { None };
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let eps = self.hp.rms_eps;
        for (index, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let attn = self.attention(index, layer, &h, pos, kv, mask.as_ref(), (&cos, &sin))?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(gate * up)?)?)?;
        }
        cache.commit(tokens);
        Ok(x)
    }

    /// One block's attention for `seq` new rows `h` at position `pos`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        index: usize,
        layer: &Layer,
        h: &Tensor,
        pos: usize,
        kv: &mut DeviceKv,
        mask: Option<&Tensor>,
        (cos, sin): (&Tensor, &Tensor),
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
        // [seq, heads * dim] -> [1, heads, seq, dim], the layout the rope kernels take.
        let heads = |t: Tensor, n: usize| -> Result<Tensor, EngineError> {
            Ok(t.reshape((1, seq, n, hp.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(project(&layer.wq, &layer.bq)?, hp.n_heads)?;
        let k = heads(project(&layer.wk, &layer.bk)?, hp.n_kv_heads)?;
        let v = heads(project(&layer.wv, &layer.bv)?, hp.n_kv_heads)?;
        let rotate = match hp.family {
            ModelFamily::Qwen2 => candle_nn::rotary_emb::rope,
            ModelFamily::Llama => candle_nn::rotary_emb::rope_i,
        };
        let (q, k) = (rotate(&q, cos, sin)?, rotate(&k, cos, sin)?);
        let (keys, values) = kv.append(index, pos, &k.squeeze(0)?, &v.squeeze(0)?)?;
        let total = pos + seq;
        let group = hp.n_heads / hp.n_kv_heads;
        // Query head h uses key/value head h / group: the heads sharing one are
        // adjacent, so [heads, seq, dim] regroups as [kv_heads, group * seq, dim].
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
            .reshape((seq, hp.n_heads * hp.head_dim))?;
        Ok(layer.wo.forward(&y)?)
    }
}

fn corrupt(file: &GgufFile, reason: String) -> EngineError {
    EngineError::Corrupt { path: file.path().to_path_buf(), reason }
}

/// A weight matrix of `rows` (any, when `None`) by `cols`, and its row count.
fn matrix_rows(file: &mut GgufFile, name: &str, rows: Option<usize>, cols: usize, device: &Device) -> Result<(QMatMul, usize), EngineError> {
    let q: QTensor = file.tensor(name, device)?;
    let (r, c) = q.shape().dims2()?;
    if rows.is_some_and(|rows| rows != r) || c != cols {
        let expected = rows.map_or("?".into(), |r| r.to_string());
        return Err(corrupt(file, format!("{name} is {r}x{c}, expected {expected}x{cols}")));
    }
    Ok((QMatMul::from_qtensor(q)?, r))
}

fn matrix(file: &mut GgufFile, name: &str, rows: Option<usize>, cols: usize, device: &Device) -> Result<QMatMul, EngineError> {
    Ok(matrix_rows(file, name, rows, cols, device)?.0)
}

/// A small f32 tensor (norm weights, biases) of exactly `len` values, on `device`.
fn dense(file: &mut GgufFile, name: &str, len: usize, device: &Device) -> Result<Tensor, EngineError> {
    let q: QTensor = file.tensor(name, device)?;
    let t = q.dequantize(device)?.to_dtype(DType::F32)?.flatten_all()?;
    if t.elem_count() != len {
        return Err(corrupt(file, format!("{name} has {} values, expected {len}", t.elem_count())));
    }
    Ok(t)
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
