//! Block layouts of the GGML quantization formats cria multiplies itself, their
//! scalar dequantization (the reference every kernel is tested against, and the
//! embedding lookup), and the quantization of activations into 8-bit blocks.
//!
//! Weights are kept exactly as the GGUF file stores them: a row of `k` values is
//! `k / block_elems` blocks of `block_bytes` bytes. Activations are quantized
//! once per matrix product into [`Q8Block`]s (32 values, for the 32-value
//! formats) or [`Q8KBlock`]s (256 values, for the k-quants), the way GGML and
//! candle do it, so that the integer sums equal theirs exactly.

use half::f16;

/// Values per block of the 32-value formats.
pub const QK: usize = 32;
/// Values per super-block of the k-quants.
pub const QK_K: usize = 256;

/// The weight formats with kernels of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// 4-bit, one f16 scale per 32 values, offset 8.
    Q4_0,
    /// 4-bit, f16 scale and minimum per 32 values.
    Q4_1,
    /// 5-bit, one f16 scale per 32 values, offset 16.
    Q5_0,
    /// 5-bit, f16 scale and minimum per 32 values.
    Q5_1,
    /// 8-bit, one f16 scale per 32 values.
    Q8_0,
    /// 4-bit k-quant: 256 values, 6-bit scales and minimums per 32.
    Q4K,
    /// 5-bit k-quant: Q4_K's layout plus a plane of fifth bits (most tensors
    /// of the common `Q5_K_M` files).
    Q5K,
    /// 6-bit k-quant: 256 values, 8-bit scales per 16.
    Q6K,
}

/// Which kind of quantized activation a format multiplies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    /// [`Q8Block`]: 32 values.
    Q8,
    /// [`Q8KBlock`]: 256 values.
    Q8K,
}

impl Format {
    /// Every format, for tests.
    pub const ALL: [Format; 8] = [Self::Q4_0, Self::Q4_1, Self::Q5_0, Self::Q5_1, Self::Q8_0, Self::Q4K, Self::Q5K, Self::Q6K];

    /// The format of a GGML type, if cria has kernels for it.
    pub fn from_ggml(dtype: candle_core::quantized::GgmlDType) -> Option<Self> {
        use candle_core::quantized::GgmlDType as G;
        Some(match dtype {
            G::Q4_0 => Self::Q4_0,
            G::Q4_1 => Self::Q4_1,
            G::Q5_0 => Self::Q5_0,
            G::Q5_1 => Self::Q5_1,
            G::Q8_0 => Self::Q8_0,
            G::Q4K => Self::Q4K,
            G::Q5K => Self::Q5K,
            G::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// Values per block.
    pub fn block_elems(self) -> usize {
        match self {
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
            _ => QK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// The activation blocks this format's kernels take.
    pub fn act_kind(self) -> ActKind {
        match self {
            Self::Q4K | Self::Q5K | Self::Q6K => ActKind::Q8K,
            _ => ActKind::Q8,
        }
    }

    /// Bytes of one row of `k` values, or `None` when `k` is not a whole number of blocks.
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        k.is_multiple_of(self.block_elems()).then(|| k / self.block_elems() * self.block_bytes())
    }
}

/// An f16 stored little-endian at `at`.
#[inline]
pub fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K or Q5_K
/// super-block (GGML's `get_scale_min_k4`).
#[inline]
pub fn q4k_scale_min(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
    }
}

/// Value `l` (`0..32`, unsigned `0..=31`) of sub-block `j` (`0..8`) of a
/// Q5_K super-block with nibbles `qs` (128 bytes) and high bits `qh` (32
/// bytes): sub-blocks `2c` and `2c + 1` share the 32 bytes `qs[32c..]` (low,
/// then high nibbles), and sub-block `j` takes its fifth bits from bit `j` of
/// `qh[l]`.
#[inline]
pub fn q5k_value(qs: &[u8], qh: &[u8], j: usize, l: usize) -> u8 {
    let q = qs[32 * (j / 2) + l];
    let nibble = if j.is_multiple_of(2) { q & 0xF } else { q >> 4 };
    nibble | (((qh[l] >> j) & 1) << 4)
}

/// Dequantizes one block (`format.block_bytes()` bytes) into
/// `format.block_elems()` values. The definition every kernel must agree with.
pub fn dequantize_block(format: Format, b: &[u8], out: &mut [f32]) {
    match format {
        Format::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                out[j] = ((b[2 + j] & 0xF) as i32 - 8) as f32 * d;
                out[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        Format::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                out[j] = (b[4 + j] & 0xF) as f32 * d + m;
                out[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }
        Format::Q5_0 | Format::Q5_1 => {
            let (d, m, qh_at) = match format {
                Format::Q5_0 => (f16_at(b, 0), 0.0, 2),
                _ => (f16_at(b, 0), f16_at(b, 2), 4),
            };
            let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
            let qs = &b[qh_at + 4..];
            let offset = if format == Format::Q5_0 { 16 } else { 0 };
            for j in 0..16 {
                let lo = (qs[j] & 0xF) as i32 | ((((qh >> j) & 1) as i32) << 4);
                let hi = (qs[j] >> 4) as i32 | ((((qh >> (j + 16)) & 1) as i32) << 4);
                out[j] = (lo - offset) as f32 * d + m;
                out[j + 16] = (hi - offset) as f32 * d + m;
            }
        }
        Format::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                out[j] = b[2 + j] as i8 as f32 * d;
            }
        }
        Format::Q4K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let qs = &b[16..144];
            for chunk in 0..4 {
                let (s1, m1) = q4k_scale_min(2 * chunk, scales);
                let (s2, m2) = q4k_scale_min(2 * chunk + 1, scales);
                let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
                let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
                for l in 0..32 {
                    let q = qs[32 * chunk + l];
                    out[64 * chunk + l] = d1 * (q & 0xF) as f32 - m1;
                    out[64 * chunk + 32 + l] = d2 * (q >> 4) as f32 - m2;
                }
            }
        }
        Format::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
            for j in 0..8 {
                let (sc, m) = q4k_scale_min(j, scales);
                let (d1, m1) = (d * sc as f32, dmin * m as f32);
                for l in 0..32 {
                    out[32 * j + l] = d1 * q5k_value(qs, qh, j, l) as f32 - m1;
                }
            }
        }
        Format::Q6K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            for half in 0..2 {
                let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                let sc = |i: usize| scales[8 * half + i] as i8 as f32;
                let out = &mut out[128 * half..];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    out[l] = d * sc(is) * q1 as f32;
                    out[l + 32] = d * sc(is + 2) * q2 as f32;
                    out[l + 64] = d * sc(is + 4) * q3 as f32;
                    out[l + 96] = d * sc(is + 6) * q4 as f32;
                }
            }
        }
    }
}

/// Dequantizes a whole row (`row` holds whole blocks; `out` one value per element).
pub fn dequantize_row(format: Format, row: &[u8], out: &mut [f32]) {
    let (be, bb) = (format.block_elems(), format.block_bytes());
    for (block, out) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        dequantize_block(format, block, out);
    }
}

/// 32 activations quantized to 8 bits: `x ≈ d * qs`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Q8Block {
    /// Quantized values, `|q| <= 127`.
    pub qs: [i8; QK],
    /// Scale, rounded through f16 like GGML's `block_q8_0`.
    pub d: f32,
    /// `d * sum(qs)` rounded through f16 like GGML's `block_q8_1`, for the
    /// formats with a minimum.
    pub s: f32,
    /// Sums of the first and the last 16 values (for offsets and minimums).
    pub sums: [i16; 2],
}

/// 256 activations quantized to 8 bits, with sums of each 16 for the
/// k-quants' minimums and offsets.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Q8KBlock {
    /// Quantized values, `|q| <= 127`.
    pub qs: [i8; QK_K],
    /// Scale.
    pub d: f32,
    /// Sum of each run of 16 values.
    pub bsums: [i16; QK_K / 16],
}

impl Default for Q8KBlock {
    fn default() -> Self {
        Self { qs: [0; QK_K], d: 0.0, bsums: [0; QK_K / 16] }
    }
}

/// One block of [`super::quantize_q8`] in portable code: the reference the
/// vector version must equal bit for bit.
pub fn quantize_q8_block(x: &[f32], block: &mut Q8Block) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, v) in block.qs.iter_mut().zip(x) {
        // `as` saturates, and NaN becomes 0: no input can panic here.
        *q = (v * id).round() as i8;
    }
    finish_q8_block(d, block);
}

/// Sets a block's sums and scales once its values are quantized with scale `d`.
pub fn finish_q8_block(d: f32, block: &mut Q8Block) {
    let lo: i32 = block.qs[..16].iter().map(|&q| q as i32).sum();
    let hi: i32 = block.qs[16..].iter().map(|&q| q as i32).sum();
    block.sums = [lo as i16, hi as i16];
    let dh = f16::from_f32(d);
    block.d = dh.to_f32();
    block.s = (f16::from_f32((lo + hi) as f32) * dh).to_f32();
}

/// Quantizes `x` (a multiple of 256 long) into `out` as candle's
/// `BlockQ8K::from_float` does.
pub fn quantize_q8k(x: &[f32], out: &mut [Q8KBlock]) {
    for (x, block) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *block = Q8KBlock::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in block.qs.iter_mut().zip(x) {
            *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        for (sum, qs) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
            *sum = qs.iter().map(|&q| q as i16).sum();
        }
        block.d = 1.0 / iscale;
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Random blocks with sane scales, for the kernel tests.
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `rows` random rows of `k` values in `format`, every f16 field a small finite number.
    pub fn random_rows(format: Format, rows: usize, k: usize, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        let row_bytes = format.row_bytes(k).expect("whole blocks");
        let mut data = vec![0u8; rows * row_bytes];
        rng.fill(&mut data[..]);
        let scale = |rng: &mut StdRng| f16::from_f32(rng.random_range(-0.05f32..0.05)).to_le_bytes();
        for block in data.chunks_exact_mut(format.block_bytes()) {
            match format {
                Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => block[0..2].copy_from_slice(&scale(&mut rng)),
                Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K => {
                    block[0..2].copy_from_slice(&scale(&mut rng));
                    block[2..4].copy_from_slice(&scale(&mut rng));
                }
                Format::Q6K => block[208..210].copy_from_slice(&scale(&mut rng)),
            }
        }
        data
    }

    /// Random activations, some rows with large outliers and one all zero.
    pub fn random_acts(m: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        if m > 1 {
            x[k..2 * k].iter_mut().for_each(|v| *v = 0.0);
        }
        if let Some(v) = x.get_mut(3) {
            *v = 40.0;
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::super::quantize_q8;
    use super::testing::*;
    use super::*;
    use candle_core::quantized::{GgmlDType, QStorage, QTensor};
    use candle_core::Device;

    fn ggml(format: Format) -> GgmlDType {
        match format {
            Format::Q4_0 => GgmlDType::Q4_0,
            Format::Q4_1 => GgmlDType::Q4_1,
            Format::Q5_0 => GgmlDType::Q5_0,
            Format::Q5_1 => GgmlDType::Q5_1,
            Format::Q8_0 => GgmlDType::Q8_0,
            Format::Q4K => GgmlDType::Q4K,
            Format::Q5K => GgmlDType::Q5K,
            Format::Q6K => GgmlDType::Q6K,
        }
    }

    #[test]
    fn dequantization_matches_candle() {
        for format in Format::ALL {
            assert_eq!(Format::from_ggml(ggml(format)), Some(format));
            assert_eq!(format.block_bytes(), ggml(format).type_size());
            let (rows, k) = (3, 512);
            let data = random_rows(format, rows, k, 1);
            let storage = QStorage::from_data(std::borrow::Cow::Borrowed(&data[..]), &Device::Cpu, ggml(format)).unwrap();
            let q = QTensor::new(storage, (rows, k)).unwrap();
            let theirs: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let mut ours = vec![0f32; rows * k];
            for (row, out) in data.chunks_exact(format.row_bytes(k).unwrap()).zip(ours.chunks_exact_mut(k)) {
                dequantize_row(format, row, out);
            }
            assert_eq!(ours, theirs, "{format:?}");
        }
    }

    #[test]
    fn dequantization_of_candle_quantized_weights_matches_candle() {
        // Real encodings (scales chosen by candle's quantizer), not random bytes.
        let (rows, k) = (5, 768);
        let w = random_acts(rows, k, 21);
        let t = candle_core::Tensor::from_slice(&w, (rows, k), &Device::Cpu).unwrap();
        for format in Format::ALL {
            let q = QTensor::quantize(&t, ggml(format)).unwrap();
            let data = q.data().unwrap();
            let theirs: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let mut ours = vec![0f32; rows * k];
            for (row, out) in data.chunks_exact(format.row_bytes(k).unwrap()).zip(ours.chunks_exact_mut(k)) {
                dequantize_row(format, row, out);
            }
            assert_eq!(ours, theirs, "{format:?}");
            // And the encoding is a sane one: close to the original weights.
            let err = ours.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 3.0, "{format:?}: {err}");
        }
    }

    #[test]
    fn q8_quantization_reconstructs_within_half_a_step() {
        let x = random_acts(2, 256, 3);
        let mut blocks = vec![Q8Block::default(); 16];
        quantize_q8(&x, &mut blocks);
        let mut kblocks = vec![Q8KBlock::default(); 2];
        quantize_q8k(&x, &mut kblocks);
        for (i, v) in x.iter().enumerate() {
            let b = &blocks[i / QK];
            // d went through f16: allow its rounding on top of half a step.
            let err = (b.qs[i % QK] as f32 * b.d - v).abs();
            assert!(err <= 0.51 * b.d + 1e-3 * v.abs(), "q8 {i}: {err}");
            let kb = &kblocks[i / QK_K];
            let err = (kb.qs[i % QK_K] as f32 * kb.d - v).abs();
            assert!(err <= 0.51 * kb.d.abs() + 1e-6, "q8k {i}: {err}");
        }
        for kb in &kblocks {
            for (s, qs) in kb.bsums.iter().zip(kb.qs.chunks_exact(16)) {
                assert_eq!(*s as i32, qs.iter().map(|&q| q as i32).sum::<i32>());
            }
        }
    }

    #[test]
    fn non_finite_activations_do_not_panic() {
        let mut x = vec![1.0f32; 256];
        x[5] = f32::NAN;
        x[6] = f32::INFINITY;
        let mut blocks = vec![Q8Block::default(); 8];
        quantize_q8(&x, &mut blocks);
        let mut kblocks = vec![Q8KBlock::default(); 1];
        quantize_q8k(&x, &mut kblocks);
    }
}
