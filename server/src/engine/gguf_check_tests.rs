//! Crafted headers, each refused with an error before candle reads them;
//! and every real GGUF file the tests fetch, accepted.

#[path = "../../tests/support/gguf_writer.rs"]
mod gguf_writer;

use std::io::{BufReader, Cursor};

use candle_core::Device;
use gguf_writer::{kind, tiny_llama, Gguf, Tensor, Val, F32_TYPE, Q8_0_TYPE};

use super::*;
use crate::engine::gguf::GgufFile;
use crate::engine::model::{Hyperparams, Transformer};

fn check(bytes: &[u8]) -> Result<(), EngineError> {
    check_header(Path::new("test.gguf"), &mut BufReader::new(Cursor::new(bytes)), bytes.len() as u64)
}

fn refused(g: &Gguf) -> String {
    match check(&g.bytes()) {
        Ok(()) => panic!("accepted: {g:?}"),
        Err(e) => e.to_string(),
    }
}

/// Opens a file the way every front end does, and loads its weights.
fn load(g: &Gguf) -> Result<(), EngineError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("model.gguf");
    g.write(&path);
    let mut file = GgufFile::open(&path)?;
    Transformer::load(&mut file, 64, &Device::Cpu, &mut |_| {}).map(drop)
}

#[test]
fn the_tiny_model_passes_and_loads() {
    let g = tiny_llama();
    assert_eq!(check(&g.bytes()).map_err(|e| e.to_string()), Ok(()));
    load(&g).expect("the tiny model loads");
}

#[test]
fn a_zero_or_odd_alignment_is_refused() {
    for value in [Val::U32(0), Val::U32(3), Val::I32(-32), Val::U64(32), Val::Str("32".into())] {
        let mut g = tiny_llama();
        g.set("general.alignment", value.clone());
        assert!(refused(&g).contains("general.alignment"), "{value:?}");
    }
}

#[test]
fn a_block_count_beyond_the_tensors_is_refused_before_anything_is_sized_from_it() {
    for count in [Val::U32(u32::MAX), Val::U64(1 << 62), Val::U32(3), Val::U32(0)] {
        let mut g = tiny_llama();
        g.set("llama.block_count", count.clone());
        let err = load(&g).expect_err("refused").to_string();
        assert!(err.contains("block_count"), "{count:?}: {err}");
    }
}

#[test]
fn an_embedding_width_that_is_not_the_tables_is_refused() {
    let mut g = tiny_llama();
    g.set("llama.embedding_length", Val::U32(1 << 30));
    g.set("llama.rope.dimension_count", Val::U32((1 << 30) / 4));
    let err = load(&g).expect_err("refused").to_string();
    assert!(err.contains("embedding_length"), "{err}");
}

#[test]
fn tensor_shapes_must_fit_their_bytes() {
    // 2^62 x 64 with no data: its byte size overflows.
    let mut g = tiny_llama();
    g.tensor_mut("output.weight").dims = vec![64, 1 << 62];
    assert!(refused(&g).contains("output.weight"));
    // A size that does not overflow, past the end of the file.
    let mut g = tiny_llama();
    g.tensor_mut("output.weight").dims = vec![32, 1 << 40];
    assert!(refused(&g).contains("past the end of the file"));
    let mut g = tiny_llama();
    g.tensor_mut("output_norm.weight").dims = vec![1 << 32, 1 << 32, 4];
    assert!(refused(&g).contains("more elements"));
    let mut g = tiny_llama();
    g.tensor_mut("output_norm.weight").dims = vec![32, 0];
    assert!(refused(&g).contains("empty dimension"));
    let mut g = tiny_llama();
    g.tensor_mut("output_norm.weight").dims = vec![2, 2, 2, 2, 2];
    assert!(refused(&g).contains("dimensions"));
    // Q8_0 rows are blocks of 32 values.
    let mut g = tiny_llama();
    let t = g.tensor_mut("output_norm.weight");
    (t.ggml_type, t.dims) = (Q8_0_TYPE, vec![33]);
    assert!(refused(&g).contains("whole Q8_0 blocks"));
}

#[test]
fn tensor_offsets_must_be_aligned_inside_the_file_and_apart() {
    let mut g = tiny_llama();
    g.tensor_mut("output_norm.weight").offset = Some(u64::MAX - 8);
    assert!(refused(&g).contains("output_norm.weight"));
    let mut g = tiny_llama();
    g.tensor_mut("output_norm.weight").offset = Some(4);
    assert!(refused(&g).contains("alignment"));
    let mut g = tiny_llama();
    g.tensor_mut("output.weight").offset = Some(0);
    assert!(refused(&g).contains("overlaps"));
}

#[test]
fn an_unknown_tensor_type_names_the_tensor() {
    let mut g = tiny_llama();
    g.tensor_mut("output_norm.weight").ggml_type = 99;
    let err = check(&g.bytes()).expect_err("refused");
    assert!(matches!(&err, EngineError::UnsupportedQuantization { tensor, .. } if tensor == "output_norm.weight"), "{err}");
}

#[test]
fn metadata_that_would_cost_many_times_its_bytes_is_refused() {
    // 32 MiB of bytes would be 1 GiB of candle values.
    let mut g = Gguf::default();
    let len = 32u64 << 20;
    g.set("general.architecture", Val::Str("llama".into()));
    g.set("junk", Val::RawArray { element: kind::U8, len, bytes: vec![7; len as usize] });
    assert!(refused(&g).contains("memory"));
    // The same bytes as a string are fine: a string costs what it weighs.
    let mut g = Gguf::default();
    g.set("text", Val::Str("x".repeat(len as usize)));
    assert_eq!(check(&g.bytes()).map_err(|e| e.to_string()), Ok(()));
}

#[test]
fn counts_and_lengths_past_the_file_are_refused() {
    let mut g = tiny_llama();
    g.set("junk", Val::RawArray { element: kind::U32, len: 1 << 60, bytes: vec![0; 16] });
    assert!(refused(&g).contains("array"));
    let mut g = tiny_llama();
    g.set("junk", Val::RawArray { element: 77, len: 1, bytes: vec![0; 16] });
    assert!(refused(&g).contains("unknown value type"));
    let mut g = tiny_llama();
    g.tensor_count = Some(u64::MAX);
    assert!(refused(&g).contains("tensors"));
    let mut g = tiny_llama();
    g.kv_count = Some(1 << 40);
    assert!(refused(&g).contains("metadata keys"));
    let mut g = tiny_llama();
    g.set(&"k".repeat((MAX_NAME + 1) as usize), Val::U8(1));
    assert!(refused(&g).contains("metadata key"));
    let mut nested = Val::Array(kind::U8, vec![Val::U8(1)]);
    for _ in 0..MAX_DEPTH {
        nested = Val::Array(kind::ARRAY, vec![nested]);
    }
    let mut g = tiny_llama();
    g.set("nested", nested);
    assert!(refused(&g).contains("nest"));
}

#[test]
fn names_listed_twice_are_refused() {
    let mut g = tiny_llama();
    g.metadata.push(("general.name".into(), Val::Str("again".into())));
    assert!(refused(&g).contains("twice"));
    let mut g = tiny_llama();
    let copy = Tensor { offset: None, ..g.tensor_mut("output_norm.weight").clone() };
    g.tensors.push(copy);
    assert!(refused(&g).contains("twice"));
}

#[test]
fn a_header_cut_anywhere_is_an_error_not_a_panic() {
    let mut g = tiny_llama();
    g.tensors.truncate(3);
    g.tensors.iter_mut().for_each(|t| t.data.truncate(64));
    let mut g2 = g.clone();
    g2.tensors.clear();
    let header_len = g2.bytes().len() + 200;
    let bytes = g.bytes();
    for cut in (0..header_len.min(bytes.len())).step_by(7) {
        assert!(check(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut v1 = Gguf { version: 7, ..Gguf::default() };
    assert!(refused(&v1).contains("version"));
    v1.version = 3;
    v1.set("x", Val::Bool(true));
    assert!(check(&v1.bytes()).is_ok());
    let mut f32_tensor = Tensor { name: "t".into(), dims: vec![4], ggml_type: F32_TYPE, offset: None, data: vec![0; 16] };
    let mut g = Gguf::default();
    g.tensors.push(f32_tensor.clone());
    assert!(check(&g.bytes()).is_ok());
    f32_tensor.data.clear();
    let g = Gguf { tensors: vec![f32_tensor], ..Gguf::default() };
    assert!(refused(&g).contains("past the end"));
}

/// Every real GGUF the tests use passes, header and hyper-parameters.
#[test]
fn every_fetched_gguf_passes() {
    let home = std::env::var_os("CRIA_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cria"));
    let mut files: Vec<_> = ["models", "models/vocab"]
        .iter()
        .filter_map(|d| std::fs::read_dir(home.join(d)).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "run scripts/fetch-models first: {files:?}");
    for path in files {
        let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if file.has_tensor("token_embd.weight") {
            let hp = Hyperparams::from_gguf(&file).unwrap_or_else(|e| panic!("{e}"));
            hp.check_tensors(&file).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
