//! Quantized matrix products on the CPU: weights stay in their GGUF
//! encoding, activations are quantized once per product to 8-bit blocks, and
//! integer dot products do the work, with the best instructions this CPU has
//! (chosen at run time): AVX-512 VNNI on weights repacked in 16-row groups
//! (`x16`), AVX2 on the file's own row layout, NEON on it on aarch64, or
//! portable code.
//!
//! [`QuantMatrix`] replaces candle's `QMatMul` for the formats in
//! [`Format`]; any other tensor type is kept as a candle `QMatMul` inside it.
//! One matrix may stack several tensors with the same input width (q, k and v;
//! gate and up): their rows are independent, so a stacked product is one
//! parallel job instead of several, which matters when decoding a token is a
//! few hundred small products.
//!
//! Work is split across the current rayon pool. With few activation rows
//! (decoding, verifying drafted tokens) tasks take ranges of weight rows, so
//! the weights stream through once; with many (prefill) tasks take panels of
//! activation rows and write whole output rows, and each unpacked weight block
//! serves several activation rows.
//!
//! A row's result never depends on the other activation rows in the product:
//! the kernels treat each one the same whatever the tile. Speculative
//! decoding relies on it (a verified batch reproduces token-by-token logits).
//! Prefill may use other kernels (on AVX2, weights unpacked once per panel),
//! whose last bits differ from decoding's; within each split the rule holds.

pub mod blocks;
pub mod scalar;
pub mod x16;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;

use std::sync::OnceLock;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use rayon::prelude::*;

pub use blocks::{ActKind, Format, Q8Block, Q8KBlock};

use super::EngineError;

/// Activation rows quantized for one kind of kernel, `nb` blocks per row.
#[derive(Clone, Copy)]
pub enum Acts<'a> {
    /// 32-value blocks.
    Q8(&'a [Q8Block]),
    /// 256-value blocks.
    Q8K(&'a [Q8KBlock]),
}

impl Acts<'_> {
    /// The activation rows from `row` on.
    fn skip_rows(self, row: usize, nb: usize) -> Self {
        match self {
            Self::Q8(a) => Self::Q8(&a[row * nb..]),
            Self::Q8K(a) => Self::Q8K(&a[row * nb..]),
        }
    }
}

/// The instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, on the file's row layout.
    Scalar,
    /// AVX2 + FMA + F16C, on the file's row layout.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F/BW/VNNI, on 16-row groups.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// NEON on aarch64, on the file's row layout, with `sdot` where the CPU
    /// has it (chosen inside `neon.rs`, per call).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// A ceiling on the instruction set, from the `CRIA_CPU` environment
/// variable: benchmarks measure the AVX2 kernels (what most laptops run) on a
/// machine with AVX-512, and a user can step around a kernel bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuCap {
    /// Portable code only.
    Scalar,
    /// At most NEON (aarch64). Below AVX2 only so that one order serves both
    /// architectures: on x86 it leaves portable code, and on aarch64 `avx2`
    /// and `avx512` set no ceiling.
    Neon,
    /// At most AVX2.
    Avx2,
    /// At most AVX-512 (no ceiling today).
    Avx512,
}

/// A `CRIA_CPU` value that names no instruction set; it is ignored (with a
/// warning) rather than fatal, since the kernels work without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown CRIA_CPU value {0:?} (expected scalar, neon, avx2 or avx512)")]
pub struct UnknownCpuCap(pub String);

impl std::str::FromStr for CpuCap {
    type Err = UnknownCpuCap;

    /// `scalar`, `neon`, `avx2` or `avx512`, in any case, surrounding spaces ignored.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Self::Scalar),
            "neon" => Ok(Self::Neon),
            "avx2" => Ok(Self::Avx2),
            "avx512" => Ok(Self::Avx512),
            _ => Err(UnknownCpuCap(value.to_string())),
        }
    }
}

/// The environment variable read by [`Isa::detect`].
pub const CPU_CAP_VAR: &str = "CRIA_CPU";

impl Isa {
    /// The best one this CPU supports, at most what `CRIA_CPU` allows
    /// (checked once: every matrix of a process uses the same kernels).
    pub fn detect() -> Self {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let cap = match std::env::var(CPU_CAP_VAR) {
                Ok(value) if !value.trim().is_empty() => match value.parse::<CpuCap>() {
                    Ok(cap) => Some(cap),
                    Err(e) => {
                        tracing::warn!("{e}; using the best instruction set this CPU has");
                        None
                    }
                },
                _ => None,
            };
            let isa = Self::best_within(&Self::available(), cap);
            if let Some(cap) = cap {
                tracing::info!("{CPU_CAP_VAR}={cap:?}: quantized kernels use {isa:?}");
            }
            isa
        })
    }

    /// The best of `available` (best last) at or below `cap`; portable code
    /// when nothing is. Apart from [`Self::detect`] so that it is tested
    /// without touching the environment.
    pub fn best_within(available: &[Isa], cap: Option<CpuCap>) -> Self {
        let cap = cap.unwrap_or(CpuCap::Avx512);
        available.iter().rev().copied().find(|isa| isa.level() <= cap).unwrap_or(Isa::Scalar)
    }

    /// The [`CpuCap`] this instruction set is, to compare it with a cap.
    pub fn level(self) -> CpuCap {
        match self {
            Self::Scalar => CpuCap::Scalar,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => CpuCap::Avx2,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => CpuCap::Avx512,
            #[cfg(target_arch = "aarch64")]
            Self::Neon => CpuCap::Neon,
        }
    }

    /// Every instruction set this CPU runs, best last.
    pub fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut isas = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                isas.push(Isa::Avx2);
            }
            if avx512::available() {
                isas.push(Isa::Avx512);
            }
        }
        #[cfg(target_arch = "aarch64")]
        if neon::available() {
            isas.push(Isa::Neon);
        }
        isas
    }

    /// (weight rows, activation rows) per tile on the row layout; with
    /// `streaming` (one weight row at a time) the activation rows one call
    /// takes.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn tile_shape(self, streaming: bool) -> (usize, usize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 if streaming => (avx2::TILE_R, avx2::STREAM_C),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => (avx2::TILE_R, avx2::TILE_C),
            #[cfg(target_arch = "aarch64")]
            Self::Neon => (neon::TILE_R, neon::TILE_C),
            _ => (1, 1),
        }
    }

    /// One tile on the row layout: `rows` weight rows × `cols` activation rows
    /// into `out[r * st.row + c * st.col]`; `streaming` as for [`run_part`].
    #[allow(clippy::too_many_arguments)]
    fn tile(self, format: Format, w: &[u8], row_bytes: usize, rows: usize, a: Acts<'_>, nb: usize, cols: usize, out: &mut [f32], st: Strides, streaming: bool) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => avx2::tile(format, w, row_bytes, rows, a, nb, cols, out, st, streaming),
            #[cfg(target_arch = "aarch64")]
            Self::Neon => neon::tile(format, w, row_bytes, rows, a, nb, cols, out, st, streaming),
            _ => {
                for r in 0..rows {
                    let w = &w[r * row_bytes..(r + 1) * row_bytes];
                    for c in 0..cols {
                        let a = match a.skip_rows(c, nb) {
                            Acts::Q8(a) => Acts::Q8(&a[..nb]),
                            Acts::Q8K(a) => Acts::Q8K(&a[..nb]),
                        };
                        out[r * st.row + c * st.col] = scalar::dot(format, w, a);
                    }
                }
            }
        }
    }
}

/// Quantizes `x` (a multiple of 32 long) into `out`, as GGML's
/// `quantize_row_q8_0`/`q8_1` and candle do: scale `max|x| / 127`, values
/// rounded half away from zero. Here, not in `blocks`, because it chooses the
/// instruction set: `blocks` is the formats and portable code, and the vector
/// kernels depend on it, never the other way.
pub fn quantize_q8(x: &[f32], out: &mut [Q8Block]) {
    // AVX2 unless `CRIA_CPU` asks for portable code (the result is the same).
    #[cfg(target_arch = "x86_64")]
    let simd = Isa::detect() != Isa::Scalar && avx2::available();
    for (x, block) in x.chunks_exact(blocks::QK).zip(out.iter_mut()) {
        #[cfg(target_arch = "x86_64")]
        if simd && avx2::quantize_q8_block(x, block) {
            continue;
        }
        blocks::quantize_q8_block(x, block);
    }
}

/// Where result (weight row `r`, activation row `c`) goes in an output slice:
/// `r * row + c * col`.
#[derive(Debug, Clone, Copy)]
pub struct Strides {
    /// Distance between weight rows (output columns).
    pub row: usize,
    /// Distance between activation rows (output rows).
    pub col: usize,
}

/// How a quantized tensor's bytes are laid out.
enum Storage {
    /// As in the file: `rows` rows of `row_bytes`.
    Rows { row_bytes: usize, data: Vec<u8> },
    /// In 16-row groups for AVX-512.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Packed(x16::Packed),
}

/// One tensor in a format with kernels of its own.
struct Quantized {
    format: Format,
    rows: usize,
    storage: Storage,
}

impl Quantized {
    /// The activation blocks its kernels take.
    fn act_kind(&self) -> ActKind {
        match self.storage {
            Storage::Packed(_) => ActKind::Q8,
            Storage::Rows { .. } => self.format.act_kind(),
        }
    }
}

/// One tensor of a stacked matrix.
enum Part {
    Quantized(Quantized),
    /// Any other type, multiplied by candle.
    Candle { matmul: QMatMul, rows: usize },
}

impl Part {
    fn rows(&self) -> usize {
        match self {
            Self::Quantized(q) => q.rows,
            Self::Candle { rows, .. } => *rows,
        }
    }
}

/// A weight matrix `[rows, cols]` (one or more stacked GGUF tensors), applied
/// as `x · Wᵀ`.
pub struct QuantMatrix {
    parts: Vec<Part>,
    rows: usize,
    cols: usize,
    isa: Isa,
}

/// Buffers reused across products, so that decoding allocates nothing per token.
#[derive(Default)]
pub struct Scratch {
    q8: Vec<Q8Block>,
    q8k: Vec<Q8KBlock>,
    staged: Vec<f32>,
}

/// An inconsistency in shapes: a bug or a corrupt file, reported as a failed computation.
fn failure(message: impl Into<String>) -> EngineError {
    EngineError::Compute(candle_core::Error::Msg(message.into()))
}

/// From this many activation rows on, tasks take panels of activation rows
/// (prefill); below, ranges of weight rows (decoding, drafted tokens).
const SPLIT_BY_ACTIVATIONS: usize = 32;

/// One task of a product split by weight rows: some rows of one quantized
/// part, and a slice for their results.
struct Task<'s, 'o> {
    quant: &'s Quantized,
    /// First row (or 16-row group, for packed storage) of the part.
    first: usize,
    /// Rows (or groups).
    count: usize,
    /// The task's first row in the whole matrix.
    row0: usize,
    /// Its number of rows.
    rows: usize,
    out: &'o mut [f32],
}

/// Activations of every kind the parts need.
#[derive(Clone, Copy)]
struct AllActs<'a> {
    q8: &'a [Q8Block],
    q8k: &'a [Q8KBlock],
    k: usize,
}

impl QuantMatrix {
    /// Takes a 2-D tensor `[rows, cols]` for the best kernels this CPU runs;
    /// the formats in [`Format`] get cria's kernels, anything else stays with candle.
    pub fn new(tensor: QTensor) -> Result<Self, EngineError> {
        Self::with_isa(tensor, Isa::detect())
    }

    /// Like [`Self::new`], for the kernels of `isa` (tests compare them).
    pub fn with_isa(tensor: QTensor, isa: Isa) -> Result<Self, EngineError> {
        let (rows, cols) = tensor.shape().dims2()?;
        let part = match Format::from_ggml(tensor.dtype()) {
            Some(format) => Part::Quantized(Self::quantized(format, rows, cols, tensor.data()?.into_owned(), isa)?),
            None => Part::Candle { matmul: QMatMul::from_qtensor(tensor)?, rows },
        };
        Ok(Self { parts: vec![part], rows, cols, isa })
    }

    /// A matrix only looked up row by row (an embedding table not shared
    /// with the output): kept as the file stores it, not repacked.
    pub fn for_lookup(tensor: QTensor) -> Result<Self, EngineError> {
        Self::with_isa(tensor, Isa::Scalar)
    }

    /// A matrix from GGUF-encoded rows.
    pub fn from_raw(format: Format, rows: usize, cols: usize, data: Vec<u8>, isa: Isa) -> Result<Self, EngineError> {
        let part = Part::Quantized(Self::quantized(format, rows, cols, data, isa)?);
        Ok(Self { parts: vec![part], rows, cols, isa })
    }

    fn quantized(format: Format, rows: usize, cols: usize, data: Vec<u8>, isa: Isa) -> Result<Quantized, EngineError> {
        let row_bytes = format.row_bytes(cols).ok_or_else(|| failure(format!("a {format:?} tensor of width {cols} is not whole blocks")))?;
        if data.len() != rows * row_bytes {
            return Err(failure(format!("a {format:?} tensor [{rows}, {cols}] has {} bytes", data.len())));
        }
        let storage = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Storage::Packed(x16::Packed::pack(format, rows, cols, &data)),
            _ => Storage::Rows { row_bytes, data },
        };
        Ok(Quantized { format, rows, storage })
    }

    /// Stacks matrices of the same width: the product's columns are theirs in order.
    pub fn stack(matrices: Vec<QuantMatrix>) -> Result<Self, EngineError> {
        let Some(first) = matrices.first() else {
            return Err(failure("nothing to stack"));
        };
        let (cols, isa) = (first.cols, first.isa);
        if matrices.iter().any(|m| m.cols != cols || m.isa != isa) {
            return Err(failure("stacked matrices differ in width"));
        }
        let rows = matrices.iter().map(|m| m.rows).sum();
        Ok(Self { parts: matrices.into_iter().flat_map(|m| m.parts).collect(), rows, cols, isa })
    }

    /// Whether some part is multiplied by candle (a type without kernels here).
    pub fn has_fallback(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Candle { .. }))
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `row` as `f32` values (an embedding lookup).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) -> Result<(), EngineError> {
        if row >= self.rows || out.len() != self.cols {
            return Err(failure(format!("row {row} of a [{}, {}] matrix into {} values", self.rows, self.cols, out.len())));
        }
        let mut first = 0;
        for part in &self.parts {
            let rows = part.rows();
            if row < first + rows {
                let r = row - first;
                match part {
                    Part::Quantized(Quantized { format, storage: Storage::Rows { row_bytes, data }, .. }) => {
                        blocks::dequantize_row(*format, &data[r * row_bytes..(r + 1) * row_bytes], out)
                    }
                    Part::Quantized(Quantized { storage: Storage::Packed(packed), .. }) => packed.dequantize_row(r, out),
                    Part::Candle { matmul, .. } => {
                        let ids = Tensor::new(&[r as u32], &Device::Cpu)?;
                        let values = matmul.embedding(&ids)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
                        if values.len() != out.len() {
                            return Err(failure("embedding row of the wrong width"));
                        }
                        out.copy_from_slice(&values);
                    }
                }
                return Ok(());
            }
            first += rows;
        }
        Err(failure(format!("row {row} past the end")))
    }

    /// `out[m, rows] = x[m, cols] · Wᵀ`, on the current rayon pool.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32], scratch: &mut Scratch) -> Result<(), EngineError> {
        let (n, k) = (self.rows, self.cols);
        if x.len() != m * k || out.len() != m * n {
            return Err(failure(format!("matmul of [{m}, {k}] by [{n}, {k}] given {} inputs and {} outputs", x.len(), out.len())));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        self.quantize_activations(x, m, scratch);
        let Scratch { q8, q8k, staged } = scratch;
        let acts = AllActs { q8, q8k, k };
        let isa = self.isa;
        if m >= SPLIT_BY_ACTIVATIONS {
            // Panels of activation rows, each writing whole rows of `out`.
            let threads = rayon::current_num_threads().max(1);
            let panel = m.div_ceil(threads * 4).max(16);
            out.par_chunks_mut(panel * n).enumerate().for_each(|(p, out)| {
                let (c0, cols) = (p * panel, out.len() / n);
                let mut row0 = 0;
                for part in &self.parts {
                    if let Part::Quantized(quant) = part {
                        run_part(isa, quant, 0, quant.units(), acts, c0, cols, &mut out[row0..], Strides { row: 1, col: n }, false);
                    }
                    row0 += part.rows();
                }
            });
        } else if m == 1 {
            // One activation row: tasks write their stretch of `out` directly.
            let tasks = self.tasks(1, out);
            tasks.into_par_iter().for_each(|t| run_part(isa, t.quant, t.first, t.count, acts, 0, 1, t.out, Strides { row: 1, col: 0 }, true));
        } else {
            // Few activation rows: each task stages its results as `[m][rows]`,
            // then they are copied into place row by row.
            staged.clear();
            staged.resize(m * n, 0.0);
            let tasks = self.tasks(m, staged);
            let placed: Vec<(usize, usize)> = tasks.iter().map(|t| (t.row0, t.rows)).collect();
            tasks.into_par_iter().for_each(|t| {
                let rows = t.rows;
                run_part(isa, t.quant, t.first, t.count, acts, 0, m, t.out, Strides { row: 1, col: rows }, true);
            });
            // A task's slice starts at its first row times m (parts and tasks
            // are laid out in row order).
            for (row0, rows) in placed {
                let here = &staged[row0 * m..(row0 + rows) * m];
                for (c, values) in here.chunks_exact(rows).enumerate() {
                    out[c * n + row0..c * n + row0 + rows].copy_from_slice(values);
                }
            }
        }
        // Candle parts (types without kernels here): computed whole, copied in.
        let mut row0 = 0;
        for part in &self.parts {
            if let Part::Candle { matmul, rows } = part {
                let y = matmul.forward(&Tensor::from_slice(x, (m, k), &Device::Cpu)?)?.flatten_all()?.to_vec1::<f32>()?;
                for (c, values) in y.chunks_exact(*rows).enumerate() {
                    out[c * n + row0..c * n + row0 + rows].copy_from_slice(values);
                }
            }
            row0 += part.rows();
        }
        Ok(())
    }

    fn quantize_activations(&self, x: &[f32], m: usize, scratch: &mut Scratch) {
        let k = self.cols;
        let (mut need_q8, mut need_q8k) = (false, false);
        for part in &self.parts {
            if let Part::Quantized(q) = part {
                match q.act_kind() {
                    ActKind::Q8 => need_q8 = true,
                    ActKind::Q8K => need_q8k = true,
                }
            }
        }
        let rows_per_task = if m >= 16 { 4 } else { m };
        if need_q8 {
            let nb = k / blocks::QK;
            scratch.q8.resize(m * nb, Q8Block::default());
            scratch.q8[..m * nb]
                .par_chunks_mut(nb * rows_per_task)
                .zip(x.par_chunks(k * rows_per_task))
                .for_each(|(out, x)| quantize_q8(x, out));
        }
        if need_q8k {
            let nb = k / blocks::QK_K;
            scratch.q8k.resize(m * nb, Q8KBlock::default());
            scratch.q8k[..m * nb]
                .par_chunks_mut(nb * rows_per_task)
                .zip(x.par_chunks(k * rows_per_task))
                .for_each(|(out, x)| blocks::quantize_q8k(x, out));
        }
    }

    /// Splits the quantized parts' rows into tasks of whole tiles (or 16-row
    /// groups), each with its own slice of `out` (`m` values per row).
    fn tasks<'s, 'o>(&'s self, m: usize, mut out: &'o mut [f32]) -> Vec<Task<'s, 'o>> {
        let threads = rayon::current_num_threads().max(1);
        let (tile_r, _) = self.isa.tile_shape(true);
        let mut tasks = Vec::new();
        let mut part_row0 = 0;
        for part in &self.parts {
            let part_rows = part.rows();
            let (mut here, rest) = std::mem::take(&mut out).split_at_mut(part_rows * m);
            out = rest;
            let row0 = part_row0;
            part_row0 += part_rows;
            let Part::Quantized(quant) = part else { continue };
            // Units of work: rows, or 16-row groups. A few tasks per thread
            // balance the load when other processes take cores away.
            let (units, unit_rows, per_task) = match &quant.storage {
                Storage::Rows { .. } => (part_rows, 1, part_rows.div_ceil(threads * 4).max(tile_r).next_multiple_of(tile_r)),
                Storage::Packed(p) => (p.groups(), x16::ROWS, p.groups().div_ceil(threads * 4).max(1)),
            };
            let mut first = 0;
            while first < units {
                let count = per_task.min(units - first);
                let rows = (count * unit_rows).min(part_rows - first * unit_rows);
                let (task_out, rest) = std::mem::take(&mut here).split_at_mut(rows * m);
                here = rest;
                tasks.push(Task { quant, first, count, row0: row0 + first * unit_rows, rows, out: task_out });
                first += count;
            }
        }
        tasks
    }
}

impl Quantized {
    /// Units of work: rows, or 16-row groups for packed storage.
    fn units(&self) -> usize {
        match &self.storage {
            Storage::Rows { .. } => self.rows,
            Storage::Packed(p) => p.groups(),
        }
    }
}

/// Units `first..first + count` of a part (rows, or 16-row groups) against
/// activation rows `c0..c0 + cols`, into `out[r * st.row + c * st.col]` with
/// `r` counted from the first unit's first row and `c` from `c0`.
/// `streaming`: few activation rows (decoding, drafted tokens), where the
/// product is bound by reading the weights: the kernels take one weight row
/// at a time, so each task reads one stream through memory, which the
/// prefetchers follow best
/// (on AVX2, Qwen2.5-Coder-0.5B decoded at 35 tokens/s with four interleaved
/// rows per tile and at 55-60 with one). Prefill keeps the full tiles, which
/// reuse each activation load for several weight rows.
#[allow(clippy::too_many_arguments)]
fn run_part(isa: Isa, quant: &Quantized, first: usize, count: usize, acts: AllActs<'_>, c0: usize, cols: usize, out: &mut [f32], st: Strides, streaming: bool) {
    let format = quant.format;
    match &quant.storage {
        Storage::Rows { row_bytes, data } => {
            let (all, nb) = match quant.act_kind() {
                ActKind::Q8 => (Acts::Q8(acts.q8), acts.k / blocks::QK),
                ActKind::Q8K => (Acts::Q8K(acts.q8k), acts.k / blocks::QK_K),
            };
            let w = &data[first * row_bytes..(first + count) * row_bytes];
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx2 && !streaming && avx2::panel(format, w, *row_bytes, count, all.skip_rows(c0, nb), nb, cols, out, st) {
                return;
            }
            let (tile_r, tile_c) = isa.tile_shape(streaming);
            for r0 in (0..count).step_by(tile_r) {
                let rr = tile_r.min(count - r0);
                for cc0 in (0..cols).step_by(tile_c) {
                    let cc = tile_c.min(cols - cc0);
                    let out = &mut out[r0 * st.row + cc0 * st.col..];
                    isa.tile(format, &w[r0 * row_bytes..], *row_bytes, rr, all.skip_rows(c0 + cc0, nb), nb, cc, out, st, streaming);
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Storage::Packed(packed) => {
            let nb = packed.blocks;
            for g in first..first + count {
                let rows = x16::ROWS.min(quant.rows - g * x16::ROWS);
                let out = &mut out[(g - first) * x16::ROWS * st.row..];
                let next = if g + 1 < first + count { packed.group(g + 1) } else { &[] };
                avx512::group(format, packed.group(g), next, nb, rows, &acts.q8[c0 * nb..], cols, out, st);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Storage::Packed(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::blocks::testing::{random_acts, random_rows};
    use super::blocks::{dequantize_row, quantize_q8_block, quantize_q8k, QK, QK_K};
    use super::*;
    use candle_core::quantized::GgmlDType;

    fn isas() -> Vec<Isa> {
        Isa::available()
    }

    fn matrix(format: Format, rows: usize, k: usize, seed: u64, isa: Isa) -> (QuantMatrix, Vec<u8>) {
        let data = random_rows(format, rows, k, seed);
        (QuantMatrix::from_raw(format, rows, k, data.clone(), isa).unwrap(), data)
    }

    /// Whether `isa` works on packed 16-row groups.
    fn packed(isa: Isa) -> bool {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            return true;
        }
        let _ = isa;
        false
    }

    /// Which activation blocks the kernels of `isa` use for `format`.
    fn act_kind(format: Format, isa: Isa) -> ActKind {
        if packed(isa) {
            ActKind::Q8
        } else {
            format.act_kind()
        }
    }

    /// The scalar reference: dequantized weights times dequantized activations, in f64.
    fn reference(format: Format, data: &[u8], rows: usize, k: usize, x: &[f32], m: usize, isa: Isa) -> (Vec<f64>, Vec<f64>) {
        let row_bytes = format.row_bytes(k).unwrap();
        // On the row layout, the formats with a minimum add `m * s` per block,
        // with `s` rounded through f16 as GGML does: the minimums are split off
        // and added so. The packed kernels use the exact sum.
        let has_min = matches!(format, Format::Q4_1 | Format::Q5_1) && !packed(isa);
        let mut no_min = data.to_vec();
        let mut mins = vec![0f32; rows * k / QK];
        if has_min {
            for (i, block) in no_min.chunks_exact_mut(format.block_bytes()).enumerate() {
                mins[i] = blocks::f16_at(block, 2);
                block[2..4].fill(0);
            }
        }
        let mut w = vec![0f32; rows * k];
        for (row, out) in no_min.chunks_exact(row_bytes).zip(w.chunks_exact_mut(k)) {
            dequantize_row(format, row, out);
        }
        let mut xq = vec![0f32; m * k];
        let mut sums = vec![0f32; m * k / QK];
        match act_kind(format, isa) {
            ActKind::Q8 => {
                let mut b = vec![Q8Block::default(); m * k / QK];
                quantize_q8(x, &mut b);
                for (i, v) in xq.iter_mut().enumerate() {
                    *v = b[i / QK].qs[i % QK] as f32 * b[i / QK].d;
                }
                sums.iter_mut().zip(&b).for_each(|(s, b)| *s = b.s);
            }
            ActKind::Q8K => {
                let mut b = vec![Q8KBlock::default(); m * k / QK_K];
                quantize_q8k(x, &mut b);
                for (i, v) in xq.iter_mut().enumerate() {
                    *v = b[i / QK_K].qs[i % QK_K] as f32 * b[i / QK_K].d;
                }
            }
        }
        let mut out = vec![0f64; m * rows];
        let mut mag = vec![0f64; m * rows];
        for c in 0..m {
            for r in 0..rows {
                for i in 0..k {
                    let p = w[r * k + i] as f64 * xq[c * k + i] as f64;
                    out[c * rows + r] += p;
                    mag[c * rows + r] += p.abs();
                }
                if has_min {
                    for b in 0..k / QK {
                        let p = mins[r * k / QK + b] as f64 * sums[c * k / QK + b] as f64;
                        out[c * rows + r] += p;
                        mag[c * rows + r] += p.abs();
                    }
                }
            }
        }
        (out, mag)
    }

    #[test]
    fn kernels_match_the_scalar_reference_on_random_data() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for format in Format::ALL {
            for (rows, k, m) in [(7, 512, 5), (13, 256, 1), (4, 768, 9), (37, 256, 40)] {
                let x = random_acts(m, k, 5 + m as u64);
                for isa in isas() {
                    let (mat, data) = matrix(format, rows, k, 11 + rows as u64, isa);
                    let (expect, mag) = reference(format, &data, rows, k, &x, m, isa);
                    let mut out = vec![0f32; m * rows];
                    pool.install(|| mat.matmul(&x, m, &mut out, &mut Scratch::default())).unwrap();
                    for i in 0..out.len() {
                        let err = (out[i] as f64 - expect[i]).abs();
                        assert!(err <= 1e-5 * mag[i] + 1e-6, "{format:?} {isa:?} {rows}x{k} m={m} [{i}]: {} vs {}", out[i], expect[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_or_in_a_batch() {
        // Batches under 32 rows take the split by weight rows: each row as
        // alone, however many activation rows its kernel call takes.
        for (format, m) in Format::ALL.into_iter().flat_map(|f| [(f, 2), (f, 5), (f, 11)]) {
            let (rows, k) = (19, 512);
            let x = random_acts(m, k, 4);
            for isa in isas() {
                let (mat, _) = matrix(format, rows, k, 3, isa);
                let mut batch = vec![0f32; m * rows];
                mat.matmul(&x, m, &mut batch, &mut Scratch::default()).unwrap();
                for c in 0..m {
                    let mut one = vec![0f32; rows];
                    mat.matmul(&x[c * k..(c + 1) * k], 1, &mut one, &mut Scratch::default()).unwrap();
                    assert_eq!(one, batch[c * rows..(c + 1) * rows], "{format:?} {isa:?} row {c} of {m}");
                }
            }
        }
    }

    #[test]
    fn a_prefill_row_does_not_depend_on_its_neighbours() {
        // Split by activation rows (prefill): a row's bits are the same
        // wherever it sits in the batch and whatever surrounds it.
        for format in Format::ALL {
            let (rows, k, m) = (21, 256, 35);
            let x = random_acts(m + 1, k, 4);
            for isa in isas() {
                let (mat, _) = matrix(format, rows, k, 3, isa);
                let (mut first, mut shifted) = (vec![0f32; m * rows], vec![0f32; m * rows]);
                mat.matmul(&x[..m * k], m, &mut first, &mut Scratch::default()).unwrap();
                mat.matmul(&x[k..], m, &mut shifted, &mut Scratch::default()).unwrap();
                for c in 1..m {
                    assert_eq!(first[c * rows..(c + 1) * rows], shifted[(c - 1) * rows..c * rows], "{format:?} {isa:?} row {c}");
                }
            }
        }
    }

    #[test]
    fn q5k_products_match_dequantized_f32_math() {
        let (rows, k) = (40, 512);
        // Weights as candle's quantizer encodes them (a zero row and an outlier included).
        let w = random_acts(rows, k, 31);
        let wt = Tensor::from_slice(&w, (rows, k), &Device::Cpu).unwrap();
        let quantize = || QTensor::quantize(&wt, GgmlDType::Q5K).unwrap();
        let deq: Vec<f32> = quantize().dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        // One row (decoding), a few (drafted tokens), more than a tile, and a prefill panel.
        for m in [1, 3, 17, 128] {
            let x = random_acts(m, k, 100 + m as u64);
            for isa in isas() {
                let mat = QuantMatrix::with_isa(quantize(), isa).unwrap();
                assert!(!mat.has_fallback());
                let mut out = vec![0f32; m * rows];
                pool.install(|| mat.matmul(&x, m, &mut out, &mut Scratch::default())).unwrap();
                for c in 0..m {
                    let x = &x[c * k..(c + 1) * k];
                    for r in 0..rows {
                        let w = &deq[r * k..(r + 1) * k];
                        let exact: f64 = w.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum();
                        // The activations' 8-bit rounding: at most ~half a step
                        // (amax / 127 of their 256-value block, a little more
                        // with the f16 scales of 32-value blocks) per value.
                        let mut tol = 1e-5;
                        for (w, x) in w.chunks_exact(QK_K).zip(x.chunks_exact(QK_K)) {
                            let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 / 127.0;
                            let mag: f64 = w.iter().map(|&w| w.abs() as f64).sum();
                            let abs: f64 = w.iter().zip(x).map(|(&w, &x)| (w as f64 * x as f64).abs()).sum();
                            tol += 0.6 * step * mag + 1e-4 * abs;
                        }
                        let got = out[c * rows + r] as f64;
                        assert!((got - exact).abs() <= tol, "{isa:?} m={m} [{c}, {r}]: {got} vs {exact} (tolerance {tol})");
                    }
                }
            }
        }
    }

    #[test]
    fn stacked_and_candle_parts_match_candle() {
        let k = 256;
        // No outliers: they make the activations' quantization (in 256-value
        // blocks for candle's k-quants, 32-value ones for the packed kernels)
        // the main difference.
        let x: Vec<f32> = random_acts(3, k, 9).into_iter().map(|v| v.clamp(-2.0, 2.0)).collect();
        let mut tensors = Vec::new();
        let mut expected = Vec::new();
        // Q3_K and F32 have no kernels here: they are the candle parts.
        for (i, dtype) in [GgmlDType::Q4_1, GgmlDType::Q5K, GgmlDType::Q3K, GgmlDType::Q6K, GgmlDType::F32].into_iter().enumerate() {
            let w = Tensor::randn(0f32, 1.0, (5 + i, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let xt = Tensor::from_slice(&x, (3, k), &Device::Cpu).unwrap();
            expected.push(QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap().forward(&xt).unwrap());
            tensors.push(QuantMatrix::new(q).unwrap());
        }
        let mat = QuantMatrix::stack(tensors).unwrap();
        assert!(mat.has_fallback());
        let expected: Vec<f32> = Tensor::cat(&expected, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut out = vec![0f32; 3 * mat.rows()];
        mat.matmul(&x, 3, &mut out, &mut Scratch::default()).unwrap();
        // Products of 256 values of size ~1 (so ~16): the activations'
        // rounding alone moves them by about 0.1; a misplaced column by ~16.
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() <= 0.5, "{a} vs {b}");
        }
    }

    #[test]
    fn cpu_caps_parse_and_never_raise_the_instruction_set() {
        assert_eq!("scalar".parse::<CpuCap>(), Ok(CpuCap::Scalar));
        assert_eq!(" AVX2 ".parse::<CpuCap>(), Ok(CpuCap::Avx2));
        assert_eq!("Neon".parse::<CpuCap>(), Ok(CpuCap::Neon));
        assert_eq!("avx512".parse::<CpuCap>(), Ok(CpuCap::Avx512));
        assert_eq!("sse4".parse::<CpuCap>(), Err(UnknownCpuCap("sse4".into())));
        assert!("".parse::<CpuCap>().is_err());
        let all = Isa::available();
        let best = *all.last().unwrap();
        assert_eq!(Isa::best_within(&all, None), best);
        assert_eq!(Isa::best_within(&all, Some(CpuCap::Scalar)), Isa::Scalar);
        assert_eq!(Isa::best_within(&all, Some(CpuCap::Avx512)), best);
        assert!(Isa::best_within(&all, Some(CpuCap::Avx2)).level() <= CpuCap::Avx2);
        // A CPU without AVX-512 stays at what it has.
        assert_eq!(Isa::best_within(&[Isa::Scalar], Some(CpuCap::Avx512)), Isa::Scalar);
        #[cfg(target_arch = "x86_64")]
        {
            let three = [Isa::Scalar, Isa::Avx2, Isa::Avx512];
            assert_eq!(Isa::best_within(&three, Some(CpuCap::Avx2)), Isa::Avx2);
            assert_eq!(Isa::best_within(&[Isa::Scalar, Isa::Avx2], Some(CpuCap::Avx512)), Isa::Avx2);
            assert_eq!(Isa::best_within(&three, Some(CpuCap::Neon)), Isa::Scalar);
        }
        #[cfg(target_arch = "aarch64")]
        {
            assert_eq!(best, Isa::Neon);
            let two = [Isa::Scalar, Isa::Neon];
            assert_eq!(Isa::best_within(&two, None), Isa::Neon);
            assert_eq!(Isa::best_within(&two, Some(CpuCap::Neon)), Isa::Neon);
            assert_eq!(Isa::best_within(&two, Some(CpuCap::Avx2)), Isa::Neon);
            assert_eq!(Isa::best_within(&two, Some(CpuCap::Scalar)), Isa::Scalar);
        }
    }

    #[test]
    fn vector_quantization_equals_the_portable_one() {
        let mut x = random_acts(4, 256, 8);
        // Exact halves (d = 1): rounded away from zero, not to even.
        x[32..64].iter_mut().enumerate().for_each(|(i, v)| *v = if i == 0 { 127.0 } else { i as f32 / 2.0 - 8.0 });
        let mut fast = vec![Q8Block::default(); x.len() / QK];
        quantize_q8(&x, &mut fast);
        for (x, fast) in x.chunks_exact(QK).zip(&fast) {
            let mut slow = Q8Block::default();
            quantize_q8_block(x, &mut slow);
            assert_eq!((fast.qs, fast.d.to_bits(), fast.s.to_bits(), fast.sums), (slow.qs, slow.d.to_bits(), slow.s.to_bits(), slow.sums));
        }
    }

    /// `blocks` (formats, portable code) names no kernel module: the kernels
    /// use it, and which of them runs is chosen here.
    #[test]
    fn blocks_uses_no_kernel_module() {
        let source = include_str!("blocks.rs");
        for kernels in ["avx2", "avx512", "neon", "x16", "scalar", "Isa"] {
            assert!(!source.contains(&format!("super::{kernels}")), "blocks.rs uses super::{kernels}");
        }
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let (mat, _) = matrix(Format::Q4_0, 4, 64, 1, Isa::detect());
        let mut out = vec![0f32; 4];
        assert!(mat.matmul(&[0.0; 63], 1, &mut out, &mut Scratch::default()).is_err());
        assert!(mat.matmul(&[0.0; 64], 1, &mut out[..3], &mut Scratch::default()).is_err());
    }
}
