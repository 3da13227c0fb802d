//! A first pass over a GGUF file's header, before candle reads it: every
//! count, length, shape and offset is checked, with checked arithmetic,
//! against the file's size, so that a crafted file is refused with an error
//! instead of a division by zero, an allocation sized from its metadata, or
//! a tensor whose shape promises more bytes than the file holds.
//!
//! What is checked:
//! - counts and lengths fit in what is left of the file, at the smallest
//!   size their entries can take;
//! - keys and tensor names are at most [`MAX_NAME`] bytes, unique;
//! - arrays nest at most [`MAX_DEPTH`] deep;
//! - the memory candle's reader would use for the metadata (one `Value`
//!   per array element) is at most [`metadata_budget`]: four times the
//!   file's size plus 16 MiB (a 32 MiB array of bytes would otherwise cost 1 GiB);
//! - `general.alignment`, when present, is a power of two in a 32-bit
//!   integer (candle divides by it, and ignores other types);
//! - a tensor has at most 4 dimensions, none zero; its element count and
//!   byte size do not overflow, its rows are whole blocks of its type, and
//!   its bytes lie inside the file, aligned, not overlapping another's (so
//!   all tensors together are at most the file's size).
//!
//! This pass allocates nothing sized from the file beyond the names it
//! keeps (which the file holds anyway).

use std::collections::HashSet;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use super::EngineError;

/// Keys and tensor names longer than this are refused (real ones are under
/// a hundred bytes).
pub const MAX_NAME: u64 = 64 << 10;
/// Arrays of arrays nest at most this deep (real files use none).
pub const MAX_DEPTH: usize = 4;
/// Dimensions of a tensor (candle's limit, and ggml's).
pub const MAX_DIMS: u32 = 4;
/// The alignment when the file names none (GGUF's default).
const DEFAULT_ALIGNMENT: u64 = 32;

/// The most memory the parsed metadata may take for a file of this size.
pub fn metadata_budget(file_size: u64) -> u64 {
    file_size.saturating_mul(4).saturating_add(16 << 20)
}

/// Bytes per block and elements per block of a ggml tensor type, by its
/// number in the file; `None` for a type candle cannot read.
fn ggml_type(code: u32) -> Option<(&'static str, u64, u64)> {
    Some(match code {
        0 => ("F32", 4, 1),
        1 => ("F16", 2, 1),
        2 => ("Q4_0", 18, 32),
        3 => ("Q4_1", 20, 32),
        6 => ("Q5_0", 22, 32),
        7 => ("Q5_1", 24, 32),
        8 => ("Q8_0", 34, 32),
        9 => ("Q8_1", 36, 32),
        10 => ("Q2_K", 84, 256),
        11 => ("Q3_K", 110, 256),
        12 => ("Q4_K", 144, 256),
        13 => ("Q5_K", 176, 256),
        14 => ("Q6_K", 210, 256),
        15 => ("Q8_K", 292, 256),
        30 => ("BF16", 2, 1),
        _ => return None,
    })
}

/// Value types by their number in the file.
const U8: u32 = 0;
const I8: u32 = 1;
const U16: u32 = 2;
const I16: u32 = 3;
const U32: u32 = 4;
const I32: u32 = 5;
const F32: u32 = 6;
const BOOL: u32 = 7;
const STRING: u32 = 8;
const ARRAY: u32 = 9;
const U64: u32 = 10;
const I64: u32 = 11;
const F64: u32 = 12;

/// The file, read front to back with the position and size at hand.
struct Reader<'a, R> {
    inner: &'a mut BufReader<R>,
    pos: u64,
    size: u64,
    path: &'a Path,
    /// GGUF version 1 writes lengths as 32-bit numbers.
    v1: bool,
    /// Memory the metadata would take once parsed, so far.
    metadata: u64,
}

/// One tensor's place in the file.
struct Placed {
    name: String,
    offset: u64,
    bytes: u64,
}

impl<R: Read + Seek> Reader<'_, R> {
    fn corrupt(&self, reason: impl Into<String>) -> EngineError {
        EngineError::Corrupt { path: self.path.to_path_buf(), reason: reason.into() }
    }

    fn left(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EngineError> {
        let mut out = [0; N];
        self.inner.read_exact(&mut out).map_err(|e| self.corrupt(format!("the header ends early at byte {}: {e}", self.pos)))?;
        self.pos += N as u64;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, EngineError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A length or count: 32 bits in version 1, 64 after.
    fn length(&mut self) -> Result<u64, EngineError> {
        if self.v1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    fn length_size(&self) -> u64 {
        if self.v1 {
            4
        } else {
            8
        }
    }

    /// Moves past `n` bytes, which must be in the file.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), EngineError> {
        if n > self.left() {
            return Err(self.corrupt(format!("{what} needs {n} bytes at byte {}, only {} are left", self.pos, self.left())));
        }
        // `n` is at most the file's size, so it fits an i64.
        self.inner.seek_relative(n as i64).map_err(|e| self.corrupt(e.to_string()))?;
        self.pos += n;
        Ok(())
    }

    /// A key or tensor name: a length, then that many bytes.
    fn name(&mut self, what: &str) -> Result<String, EngineError> {
        let n = self.length()?;
        if n > MAX_NAME || n > self.left() {
            return Err(self.corrupt(format!("{what} at byte {} is {n} bytes long", self.pos)));
        }
        let mut bytes = vec![0; n as usize];
        self.inner.read_exact(&mut bytes).map_err(|e| self.corrupt(e.to_string()))?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Counts memory the parsed metadata will take, refusing more than the budget.
    fn spend(&mut self, bytes: u64) -> Result<(), EngineError> {
        self.metadata = self.metadata.saturating_add(bytes);
        let budget = metadata_budget(self.size);
        if self.metadata > budget {
            return Err(self.corrupt(format!(
                "its metadata would take more than {} MiB of memory once read (at most four times the file's size plus 16 MiB)",
                budget >> 20
            )));
        }
        Ok(())
    }

    /// The smallest number of bytes one value of a type takes in the file.
    fn min_size(&self, kind: u32) -> Option<u64> {
        Some(match kind {
            U8 | I8 | BOOL => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            STRING => self.length_size(),
            ARRAY => 4 + self.length_size(),
            _ => return None,
        })
    }

    /// Moves past one value of type `kind`; returns it when it is a small
    /// integer (for `general.alignment`).
    fn value(&mut self, kind: u32, depth: usize) -> Result<Option<i64>, EngineError> {
        let per_value = std::mem::size_of::<Value>() as u64;
        match kind {
            U8 => Ok(Some(i64::from(self.array::<1>()?[0]))),
            I8 => Ok(Some(i64::from(self.array::<1>()?[0] as i8))),
            U16 => Ok(Some(i64::from(u16::from_le_bytes(self.array()?)))),
            I16 => Ok(Some(i64::from(i16::from_le_bytes(self.array()?)))),
            U32 => Ok(Some(i64::from(self.u32()?))),
            I32 => Ok(Some(i64::from(i32::from_le_bytes(self.array()?)))),
            BOOL => self.array::<1>().map(|_| None),
            F32 => self.array::<4>().map(|_| None),
            U64 | I64 | F64 => self.array::<8>().map(|_| None),
            STRING => {
                let n = self.length()?;
                self.spend(n)?;
                self.skip(n, "a string")?;
                Ok(None)
            }
            ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(self.corrupt(format!("arrays nest more than {MAX_DEPTH} deep")));
                }
                let element = self.u32()?;
                let Some(min) = self.min_size(element) else {
                    return Err(self.corrupt(format!("an array of unknown value type {element}")));
                };
                let n = self.length()?;
                let needed = n.checked_mul(min).filter(|&b| b <= self.left());
                let Some(needed) = needed else {
                    return Err(self.corrupt(format!("an array of {n} values at byte {} does not fit in the file", self.pos)));
                };
                self.spend(n.saturating_mul(per_value))?;
                if matches!(element, STRING | ARRAY) {
                    for _ in 0..n {
                        self.value(element, depth + 1)?;
                    }
                } else {
                    // Fixed-size values: their bytes are all there is.
                    self.skip(needed, "an array")?;
                }
                Ok(None)
            }
            other => Err(self.corrupt(format!("unknown metadata value type {other}"))),
        }
    }

    /// One tensor's entry in the directory, checked on its own.
    fn tensor_info(&mut self, names: &mut HashSet<String>) -> Result<Placed, EngineError> {
        let name = self.name("a tensor name")?;
        let n_dims = self.u32()?;
        if n_dims > MAX_DIMS {
            return Err(self.corrupt(format!("tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.length()?);
        }
        let code = self.u32()?;
        let offset = self.u64()?;
        let Some((type_name, block_bytes, block)) = ggml_type(code) else {
            return Err(EngineError::UnsupportedQuantization {
                path: self.path.to_path_buf(),
                tensor: name,
                dtype: format!("ggml type {code}"),
            });
        };
        let shape = || dims.iter().map(u64::to_string).collect::<Vec<_>>().join("x");
        if dims.contains(&0) {
            return Err(self.corrupt(format!("tensor `{name}` has an empty dimension ({})", shape())));
        }
        let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let Some(elements) = elements else {
            return Err(self.corrupt(format!("tensor `{name}` has more elements than a number can hold ({})", shape())));
        };
        if dims.first().is_some_and(|&row| row % block != 0) {
            return Err(self.corrupt(format!("tensor `{name}` ({}) has rows that are not whole {type_name} blocks of {block}", shape())));
        }
        let Some(bytes) = (elements / block).checked_mul(block_bytes) else {
            return Err(self.corrupt(format!("tensor `{name}` ({}) is larger than a number can hold", shape())));
        };
        if !names.insert(name.clone()) {
            return Err(self.corrupt(format!("tensor `{name}` is listed twice")));
        }
        self.spend(name.len() as u64 + 64)?;
        Ok(Placed { name, offset, bytes })
    }
}

/// Checks the header of the GGUF file `inner` reads (from its start), of
/// `size` bytes, named `path` in errors. See the module docs for the rules.
pub fn check_header<R: Read + Seek>(path: &Path, inner: &mut BufReader<R>, size: u64) -> Result<(), EngineError> {
    let mut r = Reader { inner, pos: 0, size, path, v1: false, metadata: 0 };
    let magic = r.array::<4>()?;
    if &magic != b"GGUF" {
        return Err(r.corrupt("it is not a GGUF file (no GGUF magic number)"));
    }
    let version = r.u32()?;
    if !(1..=3).contains(&version) {
        return Err(r.corrupt(format!("GGUF version {version} is not supported (1 to 3 are)")));
    }
    r.v1 = version == 1;
    let tensor_count = r.length()?;
    let kv_count = r.length()?;
    // The smallest an entry can be: a name's length, a type and a byte for
    // a key; a name's length, a dimension count, a type and an offset for a
    // tensor.
    let min_kv = r.length_size() + 4 + 1;
    let min_tensor = r.length_size() + 4 + 4 + 8;
    let needed = kv_count.checked_mul(min_kv).and_then(|k| tensor_count.checked_mul(min_tensor).and_then(|t| t.checked_add(k)));
    if needed.is_none_or(|n| n > r.left()) {
        return Err(r.corrupt(format!("its header lists {tensor_count} tensors and {kv_count} metadata keys, more than the file can hold")));
    }
    let mut keys = HashSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..kv_count {
        let key = r.name("a metadata key")?;
        let kind = r.u32()?;
        r.spend(key.len() as u64 + std::mem::size_of::<Value>() as u64 + 48)?;
        let value = r.value(kind, 0)?;
        if key == "general.alignment" {
            let small_integer = matches!(kind, U8 | I8 | U16 | I16 | U32 | I32);
            alignment = match value.and_then(|v| u64::try_from(v).ok()) {
                Some(a) if small_integer && a.is_power_of_two() => a,
                _ => return Err(r.corrupt(format!("general.alignment is {}; it must be a power of two (a 32-bit integer)", value.map_or("not an integer".to_string(), |v| v.to_string())))),
            };
        }
        if !keys.insert(key.clone()) {
            return Err(r.corrupt(format!("metadata key `{key}` is listed twice")));
        }
    }
    let mut names = HashSet::new();
    let mut placed = Vec::new();
    for _ in 0..tensor_count {
        placed.push(r.tensor_info(&mut names)?);
    }
    // Past the end of the file only matters when a tensor lies there (a
    // vocabulary-only file ends with its header, unpadded).
    let Some(data_start) = r.pos.div_ceil(alignment).checked_mul(alignment) else {
        return Err(r.corrupt("the tensor data would start past the end of the file"));
    };
    placed.sort_by_key(|p| p.offset);
    let mut end_of_previous = data_start;
    for tensor in &placed {
        if tensor.offset % alignment != 0 {
            return Err(r.corrupt(format!("tensor `{}` starts at offset {}, not a multiple of the alignment {alignment}", tensor.name, tensor.offset)));
        }
        let start = data_start.checked_add(tensor.offset);
        let end = start.and_then(|s| s.checked_add(tensor.bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= size => {
                if start < end_of_previous {
                    return Err(r.corrupt(format!("tensor `{}` overlaps the tensor before it", tensor.name)));
                }
                end_of_previous = end;
            }
            _ => {
                return Err(r.corrupt(format!(
                    "tensor `{}` needs {} bytes at offset {}, past the end of the file ({size} bytes)",
                    tensor.name, tensor.bytes, tensor.offset
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "gguf_check_tests.rs"]
mod tests;
