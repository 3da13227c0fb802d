//! The attention key/value cache: allocated once per layer for the whole
//! context window, written in place, and rewindable to any length.
//!
//! Rewinding is what makes completion fast while typing: consecutive prompts
//! share a long token prefix, and only the tokens after it are recomputed.
//! Nothing here copies the cache per token: new keys and values are written
//! into the preallocated tensors and attention reads a narrowed view.

use candle_core::{DType, Device, Tensor};

use super::EngineError;

/// Keys and values for every layer, plus the token ids they were computed for.
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    tokens: Vec<u32>,
    capacity: usize,
}

impl KvCache {
    /// Allocates `n_layers` pairs of `[n_kv_heads, capacity, head_dim]` tensors.
    pub fn new(n_layers: usize, n_kv_heads: usize, head_dim: usize, capacity: usize, device: &Device) -> Result<Self, EngineError> {
        let mut keys = Vec::with_capacity(n_layers);
        let mut values = Vec::with_capacity(n_layers);
        for _ in 0..n_layers {
            keys.push(Tensor::zeros((n_kv_heads, capacity, head_dim), DType::F32, device)?);
            values.push(Tensor::zeros((n_kv_heads, capacity, head_dim), DType::F32, device)?);
        }
        Ok(Self { keys, values, tokens: Vec::new(), capacity })
    }

    /// Number of positions currently held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The most positions the cache can hold (the context window).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The token ids whose keys and values are held, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position from `len` on; the memory stays allocated.
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// How many leading tokens of `prompt` are already in the cache.
    pub fn common_prefix(&self, prompt: &[u32]) -> usize {
        self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count()
    }

    /// Writes one layer's new keys and values (`[n_kv_heads, n, head_dim]`) at
    /// the current end and returns views over everything held for that layer,
    /// the new positions included. Call [`Self::commit`] after the last layer.
    pub fn append(&mut self, layer: usize, keys: &Tensor, values: &Tensor) -> Result<(Tensor, Tensor), EngineError> {
        let start = self.tokens.len();
        let n = keys.dim(1)?;
        if start + n > self.capacity {
            return Err(EngineError::ContextOverflow { prompt: start + n, max_new: 0, context: self.capacity });
        }
        self.keys[layer].slice_set(&keys.contiguous()?, 1, start)?;
        self.values[layer].slice_set(&values.contiguous()?, 1, start)?;
        let k = self.keys[layer].narrow(1, 0, start + n)?;
        let v = self.values[layer].narrow(1, 0, start + n)?;
        Ok((k, v))
    }

    /// Records that the positions just written by every layer hold `tokens`.
    pub fn commit(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }
}
