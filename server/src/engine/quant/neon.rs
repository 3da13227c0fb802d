//! NEON kernels for aarch64: a tile of `R` weight rows times `C` activation
//! rows per call, over the whole row length, on the file's row layout (the
//! contract of `avx2.rs`, which these follow block for block).
//!
//! Weights are unpacked to signed bytes once per block and row and reused for
//! the `C` activation rows. A format's offset (8 for Q4_0, 16 for Q5_0, 32 for
//! Q6_K) is taken off in 8 bits, where the values still fit, so a block's sum
//! is one signed dot product. Products of 16 byte pairs are summed into four
//! 32-bit lanes by `sdot` on cores with the dot product extension (`dotprod`,
//! Armv8.2: Cortex-A55 and A76 on, Neoverse, Apple M1 on), detected at run
//! time, and by widening multiplies and pairwise adds (`smull`, `sadalp`) on
//! older ones (Cortex-A53 and A72, as in a Raspberry Pi 3 or 4). Both put the
//! same exact sums in the same lanes, so both paths give the same bits. `sdot`
//! is written as inline assembly because Rust's `vdotq_s32` is not stable yet.
//!
//! Per block, the integer sum is converted once and scaled by one float
//! (`d_w d_a`) into four float lanes, k-quant sub-block scales are applied in
//! integers, and the minimums of Q4_1 and Q5_1 are added as `m_w s_a`, as in
//! `scalar.rs` and `avx2.rs`. Every (row, activation) pair sees the same
//! sequence of floating-point operations whatever the tile shape, so a
//! product's value does not depend on how many activation rows are multiplied
//! together: decoding one token and verifying a batch of drafted tokens give
//! bit-identical logits.

use std::arch::aarch64::*;
use std::arch::asm;

use super::blocks::{q4k_scale_min, Format, Q8Block, Q8KBlock};
use super::{Acts, Strides};

/// Weight rows per tile: each unpacked weight block serves [`TILE_C`]
/// activation rows and each activation load `TILE_R` weight rows, while the
/// twelve float accumulators, the unpacked weights and the activations stay
/// within NEON's 32 registers.
pub const TILE_R: usize = 4;
/// Activation rows per tile.
pub const TILE_C: usize = 3;

/// Whether this CPU runs these kernels. NEON is part of every aarch64 Linux
/// target, so this is true in practice; asking keeps the choice of kernels in
/// one place, as for the other instruction sets.
pub fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether this CPU has `sdot` (the `dotprod` feature), which the kernels use
/// when it does; the answer is cached by the standard library.
pub fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Proof that this CPU runs NEON and, when `SDOT`, `sdot`: made only by
/// [`Neon::detect`], so a kernel that holds one never runs an instruction the
/// CPU lacks.
#[derive(Clone, Copy)]
struct Neon<const SDOT: bool>(());

impl Neon<true> {
    fn detect() -> Option<Self> {
        (available() && has_dotprod()).then_some(Self(()))
    }
}

impl Neon<false> {
    fn detect() -> Option<Self> {
        available().then_some(Self(()))
    }
}

impl<const SDOT: bool> Neon<SDOT> {
    /// `acc` plus the products of `w` and `a`, the four consecutive ones
    /// `4i..4i + 4` into lane `i`: `sdot`, or its equal from widening
    /// multiplies and two pairwise adds. The same lanes, not only the same
    /// total, so that both paths convert and scale the same four integers.
    /// Exact: a product is at most 128 · 127 (activations stay within ±127),
    /// so a pair of them fits in 16 bits.
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot16(self, acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
        if SDOT {
            let mut acc = acc;
            // SAFETY: `self` proves this CPU has `sdot` (`Neon<true>` is only
            // made after `has_dotprod()`); the instruction touches only the
            // three registers.
            unsafe {
                asm!(
                    ".arch_extension dotprod",
                    "sdot {acc:v}.4s, {w:v}.16b, {a:v}.16b",
                    acc = inout(vreg) acc,
                    w = in(vreg) w,
                    a = in(vreg) a,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
            acc
        } else {
            let lo = vmull_s8(vget_low_s8(w), vget_low_s8(a));
            let hi = vmull_high_s8(w, a);
            vpadalq_s16(acc, vpaddq_s16(lo, hi))
        }
    }

    /// Sums of products of 32 weights with 32 activations, in four lanes.
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot32(self, w: [int8x16_t; 2], a: [int8x16_t; 2]) -> int32x4_t {
        self.dot16(self.dot16(vdupq_n_s32(0), w[0], a[0]), w[1], a[1])
    }
}

/// Computes `out[r * st.row + c * st.col]` = dot(weight row `r`, activation row `c`)
/// for `rows <= TILE_R` rows of `w` (each `row_bytes` long) and `cols <= TILE_C`
/// activation rows of `a` (each `nb` blocks long). With `streaming` (few
/// activation rows: the product is bound by reading the weights), or when the
/// tile is not full, the rows are taken one at a time: one stream through
/// memory. Uses `sdot` where the CPU has it.
///
/// The caller checked that `w`, `a` and `out` are long enough; out-of-range
/// indexing panics rather than reading out of bounds.
#[allow(clippy::too_many_arguments)]
pub fn tile(format: Format, w: &[u8], row_bytes: usize, rows: usize, a: Acts<'_>, nb: usize, cols: usize, out: &mut [f32], st: Strides, streaming: bool) {
    if let Some(neon) = Neon::<true>::detect() {
        tile_with(neon, format, w, row_bytes, rows, a, nb, cols, out, st, streaming)
    } else if let Some(neon) = Neon::<false>::detect() {
        tile_with(neon, format, w, row_bytes, rows, a, nb, cols, out, st, streaming)
    } else {
        zeros(rows, cols, out, st)
    }
}

/// Zeros where a tile's results go: the answer to a bug upstream (activations
/// of the wrong kind, or these kernels chosen on a CPU without NEON).
fn zeros(rows: usize, cols: usize, out: &mut [f32], st: Strides) {
    for r in 0..rows {
        for c in 0..cols {
            out[r * st.row + c * st.col] = 0.0;
        }
    }
}

/// [`tile`] with the dot products `neon` proves this CPU has.
#[allow(clippy::too_many_arguments)]
fn tile_with<const SDOT: bool>(neon: Neon<SDOT>, format: Format, w: &[u8], row_bytes: usize, rows: usize, a: Acts<'_>, nb: usize, cols: usize, out: &mut [f32], st: Strides, streaming: bool) {
    macro_rules! shapes {
        ($f:ident, $a:expr) => {{
            // SAFETY: `neon` proves this CPU runs NEON (and `sdot` when
            // `SDOT`); every memory access inside goes through bounds-checked
            // slices.
            unsafe {
                if rows == TILE_R && cols == TILE_C && !streaming {
                    $f::<SDOT, TILE_R, TILE_C>(neon, w, row_bytes, $a, nb, out, st)
                } else {
                    for r in 0..rows {
                        let w = &w[r * row_bytes..];
                        let out = &mut out[r * st.row..];
                        if cols == TILE_C {
                            $f::<SDOT, 1, TILE_C>(neon, w, row_bytes, $a, nb, out, st)
                        } else if cols == 2 {
                            // Two rows share each weight block's unpacking.
                            $f::<SDOT, 1, 2>(neon, w, row_bytes, $a, nb, out, st)
                        } else {
                            for c in 0..cols {
                                $f::<SDOT, 1, 1>(neon, w, row_bytes, &$a[c * nb..], nb, &mut out[c * st.col..], st)
                            }
                        }
                    }
                }
            }
        }};
    }
    match (format, a) {
        (Format::Q4_0, Acts::Q8(a)) => shapes!(tile_q4_0, a),
        (Format::Q4_1, Acts::Q8(a)) => shapes!(tile_q4_1, a),
        (Format::Q5_0, Acts::Q8(a)) => shapes!(tile_q5_0, a),
        (Format::Q5_1, Acts::Q8(a)) => shapes!(tile_q5_1, a),
        (Format::Q8_0, Acts::Q8(a)) => shapes!(tile_q8_0, a),
        (Format::Q4K, Acts::Q8K(a)) => shapes!(tile_q4k, a),
        (Format::Q5K, Acts::Q8K(a)) => shapes!(tile_q5k, a),
        (Format::Q6K, Acts::Q8K(a)) => shapes!(tile_q6k, a),
        _ => zeros(rows, cols, out, st),
    }
}

/// An f16 at `bytes[at..at + 2]`, converted by `fcvt`, which every aarch64
/// CPU has (it is base floating point, not the `fp16` arithmetic extension):
/// no feature check and no call per block, as `half`'s conversion has.
#[inline]
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let value: f32;
    // SAFETY: `fmov` and `fcvt` (half to single precision) are Armv8-A base
    // instructions; they touch only the two registers given.
    unsafe {
        asm!(
            "fmov {v:s}, {bits:w}",
            "fcvt {v:s}, {v:h}",
            bits = in(reg) bits as u32,
            v = out(vreg) value,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    value
}

/// 16 bytes at `bytes[0..16]`.
#[inline]
#[target_feature(enable = "neon")]
fn load16(bytes: &[u8]) -> uint8x16_t {
    let bytes = &bytes[..16];
    // SAFETY: `bytes` is 16 long (checked above); the load has no alignment need.
    unsafe { vld1q_u8(bytes.as_ptr()) }
}

/// 32 signed activation bytes, in two registers.
#[inline]
#[target_feature(enable = "neon")]
fn load32_i8(q: &[i8]) -> [int8x16_t; 2] {
    let q = &q[..32];
    // SAFETY: `q` is 32 long (checked above).
    unsafe { [vld1q_s8(q.as_ptr()), vld1q_s8(q[16..].as_ptr())] }
}

/// 8 i16 at `v[0..8]`.
#[inline]
#[target_feature(enable = "neon")]
fn load8_i16(v: &[i16]) -> int16x8_t {
    let v = &v[..8];
    // SAFETY: `v` is 8 long (checked above).
    unsafe { vld1q_s16(v.as_ptr()) }
}

/// Unsigned values `0..=63` as signed bytes, minus `offset`.
#[inline]
#[target_feature(enable = "neon")]
fn signed(v: [uint8x16_t; 2], offset: i8) -> [int8x16_t; 2] {
    let offset = vdupq_n_s8(offset);
    [vsubq_s8(vreinterpretq_s8_u8(v[0]), offset), vsubq_s8(vreinterpretq_s8_u8(v[1]), offset)]
}

/// 16 bytes of packed nibbles to 32 values: low nibbles first, then high ones.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8]) -> [uint8x16_t; 2] {
    let q = load16(qs);
    [vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(q)]
}

/// Bit `j` of the 32-bit `qh` to byte `j`: 0x10 where set, 0 elsewhere (the
/// fifth bit of Q5_0 and Q5_1).
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: &[u8]) -> [uint8x16_t; 2] {
    // Byte j takes byte j / 8 of qh (a table lookup), then keeps bit j % 8.
    const FIRST: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    const SECOND: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let bytes = vreinterpretq_u8_u32(vdupq_n_u32(qh));
    let (bits, fifth) = (load16(&BITS), vdupq_n_u8(0x10));
    let first = vtstq_u8(vqtbl1q_u8(bytes, load16(&FIRST)), bits);
    let second = vtstq_u8(vqtbl1q_u8(bytes, load16(&SECOND)), bits);
    [vandq_u8(first, fifth), vandq_u8(second, fifth)]
}

/// How one 32-value format's block turns into signed bytes.
trait Small {
    const BYTES: usize;
    /// Whether the block has an f16 minimum at byte 2.
    const MIN: bool;
    /// The block's 32 values, its offset taken off.
    fn unpack<const SDOT: bool>(neon: Neon<SDOT>, block: &[u8]) -> [int8x16_t; 2];
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;
struct Q8_0;

impl Small for Q4_0 {
    const BYTES: usize = 18;
    const MIN: bool = false;
    #[inline(always)]
    fn unpack<const SDOT: bool>(_: Neon<SDOT>, b: &[u8]) -> [int8x16_t; 2] {
        // SAFETY: the `Neon` argument proves this CPU runs NEON.
        unsafe { signed(nibbles(&b[2..18]), 8) }
    }
}

impl Small for Q4_1 {
    const BYTES: usize = 20;
    const MIN: bool = true;
    #[inline(always)]
    fn unpack<const SDOT: bool>(_: Neon<SDOT>, b: &[u8]) -> [int8x16_t; 2] {
        // SAFETY: the `Neon` argument proves this CPU runs NEON.
        unsafe { signed(nibbles(&b[4..20]), 0) }
    }
}

impl Small for Q5_0 {
    const BYTES: usize = 22;
    const MIN: bool = false;
    #[inline(always)]
    fn unpack<const SDOT: bool>(_: Neon<SDOT>, b: &[u8]) -> [int8x16_t; 2] {
        // SAFETY: the `Neon` argument proves this CPU runs NEON.
        unsafe {
            let (q, h) = (nibbles(&b[6..22]), fifth_bits(&b[2..6]));
            signed([vorrq_u8(q[0], h[0]), vorrq_u8(q[1], h[1])], 16)
        }
    }
}

impl Small for Q5_1 {
    const BYTES: usize = 24;
    const MIN: bool = true;
    #[inline(always)]
    fn unpack<const SDOT: bool>(_: Neon<SDOT>, b: &[u8]) -> [int8x16_t; 2] {
        // SAFETY: the `Neon` argument proves this CPU runs NEON.
        unsafe {
            let (q, h) = (nibbles(&b[8..24]), fifth_bits(&b[4..8]));
            signed([vorrq_u8(q[0], h[0]), vorrq_u8(q[1], h[1])], 0)
        }
    }
}

impl Small for Q8_0 {
    const BYTES: usize = 34;
    const MIN: bool = false;
    #[inline(always)]
    fn unpack<const SDOT: bool>(_: Neon<SDOT>, b: &[u8]) -> [int8x16_t; 2] {
        // SAFETY: the `Neon` argument proves this CPU runs NEON.
        unsafe { signed([load16(&b[2..18]), load16(&b[18..34])], 0) }
    }
}

/// The 32-value formats: `acc += d_w d_a Σ(w - offset) a`, plus `m_w s_a`
/// for the formats with a minimum.
#[inline]
#[target_feature(enable = "neon")]
fn tile_small<F: Small, const SDOT: bool, const R: usize, const C: usize>(neon: Neon<SDOT>, w: &[u8], row_bytes: usize, a: &[Q8Block], nb: usize, out: &mut [f32], st: Strides) {
    let mut acc = [[vdupq_n_f32(0.0); C]; R];
    let mut acc_min = [[0f32; C]; R];
    for b in 0..nb {
        let av: [[int8x16_t; 2]; C] = std::array::from_fn(|c| load32_i8(&a[c * nb + b].qs));
        for r in 0..R {
            let blk = &w[r * row_bytes + b * F::BYTES..][..F::BYTES];
            let wv = F::unpack(neon, blk);
            let dw = f16_at(blk, 0);
            let mw = if F::MIN { f16_at(blk, 2) } else { 0.0 };
            for c in 0..C {
                let blk_a = &a[c * nb + b];
                let p = neon.dot32(wv, av[c]);
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(p), dw * blk_a.d);
                if F::MIN {
                    acc_min[r][c] += mw * blk_a.s;
                }
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = vaddvq_f32(acc[r][c]) + acc_min[r][c];
        }
    }
}

macro_rules! small_kernel {
    ($name:ident, $fmt:ty) => {
        #[target_feature(enable = "neon")]
        fn $name<const SDOT: bool, const R: usize, const C: usize>(neon: Neon<SDOT>, w: &[u8], row_bytes: usize, a: &[Q8Block], nb: usize, out: &mut [f32], st: Strides) {
            tile_small::<$fmt, SDOT, R, C>(neon, w, row_bytes, a, nb, out, st)
        }
    };
}

small_kernel!(tile_q4_0, Q4_0);
small_kernel!(tile_q4_1, Q4_1);
small_kernel!(tile_q5_0, Q5_0);
small_kernel!(tile_q5_1, Q5_1);
small_kernel!(tile_q8_0, Q8_0);

/// Q4_K: `acc += d d_a Σ_j sc_j Σ n a - dmin d_a Σ_j m_j Σ a`, sub-block
/// scales applied in integers, one conversion per super-block.
#[target_feature(enable = "neon")]
fn tile_q4k<const SDOT: bool, const R: usize, const C: usize>(neon: Neon<SDOT>, w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    tile_q45k::<false, SDOT, R, C>(neon, w, row_bytes, a, nb, out, st)
}

/// Q5_K: Q4_K with a fifth bit per value (see [`tile_q45k`]).
#[target_feature(enable = "neon")]
fn tile_q5k<const SDOT: bool, const R: usize, const C: usize>(neon: Neon<SDOT>, w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    tile_q45k::<true, SDOT, R, C>(neon, w, row_bytes, a, nb, out, st)
}

/// Q4_K, or Q5_K with `FIFTH`: the same scales, minimums and nibbles; Q5_K
/// adds 32 bytes of high bits before the nibbles, and sub-block `j` takes
/// bit `j` of each of them. The high bits are shifted right by two per 64
/// values, so that the pair's bits are bits 0 and 1 of every byte; shifts left
/// by 4 and 3 put them at 0x10 (NEON shifts bytes, so nothing crosses over).
#[inline]
#[target_feature(enable = "neon")]
fn tile_q45k<const FIFTH: bool, const SDOT: bool, const R: usize, const C: usize>(neon: Neon<SDOT>, w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    let (bytes, nibbles_at) = if FIFTH { (176, 48) } else { (144, 16) };
    let (mask, bit) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x10));
    let mut acc = [[vdupq_n_f32(0.0); C]; R];
    for b in 0..nb {
        // Each activation row's sums per 32 values (a sub-block), for the
        // minimums: pairs of 16-value sums, at most 4096 in size.
        let sub_sums: [int16x8_t; C] = std::array::from_fn(|c| {
            let bsums = &a[c * nb + b].bsums;
            vpaddq_s16(load8_i16(&bsums[..8]), load8_i16(&bsums[8..]))
        });
        for r in 0..R {
            let blk = &w[r * row_bytes + b * bytes..][..bytes];
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let mut sc = [0i32; 8];
            let mut mins = [0i16; 8];
            for j in 0..8 {
                let (s, m) = q4k_scale_min(j, &blk[4..16]);
                sc[j] = s as i32;
                mins[j] = m as i16;
            }
            let mins = load8_i16(&mins);
            let mut qh = if FIFTH { [load16(&blk[16..]), load16(&blk[32..])] } else { [vdupq_n_u8(0); 2] };
            let mut isum = [vdupq_n_s32(0); C];
            for chunk in 0..4 {
                let at = nibbles_at + 32 * chunk;
                let q = [load16(&blk[at..]), load16(&blk[at + 16..])];
                let mut lo = [vandq_u8(q[0], mask), vandq_u8(q[1], mask)];
                let mut hi = [vshrq_n_u8::<4>(q[0]), vshrq_n_u8::<4>(q[1])];
                if FIFTH {
                    for i in 0..2 {
                        lo[i] = vorrq_u8(lo[i], vandq_u8(vshlq_n_u8::<4>(qh[i]), bit));
                        hi[i] = vorrq_u8(hi[i], vandq_u8(vshlq_n_u8::<3>(qh[i]), bit));
                        qh[i] = vshrq_n_u8::<2>(qh[i]);
                    }
                }
                let (lo, hi) = (signed(lo, 0), signed(hi, 0));
                for c in 0..C {
                    let qs = &a[c * nb + b].qs[64 * chunk..];
                    let p_lo = neon.dot32(lo, load32_i8(qs));
                    let p_hi = neon.dot32(hi, load32_i8(&qs[32..]));
                    isum[c] = vmlaq_n_s32(vmlaq_n_s32(isum[c], p_lo, sc[2 * chunk]), p_hi, sc[2 * chunk + 1]);
                }
            }
            for c in 0..C {
                let blk_a = &a[c * nb + b];
                let msum = vmlal_high_s16(vmull_s16(vget_low_s16(sub_sums[c]), vget_low_s16(mins)), sub_sums[c], mins);
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(isum[c]), d * blk_a.d);
                acc[r][c] = vfmsq_n_f32(acc[r][c], vcvtq_f32_s32(msum), dmin * blk_a.d);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = vaddvq_f32(acc[r][c]);
        }
    }
}

/// Q6_K: `acc += d d_a Σ_s sc_s Σ (v - 32) a`, all in integers per
/// super-block. Each half of 128 values is four runs of 32: the low or high
/// nibbles of `ql[0..32]` or `ql[32..64]`, with two bits of `qh` each on top.
#[target_feature(enable = "neon")]
fn tile_q6k<const SDOT: bool, const R: usize, const C: usize>(neon: Neon<SDOT>, w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    const BYTES: usize = 210;
    let (m4, m2) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30));
    let mut acc = [[vdupq_n_f32(0.0); C]; R];
    for b in 0..nb {
        for r in 0..R {
            let blk = &w[r * row_bytes + b * BYTES..][..BYTES];
            let d = f16_at(blk, 208);
            let scales = &blk[192..208];
            let mut isum = [vdupq_n_s32(0); C];
            for half in 0..2 {
                let ql0 = [load16(&blk[64 * half..]), load16(&blk[64 * half + 16..])];
                let ql1 = [load16(&blk[64 * half + 32..]), load16(&blk[64 * half + 48..])];
                let qh = [load16(&blk[128 + 32 * half..]), load16(&blk[128 + 32 * half + 16..])];
                // Sixteen values at a time: `i` picks the first or last 16 of each run.
                for i in 0..2 {
                    let runs = [
                        vorrq_u8(vandq_u8(ql0[i], m4), vandq_u8(vshlq_n_u8::<4>(qh[i]), m2)),
                        vorrq_u8(vandq_u8(ql1[i], m4), vandq_u8(vshlq_n_u8::<2>(qh[i]), m2)),
                        vorrq_u8(vshrq_n_u8::<4>(ql0[i]), vandq_u8(qh[i], m2)),
                        vorrq_u8(vshrq_n_u8::<4>(ql1[i]), vandq_u8(vshrq_n_u8::<2>(qh[i]), m2)),
                    ];
                    for (run, v) in runs.into_iter().enumerate() {
                        let v = vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(32));
                        let s = scales[8 * half + 2 * run + i] as i8 as i32;
                        for c in 0..C {
                            let qs = &a[c * nb + b].qs[128 * half + 32 * run + 16 * i..][..16];
                            // SAFETY: `qs` is 16 long (sliced above).
                            let av = unsafe { vld1q_s8(qs.as_ptr()) };
                            isum[c] = vmlaq_n_s32(isum[c], neon.dot16(vdupq_n_s32(0), v, av), s);
                        }
                    }
                }
            }
            for c in 0..C {
                let blk_a = &a[c * nb + b];
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(isum[c]), d * blk_a.d);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = vaddvq_f32(acc[r][c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocks::testing::{random_acts, random_rows};
    use super::super::blocks::{quantize_q8k, ActKind, QK, QK_K};
    use super::super::quantize_q8;
    use super::*;

    #[test]
    fn f16_conversion_matches_half() {
        // Every f16: zeros, subnormals, normals, infinities (NaNs compared as NaNs).
        for bits in 0..=u16::MAX {
            let bytes = bits.to_le_bytes();
            let (ours, theirs) = (f16_at(&bytes, 0), super::super::blocks::f16_at(&bytes, 0));
            assert!(ours.to_bits() == theirs.to_bits() || ours.is_nan() && theirs.is_nan(), "{bits:#06x}: {ours} vs {theirs}");
        }
    }

    /// Every tile shape of both paths (`sdot` where this CPU has it) against
    /// one weight row times one activation row without `sdot`.
    #[test]
    fn both_dot_products_and_every_tile_shape_give_the_same_bits() {
        let plain = Neon::<false>::detect().expect("NEON on aarch64");
        let fast = Neon::<true>::detect();
        // `scripts/test-aarch64` says which CPU qemu emulates, so that a
        // detection gone wrong fails here instead of testing one path only.
        if let Ok(expected) = std::env::var("CRIA_TEST_DOTPROD") {
            assert_eq!(fast.is_some(), expected == "1", "CRIA_TEST_DOTPROD={expected}");
        }
        let (rows, k, m) = (TILE_R + 1, 512, TILE_C + 2);
        let x = random_acts(m, k, 7);
        let mut q8 = vec![Q8Block::default(); m * k / QK];
        quantize_q8(&x, &mut q8);
        let mut q8k = vec![Q8KBlock::default(); m * k / QK_K];
        quantize_q8k(&x, &mut q8k);
        for format in Format::ALL {
            let row_bytes = format.row_bytes(k).unwrap();
            let w = random_rows(format, rows, k, 5);
            let (a, nb) = match format.act_kind() {
                ActKind::Q8 => (Acts::Q8(&q8), k / QK),
                ActKind::Q8K => (Acts::Q8K(&q8k), k / QK_K),
            };
            let st = Strides { row: 1, col: rows };
            let mut one = vec![0f32; rows * m];
            for r in 0..rows {
                for c in 0..m {
                    let out = &mut one[r + c * rows..];
                    tile_with(plain, format, &w[r * row_bytes..], row_bytes, 1, a.skip_rows(c, nb), nb, 1, out, st, true);
                }
            }
            // Whole tiles, a row short, a column short, streaming; then with `sdot`.
            let mut shapes = vec![(TILE_R, TILE_C, false, false), (TILE_R - 1, TILE_C, false, false), (TILE_R, TILE_C - 1, false, false), (TILE_R, TILE_C, true, false)];
            if fast.is_some() {
                shapes.extend([(TILE_R, TILE_C, false, true), (1, 1, true, true), (2, TILE_C, true, true)]);
            }
            for (tr, tc, streaming, sdot) in shapes {
                let mut tiled = vec![f32::NAN; rows * m];
                for r0 in (0..rows).step_by(tr) {
                    for c0 in (0..m).step_by(tc) {
                        let (rr, cc) = (tr.min(rows - r0), tc.min(m - c0));
                        let (w, a, out) = (&w[r0 * row_bytes..], a.skip_rows(c0, nb), &mut tiled[r0 + c0 * rows..]);
                        match fast.filter(|_| sdot) {
                            Some(fast) => tile_with(fast, format, w, row_bytes, rr, a, nb, cc, out, st, streaming),
                            None => tile_with(plain, format, w, row_bytes, rr, a, nb, cc, out, st, streaming),
                        }
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&tiled), bits(&one), "{format:?}, tiles of {tr}x{tc}, streaming {streaming}, sdot {sdot}");
            }
        }
    }
}
