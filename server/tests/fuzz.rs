//! Fuzzing (issue #14) with proptest, bounded in cases and time so it runs
//! in `cargo test` and CI: byte mutations of LSP frames fed to the real
//! language server in-process, and of real GGUF headers fed to the model
//! loader. The properties: no panic, an end in bounded time, and memory
//! within a stated bound, measured by a counting allocator (this test
//! binary's own, so no other test sees it):
//! - the language server, whatever the bytes: at most 32 MiB plus 8 times
//!   the input;
//! - opening and loading a GGUF file: at most 32 MiB plus 6 times the file
//!   (metadata is bounded by 4 times the file plus 16 MiB, tensors by the
//!   file).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;

mod support;

use support::gguf_writer;

/// Counts the bytes allocated now and the peak since the last reset.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time: the counters are process-wide.
static MEASURING: Mutex<()> = Mutex::new(());

/// Runs `f`; returns its result and the most memory it held at once
/// beyond what was allocated when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

/// A mutation of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip some bits of the byte at a place (a fraction of the length).
    Flip(f64, u8),
    /// Write an interesting number there, little-endian, 4 or 8 bytes.
    Number(f64, u64, bool),
    /// Insert bytes there.
    Insert(f64, Vec<u8>),
    /// Remove a run of bytes there.
    Remove(f64, usize),
    /// Cut the rest off there.
    Truncate(f64),
}

fn at(len: usize, place: f64) -> usize {
    ((len as f64) * place) as usize
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::Flip(place, bits) if len > 0 => bytes[at(len, *place).min(len - 1)] ^= bits,
        Mutation::Number(place, n, wide) => {
            let i = at(len, *place);
            let raw = if *wide { n.to_le_bytes().to_vec() } else { (*n as u32).to_le_bytes().to_vec() };
            for (k, b) in raw.into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(i + k) {
                    *slot = b;
                }
            }
        }
        Mutation::Insert(place, extra) => {
            let i = at(len, *place);
            bytes.splice(i..i, extra.iter().copied());
        }
        Mutation::Remove(place, n) => {
            let i = at(len, *place);
            bytes.drain(i..(i + n).min(len));
        }
        Mutation::Truncate(place) => bytes.truncate(at(len, *place)),
        Mutation::Flip(..) => {}
    }
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(3),
        Just(u32::MAX as u64),
        Just(1 << 32),
        Just(1 << 62),
        Just(u64::MAX),
        any::<u64>(),
        0u64..100_000,
    ]
}

/// Mutations concentrated in the first `head` fraction of the input.
fn mutations(head: f64) -> impl Strategy<Value = Vec<Mutation>> {
    let place = 0.0..head;
    let one = prop_oneof![
        4 => (place.clone(), 1u8..=255).prop_map(|(p, b)| Mutation::Flip(p, b)),
        3 => (place.clone(), number(), any::<bool>()).prop_map(|(p, n, w)| Mutation::Number(p, n, w)),
        2 => (place.clone(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => (place.clone(), 1usize..256).prop_map(|(p, n)| Mutation::Remove(p, n)),
        1 => (0.0..1.0f64).prop_map(Mutation::Truncate),
    ];
    prop::collection::vec(one, 1..8)
}

// ---- LSP frames ----

fn lsp_frame(body: &serde_json::Value) -> Vec<u8> {
    support::lsp_client::frame(&body.to_string())
}

/// A session an editor could send: handshake, a document and its edits,
/// requests, shutdown.
fn lsp_session() -> Vec<u8> {
    use serde_json::json;
    let uri = "file:///fuzz/a.rs";
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": null, "rootUri": null, "capabilities": {}, "initializationOptions": {"model": "/nonexistent.gguf"}}}),
        json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": uri, "languageId": "rust", "version": 1, "text": "fn main() {\n    let x = 1;\n}\n"}}}),
        json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 7}}, "text": "let y"}]}}),
        json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": "fn f() {}\n"}]}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "cria/documentText", "params": {"uri": uri}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "textDocument/inlineCompletion", "params": {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 3}, "context": {"triggerKind": 2}}}),
        json!({"jsonrpc": "2.0", "method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "shutdown"}),
    ];
    messages.iter().flat_map(lsp_frame).collect()
}

/// Runs the language server on `input` until it ends; false if it did
/// not end within the time allowed.
fn run_lsp(runtime: &tokio::runtime::Runtime, input: Vec<u8>) -> bool {
    runtime.block_on(async move {
        let (mut to_server, server_in) = tokio::io::duplex(1 << 16);
        let (server_out, mut from_server) = tokio::io::duplex(1 << 16);
        let config = cria::protocol::ServerConfig { model: "/nonexistent.gguf".into(), ..Default::default() };
        let server = tokio::spawn(cria::protocol::run_session(server_in, server_out, config, None));
        let drain = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await;
        });
        use tokio::io::AsyncWriteExt;
        let _ = to_server.write_all(&input).await;
        drop(to_server);
        let ended = tokio::time::timeout(Duration::from_secs(20), server).await;
        drain.abort();
        matches!(ended, Ok(Ok(_)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lsp_frames_mutated_never_panic_hang_or_grow_memory(edits in mutations(1.0)) {
        let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut input = lsp_session();
        for edit in &edits {
            apply(&mut input, edit);
        }
        let len = input.len();
        let (ended, peak) = peak_of(|| run_lsp(&runtime, input));
        prop_assert!(ended, "the server did not end after its input closed");
        prop_assert!(peak <= (32 << 20) + 8 * len, "peak {peak} bytes for {len} bytes of input");
    }
}

// ---- GGUF headers ----

/// Opens the file as every front end does, then the tokenizer and, for a
/// file with weights, the weights.
fn load(path: &std::path::Path, weights: bool) {
    use cria::engine::gguf::GgufFile;
    use cria::engine::model::{Hyperparams, Transformer};
    let Ok(mut file) = GgufFile::open(path) else { return };
    let _ = cria::engine::Tokenizer::from_gguf(&file);
    if weights && Hyperparams::from_gguf(&file).is_ok() {
        let _ = Transformer::load(&mut file, 64, &candle_core::Device::Cpu, &mut |_| {});
    }
}

fn check_gguf(bytes: Vec<u8>, weights: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzzed.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let len = bytes.len();
    drop(bytes);
    let ((), peak) = peak_of(|| load(&path, weights));
    prop_assert!(peak <= (32 << 20) + 6 * len, "peak {peak} bytes for a {len}-byte file");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// The tiny model: header, tokenizer and weights.
    #[test]
    fn a_tiny_model_mutated_never_panics_or_grows_memory(edits in mutations(0.15)) {
        let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
        let mut bytes = gguf_writer::tiny_llama().bytes();
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        check_gguf(bytes, true)?;
    }

    /// A real vocabulary file (llama.cpp's SentencePiece one): its header,
    /// mutated anywhere in its first quarter, opened and its tokenizer built.
    #[test]
    fn a_real_vocabulary_header_mutated_never_panics_or_grows_memory(edits in mutations(0.25)) {
        let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
        let path = support::models_dir().join("vocab/ggml-vocab-llama-spm.gguf");
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-models", path.display()));
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        check_gguf(bytes, false)?;
    }
}
