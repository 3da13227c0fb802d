//! AVX-512 VNNI kernels on the 16-row packed layout of `x16.rs`.
//!
//! For each 32-value block, the 16 rows' values are unpacked into eight
//! vectors of bytes (4 values × 16 rows each); every activation row then
//! takes eight `vpdpbusd`s, each multiplying those bytes with 4 activation
//! bytes broadcast to all lanes, so the 16 lanes end with the 16 rows'
//! integer sums. The format's offset comes off with the activations' sums, a
//! conversion and a fused multiply-add apply the scales. Unpacking is shared
//! by up to [`TILE_C`] activation rows, which is what makes prefill fast;
//! with one activation row (decoding) the 16 rows stream through once, in
//! memory order.
//!
//! Every activation row goes through the same operations whatever the tile,
//! so results do not depend on how many rows are multiplied together.

use std::arch::x86_64::*;

use super::blocks::{Format, Q8Block};
use super::Strides;
use super::x16::{Layout, ROWS};

/// Activation rows per tile.
pub const TILE_C: usize = 8;

/// Whether this CPU runs these kernels.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")
}

/// One group of 16 packed rows (`group`, `blocks` 32-value blocks) times the
/// `m` activation rows of `a` (`blocks` blocks each): writes
/// `out[r * st.row + c * st.col]` for the group's first `rows` rows.
///
/// The caller checked [`available`]; indexing is bounds-checked.
/// `next` is the group that will be multiplied after this one (or empty):
/// with several activation rows it is prefetched while this one is computed,
/// so that memory and arithmetic overlap when the weights stream from memory
/// (small batches, such as verifying drafted tokens). With one row the
/// hardware prefetcher keeps up by itself, and software prefetches measured
/// slower.
#[allow(clippy::too_many_arguments)]
pub fn group(format: Format, group: &[u8], next: &[u8], blocks: usize, rows: usize, a: &[Q8Block], m: usize, out: &mut [f32], st: Strides) {
    macro_rules! run {
        ($kind:ty) => {{
            let layout = Layout::of(format);
            let mut c0 = 0;
            let mut buf = [[0f32; ROWS]; TILE_C];
            let next = if m > 1 { next } else { &[] };
            while c0 < m {
                let cols = TILE_C.min(m - c0);
                let a = &a[c0 * blocks..];
                macro_rules! call {
                    ($c:literal) => {{
                        let out = &mut buf[..$c];
                        // SAFETY: the caller checked that the CPU has AVX-512
                        // F, BW and VNNI; every access inside is through
                        // bounds-checked slices.
                        unsafe { tile::<$kind, $c>(group, next, layout, blocks, a, out) }
                    }};
                }
                // A tile as wide as the rows left, so that a small batch (a
                // few drafted tokens) still reads the weights once.
                match cols {
                    8 => call!(8),
                    7 => call!(7),
                    6 => call!(6),
                    5 => call!(5),
                    4 => call!(4),
                    3 => call!(3),
                    2 => call!(2),
                    _ => call!(1),
                }
                for (c, sums) in buf[..cols].iter().enumerate() {
                    for (r, v) in sums[..rows].iter().enumerate() {
                        out[r * st.row + (c0 + c) * st.col] = *v;
                    }
                }
                c0 += cols;
            }
        }};
    }
    match format {
        Format::Q4_0 => run!(Q4_0),
        Format::Q4_1 => run!(Q4_1),
        Format::Q5_0 => run!(Q5_0),
        Format::Q5_1 => run!(Q5_1),
        Format::Q8_0 => run!(Q8_0),
        Format::Q4K => run!(Q4K),
        Format::Q5K => run!(Q5K),
        Format::Q6K => run!(Q6K),
    }
}

/// How one format's packed block turns into values and scales.
trait Kind {
    /// Subtracted from every value.
    const OFFSET: i32;
    /// Separate scales for values 0..16 and 16..32 (Q6_K).
    const HALVES: bool;
    /// A per-row minimum multiplied by the activations' sum.
    const MIN: bool;
    /// The eight vectors of unsigned values.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW.
    unsafe fn values(blk: &[u8]) -> [__m512i; 8];
    /// Per-row scales (first and second 16 values) and minimum.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    unsafe fn scales(header: &[u8], blk: &[u8]) -> (__m512, __m512, __m512);
}

/// 64 bytes at `bytes[at..]`.
#[inline(always)]
unsafe fn load(bytes: &[u8], at: usize) -> __m512i {
    let bytes = &bytes[at..at + 64];
    // SAFETY: 64 bytes, checked above; unaligned load.
    unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
}

/// 16 f16 at `bytes[at..]` as f32.
#[inline(always)]
unsafe fn f16x16(bytes: &[u8], at: usize) -> __m512 {
    let bytes = &bytes[at..at + 32];
    // SAFETY: 32 bytes, checked above.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(bytes.as_ptr().cast())) }
}

/// 16 unsigned bytes at `bytes[at..]` as f32.
#[inline(always)]
unsafe fn u8x16(bytes: &[u8], at: usize) -> __m512 {
    let bytes = &bytes[at..at + 16];
    // SAFETY: 16 bytes, checked above.
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.as_ptr().cast()))) }
}

/// 16 signed bytes at `bytes[at..]` as f32.
#[inline(always)]
unsafe fn i8x16(bytes: &[u8], at: usize) -> __m512 {
    let bytes = &bytes[at..at + 16];
    // SAFETY: 16 bytes, checked above.
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(bytes.as_ptr().cast()))) }
}

/// The nibble plane: vectors 2j (low nibbles) and 2j + 1 (high nibbles).
#[inline(always)]
unsafe fn nibbles(blk: &[u8]) -> [__m512i; 8] {
    // SAFETY (whole body): AVX-512 F/BW per the caller; loads are checked.
    unsafe {
        let mask = _mm512_set1_epi8(0x0F);
        let mut w = [_mm512_setzero_si512(); 8];
        for j in 0..4 {
            let q = load(blk, 64 * j);
            w[2 * j] = _mm512_and_si512(q, mask);
            w[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(q), mask);
        }
        w
    }
}

/// Adds the fifth bits of Q5 formats: bit `t` of byte `i` of the plane is
/// the fifth bit of byte `i` of vector `t`, shifted here to bit 4.
#[inline(always)]
unsafe fn fifth_bits(blk: &[u8], w: &mut [__m512i; 8]) {
    // SAFETY (whole body): AVX-512 F/BW per the caller; the load is checked.
    unsafe {
        let bit = _mm512_set1_epi8(0x10);
        let h = load(blk, 256);
        // Shifts of 16-bit lanes: bits crossing into the other byte land
        // outside bit 4 of it and are masked away.
        let parts = [
            _mm512_slli_epi16::<4>(h),
            _mm512_slli_epi16::<3>(h),
            _mm512_slli_epi16::<2>(h),
            _mm512_slli_epi16::<1>(h),
            h,
            _mm512_srli_epi16::<1>(h),
            _mm512_srli_epi16::<2>(h),
            _mm512_srli_epi16::<3>(h),
        ];
        for (w, part) in w.iter_mut().zip(parts) {
            *w = _mm512_or_si512(*w, _mm512_and_si512(part, bit));
        }
    }
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;
struct Q8_0;
struct Q4K;
struct Q5K;
struct Q6K;

impl Kind for Q4_0 {
    const OFFSET: i32 = 8;
    const HALVES: bool = false;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe { nibbles(blk) }
    }
    #[inline(always)]
    unsafe fn scales(_: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        let d = unsafe { f16x16(blk, 256) };
        (d, d, d)
    }
}

impl Kind for Q4_1 {
    const OFFSET: i32 = 0;
    const HALVES: bool = false;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe { nibbles(blk) }
    }
    #[inline(always)]
    unsafe fn scales(_: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        let (d, m) = unsafe { (f16x16(blk, 256), f16x16(blk, 288)) };
        (d, d, m)
    }
}

impl Kind for Q5_0 {
    const OFFSET: i32 = 16;
    const HALVES: bool = false;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut w = nibbles(blk);
            fifth_bits(blk, &mut w);
            w
        }
    }
    #[inline(always)]
    unsafe fn scales(_: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        let d = unsafe { f16x16(blk, 320) };
        (d, d, d)
    }
}

impl Kind for Q5_1 {
    const OFFSET: i32 = 0;
    const HALVES: bool = false;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut w = nibbles(blk);
            fifth_bits(blk, &mut w);
            w
        }
    }
    #[inline(always)]
    unsafe fn scales(_: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        let (d, m) = unsafe { (f16x16(blk, 320), f16x16(blk, 352)) };
        (d, d, m)
    }
}

impl Kind for Q8_0 {
    const OFFSET: i32 = 128;
    const HALVES: bool = false;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe { std::array::from_fn(|t| load(blk, 64 * t)) }
    }
    #[inline(always)]
    unsafe fn scales(_: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        let d = unsafe { f16x16(blk, 512) };
        (d, d, d)
    }
}

/// The scales of a Q4_K or Q5_K group: `d sc` and `-dmin m` per row, with the
/// repacked sub-block scales at `blk[at..]` and minimums at `blk[at + 16..]`.
///
/// # Safety
/// The CPU has AVX-512 F and BW, and `header` and `blk` are a whole group.
#[inline(always)]
unsafe fn k_scales(header: &[u8], blk: &[u8], at: usize) -> (__m512, __m512, __m512) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let (d, dmin) = (f16x16(header, 0), f16x16(header, 32));
        let scale = _mm512_mul_ps(d, u8x16(blk, at));
        // value = d sc q - dmin m: the minimum enters negated.
        let min = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, u8x16(blk, at + 16)));
        (scale, scale, min)
    }
}

impl Kind for Q4K {
    const OFFSET: i32 = 0;
    const HALVES: bool = false;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe { nibbles(blk) }
    }
    #[inline(always)]
    unsafe fn scales(header: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        unsafe { k_scales(header, blk, 256) }
    }
}

impl Kind for Q5K {
    const OFFSET: i32 = 0;
    const HALVES: bool = false;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut w = nibbles(blk);
            fifth_bits(blk, &mut w);
            w
        }
    }
    #[inline(always)]
    unsafe fn scales(header: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        unsafe { k_scales(header, blk, 320) }
    }
}

impl Kind for Q6K {
    const OFFSET: i32 = 32;
    const HALVES: bool = true;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn values(blk: &[u8]) -> [__m512i; 8] {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut w = nibbles(blk);
            let two = _mm512_set1_epi8(0x30);
            for j in 0..2 {
                let h = load(blk, 256 + 64 * j);
                let parts = [_mm512_slli_epi16::<4>(h), _mm512_slli_epi16::<2>(h), h, _mm512_srli_epi16::<2>(h)];
                for (u, part) in parts.into_iter().enumerate() {
                    w[4 * j + u] = _mm512_or_si512(w[4 * j + u], _mm512_and_si512(part, two));
                }
            }
            w
        }
    }
    #[inline(always)]
    unsafe fn scales(header: &[u8], blk: &[u8]) -> (__m512, __m512, __m512) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let d = f16x16(header, 0);
            let lo = _mm512_mul_ps(d, i8x16(blk, 384));
            let hi = _mm512_mul_ps(d, i8x16(blk, 400));
            (lo, hi, lo)
        }
    }
}

/// The 4 activation bytes of vector `t`, broadcast to all lanes.
#[inline(always)]
unsafe fn act4(q: &[i8; 32], t: usize) -> __m512i {
    let v = i32::from_le_bytes([q[4 * t] as u8, q[4 * t + 1] as u8, q[4 * t + 2] as u8, q[4 * t + 3] as u8]);
    // SAFETY: AVX-512 F per the caller.
    unsafe { _mm512_set1_epi32(v) }
}

/// One group times `C` activation rows (`blocks` blocks apart) into `out[c][r]`
/// (`out` has at least `C` entries).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn tile<K: Kind, const C: usize>(group: &[u8], next: &[u8], layout: Layout, blocks: usize, a: &[Q8Block], out: &mut [[f32; ROWS]]) {
    // SAFETY (whole body): this function's target features are the ones the
    // helpers need; memory is only touched through checked slices.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); C];
        for b in 0..blocks {
            let (at, header_at) = layout.block_at(b);
            let blk = &group[at..at + layout.block];
            let header = &group[header_at..header_at + layout.header];
            if let Some(ahead) = next.get(at..at + layout.block) {
                for line in ahead.chunks(64) {
                    _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
                }
            }
            let w = K::values(blk);
            let (s_lo, s_hi, min) = K::scales(header, blk);
            for c in 0..C {
                let act = &a[c * blocks + b];
                let zero = _mm512_setzero_si512();
                let mut lo = _mm512_dpbusd_epi32(zero, w[0], act4(&act.qs, 0));
                let mut hi = _mm512_dpbusd_epi32(zero, w[4], act4(&act.qs, 4));
                for t in 1..4 {
                    lo = _mm512_dpbusd_epi32(lo, w[t], act4(&act.qs, t));
                    hi = _mm512_dpbusd_epi32(hi, w[4 + t], act4(&act.qs, 4 + t));
                }
                let (sum_lo, sum_hi) = (act.sums[0] as i32, act.sums[1] as i32);
                let da = _mm512_set1_ps(act.d);
                if K::HALVES {
                    lo = _mm512_sub_epi32(lo, _mm512_set1_epi32(K::OFFSET * sum_lo));
                    hi = _mm512_sub_epi32(hi, _mm512_set1_epi32(K::OFFSET * sum_hi));
                    acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(s_lo, da), _mm512_cvtepi32_ps(lo), acc[c]);
                    acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(s_hi, da), _mm512_cvtepi32_ps(hi), acc[c]);
                } else {
                    let mut sum = _mm512_add_epi32(lo, hi);
                    if K::OFFSET != 0 {
                        sum = _mm512_sub_epi32(sum, _mm512_set1_epi32(K::OFFSET * (sum_lo + sum_hi)));
                    }
                    acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(s_lo, da), _mm512_cvtepi32_ps(sum), acc[c]);
                }
                if K::MIN {
                    let total = _mm512_set1_ps(act.d * (sum_lo + sum_hi) as f32);
                    acc[c] = _mm512_fmadd_ps(min, total, acc[c]);
                }
            }
        }
        for (out, acc) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(out.as_mut_ptr(), acc);
        }
    }
}
