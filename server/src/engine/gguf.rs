//! Reading a GGUF file: its metadata as typed values with errors that name the
//! file and the key, and its tensors on demand.
//!
//! [`super::gguf_check`] reads the header first and refuses what candle's
//! reader would trip on (a zero alignment, shapes whose byte sizes overflow
//! or lie past the end of the file, metadata that would take many times the
//! file's size in memory); then candle parses the container, and this
//! module turns its loosely typed metadata into what the engine needs.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use super::EngineError;

/// An open GGUF file: parsed header and metadata, with the reader kept for
/// loading tensors one by one.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    /// Opens and parses the header; tensors are read later, on demand.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let file = File::open(path).map_err(|source| EngineError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(EngineError::Corrupt {
                path: path.to_path_buf(),
                reason: "it is a directory".into(),
            });
        }
        let size = file.metadata().map_err(|source| EngineError::Open { path: path.to_path_buf(), source })?.len();
        let mut reader = BufReader::new(file);
        super::gguf_check::check_header(path, &mut reader, size)?;
        reader.seek(SeekFrom::Start(0)).map_err(|source| EngineError::Open { path: path.to_path_buf(), source })?;
        let content = Content::read(&mut reader).map_err(|err| {
            let reason = err.to_string();
            // candle names a tensor type it has no kernels for this way.
            match reason.split("unknown dtype for tensor ").nth(1) {
                Some(code) => EngineError::UnsupportedQuantization {
                    path: path.to_path_buf(),
                    tensor: "(a tensor)".into(),
                    dtype: format!("ggml type {}", code.trim()),
                },
                None => EngineError::Corrupt { path: path.to_path_buf(), reason },
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    /// The file this was read from, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn metadata_error(&self, key: &str, reason: impl Into<String>) -> EngineError {
        EngineError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// A raw metadata value, if present.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// A required string value.
    pub fn string(&self, key: &str) -> Result<&str, EngineError> {
        match self.value(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.metadata_error(key, format!("expected a string, found {:?}", other.value_type()))),
            None => Err(self.metadata_error(key, "missing")),
        }
    }

    /// An optional string value.
    pub fn opt_string(&self, key: &str) -> Option<&str> {
        match self.value(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A required unsigned integer, whatever its stored width.
    pub fn usize(&self, key: &str) -> Result<usize, EngineError> {
        let value = self.value(key).ok_or_else(|| self.metadata_error(key, "missing"))?;
        value_as_u64(value)
            .map(|v| v as usize)
            .ok_or_else(|| self.metadata_error(key, format!("expected an unsigned integer, found {:?}", value.value_type())))
    }

    /// An optional unsigned integer.
    pub fn opt_usize(&self, key: &str) -> Option<usize> {
        self.value(key).and_then(value_as_u64).map(|v| v as usize)
    }

    /// An optional float, whatever its stored width.
    pub fn opt_f32(&self, key: &str) -> Option<f32> {
        match self.value(key)? {
            Value::F32(v) => Some(*v),
            Value::F64(v) => Some(*v as f32),
            other => value_as_u64(other).map(|v| v as f32),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::Bool(b) => Some(*b),
            other => value_as_u64(other).map(|v| v != 0),
        }
    }

    /// A required array of strings (vocabulary, merges).
    pub fn strings(&self, key: &str) -> Result<Vec<&str>, EngineError> {
        let array = self.array(key)?;
        array
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.metadata_error(key, format!("expected strings, found {:?}", other.value_type()))),
            })
            .collect()
    }

    /// An optional array of floats (SentencePiece scores).
    pub fn opt_f32s(&self, key: &str) -> Option<Vec<f32>> {
        let Some(Value::Array(array)) = self.value(key) else {
            return None;
        };
        array
            .iter()
            .map(|v| match v {
                Value::F32(f) => Some(*f),
                Value::F64(f) => Some(*f as f32),
                _ => None,
            })
            .collect()
    }

    /// An optional array of integers (token types).
    pub fn opt_i64s(&self, key: &str) -> Option<Vec<i64>> {
        let Some(Value::Array(array)) = self.value(key) else {
            return None;
        };
        array.iter().map(value_as_i64).collect()
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>, EngineError> {
        match self.value(key) {
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(self.metadata_error(key, format!("expected an array, found {:?}", other.value_type()))),
            None => Err(self.metadata_error(key, "missing")),
        }
    }

    /// Whether the file holds a tensor of that name (tied embeddings, biases).
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Names of all tensors, for checks and diagnostics.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.content.tensor_infos.keys().map(String::as_str)
    }

    /// A tensor's dimensions (outermost first, as candle orders them),
    /// without reading it.
    pub fn tensor_dims(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|t| t.shape.dims())
    }

    /// How many tensors the file holds.
    pub fn tensor_count(&self) -> usize {
        self.content.tensor_infos.len()
    }

    /// The storage type of a tensor, without reading it.
    pub fn tensor_dtype(&self, name: &str) -> Option<GgmlDType> {
        self.content.tensor_infos.get(name).map(|t| t.ggml_dtype)
    }

    /// Reads one tensor's data from disk.
    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor, EngineError> {
        if !self.has_tensor(name) {
            return Err(EngineError::Corrupt {
                path: self.path.clone(),
                reason: format!("tensor `{name}` is missing"),
            });
        }
        self.content
            .tensor(&mut self.reader, name, device)
            .map_err(|err| EngineError::Corrupt {
                path: self.path.clone(),
                reason: format!("tensor `{name}`: {err}"),
            })
    }
}

fn value_as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::U8(v) => Some(*v as u64),
        Value::U16(v) => Some(*v as u64),
        Value::U32(v) => Some(*v as u64),
        Value::U64(v) => Some(*v),
        Value::I8(v) => u64::try_from(*v).ok(),
        Value::I16(v) => u64::try_from(*v).ok(),
        Value::I32(v) => u64::try_from(*v).ok(),
        Value::I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn value_as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::U8(v) => Some(*v as i64),
        Value::U16(v) => Some(*v as i64),
        Value::U32(v) => Some(*v as i64),
        Value::U64(v) => i64::try_from(*v).ok(),
        Value::I8(v) => Some(*v as i64),
        Value::I16(v) => Some(*v as i64),
        Value::I32(v) => Some(*v as i64),
        Value::I64(v) => Some(*v),
        _ => None,
    }
}
