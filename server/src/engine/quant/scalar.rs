//! Portable integer dot products of one weight row with one quantized
//! activation row: the fallback for CPUs without AVX2, and the model the SIMD
//! kernels follow (same integer sums, same scale arithmetic per block).

use super::blocks::{f16_at, q4k_scale_min, q5k_value, Format, Q8Block, Q8KBlock, QK};
use super::Acts;

/// Dot product of weight row `w` (whole blocks of `format`) with activation
/// row `a` (the matching kind, as many blocks as `w` covers).
pub fn dot(format: Format, w: &[u8], a: Acts<'_>) -> f32 {
    match (format, a) {
        (Format::Q4K, Acts::Q8K(a)) => dot_q4k(w, a),
        (Format::Q5K, Acts::Q8K(a)) => dot_q5k(w, a),
        (Format::Q6K, Acts::Q8K(a)) => dot_q6k(w, a),
        (_, Acts::Q8(a)) => dot_small(format, w, a),
        // The caller quantizes activations for the format; a mismatch is a bug
        // upstream, answered with zeros rather than a panic.
        _ => 0.0,
    }
}

/// The 32-value formats against [`Q8Block`]s.
fn dot_small(format: Format, w: &[u8], a: &[Q8Block]) -> f32 {
    let bb = format.block_bytes();
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(bb).zip(a) {
        let d = f16_at(b, 0);
        let (isum, min_term) = match format {
            Format::Q4_0 => (nibbles(&b[2..18], a, 8), 0.0),
            Format::Q4_1 => (nibbles(&b[4..20], a, 0), f16_at(b, 2) * a.s),
            Format::Q5_0 => (five_bits(&b[2..6], &b[6..22], a, 16), 0.0),
            Format::Q5_1 => (five_bits(&b[4..8], &b[8..24], a, 0), f16_at(b, 2) * a.s),
            Format::Q8_0 => (b[2..34].iter().zip(&a.qs).map(|(&w, &q)| w as i8 as i32 * q as i32).sum(), 0.0),
            Format::Q4K | Format::Q5K | Format::Q6K => (0, 0.0),
        };
        acc += d * a.d * isum as f32 + min_term;
    }
    acc
}

/// `sum((nibble - offset) * q)` over one block of 16 packed bytes.
fn nibbles(qs: &[u8], a: &Q8Block, offset: i32) -> i32 {
    let mut sum = 0;
    for (j, &q) in qs[..QK / 2].iter().enumerate() {
        sum += ((q & 0xF) as i32 - offset) * a.qs[j] as i32;
        sum += ((q >> 4) as i32 - offset) * a.qs[j + 16] as i32;
    }
    sum
}

/// `sum((5-bit value - offset) * q)` over one block.
fn five_bits(qh: &[u8], qs: &[u8], a: &Q8Block, offset: i32) -> i32 {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut sum = 0;
    for (j, &q) in qs[..QK / 2].iter().enumerate() {
        let lo = (q & 0xF) as i32 | ((((qh >> j) & 1) as i32) << 4);
        let hi = (q >> 4) as i32 | ((((qh >> (j + 16)) & 1) as i32) << 4);
        sum += (lo - offset) * a.qs[j] as i32 + (hi - offset) * a.qs[j + 16] as i32;
    }
    sum
}

/// Q4_K: `d d_a Σ_j sc_j Σ n a - dmin d_a Σ_j m_j Σ a` over the 8 sub-blocks.
fn dot_q4k(w: &[u8], a: &[Q8KBlock]) -> f32 {
    dot_q45k(w, a, Format::Q4K, |b, j, l| {
        let q = b[16 + 32 * (j / 2) + l];
        if j.is_multiple_of(2) { q & 0xF } else { q >> 4 }
    })
}

/// Q5_K: as Q4_K, with values `0..=31`.
fn dot_q5k(w: &[u8], a: &[Q8KBlock]) -> f32 {
    dot_q45k(w, a, Format::Q5K, |b, j, l| q5k_value(&b[48..176], &b[16..48], j, l))
}

/// The sum Q4_K and Q5_K share: `value(block, j, l)` is value `l` of
/// sub-block `j` of a super-block.
fn dot_q45k(w: &[u8], a: &[Q8KBlock], format: Format, value: impl Fn(&[u8], usize, usize) -> u8) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(format.block_bytes()).zip(a) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = q4k_scale_min(j, &b[4..16]);
            let s: i32 = (0..32).map(|l| value(b, j, l) as i32 * a.qs[32 * j + l] as i32).sum();
            isum += sc as i32 * s;
            msum += m as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32);
        }
        acc += d * a.d * isum as f32 - dmin * a.d * msum as f32;
    }
    acc
}

fn dot_q6k(w: &[u8], a: &[Q8KBlock]) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(Format::Q6K.block_bytes()).zip(a) {
        let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
        let d = f16_at(b, 208);
        let mut isum = 0i32;
        for half in 0..2 {
            let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
            // Four runs of 32 values; each run is two sub-blocks of 16.
            for run in 0..4 {
                for l in 0..32 {
                    let v = match run {
                        0 => (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                        1 => (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                        2 => (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                        _ => (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                    };
                    let index = 128 * half + 32 * run + l;
                    let sc = scales[index / 16] as i8 as i32;
                    isum += sc * (v as i32 - 32) * a.qs[index] as i32;
                }
            }
        }
        acc += d * a.d * isum as f32;
    }
    acc
}
