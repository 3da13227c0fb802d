//! Weights repacked for AVX-512 VNNI: 16 rows interleaved per 32-value block,
//! so that one `vpdpbusd` multiplies 4 consecutive values of 16 rows with the
//! same 4 activation bytes (broadcast) and leaves 16 row sums in its lanes.
//!
//! In one packed block, byte `4 r + i` of vector `t` (`t < 8`) holds value
//! `4 t + i` of row `r`, as an unsigned byte (the format's offset is taken off
//! afterwards with the activations' sums). The values are stored in planes as
//! narrow as the format: nibbles (two vectors per 64 bytes), plus a 1-bit
//! plane (eight vectors per 64 bytes) for 5-bit values or a 2-bit plane for
//! 6-bit values, or whole bytes for Q8_0. Scales stay in their GGUF precision (f16 and the k-quants'
//! small integers), so a packed matrix is as big as the file's tensor (Q4_K
//! grows 3% and Q5_K 2% by unpacking their 6-bit scales), and decoding reads
//! no more memory.
//!
//! Every 32-value block of every format becomes the same shape; only the
//! value planes and the scales differ. The k-quants keep a header per
//! 256-value super-block with their f16 super-scales.
//!
//! This module packs and, for embedding lookups and tests, dequantizes; the
//! products are in `avx512.rs`.

use rayon::prelude::*;

use super::blocks::{f16_at, q4k_scale_min, q5k_value, Format, QK};

/// Rows per group.
pub const ROWS: usize = 16;

/// Bytes of a packed group's parts for one format.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Super-block header (k-quants' super-scales), once per `per_super` blocks.
    pub header: usize,
    /// 32-value blocks per header.
    pub per_super: usize,
    /// One 32-value block: value planes, then per-block scales.
    pub block: usize,
}

impl Layout {
    /// The layout of a format.
    pub fn of(format: Format) -> Self {
        let simple = |block| Layout { header: 0, per_super: 1, block };
        match format {
            // nibbles 256 + d f16[16]
            Format::Q4_0 => simple(256 + 32),
            // nibbles 256 + d f16[16] + m f16[16]
            Format::Q4_1 => simple(256 + 64),
            // nibbles 256 + fifth-bit plane 64 + d
            Format::Q5_0 => simple(256 + 64 + 32),
            // ... + m
            Format::Q5_1 => simple(256 + 64 + 64),
            // bytes 512 + d
            Format::Q8_0 => simple(512 + 32),
            // header d f16[16], dmin f16[16]; block: nibbles 256 + sc u8[16] + m u8[16]
            Format::Q4K => Layout { header: 64, per_super: 8, block: 256 + 32 },
            // as Q4_K, with the fifth-bit plane 64 after the nibbles
            Format::Q5K => Layout { header: 64, per_super: 8, block: 256 + 64 + 32 },
            // header d f16[16]; block: nibbles 256 + 2-bit plane 128 + sc i8[16] x 2 halves
            Format::Q6K => Layout { header: 32, per_super: 8, block: 256 + 128 + 32 },
        }
    }

    /// Bytes of one group of 16 rows of `blocks` 32-value blocks.
    pub fn group_bytes(&self, blocks: usize) -> usize {
        blocks / self.per_super * self.header + blocks * self.block
    }

    /// Where block `b` of a group starts, and where its super-block header is.
    pub fn block_at(&self, b: usize) -> (usize, usize) {
        let s = b / self.per_super;
        let super_start = s * (self.header + self.per_super * self.block);
        (super_start + self.header + (b % self.per_super) * self.block, super_start)
    }
}

/// A matrix in 16-row groups (the last group padded with zero rows).
pub struct Packed {
    /// The values' format.
    pub format: Format,
    /// Real rows.
    pub rows: usize,
    /// 32-value blocks per row.
    pub blocks: usize,
    /// Bytes per group.
    pub group_bytes: usize,
    /// Groups, one after the other.
    pub data: Vec<u8>,
}

/// The 32 unsigned values of block `b` (32-value block index) of a row in its
/// GGUF encoding, and the raw scale fields that go with it.
#[derive(Clone, Copy, Default)]
struct RowBlock {
    values: [u8; QK],
    /// f16 bits of d (or the k-quant super-scale d).
    d: [u8; 2],
    /// f16 bits of the minimum (Q4_1, Q5_1) or dmin (Q4_K, Q5_K).
    m: [u8; 2],
    /// k-quants: sub-block scales (Q4_K, Q5_K: scale and min; Q6_K: two scales).
    sc: [u8; 2],
}

fn row_block(format: Format, row: &[u8], b: usize) -> RowBlock {
    let mut values = [0u8; QK];
    let (mut d, mut m, mut sc) = ([0u8; 2], [0u8; 2], [0u8; 2]);
    match format {
        Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 | Format::Q8_0 => {
            let bb = format.block_bytes();
            let blk = &row[b * bb..(b + 1) * bb];
            d.copy_from_slice(&blk[0..2]);
            match format {
                Format::Q4_0 | Format::Q4_1 => {
                    let qs = if format == Format::Q4_0 { &blk[2..18] } else { &blk[4..20] };
                    if format == Format::Q4_1 {
                        m.copy_from_slice(&blk[2..4]);
                    }
                    for j in 0..16 {
                        values[j] = qs[j] & 0xF;
                        values[j + 16] = qs[j] >> 4;
                    }
                }
                Format::Q5_0 | Format::Q5_1 => {
                    let at = if format == Format::Q5_0 { 2 } else { 4 };
                    if format == Format::Q5_1 {
                        m.copy_from_slice(&blk[2..4]);
                    }
                    let qh = u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]]);
                    let qs = &blk[at + 4..at + 20];
                    for j in 0..16 {
                        values[j] = (qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
                        values[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                    }
                }
                _ => {
                    for j in 0..32 {
                        values[j] = (blk[2 + j] as i8 as i16 + 128) as u8;
                    }
                }
            }
        }
        Format::Q4K => {
            let sb = &row[(b / 8) * 144..(b / 8 + 1) * 144];
            let sub = b % 8;
            d.copy_from_slice(&sb[0..2]);
            m.copy_from_slice(&sb[2..4]);
            let (s, mn) = q4k_scale_min(sub, &sb[4..16]);
            sc = [s, mn];
            let (chunk, half) = (sub / 2, sub % 2);
            for l in 0..32 {
                let q = sb[16 + 32 * chunk + l];
                values[l] = if half == 0 { q & 0xF } else { q >> 4 };
            }
        }
        Format::Q5K => {
            let sb = &row[(b / 8) * 176..(b / 8 + 1) * 176];
            let sub = b % 8;
            d.copy_from_slice(&sb[0..2]);
            m.copy_from_slice(&sb[2..4]);
            let (s, mn) = q4k_scale_min(sub, &sb[4..16]);
            sc = [s, mn];
            for (l, value) in values.iter_mut().enumerate() {
                *value = q5k_value(&sb[48..176], &sb[16..48], sub, l);
            }
        }
        Format::Q6K => {
            let sb = &row[(b / 8) * 210..(b / 8 + 1) * 210];
            d.copy_from_slice(&sb[208..210]);
            for (i, value) in values.iter_mut().enumerate() {
                let e = 32 * (b % 8) + i;
                let (half, rest) = (e / 128, e % 128);
                let (run, l) = (rest / 32, rest % 32);
                let (ql, qh) = (&sb[64 * half..], &sb[128 + 32 * half..]);
                *value = match run {
                    0 => (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                    1 => (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                    2 => (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                    _ => (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                };
            }
            let first = 2 * (b % 8);
            sc = [sb[192 + first], sb[192 + first + 1]];
        }
    }
    RowBlock { values, d, m, sc }
}

impl Packed {
    /// Repacks `rows` rows of `k` values stored as `data` (whole GGUF rows).
    /// The caller checked that `data` holds exactly that many whole blocks.
    pub fn pack(format: Format, rows: usize, k: usize, data: &[u8]) -> Self {
        let layout = Layout::of(format);
        let blocks = k / QK;
        let row_bytes = k / format.block_elems() * format.block_bytes();
        let groups = rows.div_ceil(ROWS);
        let group_bytes = layout.group_bytes(blocks);
        let mut out = vec![0u8; groups * group_bytes];
        // Groups are independent: packed in parallel (on the current rayon
        // pool), which keeps loading a model quick.
        out.par_chunks_mut(group_bytes).enumerate().for_each(|(g, group)| {
            let present = ROWS.min(rows - g * ROWS);
            for b in 0..blocks {
                let (at, header_at) = layout.block_at(b);
                // Rows past the end stay zero.
                let mut rb = [RowBlock::default(); ROWS];
                for (r, x) in rb[..present].iter_mut().enumerate() {
                    let row = g * ROWS + r;
                    *x = row_block(format, &data[row * row_bytes..(row + 1) * row_bytes], b);
                }
                let rb = &rb[..present];
                let value = |r: usize, i: usize| rb.get(r).map_or(0, |x| x.values[i]);
                let blk = &mut group[at..at + layout.block];
                // Nibble plane (every format but Q8_0): vector j holds values of
                // vectors 2j (low nibble) and 2j + 1 (high nibble).
                if format != Format::Q8_0 {
                    for j in 0..4 {
                        for r in 0..ROWS {
                            for i in 0..4 {
                                let lo = value(r, 4 * (2 * j) + i) & 0xF;
                                let hi = value(r, 4 * (2 * j + 1) + i) & 0xF;
                                blk[64 * j + 4 * r + i] = lo | (hi << 4);
                            }
                        }
                    }
                }
                let mut rest = 256;
                match format {
                    Format::Q5_0 | Format::Q5_1 | Format::Q5K => {
                        // Byte 4r + i, bit t: the fifth bit of value 4t + i of row r.
                        for r in 0..ROWS {
                            for i in 0..4 {
                                let mut byte = 0u8;
                                for t in 0..8 {
                                    byte |= ((value(r, 4 * t + i) >> 4) & 1) << t;
                                }
                                blk[256 + 4 * r + i] = byte;
                            }
                        }
                        rest += 64;
                    }
                    Format::Q6K => {
                        for j in 0..2 {
                            for r in 0..ROWS {
                                for i in 0..4 {
                                    let mut byte = 0u8;
                                    for u in 0..4 {
                                        byte |= ((value(r, 4 * (4 * j + u) + i) >> 4) & 3) << (2 * u);
                                    }
                                    blk[256 + 64 * j + 4 * r + i] = byte;
                                }
                            }
                        }
                        rest += 128;
                    }
                    Format::Q8_0 => {
                        for t in 0..8 {
                            for r in 0..ROWS {
                                for i in 0..4 {
                                    blk[64 * t + 4 * r + i] = value(r, 4 * t + i);
                                }
                            }
                        }
                        rest = 512;
                    }
                    _ => {}
                }
                for (r, x) in rb.iter().enumerate() {
                    match format {
                        Format::Q4K | Format::Q5K => {
                            blk[rest + r] = x.sc[0];
                            blk[rest + 16 + r] = x.sc[1];
                        }
                        Format::Q6K => {
                            blk[rest + r] = x.sc[0];
                            blk[rest + 16 + r] = x.sc[1];
                        }
                        _ => {
                            blk[rest + 2 * r..rest + 2 * r + 2].copy_from_slice(&x.d);
                            if matches!(format, Format::Q4_1 | Format::Q5_1) {
                                blk[rest + 32 + 2 * r..rest + 32 + 2 * r + 2].copy_from_slice(&x.m);
                            }
                        }
                    }
                }
                if b % layout.per_super == 0 && layout.header > 0 {
                    let header = &mut group[header_at..header_at + layout.header];
                    for (r, x) in rb.iter().enumerate() {
                        header[2 * r..2 * r + 2].copy_from_slice(&x.d);
                        if matches!(format, Format::Q4K | Format::Q5K) {
                            header[32 + 2 * r..32 + 2 * r + 2].copy_from_slice(&x.m);
                        }
                    }
                }
            }
        });
        Self { format, rows, blocks, group_bytes, data: out }
    }

    /// Number of 16-row groups.
    pub fn groups(&self) -> usize {
        self.rows.div_ceil(ROWS)
    }

    /// The bytes of group `g`.
    pub fn group(&self, g: usize) -> &[u8] {
        &self.data[g * self.group_bytes..(g + 1) * self.group_bytes]
    }

    /// Row `row` as `f32` values (`blocks * 32` of them), computed exactly as
    /// [`super::blocks::dequantize_block`] computes them from the GGUF bytes.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let layout = Layout::of(self.format);
        let (g, r) = (row / ROWS, row % ROWS);
        let group = self.group(g);
        for b in 0..self.blocks {
            let (at, header_at) = layout.block_at(b);
            let blk = &group[at..at + layout.block];
            let header = &group[header_at..header_at + layout.header];
            let value = |i: usize| -> u8 {
                let (t, lane) = (i / 4, 4 * r + i % 4);
                match self.format {
                    Format::Q8_0 => blk[64 * t + lane],
                    _ => {
                        let nib = (blk[64 * (t / 2) + lane] >> (4 * (t % 2))) & 0xF;
                        let high = match self.format {
                            Format::Q5_0 | Format::Q5_1 | Format::Q5K => ((blk[256 + lane] >> t) & 1) << 4,
                            Format::Q6K => ((blk[256 + 64 * (t / 4) + lane] >> (2 * (t % 4))) & 3) << 4,
                            _ => 0,
                        };
                        nib | high
                    }
                }
            };
            let out = &mut out[QK * b..QK * (b + 1)];
            match self.format {
                Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => {
                    let rest = match self.format {
                        Format::Q4_0 => 256,
                        Format::Q5_0 => 320,
                        _ => 512,
                    };
                    let offset = match self.format {
                        Format::Q4_0 => 8,
                        Format::Q5_0 => 16,
                        _ => 128,
                    };
                    let d = f16_at(blk, rest + 2 * r);
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = (value(i) as i32 - offset) as f32 * d;
                    }
                }
                Format::Q4_1 | Format::Q5_1 => {
                    let rest = if self.format == Format::Q4_1 { 256 } else { 320 };
                    let (d, m) = (f16_at(blk, rest + 2 * r), f16_at(blk, rest + 32 + 2 * r));
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = value(i) as f32 * d + m;
                    }
                }
                Format::Q4K | Format::Q5K => {
                    let rest = if self.format == Format::Q4K { 256 } else { 320 };
                    let (d, dmin) = (f16_at(header, 2 * r), f16_at(header, 32 + 2 * r));
                    let (sc, m) = (blk[rest + r], blk[rest + 16 + r]);
                    let (d1, m1) = (d * sc as f32, dmin * m as f32);
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = d1 * value(i) as f32 - m1;
                    }
                }
                Format::Q6K => {
                    let d = f16_at(header, 2 * r);
                    for (i, o) in out.iter_mut().enumerate() {
                        let sc = blk[384 + 16 * (i / 16) + r] as i8 as f32;
                        *o = d * sc * (value(i) as i32 - 32) as f32;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocks::dequantize_row;
    use super::super::blocks::testing::random_rows;
    use super::*;

    #[test]
    fn packing_keeps_every_value() {
        for format in Format::ALL {
            for (rows, k) in [(16, 256), (21, 512), (3, 768)] {
                let data = random_rows(format, rows, k, rows as u64);
                let packed = Packed::pack(format, rows, k, &data);
                assert_eq!(packed.data.len(), packed.groups() * Layout::of(format).group_bytes(k / QK));
                let row_bytes = format.row_bytes(k).unwrap();
                for row in 0..rows {
                    let mut expect = vec![0f32; k];
                    dequantize_row(format, &data[row * row_bytes..(row + 1) * row_bytes], &mut expect);
                    let mut got = vec![0f32; k];
                    packed.dequantize_row(row, &mut got);
                    assert_eq!(got, expect, "{format:?} {rows}x{k} row {row}");
                }
            }
        }
    }
}
