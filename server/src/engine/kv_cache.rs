//! The attention key/value cache: allocated once per layer for the whole
//! context window, written in place, and rewindable to any length.
//!
//! Rewinding is what makes completion fast while typing: consecutive prompts
//! share a long token prefix, and only the tokens after it are recomputed. It
//! is also what speculative decoding relies on: drafted tokens are written,
//! and the ones the model rejects are forgotten by truncating.
//!
//! Keys and values live in plain `f32` memory, which the CPU forward pass
//! reads directly: values as `[kv_heads, capacity, head_dim]` per layer, keys
//! transposed, `[kv_heads, head_dim, capacity]`, so that a query's scores
//! against consecutive positions are computed a vector at a time. The memory
//! is allocated zeroed, so the operating system only backs what is used.

use candle_core::Device;

use super::EngineError;

/// Keys and values for every layer, plus the token ids they were computed for.
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    tokens: Vec<u32>,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
}

impl KvCache {
    /// Allocates `n_layers` pairs of `n_kv_heads * capacity * head_dim` arrays.
    /// The forward pass runs on the CPU, so `device` must be the CPU.
    pub fn new(n_layers: usize, n_kv_heads: usize, head_dim: usize, capacity: usize, device: &Device) -> Result<Self, EngineError> {
        if !device.is_cpu() {
            return Err(EngineError::Compute(candle_core::Error::Msg("the KV cache lives in CPU memory".into())));
        }
        let size = n_kv_heads * capacity * head_dim;
        Ok(Self {
            keys: (0..n_layers).map(|_| vec![0f32; size]).collect(),
            values: (0..n_layers).map(|_| vec![0f32; size]).collect(),
            tokens: Vec::new(),
            n_kv_heads,
            head_dim,
            capacity,
        })
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

    /// Writes the key and value (`head_dim` each) of one key/value head at
    /// position `pos` of `layer`. Positions past the committed length may be
    /// written before [`Self::commit`].
    pub fn write(&mut self, layer: usize, kv_head: usize, pos: usize, key: &[f32], value: &[f32]) -> Result<(), EngineError> {
        if pos >= self.capacity || kv_head >= self.n_kv_heads || layer >= self.keys.len() {
            return Err(EngineError::ContextOverflow { prompt: pos + 1, max_new: 0, context: self.capacity });
        }
        let (dim, capacity) = (self.head_dim, self.capacity);
        let at = (kv_head * capacity + pos) * dim;
        self.values[layer][at..at + dim].copy_from_slice(&value[..dim]);
        let keys = &mut self.keys[layer][kv_head * dim * capacity..(kv_head + 1) * dim * capacity];
        for (i, k) in key[..dim].iter().enumerate() {
            keys[i * capacity + pos] = *k;
        }
        Ok(())
    }

    /// One layer's keys (`[kv_heads, head_dim, capacity]`) and values
    /// (`[kv_heads, capacity, head_dim]`); positions from the committed length
    /// on hold whatever was written last.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Records that the positions just written by every layer hold `tokens`.
    pub fn commit(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }
}
