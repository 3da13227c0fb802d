//! `scripts/gguf-seed`, which GPU checks and benchmarks of larger models
//! depend on, against cria's own GGUF reader and engine: a seed of the real
//! Qwen2.5-Coder file is small, rebuilds the file at its full size with its
//! header and tokenizer unchanged, and the rebuilt file loads and runs; a
//! larger model's shape written from it has that model's hyper-parameters
//! and runs too; a damaged seed is refused with one clear line.

mod support;

use std::path::Path;

use cria::engine::gguf::GgufFile;
use cria::engine::network::Network;
use cria::engine::{ComputeDevice, Engine, EngineOptions, GenerationRequest, Hyperparams, Tokenizer};

const CODE: &str = "def add(a, b):\n    return a + b\n\n\nclass Ledger:\n    def total(self):\n";

fn tokens_of(path: &Path) -> Vec<u32> {
    let file = GgufFile::open(path).unwrap();
    Tokenizer::from_gguf(&file).unwrap().encode(CODE).unwrap()
}

#[test]
fn a_seed_rebuilds_the_model_at_full_size_and_cria_runs_it() {
    let real = support::qwen();
    let dir = tempfile::tempdir().unwrap();
    let (seed, rebuilt) = (dir.path().join("qwen.seed"), dir.path().join("qwen.gguf"));
    support::gguf_seed_ok(&["write".as_ref(), real.as_os_str(), seed.as_os_str()]);
    let seed_bytes = std::fs::metadata(&seed).unwrap().len();
    assert!(seed_bytes < 16 << 20, "the seed is {seed_bytes} bytes: it must travel with the GPU check (64 MiB in all)");
    support::gguf_seed_ok(&["rebuild".as_ref(), seed.as_os_str(), rebuilt.as_os_str()]);
    assert_eq!(std::fs::metadata(&rebuilt).unwrap().len(), std::fs::metadata(&real).unwrap().len());

    // The same header: hyper-parameters and tokenizer.
    let (a, b) = (GgufFile::open(&real).unwrap(), GgufFile::open(&rebuilt).unwrap());
    assert_eq!(format!("{:?}", Hyperparams::from_gguf(&a).unwrap()), format!("{:?}", Hyperparams::from_gguf(&b).unwrap()));
    assert_eq!(tokens_of(&real), tokens_of(&rebuilt));

    // The weights differ (repeated first blocks), but the file is a model
    // cria loads and decodes with.
    let mut engine = Engine::load(&rebuilt, &EngineOptions { context_length: 256, ..EngineOptions::default() }, &mut |_| {}).unwrap();
    let prompt = engine.tokenizer().encode(CODE).unwrap();
    let done = engine.generate(&GenerationRequest::new(prompt, 4, vec![])).unwrap();
    assert!(done.tokens.len() <= 4);
    assert!(done.computed_tokens() > 0);
}

#[test]
fn a_larger_models_shape_has_its_hyperparameters_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, shaped) = (dir.path().join("qwen.seed"), dir.path().join("qwen-1.5b.gguf"));
    support::gguf_seed_ok(&["write".as_ref(), support::qwen().as_os_str(), seed.as_os_str()]);
    support::gguf_seed_ok(&["rebuild".as_ref(), seed.as_os_str(), shaped.as_os_str(), "--shape".as_ref(), "qwen2.5-coder-1.5b".as_ref()]);
    let mut file = GgufFile::open(&shaped).unwrap();
    let hp = Hyperparams::from_gguf(&file).unwrap();
    assert_eq!((hp.n_layers, hp.n_embd, hp.n_heads, hp.n_kv_heads, hp.head_dim), (28, 1536, 12, 2, 128));
    let network = Network::load(&mut file, 64, ComputeDevice::Cpu, &mut |_| {}).unwrap();
    let mut cache = network.new_cache(64).unwrap();
    let logits = network.forward(&tokens_of(&shaped)[..8], &mut cache).unwrap();
    assert_eq!(logits.dims1().unwrap(), network.vocab());
    assert_eq!(cache.len(), 8);
}

#[test]
fn a_damaged_seed_is_refused_with_one_line_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, cut, out) = (dir.path().join("s.seed"), dir.path().join("cut.seed"), dir.path().join("out.gguf"));
    support::gguf_seed_ok(&["write".as_ref(), support::smollm2().as_os_str(), seed.as_os_str()]);
    let bytes = std::fs::read(&seed).unwrap();
    for (what, damaged) in [("truncated", bytes[..bytes.len() / 2].to_vec()), ("not a seed", b"GGUF\x03\0\0\0".repeat(8))] {
        std::fs::write(&cut, &damaged).unwrap();
        let refused = support::gguf_seed(&["rebuild".as_ref(), cut.as_os_str(), out.as_os_str()]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.starts_with("gguf-seed: error:") && stderr.trim_end().lines().count() == 1, "{what}: {stderr}");
        assert!(!out.exists() && !dir.path().join("out.gguf.tmp").exists(), "{what}: a file was left behind");
    }
}
