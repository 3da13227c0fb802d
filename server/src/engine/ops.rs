//! The forward pass's arithmetic besides the quantized products, on plain
//! `f32` slices: dot products, RMSNorm, rotary embeddings, attention of one
//! query row, SiLU gating, and a vectorized `exp`.
//!
//! Each function computes a row from that row's inputs only, with the same
//! operations whatever else is in the batch, so that a token's hidden state
//! does not depend on how many tokens were run with it (speculative decoding
//! verifies drafts in a batch and must reproduce token-by-token decoding
//! exactly). AVX2/FMA code (x86-64) or NEON code (aarch64) is chosen at run
//! time; the portable versions are the reference the tests compare with.

use std::sync::OnceLock;

/// Whether the vector paths run on this CPU (checked once): AVX2 and FMA on
/// x86-64, NEON on aarch64.
#[inline]
fn simd() -> bool {
    static SIMD: OnceLock<bool> = OnceLock::new();
    *SIMD.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("neon")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    })
}

/// `Σ a[i] * b[i]` over the shorter length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::dot(a, b) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        // SAFETY: NEON was detected.
        return unsafe { arm::dot(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y[i] += alpha * x[i]` over the shorter length.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::axpy(y, alpha, x) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        // SAFETY: NEON was detected.
        return unsafe { arm::axpy(y, alpha, x) };
    }
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}

/// `x[i] = exp(x[i])`. The vector path is accurate to a few ulps on
/// `[-87, 88]` and clamps outside it (to about 1e-38 below, finite above).
pub fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::exp_in_place(x) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        // SAFETY: NEON was detected.
        return unsafe { arm::exp_in_place(x) };
    }
    x.iter_mut().for_each(|v| *v = v.exp());
}

/// `out = x / rms(x) * weight`, one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let mean = dot(x, x) / x.len().max(1) as f32;
    let inv = 1.0 / (mean + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * inv * w;
    }
}

/// `gate[i] = silu(gate[i]) * up[i]`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::silu_mul(gate, up) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        // SAFETY: NEON was detected.
        return unsafe { arm::silu_mul(gate, up) };
    }
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Rotates one head in place by the angles whose cosines and sines are given
/// (`head_dim / 2` each): adjacent pairs (llama) or the two halves (NeoX, qwen2).
pub fn rope(head: &mut [f32], cos: &[f32], sin: &[f32], halves: bool) {
    let half = head.len() / 2;
    for i in 0..half {
        let (a, b) = if halves { (i, i + half) } else { (2 * i, 2 * i + 1) };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * cos[i] - x1 * sin[i];
        head[b] = x0 * sin[i] + x1 * cos[i];
    }
}

/// One query row of causal attention for one head: softmax of `q · kⱼ *
/// scale` over the first `len` positions, times the values, into `out`.
/// `keys_t` holds the keys transposed (element `i` of position `j` at
/// `i * stride + j`), so the scores grow a vector of positions at a time;
/// `values` holds `head_dim`-wide rows. `scores` is scratch.
#[allow(clippy::too_many_arguments)]
pub fn attend(q: &[f32], keys_t: &[f32], stride: usize, values: &[f32], len: usize, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let dim = out.len();
    scores.clear();
    scores.resize(len, 0.0);
    transposed_scores(&q[..dim], keys_t, stride, scores);
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s * scale));
    scores.iter_mut().for_each(|s| *s = *s * scale - max);
    exp_in_place(scores);
    let sum: f32 = scores.iter().sum();
    weighted_rows(scores, values, out);
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    out.iter_mut().for_each(|v| *v *= inv);
}

/// `scores[j] = Σᵢ q[i] · keys_t[i * stride + j]`, summed in order of `i`:
/// one pass over each (contiguous) row of the transposed keys. (Keeping a
/// block of scores in registers instead reads the rows `stride` apart, which
/// alias in the L1 cache and measured slower.)
pub fn transposed_scores(q: &[f32], keys_t: &[f32], stride: usize, scores: &mut [f32]) {
    scores.fill(0.0);
    let len = scores.len();
    for (i, &qi) in q.iter().enumerate() {
        axpy(scores, qi, &keys_t[i * stride..i * stride + len]);
    }
}

/// `out[i] = Σⱼ weights[j] · rows[j * out.len() + i]`, summed in order of `j`.
pub fn weighted_rows(weights: &[f32], rows: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::weighted_rows(weights, rows, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        // SAFETY: NEON was detected.
        return unsafe { arm::weighted_rows(weights, rows, out) };
    }
    let dim = out.len();
    out.fill(0.0);
    for (j, &w) in weights.iter().enumerate() {
        out.iter_mut().zip(&rows[j * dim..(j + 1) * dim]).for_each(|(o, v)| *o += w * v);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2/FMA versions. Callers check the features first.
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Equal-length slices.
    #[target_feature(enable = "avx2,fma")]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, within both slices.
            unsafe {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), _mm256_loadu_ps(b.as_ptr().add(i + 8)), acc1);
            }
            i += 16;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, within both slices.
            unsafe {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc0);
            }
            i += 8;
        }
        let mut sum = hsum(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    /// 32 outputs at a time kept in registers across all rows.
    #[target_feature(enable = "avx2,fma")]
    pub fn weighted_rows(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        let dim = out.len();
        if weights.len() * dim > rows.len() {
            return;
        }
        let mut i = 0;
        while i + 32 <= dim {
            let mut acc = [_mm256_setzero_ps(); 4];
            for (j, &w) in weights.iter().enumerate() {
                let wv = _mm256_set1_ps(w);
                let row = &rows[j * dim + i..j * dim + i + 32];
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: `row` is 32 floats.
                    *acc = _mm256_fmadd_ps(wv, unsafe { _mm256_loadu_ps(row.as_ptr().add(8 * u)) }, *acc);
                }
            }
            for (u, acc) in acc.iter().enumerate() {
                // SAFETY: i + 32 <= dim.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(i + 8 * u), *acc) };
            }
            i += 32;
        }
        for (ii, o) in out.iter_mut().enumerate().skip(i) {
            let mut acc = 0f32;
            for (j, &w) in weights.iter().enumerate() {
                acc = w.mul_add(rows[j * dim + ii], acc);
            }
            *o = acc;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        let n = y.len().min(x.len());
        let a = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, within both slices.
            unsafe {
                let p = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, _mm256_fmadd_ps(a, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)));
            }
            i += 8;
        }
        for j in i..n {
            y[j] += alpha * x[j];
        }
    }

    /// `exp` of 8 lanes: 2ⁿ · e^r with r = x - n ln 2 and a degree-6 polynomial
    /// for e^r on [-ln2/2, ln2/2] (the classic Cephes coefficients).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3)), _mm256_set1_ps(88.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_9e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
        let p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(p, _mm256_castsi256_ps(pow2))
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn exp_in_place(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` is 8 floats.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr()))) };
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut buf = [0f32; 8];
            buf[..rest.len()].copy_from_slice(rest);
            // SAFETY: `buf` is 8 floats.
            unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), exp8(_mm256_loadu_ps(buf.as_ptr()))) };
            let n = rest.len();
            rest.copy_from_slice(&buf[..n]);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, within both slices.
            unsafe {
                let p = gate.as_mut_ptr().add(i);
                let g = _mm256_loadu_ps(p);
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
                let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
                _mm256_storeu_ps(p, _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i))));
            }
            i += 8;
        }
        for j in i..n {
            let g = gate[j];
            gate[j] = g / (1.0 + (-g).exp()) * up[j];
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    //! The NEON versions, following the AVX2 ones four lanes at a time. Callers
    //! check the feature first.
    use std::arch::aarch64::*;

    /// Equal-length slices.
    #[target_feature(enable = "neon")]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (u, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i + 16 <= n, within both slices.
                *acc = unsafe { vfmaq_f32(*acc, vld1q_f32(a.as_ptr().add(i + 4 * u)), vld1q_f32(b.as_ptr().add(i + 4 * u))) };
            }
            i += 16;
        }
        while i + 4 <= n {
            // SAFETY: i + 4 <= n, within both slices.
            acc[0] = unsafe { vfmaq_f32(acc[0], vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i))) };
            i += 4;
        }
        let mut sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    /// 32 outputs at a time kept in registers across all rows.
    #[target_feature(enable = "neon")]
    pub fn weighted_rows(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        let dim = out.len();
        if weights.len() * dim > rows.len() {
            return;
        }
        let mut i = 0;
        while i + 32 <= dim {
            let mut acc = [vdupq_n_f32(0.0); 8];
            for (j, &w) in weights.iter().enumerate() {
                let row = &rows[j * dim + i..j * dim + i + 32];
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: `row` is 32 floats.
                    *acc = vfmaq_n_f32(*acc, unsafe { vld1q_f32(row.as_ptr().add(4 * u)) }, w);
                }
            }
            for (u, acc) in acc.iter().enumerate() {
                // SAFETY: i + 32 <= dim.
                unsafe { vst1q_f32(out.as_mut_ptr().add(i + 4 * u), *acc) };
            }
            i += 32;
        }
        for (ii, o) in out.iter_mut().enumerate().skip(i) {
            let mut acc = 0f32;
            for (j, &w) in weights.iter().enumerate() {
                acc = w.mul_add(rows[j * dim + ii], acc);
            }
            *o = acc;
        }
    }

    #[target_feature(enable = "neon")]
    pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        let n = y.len().min(x.len());
        let mut i = 0;
        while i + 4 <= n {
            // SAFETY: i + 4 <= n, within both slices.
            unsafe {
                let p = y.as_mut_ptr().add(i);
                vst1q_f32(p, vfmaq_n_f32(vld1q_f32(p), vld1q_f32(x.as_ptr().add(i)), alpha));
            }
            i += 4;
        }
        for j in i..n {
            y[j] += alpha * x[j];
        }
    }

    /// `exp` of 4 lanes, as `x86::exp8`: 2ⁿ · e^r with r = x - n ln 2 and the
    /// same degree-6 polynomial for e^r on [-ln2/2, ln2/2].
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn exp4(x: float32x4_t) -> float32x4_t {
        let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3)), vdupq_n_f32(88.0));
        let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
        let r = vfmsq_n_f32(x, n, 0.693_359_4);
        let r = vfmsq_n_f32(r, n, -2.121_944_4e-4);
        let mut p = vdupq_n_f32(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = vfmaq_f32(vdupq_n_f32(c), p, r);
        }
        let p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), p, vmulq_f32(r, r));
        let pow2 = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
        vmulq_f32(p, vreinterpretq_f32_s32(pow2))
    }

    #[target_feature(enable = "neon")]
    pub fn exp_in_place(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: `c` is 4 floats.
            unsafe { vst1q_f32(c.as_mut_ptr(), exp4(vld1q_f32(c.as_ptr()))) };
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut buf = [0f32; 4];
            buf[..rest.len()].copy_from_slice(rest);
            // SAFETY: `buf` is 4 floats.
            unsafe { vst1q_f32(buf.as_mut_ptr(), exp4(vld1q_f32(buf.as_ptr()))) };
            let n = rest.len();
            rest.copy_from_slice(&buf[..n]);
        }
    }

    #[target_feature(enable = "neon")]
    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let mut i = 0;
        while i + 4 <= n {
            // SAFETY: i + 4 <= n, within both slices.
            unsafe {
                let p = gate.as_mut_ptr().add(i);
                let g = vld1q_f32(p);
                let s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0), exp4(vnegq_f32(g))));
                vst1q_f32(p, vmulq_f32(s, vld1q_f32(up.as_ptr().add(i))));
            }
            i += 4;
        }
        for j in i..n {
            let g = gate[j];
            gate[j] = g / (1.0 + (-g).exp()) * up[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
    }

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut x: Vec<f32> = (0..20_000).map(|i| -87.0 + 175.0 * i as f32 / 20_000.0).collect();
        x.extend([0.0, -0.0, 1e-30, -1e-30, 88.0]);
        let mut y = x.clone();
        exp_in_place(&mut y);
        for (x, y) in x.iter().zip(&y) {
            let e = x.exp();
            assert!((y - e).abs() <= 4.0 * f32::EPSILON * e, "exp({x}) = {y}, expected {e}");
        }
        let mut extreme = vec![-1000.0, 1000.0, f32::NEG_INFINITY];
        exp_in_place(&mut extreme);
        assert!(extreme[0] < 1e-37 && extreme[1].is_finite() && extreme[2] < 1e-37);
    }

    #[test]
    fn vector_ops_match_scalar_ones() {
        for n in [1, 7, 8, 15, 64, 100, 896] {
            let (a, b) = (random(n, 1), random(n, 2));
            let scalar: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - scalar).abs() < 1e-4 * (1.0 + scalar.abs()), "dot {n}");
            let mut y = a.clone();
            axpy(&mut y, 0.5, &b);
            for i in 0..n {
                assert!((y[i] - (a[i] + 0.5 * b[i])).abs() < 1e-6);
            }
            let mut g = a.clone();
            silu_mul(&mut g, &b);
            for i in 0..n {
                let expect = a[i] as f64 / (1.0 + (-a[i] as f64).exp()) * b[i] as f64;
                assert!((g[i] as f64 - expect).abs() < 1e-5 * (1.0 + expect.abs()), "silu {n} [{i}]");
            }
        }
    }

    #[test]
    fn attention_is_a_softmax_weighted_sum() {
        let (dim, len, stride) = (8, 5, 7);
        let q = random(dim, 3);
        let (k, v) = (random(dim * len, 4), random(dim * len, 5));
        let mut k_t = vec![f32::NAN; dim * stride];
        for j in 0..len {
            for i in 0..dim {
                k_t[i * stride + j] = k[j * dim + i];
            }
        }
        let mut out = vec![0f32; dim];
        attend(&q, &k_t, stride, &v, len, 0.3, &mut Vec::new(), &mut out);
        let s: Vec<f64> = (0..len).map(|j| (0..dim).map(|i| q[i] as f64 * k[j * dim + i] as f64).sum::<f64>() * 0.3).collect();
        let max = s.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
        let total: f64 = e.iter().sum();
        for i in 0..dim {
            let expect: f64 = (0..len).map(|j| e[j] / total * v[j * dim + i] as f64).sum();
            assert!((out[i] as f64 - expect).abs() < 1e-5, "[{i}] {} vs {expect}", out[i]);
        }
    }

    #[test]
    fn score_and_weighted_sum_kernels_match_plain_loops() {
        for (dim, len, stride) in [(64, 77, 100), (8, 5, 5), (40, 32, 33), (3, 1, 1)] {
            let q = random(dim, 6);
            let keys_t = random(dim * stride, 7);
            let mut scores = vec![0f32; len];
            transposed_scores(&q, &keys_t, stride, &mut scores);
            for (j, s) in scores.iter().enumerate() {
                let expect: f64 = (0..dim).map(|i| q[i] as f64 * keys_t[i * stride + j] as f64).sum();
                assert!((*s as f64 - expect).abs() < 1e-4 * (1.0 + expect.abs()), "score {j}");
            }
            let rows = random(len * dim, 8);
            let mut out = vec![0f32; dim];
            weighted_rows(&scores, &rows, &mut out);
            for (i, o) in out.iter().enumerate() {
                let expect: f64 = (0..len).map(|j| scores[j] as f64 * rows[j * dim + i] as f64).sum();
                assert!((*o as f64 - expect).abs() < 1e-3 * (1.0 + expect.abs()), "out {i}");
            }
        }
    }

    #[test]
    fn rope_rotates_pairs_and_halves() {
        let mut adjacent = vec![1.0, 0.0, 0.0, 1.0];
        rope(&mut adjacent, &[0.0, 1.0], &[1.0, 0.0], false);
        assert_eq!(adjacent, vec![0.0, 1.0, 0.0, 1.0]);
        let mut halves = vec![1.0, 0.0, 0.0, 1.0];
        rope(&mut halves, &[0.0, 1.0], &[1.0, 0.0], true);
        assert_eq!(halves, vec![0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn rms_norm_normalizes() {
        let mut out = vec![0f32; 2];
        rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut out);
        let rms = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / rms).abs() < 1e-6 && (out[1] - 8.0 / rms).abs() < 1e-6);
    }
}
