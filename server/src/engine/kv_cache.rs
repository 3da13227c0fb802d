//! The attention key/value cache: allocated once per layer for the whole
//! context window, written in place, and rewindable to any length.
//!
//! Rewinding is what makes completion fast while typing: consecutive prompts
//! share a long token prefix, and only the tokens after it are recomputed. It
//! is also what speculative decoding relies on: drafted tokens are written,
//! and the ones the model rejects are forgotten by truncating.
//!
//! The bookkeeping (which tokens are held, how many fit) is one interface,
//! [`KvCache`], whatever forward pass fills it; generation reuses prefixes
//! and rewinds without knowing where the keys and values live. They live
//! where the forward pass that reads them runs:
//!
//! - [`HostKv`], for the CPU pass: plain `f32` memory, values as
//!   `[kv_heads, capacity, head_dim]` per layer, keys transposed,
//!   `[kv_heads, head_dim, capacity]`, so that a query's scores against
//!   consecutive positions are computed a vector at a time. The memory is
//!   mapped zeroed from the system, so it only backs what is used.
//! - [`DeviceKv`], for the pass on a candle device (a GPU, or the CPU in
//!   tests): one `[kv_heads, capacity, head_dim]` tensor each for keys and
//!   values per layer, in the device's memory. New positions are written in
//!   place (`slice_set`) and attention reads a narrowed view: nothing is
//!   copied per token.

use candle_core::{DType, Device, Tensor};

use super::EngineError;

/// How many leading tokens two token sequences share.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Keys and values for every layer, plus the token ids they were computed for.
pub struct KvCache {
    tokens: Vec<u32>,
    capacity: usize,
    store: KvStore,
}

/// Where a cache's keys and values are kept.
enum KvStore {
    Host(HostKv),
    Device(DeviceKv),
}

impl KvCache {
    /// A cache in CPU memory for the CPU forward pass: `n_layers` pairs of
    /// `n_kv_heads * capacity * head_dim` arrays.
    pub fn on_host(n_layers: usize, n_kv_heads: usize, head_dim: usize, capacity: usize) -> Result<Self, EngineError> {
        let store = KvStore::Host(HostKv::new(n_layers, n_kv_heads, head_dim, capacity)?);
        Ok(Self { tokens: Vec::new(), capacity, store })
    }

    /// A cache in `device`'s memory for the forward pass on that device:
    /// `n_layers` pairs of `[n_kv_heads, capacity, head_dim]` tensors.
    pub fn on_device(n_layers: usize, n_kv_heads: usize, head_dim: usize, capacity: usize, device: &Device) -> Result<Self, EngineError> {
        let store = KvStore::Device(DeviceKv::new(n_layers, n_kv_heads, head_dim, capacity, device)?);
        Ok(Self { tokens: Vec::new(), capacity, store })
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
        common_prefix(&self.tokens, prompt)
    }

    /// Records that the positions just written by every layer hold `tokens`.
    pub fn commit(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }

    /// Bytes of memory this cache's keys and values take now: on a device,
    /// all of it (allocated at once); in CPU memory, the pages the operating
    /// system backs, which are those ever written (the arrays are allocated
    /// zeroed, and rewinding keeps the pages). Keys lie position-major per
    /// row, so each of their rows is backed a page (1,024 positions) at a
    /// time: a slot that held 1,025 positions takes keys for 2,048. This is
    /// what `cria/status` reports, not the positions held, which is less.
    pub fn resident_bytes(&self) -> usize {
        match &self.store {
            KvStore::Host(kv) => kv.resident_bytes(),
            KvStore::Device(kv) => kv.bytes_per_position() * self.capacity,
        }
    }

    /// Bytes of keys and values one position takes in this cache.
    pub fn bytes_per_position(&self) -> usize {
        match &self.store {
            KvStore::Host(kv) => kv.keys.len() * kv.n_kv_heads * kv.head_dim * 2 * std::mem::size_of::<f32>(),
            KvStore::Device(kv) => kv.bytes_per_position(),
        }
    }

    /// Makes this cache hold the first `n` positions of `other` (keys,
    /// values and token ids), as if they had been computed here: a prompt
    /// that shares its start with another slot's skips recomputing it.
    /// Returns how many positions were copied: 0 when the two caches are not
    /// both in CPU memory of the same shape (the caller then recomputes).
    pub fn copy_prefix_from(&mut self, other: &KvCache, n: usize) -> usize {
        let n = n.min(other.len()).min(self.capacity);
        let (KvStore::Host(to), KvStore::Host(from)) = (&mut self.store, &other.store) else {
            return 0;
        };
        if (to.keys.len(), to.n_kv_heads, to.head_dim) != (from.keys.len(), from.n_kv_heads, from.head_dim) {
            return 0;
        }
        let (heads, dim) = (to.n_kv_heads, to.head_dim);
        for layer in 0..to.keys.len() {
            for row in 0..heads * dim {
                // Keys: [kv_heads, head_dim, capacity].
                let (t, f) = (row * to.capacity, row * from.capacity);
                to.keys[layer][t..t + n].copy_from_slice(&from.keys[layer][f..f + n]);
            }
            for head in 0..heads {
                // Values: [kv_heads, capacity, head_dim].
                let (t, f) = (head * to.capacity * dim, head * from.capacity * dim);
                to.values[layer][t..t + n * dim].copy_from_slice(&from.values[layer][f..f + n * dim]);
            }
        }
        to.written = to.written.max(n);
        self.tokens.clear();
        self.tokens.extend_from_slice(&other.tokens[..n]);
        n
    }

    /// The CPU-memory storage, for the CPU forward pass; an error for a
    /// cache made for a device (caches come from the model's `new_cache`, so
    /// this is a caller's bug, reported rather than a panic).
    pub fn host_mut(&mut self) -> Result<&mut HostKv, EngineError> {
        match &mut self.store {
            KvStore::Host(kv) => Ok(kv),
            KvStore::Device(_) => Err(EngineError::CacheMismatch { expected: "CPU" }),
        }
    }

    /// The device storage, for the forward pass on a candle device.
    pub fn device_mut(&mut self) -> Result<&mut DeviceKv, EngineError> {
        match &mut self.store {
            KvStore::Device(kv) => Ok(kv),
            KvStore::Host(_) => Err(EngineError::CacheMismatch { expected: "candle device" }),
        }
    }
}

/// Zeroed `f32`s mapped from the system for one layer's keys or values,
/// not taken from the heap: the system backs a page only once it is
/// written, whatever the allocator did before (a heap block would be
/// cleared, and so backed, whole), so a slot takes the memory of the
/// positions it held, and [`KvCache::resident_bytes`] can say how much.
struct MappedZeros(memmap2::MmapMut);

impl MappedZeros {
    fn new(len: usize) -> Result<Self, EngineError> {
        let bytes = len.max(1) * std::mem::size_of::<f32>();
        let map = memmap2::MmapMut::map_anon(bytes).map_err(|source| EngineError::CacheMemory { bytes, source })?;
        // Where transparent huge pages are on for every mapping, a key row's
        // first write would back 2 MiB of it, not a page; asked not to (a
        // kernel without them refuses, and nothing changes).
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::NoHugePage);
        Ok(Self(map))
    }
}

impl std::ops::Deref for MappedZeros {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // A mapping starts on a page boundary: aligned for f32.
        bytemuck::cast_slice(&self.0)
    }
}

impl std::ops::DerefMut for MappedZeros {
    fn deref_mut(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

/// Keys and values in CPU memory, laid out for the CPU forward pass.
pub struct HostKv {
    keys: Vec<MappedZeros>,
    values: Vec<MappedZeros>,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    /// Positions ever written (the highest plus one): what is backed by
    /// memory, see [`KvCache::resident_bytes`].
    written: usize,
}

/// The page size the operating system backs memory in (4 KiB on the
/// machines cria runs on; a larger page only makes the report low).
const PAGE_BYTES: usize = 4096;

impl HostKv {
    fn new(n_layers: usize, n_kv_heads: usize, head_dim: usize, capacity: usize) -> Result<Self, EngineError> {
        let size = n_kv_heads * capacity * head_dim;
        Ok(Self {
            keys: (0..n_layers).map(|_| MappedZeros::new(size)).collect::<Result<_, _>>()?,
            values: (0..n_layers).map(|_| MappedZeros::new(size)).collect::<Result<_, _>>()?,
            n_kv_heads,
            head_dim,
            capacity,
            written: 0,
        })
    }

    /// See [`KvCache::resident_bytes`].
    fn resident_bytes(&self) -> usize {
        let pages = |bytes: usize| bytes.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let float = std::mem::size_of::<f32>();
        let rows = self.n_kv_heads * self.head_dim;
        let key_row = pages(self.written * float).min(self.capacity * float);
        let value_head = pages(self.written * self.head_dim * float).min(self.capacity * self.head_dim * float);
        self.keys.len() * (rows * key_row + self.n_kv_heads * value_head)
    }

    /// Writes the key and value (`head_dim` each) of one key/value head at
    /// position `pos` of `layer`. Positions past the committed length may be
    /// written before [`KvCache::commit`].
    pub fn write(&mut self, layer: usize, kv_head: usize, pos: usize, key: &[f32], value: &[f32]) -> Result<(), EngineError> {
        if pos >= self.capacity || kv_head >= self.n_kv_heads || layer >= self.keys.len() {
            return Err(EngineError::ContextOverflow { prompt: pos + 1, max_new: 0, context: self.capacity });
        }
        let (dim, capacity) = (self.head_dim, self.capacity);
        self.written = self.written.max(pos + 1);
        let at = (kv_head * capacity + pos) * dim;
        self.values[layer][at..at + dim].copy_from_slice(&value[..dim]);
        let keys = &mut self.keys[layer][kv_head * dim * capacity..(kv_head + 1) * dim * capacity];
        for (i, k) in key[..dim].iter().enumerate() {
            keys[i * capacity + pos] = *k;
        }
        Ok(())
    }

    /// Positions each layer's arrays hold (the stride between heads).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// One layer's keys (`[kv_heads, head_dim, capacity]`) and values
    /// (`[kv_heads, capacity, head_dim]`); positions from the committed length
    /// on hold whatever was written last.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }
}

/// Keys and values as tensors on a candle device, `[kv_heads, capacity,
/// head_dim]` per layer.
pub struct DeviceKv {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    capacity: usize,
}

impl DeviceKv {
    fn new(n_layers: usize, n_kv_heads: usize, head_dim: usize, capacity: usize, device: &Device) -> Result<Self, EngineError> {
        let mut keys = Vec::with_capacity(n_layers);
        let mut values = Vec::with_capacity(n_layers);
        for _ in 0..n_layers {
            keys.push(Tensor::zeros((n_kv_heads, capacity, head_dim), DType::F32, device)?);
            values.push(Tensor::zeros((n_kv_heads, capacity, head_dim), DType::F32, device)?);
        }
        Ok(Self { keys, values, capacity })
    }

    /// Bytes of keys and values one position takes (every layer).
    fn bytes_per_position(&self) -> usize {
        let per_layer = |t: &Tensor| t.dims().first().copied().unwrap_or(0) * t.dims().get(2).copied().unwrap_or(0) * t.dtype().size_in_bytes();
        self.keys.iter().chain(&self.values).map(per_layer).sum()
    }

    /// Writes one layer's new keys and values (`[n_kv_heads, n, head_dim]`)
    /// at positions `start..start + n` and returns views over positions
    /// `0..start + n` of that layer, the new ones included.
    pub fn append(&mut self, layer: usize, start: usize, keys: &Tensor, values: &Tensor) -> Result<(Tensor, Tensor), EngineError> {
        let n = keys.dim(1)?;
        if start + n > self.capacity || layer >= self.keys.len() {
            return Err(EngineError::ContextOverflow { prompt: start + n, max_new: 0, context: self.capacity });
        }
        self.keys[layer].slice_set(&keys.contiguous()?, 1, start)?;
        self.values[layer].slice_set(&values.contiguous()?, 1, start)?;
        let k = self.keys[layer].narrow(1, 0, start + n)?;
        let v = self.values[layer].narrow(1, 0, start + n)?;
        Ok((k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_is_the_same_for_both_stores() {
        let mut caches = [KvCache::on_host(2, 1, 4, 8).unwrap(), KvCache::on_device(2, 1, 4, 8, &Device::Cpu).unwrap()];
        for cache in &mut caches {
            cache.commit(&[1, 2, 3]);
            assert_eq!((cache.len(), cache.capacity()), (3, 8));
            assert_eq!(cache.common_prefix(&[1, 2, 9]), 2);
            cache.truncate(1);
            assert_eq!(cache.tokens(), &[1]);
        }
        assert!(caches[0].host_mut().is_ok() && caches[0].device_mut().is_err());
        assert!(caches[1].device_mut().is_ok() && caches[1].host_mut().is_err());
    }

    /// Pages of `data` the operating system backs (`mincore`; `data` starts
    /// on a page, as a mapping does).
    #[cfg(target_os = "linux")]
    fn backed_bytes(data: &[f32]) -> usize {
        let start = data.as_ptr() as usize & !(PAGE_BYTES - 1);
        let end = data.as_ptr() as usize + std::mem::size_of_val(data);
        let pages = (end - start).div_ceil(PAGE_BYTES);
        let mut flags = vec![0u8; pages];
        // SAFETY: the range covers `data`'s own pages; `flags` has one byte per page.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, flags.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore failed");
        flags.iter().filter(|&&f| f & 1 == 1).count() * PAGE_BYTES
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_reported_memory_is_what_the_operating_system_backs() {
        // Qwen2.5-Coder-0.5B's shape per layer, a 4,096-position window.
        let (layers, heads, dim, capacity) = (2, 2, 64, 4096);
        let mut cache = KvCache::on_host(layers, heads, dim, capacity).unwrap();
        let backed = |cache: &mut KvCache| {
            let kv = cache.host_mut().unwrap();
            (0..layers).map(|l| kv.layer(l)).map(|(k, v)| backed_bytes(k) + backed_bytes(v)).sum::<usize>()
        };
        let row = vec![1f32; dim];
        let write = |cache: &mut KvCache, positions: std::ops::Range<usize>| {
            let kv = cache.host_mut().unwrap();
            for pos in positions {
                for layer in 0..layers {
                    for head in 0..heads {
                        kv.write(layer, head, pos, &row, &row).unwrap();
                    }
                }
            }
        };
        assert_eq!(cache.resident_bytes(), 0);
        for (upto, what) in [(1, "one position"), (1000, "under a key page"), (1025, "a key page and one"), (3000, "most of it")] {
            let held = cache.len();
            write(&mut cache, held..upto);
            cache.commit(&vec![7; upto - held]);
            let (reported, actual) = (cache.resident_bytes(), backed(&mut cache));
            assert!(actual > 0 && reported.abs_diff(actual) <= actual / 50, "{what}: reported {reported} bytes, backed {actual}");
        }
        assert!(cache.resident_bytes() > 3000 * cache.bytes_per_position(), "every key row backs its next page too");
        // Rewinding keeps the pages, and so does the report.
        let before = cache.resident_bytes();
        cache.truncate(10);
        assert_eq!(cache.resident_bytes(), before);
        assert_eq!(backed(&mut cache), before);
        // A copied prefix backs the copy's pages.
        let mut copy = KvCache::on_host(layers, heads, dim, capacity).unwrap();
        assert_eq!(copy.copy_prefix_from(&cache, 10), 10);
        assert_eq!(copy.resident_bytes(), backed(&mut copy));
        // A device's cache is allocated whole.
        let device = KvCache::on_device(1, 2, 3, 4, &Device::Cpu).unwrap();
        assert_eq!(device.resident_bytes(), device.bytes_per_position() * 4);
    }

    #[test]
    fn device_store_writes_in_place_and_returns_what_is_held() {
        let mut cache = KvCache::on_device(1, 2, 3, 4, &Device::Cpu).unwrap();
        let kv = cache.device_mut().unwrap();
        let first = Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap().reshape((2, 1, 3)).unwrap();
        let second = Tensor::arange(6f32, 18.0, &Device::Cpu).unwrap().reshape((2, 2, 3)).unwrap();
        kv.append(0, 0, &first, &first).unwrap();
        let (k, v) = kv.append(0, 1, &second, &second).unwrap();
        assert_eq!(k.dims(), &[2, 3, 3]);
        let k: Vec<Vec<Vec<f32>>> = k.to_vec3().unwrap();
        assert_eq!(k[0], vec![vec![0., 1., 2.], vec![6., 7., 8.], vec![9., 10., 11.]]);
        assert_eq!(k[1][0], vec![3., 4., 5.]);
        assert_eq!(v.to_vec3::<f32>().unwrap(), k);
        assert!(kv.append(0, 3, &second, &second).is_err(), "past the capacity");
    }
}
