//! Shared by the integration tests: where the real model files live, and a
//! loud failure (never a skip) when they are missing.
#![allow(dead_code)]

use std::path::PathBuf;

/// `$CRIA_HOME/models`, or `~/.cache/cria/models`: where `scripts/fetch-models` puts files.
pub fn models_dir() -> PathBuf {
    let home = std::env::var_os("CRIA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/cria"));
    home.join("models")
}

/// The path of a fetched file, or a panic that says how to get it.
pub fn require(relative: &str) -> PathBuf {
    let path = models_dir().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models first (tests never skip a missing model)",
        path.display()
    );
    path
}

/// The `cria` binary under test: `$CRIA_TEST_BIN` when set (a copy of the
/// binary just built, when other builds share the target folder), else the
/// one Cargo built for this test.
pub fn cria_bin() -> PathBuf {
    std::env::var_os("CRIA_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cria")))
}

/// SmolLM2-135M-Instruct Q4_1: the fastest real llama-architecture model.
pub fn smollm2() -> PathBuf {
    require("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Qwen2.5-Coder-0.5B-Instruct: the real FIM code model.
pub fn qwen() -> PathBuf {
    require("qwen2.5-coder-0.5b-instruct-q5_0.gguf")
}

/// One of llama.cpp's vocab-only GGUFs, e.g. `llama-spm`.
pub fn vocab(name: &str) -> PathBuf {
    require(&format!("vocab/ggml-vocab-{name}.gguf"))
}

/// A fresh CRIA_HOME whose models folder links the real fetched SmolLM2 and
/// Qwen files, so a test can resolve them by name without touching the
/// user's own home.
pub fn linked_home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(dir.path().join("models")).expect("a models folder");
    for file in [smollm2(), qwen()] {
        let name = file.file_name().expect("a file name");
        std::os::unix::fs::symlink(&file, dir.path().join("models").join(name)).expect("a symlink");
    }
    dir
}

/// Runs `scripts/gguf-seed` with `args`, returning what it did.
pub fn gguf_seed(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/gguf-seed");
    std::process::Command::new("python3").arg(script).args(args).output().expect("python3 runs scripts/gguf-seed")
}

/// Runs `scripts/gguf-seed` with `args`; a failure fails the test with its message.
pub fn gguf_seed_ok(args: &[&std::ffi::OsStr]) {
    let out = gguf_seed(args);
    assert!(out.status.success(), "gguf-seed {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The tiny Code Llama-shaped model builder.
pub mod tiny_codellama;

/// The one LSP client of the tests: the real binary over stdio, or the
/// server in this process over an in-memory pipe.
pub mod lsp_client;

/// Plain HTTP for tests: a client and a scripted fake engine.
pub mod http;

/// `cria serve` as a child process.
pub mod serve;

/// A GGUF writer for crafted (hostile) files and a tiny real model.
pub mod gguf_writer;

/// Peak and current memory of a process, from `/proc/<pid>/status`, in bytes.
pub fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
