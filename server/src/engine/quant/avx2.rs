//! AVX2/FMA kernels: a tile of `R` weight rows times `C` activation rows per
//! call, over the whole row length.
//!
//! Weights are unpacked to unsigned bytes (`0..=63`) once per block and row and
//! reused for the `C` activation rows; `maddubs` multiplies them with the signed
//! 8-bit activations and `madd` sums pairs to 32-bit lanes. A format's offset
//! (8 for Q4_0, 16 for Q5_0, 32 for Q6_K) is taken off in integers with the
//! activations' sums, so the integer result per block is exact. Q8_0 weights are
//! signed: they go through the sign trick (`|w|` times `a` with `w`'s sign).
//!
//! Every (row, activation) pair sees the same sequence of floating-point
//! operations whatever the tile shape, so a product's value does not depend on
//! how many activation rows are multiplied together: decoding one token and
//! verifying a batch of drafted tokens give bit-identical logits.

use std::arch::x86_64::*;

use super::blocks::{finish_q8_block, q4k_scale_min, Format, Q8Block, Q8KBlock};
use super::{Acts, Strides};

/// Weight rows per tile.
pub const TILE_R: usize = 4;
/// Activation rows per tile.
pub const TILE_C: usize = 3;
/// Activation rows per call for one weight row at a time (decoding and
/// drafted tokens): with one weight row only the accumulators stay in
/// registers, so more activation rows fit, and every weight block is
/// unpacked once for all of them (on Qwen2.5-Coder-0.5B a batch of four cost
/// 2.8 times one token as three plus one).
pub const STREAM_C: usize = 8;

/// Whether this CPU runs these kernels.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Computes `out[r * st.row + c * st.col]` = dot(weight row `r`, activation row `c`)
/// for `rows <= TILE_R` rows of `w` (each `row_bytes` long) and `cols <= TILE_C`
/// activation rows of `a` (each `nb` blocks long). With `streaming` (few
/// activation rows: the product is bound by reading the weights), or when the
/// tile is not full, the rows are taken one at a time: one stream through
/// memory, which the prefetchers follow best.
///
/// The caller checked [`available`] and that `w`, `a` and `out` are long enough;
/// out-of-range indexing panics rather than reading out of bounds.
#[allow(clippy::too_many_arguments)]
pub fn tile(format: Format, w: &[u8], row_bytes: usize, rows: usize, a: Acts<'_>, nb: usize, cols: usize, out: &mut [f32], st: Strides, streaming: bool) {
    macro_rules! shapes {
        ($f:ident, $a:expr) => {{
            // SAFETY: `available()` was checked by the caller (the kernels are
            // only selected after it returned true); every memory access inside
            // goes through bounds-checked slices.
            unsafe {
                if rows == TILE_R && cols == TILE_C && !streaming {
                    $f::<TILE_R, TILE_C>(w, row_bytes, $a, nb, out, st)
                } else {
                    for r in 0..rows {
                        let w = &w[r * row_bytes..];
                        let out = &mut out[r * st.row..];
                        // One weight row against up to STREAM_C activation
                        // rows: each weight block is unpacked once for all.
                        let mut c0 = 0;
                        while c0 < cols {
                            let (a, out) = (&$a[c0 * nb..], &mut out[c0 * st.col..]);
                            let n = (cols - c0).min(STREAM_C);
                            match n {
                                1 => $f::<1, 1>(w, row_bytes, a, nb, out, st),
                                2 => $f::<1, 2>(w, row_bytes, a, nb, out, st),
                                3 => $f::<1, 3>(w, row_bytes, a, nb, out, st),
                                4 => $f::<1, 4>(w, row_bytes, a, nb, out, st),
                                5 => $f::<1, 5>(w, row_bytes, a, nb, out, st),
                                6 => $f::<1, 6>(w, row_bytes, a, nb, out, st),
                                7 => $f::<1, 7>(w, row_bytes, a, nb, out, st),
                                _ => $f::<1, 8>(w, row_bytes, a, nb, out, st),
                            }
                            c0 += n;
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
        // Activations of the wrong kind: a bug upstream, answered with zeros.
        _ => {
            for r in 0..rows {
                for c in 0..cols {
                    out[r * st.row + c * st.col] = 0.0;
                }
            }
        }
    }
}

/// How far ahead in a weight row the next cache lines are asked for, so they
/// arrive while the blocks before them are computed. Decoding streams every
/// weight from memory once per token and the hardware prefetcher alone lags:
/// on Qwen2.5-Coder-0.5B (2 threads, AVX2) decoding with four interleaved
/// rows per tile went from 24 to 35 tokens/s with 1 KiB (512 B: 29, 2 KiB:
/// 34); one row at a time (as decoding now runs) from about 52 to 55.
const PREFETCH_AHEAD: usize = 1024;

/// Asks for the cache line holding `bytes[at]`, if `at` is inside `bytes`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch(bytes: &[u8], at: usize) {
    if let Some(byte) = bytes.get(at) {
        // A prefetch never faults; the address is inside `bytes` anyway.
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast());
    }
}

/// An f16 at `bytes[at..at + 2]`, converted with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let v: __m128;
    // SAFETY: F16C is enabled for this function; register-only instructions.
    unsafe {
        std::arch::asm!(
            "vmovd {v}, {b:e}",
            "vcvtph2ps {v}, {v}",
            b = in(reg) u32::from(bits),
            v = out(xmm_reg) v,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    _mm_cvtss_f32(v)
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sums of products of unsigned `w` and signed `a` bytes, four per 32-bit lane.
/// Exact while `w <= 63` and `|a| <= 127` (pairs stay within i16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8_i8(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

/// 32 bytes at `bytes[0..32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32(bytes: &[u8]) -> __m256i {
    let bytes = &bytes[..32];
    // SAFETY: `bytes` is 32 long (checked above); loadu has no alignment need.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// 32 signed activation bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32_i8(q: &[i8]) -> __m256i {
    let q = &q[..32];
    // SAFETY: `q` is 32 long (checked above).
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

/// 16 bytes of packed nibbles to 32 bytes: low nibbles first, then high ones.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(qs: &[u8]) -> __m256i {
    let qs = &qs[..16];
    // SAFETY: `qs` is 16 long (checked above).
    let q = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// Bit `j` of `qh` to byte `j`: 0x10 where set, 0 elsewhere (Q5's fifth bit).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fifth_bits(qh: &[u8]) -> __m256i {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    // Byte j takes byte j / 8 of qh; then every bit but bit j % 8 is set and
    // compared with all ones.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303),
    );
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// How one 32-value format's block turns into unsigned bytes.
trait Small {
    const BYTES: usize;
    /// Subtracted from every unpacked value (0 for the formats with a minimum).
    const OFFSET: i8;
    /// Whether the block has an f16 minimum at byte 2.
    const MIN: bool;
    /// Values as unsigned bytes, `0..=31`.
    fn unpack(block: &[u8]) -> __m256i;
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Small for Q4_0 {
    const BYTES: usize = 18;
    const OFFSET: i8 = 8;
    const MIN: bool = false;
    #[inline(always)]
    fn unpack(b: &[u8]) -> __m256i {
        // SAFETY: only reached from the target-feature kernels below.
        unsafe { nibbles(&b[2..18]) }
    }
}

impl Small for Q4_1 {
    const BYTES: usize = 20;
    const OFFSET: i8 = 0;
    const MIN: bool = true;
    #[inline(always)]
    fn unpack(b: &[u8]) -> __m256i {
        // SAFETY: only reached from the target-feature kernels below.
        unsafe { nibbles(&b[4..20]) }
    }
}

impl Small for Q5_0 {
    const BYTES: usize = 22;
    const OFFSET: i8 = 16;
    const MIN: bool = false;
    #[inline(always)]
    fn unpack(b: &[u8]) -> __m256i {
        // SAFETY: only reached from the target-feature kernels below.
        unsafe { _mm256_or_si256(nibbles(&b[6..22]), fifth_bits(&b[2..6])) }
    }
}

impl Small for Q5_1 {
    const BYTES: usize = 24;
    const OFFSET: i8 = 0;
    const MIN: bool = true;
    #[inline(always)]
    fn unpack(b: &[u8]) -> __m256i {
        // SAFETY: only reached from the target-feature kernels below.
        unsafe { _mm256_or_si256(nibbles(&b[8..24]), fifth_bits(&b[4..8])) }
    }
}

/// The 32-value formats with unsigned values: `acc += d_w * d_a * Σ(w - offset) a`,
/// plus `m_w * s_a` for the formats with a minimum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_small<F: Small, const R: usize, const C: usize>(w: &[u8], row_bytes: usize, a: &[Q8Block], nb: usize, out: &mut [f32], st: Strides) {
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut acc_min = [[0f32; C]; R];
    for b in 0..nb {
        let mut av = [_mm256_setzero_si256(); C];
        let mut ad = [_mm256_setzero_ps(); C];
        let mut off = [_mm256_setzero_si256(); C];
        for c in 0..C {
            let blk = &a[c * nb + b];
            av[c] = load32_i8(&blk.qs);
            ad[c] = _mm256_set1_ps(blk.d);
            if F::OFFSET != 0 {
                off[c] = dot_u8_i8(_mm256_set1_epi8(F::OFFSET), av[c]);
            }
        }
        for r in 0..R {
            let at = r * row_bytes + b * F::BYTES;
            prefetch(w, at + PREFETCH_AHEAD);
            let blk = &w[at..][..F::BYTES];
            let wv = F::unpack(blk);
            let dw = _mm256_set1_ps(f16_at(blk, 0));
            let mw = if F::MIN { f16_at(blk, 2) } else { 0.0 };
            for c in 0..C {
                let mut p = dot_u8_i8(wv, av[c]);
                if F::OFFSET != 0 {
                    p = _mm256_sub_epi32(p, off[c]);
                }
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, ad[c]), _mm256_cvtepi32_ps(p), acc[r][c]);
                if F::MIN {
                    acc_min[r][c] += mw * a[c * nb + b].s;
                }
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = hsum(acc[r][c]) + acc_min[r][c];
        }
    }
}

macro_rules! small_kernel {
    ($name:ident, $fmt:ty) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name<const R: usize, const C: usize>(w: &[u8], row_bytes: usize, a: &[Q8Block], nb: usize, out: &mut [f32], st: Strides) {
            tile_small::<$fmt, R, C>(w, row_bytes, a, nb, out, st)
        }
    };
}

small_kernel!(tile_q4_0, Q4_0);
small_kernel!(tile_q4_1, Q4_1);
small_kernel!(tile_q5_0, Q5_0);
small_kernel!(tile_q5_1, Q5_1);

/// Q8_0: signed weights, multiplied with the sign trick.
#[allow(clippy::needless_range_loop)] // `r` also places the row in `w`
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q8_0<const R: usize, const C: usize>(w: &[u8], row_bytes: usize, a: &[Q8Block], nb: usize, out: &mut [f32], st: Strides) {
    const BYTES: usize = 34;
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for b in 0..nb {
        let mut av = [_mm256_setzero_si256(); C];
        let mut ad = [_mm256_setzero_ps(); C];
        for c in 0..C {
            let blk = &a[c * nb + b];
            av[c] = load32_i8(&blk.qs);
            ad[c] = _mm256_set1_ps(blk.d);
        }
        for r in 0..R {
            let at = r * row_bytes + b * BYTES;
            prefetch(w, at + PREFETCH_AHEAD);
            let blk = &w[at..][..BYTES];
            let wv = load32(&blk[2..]);
            let w_abs = _mm256_sign_epi8(wv, wv);
            let dw = _mm256_set1_ps(f16_at(blk, 0));
            for c in 0..C {
                // |w| * (a with w's sign): unsigned times signed, exact for |w| <= 128.
                let p = dot_u8_i8(w_abs, _mm256_sign_epi8(av[c], wv));
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, ad[c]), _mm256_cvtepi32_ps(p), acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = hsum(acc[r][c]);
        }
    }
}

/// 16 i16 from the activation block's sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_bsums(a: &Q8KBlock) -> __m256i {
    // SAFETY: `bsums` is 16 i16, 32 bytes.
    unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) }
}

/// Q4_K: `acc += d d_a Σ_j sc_j Σ n a - dmin d_a Σ_j m_j Σ a`, sub-block
/// scales applied in integers, one conversion per super-block.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4k<const R: usize, const C: usize>(w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    tile_q45k::<false, R, C>(w, row_bytes, a, nb, out, st)
}

/// Q5_K: Q4_K with a fifth bit per value (see [`tile_q45k`]).
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q5k<const R: usize, const C: usize>(w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    tile_q45k::<true, R, C>(w, row_bytes, a, nb, out, st)
}

/// Q4_K, or Q5_K with `FIFTH`: the same scales, minimums and nibbles; Q5_K
/// adds 32 bytes of high bits before the nibbles. Sub-block `j` takes bit
/// `j` of each of the 32 `qh` bytes. `qh` is shifted right by two per 64
/// values, so that the pair's bits are bits 0 and 1 of every byte (the shifts
/// are of 16-bit lanes: bits crossing from a high byte land in bits 6 and 7
/// of the low one, which are never used), and shifts left by 4 and 3 put them
/// at 0x10.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q45k<const FIFTH: bool, const R: usize, const C: usize>(w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    let bytes = if FIFTH { 176 } else { 144 };
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for b in 0..nb {
        for r in 0..R {
            let blk = &w[r * row_bytes + b * bytes..][..bytes];
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let mut sc = [0i16; 8];
            let mut mins = [0i16; 16];
            for j in 0..8 {
                let (s, m) = q4k_scale_min(j, &blk[4..16]);
                sc[j] = s as i16;
                mins[2 * j] = m as i16;
                mins[2 * j + 1] = m as i16;
            }
            // SAFETY: `mins` is 16 i16, 32 bytes.
            let mins = unsafe { _mm256_loadu_si256(mins.as_ptr().cast()) };
            let mut qh = if FIFTH { load32(&blk[16..]) } else { _mm256_setzero_si256() };
            let mut isum = [_mm256_setzero_si256(); C];
            for chunk in 0..4 {
                let (lo, hi) = q45k_chunk::<FIFTH>(blk, chunk, &mut qh);
                let (s_lo, s_hi) = (_mm256_set1_epi16(sc[2 * chunk]), _mm256_set1_epi16(sc[2 * chunk + 1]));
                for c in 0..C {
                    let qs = &a[c * nb + b].qs[64 * chunk..];
                    let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32_i8(qs)), s_lo);
                    let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32_i8(&qs[32..])), s_hi);
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_add_epi32(p_lo, p_hi));
                }
            }
            for c in 0..C {
                let blk_a = &a[c * nb + b];
                let msum = _mm256_madd_epi16(load_bsums(blk_a), mins);
                let scale = _mm256_set1_ps(d * blk_a.d);
                let scale_min = _mm256_set1_ps(dmin * blk_a.d);
                acc[r][c] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum[c]), acc[r][c]);
                acc[r][c] = _mm256_fnmadd_ps(scale_min, _mm256_cvtepi32_ps(msum), acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = hsum(acc[r][c]);
        }
    }
}

/// Values `64 chunk..64 chunk + 64` of a Q4_K (or, with `FIFTH`, Q5_K)
/// super-block as unsigned bytes: sub-block `2 chunk`, then `2 chunk + 1`.
/// `qh` holds the fifth bits not used yet (loaded from `blk[16..48]` before
/// chunk 0); it is shifted on for the next chunk.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q45k_chunk<const FIFTH: bool>(blk: &[u8], chunk: usize, qh: &mut __m256i) -> (__m256i, __m256i) {
    let nibbles_at = if FIFTH { 48 } else { 16 };
    let (mask, bit) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
    let q = load32(&blk[nibbles_at + 32 * chunk..]);
    let mut lo = _mm256_and_si256(q, mask);
    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
    if FIFTH {
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16::<4>(*qh), bit));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16::<3>(*qh), bit));
        *qh = _mm256_srli_epi16::<2>(*qh);
    }
    (lo, hi)
}

/// Values `128 half..128 half + 128` of a Q6_K super-block as unsigned bytes
/// (`0..=63`), 32 per vector, in the activations' order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6k_half(blk: &[u8], half: usize) -> [__m256i; 4] {
    let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    let ql0 = load32(&blk[64 * half..]);
    let ql1 = load32(&blk[64 * half + 32..]);
    let qh = load32(&blk[128 + 32 * half..]);
    [
        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m2)),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m2)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), _mm256_and_si256(qh, m2)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2)),
    ]
}

/// Q6_K: `acc += d d_a Σ_s sc_s (Σ v a - 32 Σ a)`, all in integers per super-block.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q6k<const R: usize, const C: usize>(w: &[u8], row_bytes: usize, a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    const BYTES: usize = 210;
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for b in 0..nb {
        for r in 0..R {
            let blk = &w[r * row_bytes + b * BYTES..][..BYTES];
            let d = f16_at(blk, 208);
            let scales = &blk[192..208];
            // SAFETY: `scales` is 16 bytes.
            let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(scales.as_ptr().cast()) });
            let mut isum = [_mm256_setzero_si256(); C];
            for half in 0..2 {
                let v = q6k_half(blk, half);
                for (t, v) in v.iter().enumerate() {
                    let s = 8 * half + 2 * t;
                    let st = _mm256_set_m128i(_mm_set1_epi16(scales[s + 1] as i8 as i16), _mm_set1_epi16(scales[s] as i8 as i16));
                    for c in 0..C {
                        let qs = &a[c * nb + b].qs[128 * half + 32 * t..];
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*v, load32_i8(qs)), st);
                        isum[c] = _mm256_add_epi32(isum[c], p);
                    }
                }
            }
            for c in 0..C {
                let blk_a = &a[c * nb + b];
                let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(load_bsums(blk_a), sc16));
                let isum = _mm256_sub_epi32(isum[c], offset);
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d * blk_a.d), _mm256_cvtepi32_ps(isum), acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = hsum(acc[r][c]);
        }
    }
}

/// [`super::blocks::quantize_q8_block`] with AVX2, bit for bit: the largest
/// magnitude, then `x / d` rounded half away from zero. Returns false, having
/// written nothing, for a block with a value that is not finite (the portable
/// version then decides what it becomes).
pub fn quantize_q8_block(x: &[f32], block: &mut Q8Block) -> bool {
    let x: &[f32; 32] = match x.try_into() {
        Ok(x) => x,
        Err(_) => return false,
    };
    // SAFETY: the caller checked `available()`.
    unsafe { quantize_q8_avx2(x, block) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_avx2(x: &[f32; 32], block: &mut Q8Block) -> bool {
    // SAFETY (loads): `x` is 32 floats.
    let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
    let sign = _mm256_set1_ps(-0.0);
    let abs: [__m256; 4] = std::array::from_fn(|i| _mm256_andnot_ps(sign, v[i]));
    // Not finite: |x| > MAX, or NaN (unordered).
    let limit = _mm256_set1_ps(f32::MAX);
    let mut bad = _mm256_setzero_ps();
    for a in abs {
        bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLE_UQ>(a, limit));
    }
    if _mm256_movemask_ps(bad) != 0 {
        return false;
    }
    let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        let y = _mm256_mul_ps(v[i], id);
        // Round half away from zero: truncate, then step away by one where
        // the (exact) remainder is at least a half.
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
        let rem = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
        let step = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(rem, half), _mm256_or_ps(one, _mm256_and_ps(sign, y)));
        _mm256_cvttps_epi32(_mm256_add_ps(t, step))
    });
    // 32-bit to 8-bit; the packs interleave 128-bit lanes, the permute undoes it.
    let q16a = _mm256_packs_epi32(q[0], q[1]);
    let q16b = _mm256_packs_epi32(q[2], q[3]);
    let q8 = _mm256_packs_epi16(q16a, q16b);
    let q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `qs` is 32 bytes.
    unsafe { _mm256_storeu_si256(block.qs.as_mut_ptr().cast(), q8) };
    finish_q8_block(d, block);
    true
}

/// Weight rows unpacked together for prefill, before a panel of activation
/// rows; also the weight rows of a 32-value format's tile. Tile shapes were
/// chosen by timing one 64-row panel on one core (Q4_1 576 × 1536, Q5_0
/// 4864 × 896): 2 × 3 was the fastest of 1 × 4, 2 × 2, 2 × 3, 2 × 4, 3 × 3
/// and 4 × 2, by 5-10%.
const PANEL_R: usize = 2;
/// Activation rows per tile of a 32-value format's prefill kernel.
const PANEL_C: usize = 3;

/// Prefill (many activation rows): each group of [`PANEL_R`] weight rows is
/// unpacked once, to bytes and f32 scales in a small buffer that stays in
/// cache, and then multiplied with every activation row of the panel, so
/// unpacking (a third of the work of a Q5_0 tile) is paid once per panel
/// rather than once per tile. Offsets are taken off in floats, once per
/// pair, as a dot product of per-block minimums (`-offset * d`) with the
/// activations' block sums. Returns false, having done nothing, for a
/// format without such a kernel; the caller then uses [`tile`].
///
/// A pair's value differs in its last bits from [`tile`]'s (the offsets are
/// summed separately), so products of fewer rows (decoding, drafted tokens)
/// never use this path and stay bit-identical among themselves.
#[allow(clippy::too_many_arguments)]
pub fn panel(format: Format, w: &[u8], row_bytes: usize, rows: usize, a: Acts<'_>, nb: usize, cols: usize, out: &mut [f32], st: Strides) -> bool {
    // SAFETY: `available()` was checked by the caller; memory goes through slices.
    unsafe {
        match (format, a) {
            (Format::Q4_0, Acts::Q8(a)) => panel_small::<Q4_0>(w, row_bytes, rows, a, nb, cols, out, st),
            (Format::Q4_1, Acts::Q8(a)) => panel_small::<Q4_1>(w, row_bytes, rows, a, nb, cols, out, st),
            (Format::Q5_0, Acts::Q8(a)) => panel_small::<Q5_0>(w, row_bytes, rows, a, nb, cols, out, st),
            (Format::Q5_1, Acts::Q8(a)) => panel_small::<Q5_1>(w, row_bytes, rows, a, nb, cols, out, st),
            (Format::Q4K | Format::Q5K | Format::Q6K, Acts::Q8K(a)) => panel_k(format, w, row_bytes, rows, a, nb, cols, out, st),
            _ => return false,
        }
    }
    true
}

/// Weight rows unpacked for [`panel`]: row `r`, block `b` at `r * nb + b`.
struct Unpacked {
    /// 32 unsigned values per block.
    values: Vec<u8>,
    /// The block's scale.
    d: Vec<f32>,
    /// Added per unit of the activations' block sum: the minimum, or `-offset * d`.
    m: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn panel_small<F: Small>(w: &[u8], row_bytes: usize, rows: usize, a: &[Q8Block], nb: usize, cols: usize, out: &mut [f32], st: Strides) {
    // Block sums of the activations, contiguous per row for the minimum term:
    // GGML's f16-rounded `s` for the formats with a minimum (as the row
    // kernels), the exact `d * Σq` for offsets.
    let sums: Vec<f32> = a[..cols * nb]
        .iter()
        .map(|b| if F::MIN { b.s } else { b.d * (b.sums[0] as i32 + b.sums[1] as i32) as f32 })
        .collect();
    let mut u = Unpacked { values: vec![0; PANEL_R * nb * 32], d: vec![0.0; PANEL_R * nb], m: vec![0.0; PANEL_R * nb] };
    for r0 in (0..rows).step_by(PANEL_R) {
        let rr = PANEL_R.min(rows - r0);
        for r in 0..rr {
            let row = &w[(r0 + r) * row_bytes..][..row_bytes];
            for b in 0..nb {
                let blk = &row[b * F::BYTES..][..F::BYTES];
                let v = F::unpack(blk);
                let at = &mut u.values[(r * nb + b) * 32..][..32];
                // SAFETY: `at` is 32 bytes.
                unsafe { _mm256_storeu_si256(at.as_mut_ptr().cast(), v) };
                let d = f16_at(blk, 0);
                u.d[r * nb + b] = d;
                u.m[r * nb + b] = if F::MIN { f16_at(blk, 2) } else { -(F::OFFSET as f32) * d };
            }
        }
        let out = &mut out[r0 * st.row..];
        for c0 in (0..cols).step_by(PANEL_C) {
            let cc = PANEL_C.min(cols - c0);
            let out = &mut out[c0 * st.col..];
            let (a, sums) = (&a[c0 * nb..], &sums[c0 * nb..]);
            if rr == PANEL_R && cc == PANEL_C {
                unpacked_tile::<PANEL_R, PANEL_C>(&u, 0, a, sums, nb, out, st);
            } else {
                for r in 0..rr {
                    for c in 0..cc {
                        unpacked_tile::<1, 1>(&u, r, &a[c * nb..], &sums[c * nb..], nb, &mut out[r * st.row + c * st.col..], st);
                    }
                }
            }
        }
    }
}

/// Unpacked weight rows `r0..r0 + R` × `C` activation rows: per block, an
/// integer dot product scaled by both block scales; then the minimum terms,
/// eight blocks at a time.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpacked_tile<const R: usize, const C: usize>(u: &Unpacked, r0: usize, a: &[Q8Block], sums: &[f32], nb: usize, out: &mut [f32], st: Strides) {
    let values = &u.values[r0 * nb * 32..][..R * nb * 32];
    let (d, m) = (&u.d[r0 * nb..][..R * nb], &u.m[r0 * nb..][..R * nb]);
    let a = &a[..C * nb];
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for b in 0..nb {
        let mut av = [_mm256_setzero_si256(); C];
        let mut ad = [_mm256_setzero_ps(); C];
        for c in 0..C {
            let blk = &a[c * nb + b];
            av[c] = load32_i8(&blk.qs);
            ad[c] = _mm256_set1_ps(blk.d);
        }
        for r in 0..R {
            let wv = load32(&values[(r * nb + b) * 32..]);
            let dw = _mm256_set1_ps(d[r * nb + b]);
            for c in 0..C {
                let p = dot_u8_i8(wv, av[c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, ad[c]), _mm256_cvtepi32_ps(p), acc[r][c]);
            }
        }
    }
    let whole = nb / 8 * 8;
    for r in 0..R {
        let m = &m[r * nb..][..nb];
        for c in 0..C {
            let s = &sums[c * nb..][..nb];
            let mut macc = _mm256_setzero_ps();
            for b in (0..whole).step_by(8) {
                // SAFETY: `b + 8 <= nb`, the length of both slices.
                let (mv, sv) = unsafe { (_mm256_loadu_ps(m[b..].as_ptr()), _mm256_loadu_ps(s[b..].as_ptr())) };
                macc = _mm256_fmadd_ps(mv, sv, macc);
            }
            let mut tail = 0f32;
            for b in whole..nb {
                tail += m[b] * s[b];
            }
            out[r * st.row + c * st.col] = hsum(acc[r][c]) + (hsum(macc) + tail);
        }
    }
}

/// One 256-value super-block of a k-quant row, unpacked for [`panel`]: the
/// values in the activations' order and the sub-block scales as the vectors
/// the integer products are multiplied with, so the tile kernel does no
/// unpacking at all.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct SuperRow {
    /// Unsigned values (`0..=31`, or `0..=63` for Q6_K).
    values: [u8; 256],
    /// Per 32 values: the multipliers of their 16 byte-pair sums.
    scales: [[i16; 16]; 8],
    /// Per 16 values: the multipliers of the activations' sums (Q4_K and
    /// Q5_K: the sub-block minimums; Q6_K: the scales, for its offset of 32).
    mins: [i16; 16],
    /// The super-block scale.
    d: f32,
    /// The minimums' super-block scale (Q4_K, Q5_K).
    dmin: f32,
}

const EMPTY_SUPER_ROW: SuperRow = SuperRow { values: [0; 256], scales: [[0; 16]; 8], mins: [0; 16], d: 0.0, dmin: 0.0 };

/// Stores 32 bytes at `out[0..32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store32(out: &mut [u8], v: __m256i) {
    let out = &mut out[..32];
    // SAFETY: `out` is 32 long (checked above).
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
}

/// Unpacks one Q4_K/Q5_K (`fifth`) or Q6_K super-block.
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_super(format: Format, blk: &[u8], into: &mut SuperRow) {
    match format {
        Format::Q4K | Format::Q5K => {
            let fifth = format == Format::Q5K;
            into.d = f16_at(blk, 0);
            into.dmin = f16_at(blk, 2);
            for j in 0..8 {
                let (sc, m) = q4k_scale_min(j, &blk[4..16]);
                into.scales[j] = [sc as i16; 16];
                into.mins[2 * j] = m as i16;
                into.mins[2 * j + 1] = m as i16;
            }
            let mut qh = if fifth { load32(&blk[16..]) } else { _mm256_setzero_si256() };
            for chunk in 0..4 {
                let (lo, hi) = if fifth { q45k_chunk::<true>(blk, chunk, &mut qh) } else { q45k_chunk::<false>(blk, chunk, &mut qh) };
                store32(&mut into.values[64 * chunk..], lo);
                store32(&mut into.values[64 * chunk + 32..], hi);
            }
        }
        _ => {
            // Q6_K: 16 signed scales, one per 16 values.
            into.d = f16_at(blk, 208);
            into.dmin = 0.0;
            let scales = &blk[192..208];
            for (i, &s) in scales.iter().enumerate() {
                into.mins[i] = s as i8 as i16;
            }
            for ch in 0..8 {
                let (lo, hi) = (scales[2 * ch] as i8 as i16, scales[2 * ch + 1] as i8 as i16);
                into.scales[ch] = std::array::from_fn(|l| if l < 8 { lo } else { hi });
            }
            for half in 0..2 {
                for (t, v) in q6k_half(blk, half).into_iter().enumerate() {
                    store32(&mut into.values[128 * half + 32 * t..], v);
                }
            }
        }
    }
}

/// Weight rows × activation rows per tile of [`super_tile`]: its integer
/// sums take registers of their own, and one row by four activation rows
/// ran Q4_K and Q6_K panels (896 × 4864) 1.5× faster than the decoding
/// tiles, where 2 × 2, 4 × 1 and 2 × 3 gained nothing (register spills).
const K_TILE_R: usize = 1;
const K_TILE_C: usize = 4;

/// [`panel`] for the k-quants: `nb` super-blocks per row.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn panel_k(format: Format, w: &[u8], row_bytes: usize, rows: usize, a: &[Q8KBlock], nb: usize, cols: usize, out: &mut [f32], st: Strides) {
    let bytes = format.block_bytes();
    let mut u = vec![EMPTY_SUPER_ROW; PANEL_R * nb];
    for r0 in (0..rows).step_by(PANEL_R) {
        let rr = PANEL_R.min(rows - r0);
        for r in 0..rr {
            let row = &w[(r0 + r) * row_bytes..][..row_bytes];
            for b in 0..nb {
                unpack_super(format, &row[b * bytes..][..bytes], &mut u[r * nb + b]);
            }
        }
        for t0 in (0..rr).step_by(K_TILE_R) {
            let tr = K_TILE_R.min(rr - t0);
            let (u, out) = (&u[t0 * nb..], &mut out[(r0 + t0) * st.row..]);
            for c0 in (0..cols).step_by(K_TILE_C) {
                let cc = K_TILE_C.min(cols - c0);
                let (a, out) = (&a[c0 * nb..], &mut out[c0 * st.col..]);
                match (format == Format::Q6K, tr == K_TILE_R && cc == K_TILE_C) {
                    (false, true) => super_tile::<false, K_TILE_R, K_TILE_C>(u, a, nb, out, st),
                    (true, true) => super_tile::<true, K_TILE_R, K_TILE_C>(u, a, nb, out, st),
                    (q6k, false) => {
                        for r in 0..tr {
                            for c in 0..cc {
                                let (u, a, out) = (&u[r * nb..], &a[c * nb..], &mut out[r * st.row + c * st.col..]);
                                if q6k {
                                    super_tile::<true, 1, 1>(u, a, nb, out, st)
                                } else {
                                    super_tile::<false, 1, 1>(u, a, nb, out, st)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Unpacked super-block rows `R` × `C` activation rows. Q4_K/Q5_K:
/// `d d_a Σ sc (Σ v a) - dmin d_a Σ m Σ a`; Q6_K (`OFFSET`):
/// `d d_a (Σ sc Σ v a - 32 Σ sc Σ a)`, integers until the super-block's end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn super_tile<const OFFSET: bool, const R: usize, const C: usize>(u: &[SuperRow], a: &[Q8KBlock], nb: usize, out: &mut [f32], st: Strides) {
    let u = &u[..R * nb];
    let a = &a[..C * nb];
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for b in 0..nb {
        let mut isum = [[_mm256_setzero_si256(); C]; R];
        for ch in 0..8 {
            let mut av = [_mm256_setzero_si256(); C];
            for c in 0..C {
                av[c] = load32_i8(&a[c * nb + b].qs[32 * ch..]);
            }
            for r in 0..R {
                let sr = &u[r * nb + b];
                let v = load32(&sr.values[32 * ch..]);
                // SAFETY: a row of `scales` is 16 i16, 32 bytes.
                let sc = unsafe { _mm256_loadu_si256(sr.scales[ch].as_ptr().cast()) };
                for c in 0..C {
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(v, av[c]), sc);
                    isum[r][c] = _mm256_add_epi32(isum[r][c], p);
                }
            }
        }
        for r in 0..R {
            let sr = &u[r * nb + b];
            // SAFETY: `mins` is 16 i16, 32 bytes.
            let mins = unsafe { _mm256_loadu_si256(sr.mins.as_ptr().cast()) };
            for c in 0..C {
                let blk_a = &a[c * nb + b];
                let msum = _mm256_madd_epi16(load_bsums(blk_a), mins);
                if OFFSET {
                    let isum = _mm256_sub_epi32(isum[r][c], _mm256_slli_epi32::<5>(msum));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(sr.d * blk_a.d), _mm256_cvtepi32_ps(isum), acc[r][c]);
                } else {
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(sr.d * blk_a.d), _mm256_cvtepi32_ps(isum[r][c]), acc[r][c]);
                    acc[r][c] = _mm256_fnmadd_ps(_mm256_set1_ps(sr.dmin * blk_a.d), _mm256_cvtepi32_ps(msum), acc[r][c]);
                }
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r * st.row + c * st.col] = hsum(acc[r][c]);
        }
    }
}
