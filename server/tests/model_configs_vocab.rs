//! Checks the builtin configs against the real GGUF files of the two small models
//! that `scripts/fetch-models` puts in `$CRIA_HOME/models` (default
//! `~/.cache/cria/models`): every special token's id and text must match the
//! file's vocabulary, and the context length and rope base its metadata.
//!
//! A missing file fails the test rather than skipping it, so that a machine
//! without the models cannot pass by checking nothing. Code Llama's configs are
//! not checked here: the only Llama vocabulary at hand (`vocab/ggml-vocab-llama-spm.gguf`)
//! has 32000 tokens and lacks the infilling tokens.

use std::path::PathBuf;

use candle_core::quantized::gguf_file::{Content, Value};
use cria::models::{builtin, builtin_names, Architecture, CriaHome, ModelConfig};

/// The metadata of the GGUF file `file_name` in cria's models folder.
fn read_gguf(file_name: &str) -> Content {
    let home = CriaHome::from_env().expect("HOME or CRIA_HOME must be set");
    let path: PathBuf = home.models_dir().join(file_name);
    let Ok(mut file) = std::fs::File::open(&path) else {
        panic!(
            "{} is missing: run scripts/fetch-models to download it",
            path.display()
        );
    };
    Content::read(&mut file)
        .unwrap_or_else(|err| panic!("{}: not a GGUF file: {err}", path.display()))
}

/// The token texts of a GGUF file's vocabulary, by id.
fn vocabulary(content: &Content) -> Vec<String> {
    let tokens = content
        .metadata
        .get("tokenizer.ggml.tokens")
        .expect("no tokenizer.ggml.tokens");
    let Value::Array(tokens) = tokens else {
        panic!("tokenizer.ggml.tokens is not an array");
    };
    tokens
        .iter()
        .map(|token| {
            token
                .to_string()
                .expect("a token that is not a string")
                .clone()
        })
        .collect()
}

/// Checks `config` against `content`: vocabulary, context length and rope base.
fn check(config: &ModelConfig, content: &Content, file_name: &str) {
    let vocab = vocabulary(content);
    let label = format!("model-configs/{}.toml (against {file_name})", config.name);
    if let Err(err) = config.check_vocabulary(&label, |id| vocab.get(id as usize).cloned()) {
        panic!("{err}");
    }
    let arch = match config.architecture {
        Architecture::Llama => "llama",
        Architecture::Qwen2 => "qwen2",
    };
    let meta = |key: &str| content.metadata.get(&format!("{arch}.{key}"));
    if let Some(length) = meta("context_length") {
        assert_eq!(
            length.to_u32().ok(),
            Some(config.context_length),
            "{label}: context_length"
        );
    }
    if let Some(base) = meta("rope.freq_base") {
        assert_eq!(
            base.to_f32().ok(),
            Some(config.rope.theta as f32),
            "{label}: rope.theta"
        );
    }
}

#[test]
fn smollm2_config_matches_its_gguf() {
    let config = builtin("smollm2-135m-instruct").expect("builtin");
    let content = read_gguf(&config.file.gguf);
    check(&config, &content, &config.file.gguf);
}

/// All Qwen2.5-Coder sizes share one tokenizer, so the small file checks the
/// special tokens of every Qwen config.
#[test]
fn qwen_configs_match_the_qwen_gguf() {
    let small = builtin("qwen2.5-coder-0.5b-instruct").expect("builtin");
    let content = read_gguf(&small.file.gguf);
    check(&small, &content, &small.file.gguf);
    let vocab = vocabulary(&content);
    for name in builtin_names() {
        let config = builtin(name).expect("builtin");
        if config.architecture != Architecture::Qwen2 {
            continue;
        }
        let label = format!("model-configs/{name}.toml (against {})", small.file.gguf);
        if let Err(err) = config.check_vocabulary(&label, |id| vocab.get(id as usize).cloned()) {
            panic!("{err}");
        }
    }
}

/// llama.cpp's DeepSeek-Coder vocabulary file (weights-free) checks the special
/// tokens of the DeepSeek configs; its metadata is not the models' own, so only
/// the vocabulary is compared.
#[test]
fn deepseek_configs_match_the_deepseek_coder_vocabulary() {
    let file_name = "vocab/ggml-vocab-deepseek-coder.gguf";
    let vocab = vocabulary(&read_gguf(file_name));
    for name in ["deepseek-coder-1.3b-base", "deepseek-coder-6.7b-base"] {
        let config = builtin(name).expect("builtin");
        let label = format!("model-configs/{name}.toml (against {file_name})");
        if let Err(err) = config.check_vocabulary(&label, |id| vocab.get(id as usize).cloned()) {
            panic!("{err}");
        }
    }
}
