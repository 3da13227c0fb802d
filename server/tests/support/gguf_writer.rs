//! A small GGUF writer for tests that need crafted files: any value, any
//! count, any shape or offset, including the ones a real writer would never
//! produce (a zero alignment, a block count of 2^32 - 1, a tensor of 2^62 x
//! 64 elements with no data). [`tiny_llama`] is a real, loadable llama model
//! small enough to write in a test; hostile files are it with one thing
//! changed. Nothing here is committed as a binary file.
#![allow(dead_code)]

/// A metadata value as GGUF writes it.
#[derive(Clone, Debug)]
pub enum Val {
    U8(u8),
    I8(i8),
    U16(u16),
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    /// An array: element type number, then the elements.
    Array(u32, Vec<Val>),
    /// An array header with any length, followed by `bytes` as they are.
    RawArray { element: u32, len: u64, bytes: Vec<u8> },
}

/// Value type numbers.
pub mod kind {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
}

/// ggml tensor type numbers.
pub const F32_TYPE: u32 = 0;
pub const Q8_0_TYPE: u32 = 8;

impl Val {
    fn kind(&self) -> u32 {
        match self {
            Self::U8(_) => kind::U8,
            Self::I8(_) => kind::I8,
            Self::U16(_) => kind::U16,
            Self::I32(_) => kind::I32,
            Self::U32(_) => kind::U32,
            Self::U64(_) => kind::U64,
            Self::F32(_) => kind::F32,
            Self::Bool(_) => kind::BOOL,
            Self::Str(_) => kind::STRING,
            Self::Array(..) | Self::RawArray { .. } => kind::ARRAY,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::U8(v) => out.push(*v),
            Self::I8(v) => out.push(*v as u8),
            Self::U16(v) => out.extend(v.to_le_bytes()),
            Self::I32(v) => out.extend(v.to_le_bytes()),
            Self::U32(v) => out.extend(v.to_le_bytes()),
            Self::U64(v) => out.extend(v.to_le_bytes()),
            Self::F32(v) => out.extend(v.to_le_bytes()),
            Self::Bool(v) => out.push(u8::from(*v)),
            Self::Str(s) => string(out, s),
            Self::Array(element, items) => {
                out.extend(element.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    item.write(out);
                }
            }
            Self::RawArray { element, len, bytes } => {
                out.extend(element.to_le_bytes());
                out.extend(len.to_le_bytes());
                out.extend(bytes);
            }
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// One tensor: dims innermost first (as GGUF stores them), its type, its
/// offset in the data section (`None`: right after the previous one,
/// aligned) and its bytes.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub offset: Option<u64>,
    pub data: Vec<u8>,
}

/// A GGUF file to write.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    pub metadata: Vec<(String, Val)>,
    pub tensors: Vec<Tensor>,
    /// Written instead of the real counts when set.
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
    /// Where tensor data is aligned (the writer's own idea; `general.alignment` is just metadata).
    pub alignment: u64,
}

impl Default for Gguf {
    fn default() -> Self {
        Self { version: 3, metadata: Vec::new(), tensors: Vec::new(), tensor_count: None, kv_count: None, alignment: 32 }
    }
}

impl Gguf {
    /// Sets (or adds) a metadata value.
    pub fn set(&mut self, key: &str, value: Val) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// The tensor named `name`, to change it.
    pub fn tensor_mut(&mut self, name: &str) -> &mut Tensor {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.tensor_count.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend(self.kv_count.unwrap_or(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            string(&mut out, key);
            out.extend(value.kind().to_le_bytes());
            value.write(&mut out);
        }
        let align = |n: u64| n.div_ceil(self.alignment.max(1)) * self.alignment.max(1);
        let mut next = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            let offset = t.offset.unwrap_or(align(next));
            offsets.push(offset);
            if t.offset.is_none() {
                next = offset + t.data.len() as u64;
            }
            string(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ggml_type.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        let data_start = align(out.len() as u64) as usize;
        out.resize(data_start, 0);
        for (t, offset) in self.tensors.iter().zip(offsets) {
            // Data is written where it fits in memory; crafted offsets stay crafted.
            if t.data.is_empty() || offset > 1 << 30 {
                continue;
            }
            let at = data_start + offset as usize;
            if out.len() < at + t.data.len() {
                out.resize(at + t.data.len(), 0);
            }
            out[at..at + t.data.len()].copy_from_slice(&t.data);
        }
        out
    }

    /// Writes the file.
    pub fn write(&self, path: &std::path::Path) {
        std::fs::write(path, self.bytes()).expect("writing a GGUF file");
    }
}

/// Little-endian f32 bytes of `n` values from a simple deterministic series.
fn weights(n: usize, seed: u32, scale: f32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let x = (state as f32 / u32::MAX as f32 - 0.5) * scale;
            x.to_le_bytes()
        })
        .collect()
}

fn f32_tensor(name: &str, dims: &[u64], data: Vec<u8>) -> Tensor {
    Tensor { name: name.into(), dims: dims.to_vec(), ggml_type: F32_TYPE, offset: None, data }
}

/// Width of [`tiny_llama`]'s residual stream.
pub const TINY_EMBD: u64 = 32;
/// Its vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, `▁` and a-z.
pub const TINY_VOCAB: u64 = 3 + 256 + 1 + 26;

/// A real llama model, small enough to write in a test (about 100 KiB):
/// a SentencePiece vocabulary of bytes and letters, two blocks of F32
/// weights. It loads and generates (nonsense).
pub fn tiny_llama() -> Gguf {
    let (embd, heads, kv_heads, ff, layers) = (TINY_EMBD, 4u64, 2u64, 64u64, 2u64);
    let head_dim = embd / heads;
    let mut tokens = vec![Val::Str("<unk>".into()), Val::Str("<s>".into()), Val::Str("</s>".into())];
    let mut types = vec![Val::I32(2), Val::I32(3), Val::I32(3)];
    for b in 0..=255u8 {
        tokens.push(Val::Str(format!("<0x{b:02X}>")));
        types.push(Val::I32(6));
    }
    tokens.push(Val::Str("\u{2581}".into()));
    types.push(Val::I32(1));
    for c in 'a'..='z' {
        tokens.push(Val::Str(c.to_string()));
        types.push(Val::I32(1));
    }
    let scores: Vec<Val> = (0..tokens.len()).map(|i| Val::F32(-(i as f32))).collect();
    let mut g = Gguf::default();
    for (key, value) in [
        ("general.architecture", Val::Str("llama".into())),
        ("general.name", Val::Str("tiny-llama".into())),
        ("general.alignment", Val::U32(32)),
        ("llama.context_length", Val::U32(256)),
        ("llama.embedding_length", Val::U32(embd as u32)),
        ("llama.block_count", Val::U32(layers as u32)),
        ("llama.feed_forward_length", Val::U32(ff as u32)),
        ("llama.attention.head_count", Val::U32(heads as u32)),
        ("llama.attention.head_count_kv", Val::U32(kv_heads as u32)),
        ("llama.rope.dimension_count", Val::U32(head_dim as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Val::F32(1e-5)),
        ("tokenizer.ggml.model", Val::Str("llama".into())),
        ("tokenizer.ggml.tokens", Val::Array(kind::STRING, tokens)),
        ("tokenizer.ggml.scores", Val::Array(kind::F32, scores)),
        ("tokenizer.ggml.token_type", Val::Array(kind::I32, types)),
        ("tokenizer.ggml.bos_token_id", Val::U32(1)),
        ("tokenizer.ggml.eos_token_id", Val::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Val::U32(0)),
    ] {
        g.set(key, value);
    }
    let vocab = TINY_VOCAB;
    let mut seed = 1;
    let mut matrix = |name: String, rows: u64, cols: u64| {
        seed += 1;
        f32_tensor(&name, &[cols, rows], weights((rows * cols) as usize, seed, 0.2))
    };
    let ones = |n: u64| (0..n).flat_map(|_| 1f32.to_le_bytes()).collect::<Vec<u8>>();
    g.tensors.push(matrix("token_embd.weight".into(), vocab, embd));
    g.tensors.push(matrix("output.weight".into(), vocab, embd));
    g.tensors.push(f32_tensor("output_norm.weight", &[embd], ones(embd)));
    for l in 0..layers {
        let p = |s: &str| format!("blk.{l}.{s}");
        g.tensors.push(matrix(p("attn_q.weight"), embd, embd));
        g.tensors.push(matrix(p("attn_k.weight"), kv_heads * head_dim, embd));
        g.tensors.push(matrix(p("attn_v.weight"), kv_heads * head_dim, embd));
        g.tensors.push(matrix(p("attn_output.weight"), embd, embd));
        g.tensors.push(matrix(p("ffn_gate.weight"), ff, embd));
        g.tensors.push(matrix(p("ffn_up.weight"), ff, embd));
        g.tensors.push(matrix(p("ffn_down.weight"), embd, ff));
        g.tensors.push(f32_tensor(&p("attn_norm.weight"), &[embd], ones(embd)));
        g.tensors.push(f32_tensor(&p("ffn_norm.weight"), &[embd], ones(embd)));
    }
    g
}
