//! `cria complete` and friends driven as a user runs them: the real binary,
//! real models, and every kind of bad input giving a clear error and a
//! non-zero exit, never a panic.

#[path = "../server/tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::lsp_client::LspClient;
use support::tiny_codellama::{self, EOT, MID};

fn cria(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cria"))
        .args(args)
        .env("CRIA_HOME", home)
        .env("HF_HUB_CACHE", home.join("hub"))
        .env_remove("CRIA_LOG")
        .output()
        .expect("cria runs")
}

/// A CRIA_HOME whose models folder links the real fetched files.
fn home_with_real_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    for file in [support::smollm2(), support::qwen()] {
        std::os::unix::fs::symlink(&file, dir.path().join("models").join(file.file_name().unwrap())).unwrap();
    }
    dir
}

/// [`cria`] with `input` on standard input.
fn cria_with_stdin(home: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cria"))
        .args(args)
        .env("CRIA_HOME", home)
        .env("HF_HUB_CACHE", home.join("hub"))
        .env_remove("CRIA_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cria runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().expect("cria ends")
}

/// stdout of a successful run, as text.
fn stdout_of(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn source_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Asserts a clean failure: non-zero exit, no panic, one `error:` message
/// that mentions every `needles`.
fn assert_clean_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    }
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
}

const PYTHON: &str =
    "import math\n\n\ndef circle_area(radius):\n    return math.pi * radius ** 2\n\n\ndef circle_circumference(radius):\n    \n";

#[test]
fn json_output_has_every_field_on_qwen_coder() {
    let home = home_with_real_models();
    let file = source_file(home.path(), "circle.py", PYTHON);
    let location = format!("{}:9:5", file.display());
    let out = cria(home.path(), &["complete", &location, "--max-tokens", "12", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "completion",
        "raw_completion",
        "mode",
        "stop_reason",
        "model",
        "load_ms",
        "prompt_tokens",
        "reused_tokens",
        "prefill_ms",
        "generated_tokens",
        "decode_ms",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["model"], "qwen2.5-coder-0.5b-instruct");
    let completion = v["completion"].as_str().unwrap();
    assert!(completion.contains("radius"), "a real FIM answer uses the parameter: {completion:?}");
    assert!(v["prompt_tokens"].as_u64().unwrap() > 20);
    assert!(["eos", "length", "stop"].contains(&v["stop_reason"].as_str().unwrap()));
}

#[test]
fn raw_output_on_smollm2() {
    let home = home_with_real_models();
    let file = source_file(home.path(), "circle.py", PYTHON);
    let location = format!("{}:9:5", file.display());
    let out = cria(home.path(), &["complete", &location, "--model", "smollm2-135m-instruct", "--max-tokens", "8", "--raw"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Eight tokens end mid-line: the raw text shows them, where the
    // suggestion (cut back to complete lines) may be empty.
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn code_llama_shaped_model_completes_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = support::vocab("llama-spm");
    let file = source_file(dir.path(), "add.py", "def add(a, b):\n    return\n");
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    // After the prefix's last token ("▁return") and after MID, say " hello world", then EOT.
    let tok = cria::engine::Tokenizer::from_gguf(&cria::engine::gguf::GgufFile::open(&vocab).unwrap()).unwrap();
    let last = *tok.encode("def add(a, b):\n    return").unwrap().last().unwrap();
    let (hello, world) = (tok.token_id("\u{2581}hello").unwrap(), tok.token_id("\u{2581}world").unwrap());
    tiny_codellama::write(
        &vocab,
        &dir.path().join("models/codellama-7b.Q4_K_M.gguf"),
        &[(last, hello), (MID, hello), (hello, world), (world, EOT)],
    );
    let location = format!("{}:2:11", file.display());
    let out = cria(dir.path(), &["complete", &location, "--model", "codellama-7b", "--json", "--context-length", "256"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["raw_completion"], " hello world");
    assert_eq!(v["stop_reason"], "eos");
    assert_eq!(v["model"], "codellama-7b");
}

#[test]
fn missing_source_file() {
    let home = tempfile::tempdir().unwrap();
    let out = cria(home.path(), &["complete", "/no/such/file.py:1:1"]);
    assert_clean_error(&out, &["/no/such/file.py"]);
}

#[test]
fn position_outside_the_file() {
    let home = tempfile::tempdir().unwrap();
    let file = source_file(home.path(), "a.py", "x = 1\n");
    assert_clean_error(&cria(home.path(), &["complete", &format!("{}:7:1", file.display())]), &["line 7", "2 lines"]);
    assert_clean_error(&cria(home.path(), &["complete", &format!("{}:1:40", file.display())]), &["column 40"]);
    assert_clean_error(&cria(home.path(), &["complete", &format!("{}:1", file.display())]), &["FILE:LINE:COL"]);
}

#[test]
fn binary_source_file() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("blob.bin");
    std::fs::write(&path, b"\x7fELF\0\0\x01").unwrap();
    assert_clean_error(&cria(home.path(), &["complete", &format!("{}:1:1", path.display())]), &["binary"]);
}

#[test]
fn missing_model_file_and_unknown_model() {
    let home = tempfile::tempdir().unwrap();
    let file = source_file(home.path(), "a.py", "x = 1\n");
    let loc = format!("{}:1:1", file.display());
    assert_clean_error(&cria(home.path(), &["complete", &loc, "--model", "/no/such/model.gguf"]), &["/no/such/model.gguf"]);
    assert_clean_error(
        &cria(home.path(), &["complete", &loc, "--model", "no-such-model"]),
        &["unknown model", "qwen2.5-coder-0.5b-instruct"],
    );
    // A known model whose file is nowhere: say where we looked and how to get it.
    assert_clean_error(&cria(home.path(), &["complete", &loc, "--model", "codellama-13b"]), &["looked in", "cria pull codellama-13b"]);
}

#[test]
fn truncated_and_corrupt_model_files() {
    let home = tempfile::tempdir().unwrap();
    let file = source_file(home.path(), "a.py", "x = 1\n");
    let loc = format!("{}:1:1", file.display());
    let real = std::fs::read(support::smollm2()).unwrap();
    let truncated = home.path().join("truncated.gguf");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    assert_clean_error(
        &cria(home.path(), &["complete", &loc, "--model", truncated.to_str().unwrap()]),
        &["truncated.gguf", "not a valid GGUF"],
    );
    let header_only = home.path().join("header.gguf");
    std::fs::write(&header_only, &real[..4096]).unwrap();
    assert_clean_error(&cria(home.path(), &["complete", &loc, "--model", header_only.to_str().unwrap()]), &["header.gguf"]);
    let garbage = home.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all, just text").unwrap();
    assert_clean_error(
        &cria(home.path(), &["complete", &loc, "--model", garbage.to_str().unwrap()]),
        &["garbage.gguf", "not a valid GGUF"],
    );
    let folder = home.path().join("folder.gguf");
    std::fs::create_dir(&folder).unwrap();
    assert_clean_error(&cria(home.path(), &["complete", &loc, "--model", folder.to_str().unwrap()]), &["folder.gguf"]);
}

/// Rewrites one metadata string or one tensor's type in a copy of the tiny model.
fn tiny_model_variant(dir: &Path, name: &str, edit: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let path = dir.join(name);
    tiny_codellama::write(&support::vocab("llama-spm"), &path, &[]);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).expect("needle present")
}

#[test]
fn unsupported_architecture_and_quantization() {
    let home = tempfile::tempdir().unwrap();
    let file = source_file(home.path(), "a.py", "x = 1\n");
    let loc = format!("{}:1:1", file.display());
    // "llama" -> "mamba" in general.architecture's value (same length).
    let arch = tiny_model_variant(home.path(), "mamba.gguf", |b| {
        let at = find(b, b"general.architecture");
        let value = at + "general.architecture".len() + 4 + 8;
        b[value..value + 5].copy_from_slice(b"mamba");
    });
    assert_clean_error(
        &cria(home.path(), &["complete", &loc, "--model", arch.to_str().unwrap()]),
        &["unsupported model architecture `mamba`"],
    );
    // blk.0.attn_q.weight: name, n_dims (u32), 2 dims (u64), then the type (u32) -> IQ2_XXS (16).
    let quant = tiny_model_variant(home.path(), "iq2.gguf", |b| {
        let at = find(b, b"blk.0.attn_q.weight");
        let dtype = at + "blk.0.attn_q.weight".len() + 4 + 16;
        b[dtype..dtype + 4].copy_from_slice(&16u32.to_le_bytes());
    });
    assert_clean_error(&cria(home.path(), &["complete", &loc, "--model", quant.to_str().unwrap()]), &["unsupported type", "ggml type 16"]);
}

#[test]
fn config_naming_a_token_the_vocabulary_lacks() {
    let home = home_with_real_models();
    let file = source_file(home.path(), "a.py", "x = 1\n");
    let loc = format!("{}:1:1", file.display());
    std::fs::create_dir_all(home.path().join("model-configs")).unwrap();
    let config = include_str!("../model-configs/smollm2-135m-instruct.toml")
        .replace("name = \"smollm2-135m-instruct\"", "name = \"my-smollm\"")
        .replace("text = \"<|im_end|>\", id = 2", "text = \"<|im_end|>\", id = 3");
    assert!(config.contains("id = 3"), "the edit applied");
    std::fs::write(home.path().join("model-configs/my-smollm.toml"), config).unwrap();
    let out = cria(home.path(), &["complete", &loc, "--model", "my-smollm"]);
    assert_clean_error(&out, &["my-smollm", "tokens.im_end"]);
    // And a config with a syntax-level mistake is refused naming file and key.
    std::fs::write(home.path().join("model-configs/broken.toml"), "name = \"broken\"\ncontext_lenght = 5\n").unwrap();
    let out = cria(home.path(), &["complete", &loc, "--model", "smollm2-135m-instruct"]);
    assert_clean_error(&out, &["broken.toml", "context_lenght"]);
}

/// What `cria complete` prints for an editor's suggestion: the text and a
/// line break, or nothing when there is none.
fn as_printed(suggestion: &str) -> String {
    if suggestion.is_empty() {
        String::new()
    } else {
        format!("{suggestion}\n")
    }
}

/// The `insertText` the language server answers at 1-based LINE:COL
/// (converted to a UTF-16 position), the document alone in the server (no
/// other files lend it snippets); "" when it answers no item.
fn lsp_suggestion(c: &mut LspClient, path: &Path, language: &str, line: usize, col: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let uri = format!("file://{}", path.display());
    let line_text = text.split('\n').nth(line - 1).unwrap();
    let character: usize = line_text.chars().take(col - 1).map(char::len_utf16).sum();
    c.open(&uri, language, &text);
    let answer = c.inline_completion(&uri, (line - 1) as u32, character as u32, Duration::from_secs(600));
    c.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
    let items =
        answer["result"].as_array().or_else(|| answer["result"]["items"].as_array()).unwrap_or_else(|| panic!("a list of items: {answer}"));
    match &items[..] {
        [] => String::new(),
        [item] => item["insertText"].as_str().unwrap().to_string(),
        _ => panic!("one item at most: {answer}"),
    }
}

/// `cria lsp` with its default settings but the model (and a latency budget
/// long enough that no answer is cut short or comes from a quick prompt on
/// busy machines).
fn default_server(home: &Path, model: &str) -> LspClient {
    let mut c = LspClient::start(home, &[]);
    c.initialize(json!({"general": {"positionEncodings": ["utf-16"]}}), json!({"model": model, "latencyBudgetMs": 600000}));
    let status = c.wait_model(Duration::from_secs(600));
    assert_eq!(status["state"], "ready", "{status}");
    c
}

/// Asserts that `cria complete` prints at each place exactly what the
/// language server suggests there, and returns what was printed.
fn assert_cli_matches_lsp(home: &Path, model: &str, places: &[(&Path, &str, usize, usize)]) -> Vec<String> {
    let mut c = default_server(home, model);
    let mut printed = Vec::new();
    for &(path, language, line, col) in places {
        let expected = lsp_suggestion(&mut c, path, language, line, col);
        let location = format!("{}:{line}:{col}", path.display());
        let out = stdout_of(&cria(home, &["complete", &location, "--model", model]));
        assert_eq!(out, as_printed(&expected), "{location} on {model}: the CLI printed {out:?}, the LSP suggested {expected:?}");
        printed.push(out);
    }
    c.shutdown();
    printed
}

const RUST: &str = "fn main() {\n    let numbers = vec![1, 2, 3];\n    let total: i32 = \n    println!(\"{total}\");\n}\n";

const JAVASCRIPT: &str = "function greet(name) {\n  return \n}\n\nconsole.log(greet('world'));\n";

#[test]
fn complete_prints_what_the_language_server_suggests_on_smollm2() {
    let home = home_with_real_models();
    let python = source_file(home.path(), "circle.py", PYTHON);
    let rust = source_file(home.path(), "total.rs", RUST);
    let javascript = source_file(home.path(), "greet.js", JAVASCRIPT);
    let printed = assert_cli_matches_lsp(
        home.path(),
        "smollm2-135m-instruct",
        &[
            (&python, "python", 9, 5),  // an empty body: multi-line
            (&python, "python", 5, 12), // before `math.pi`: single-line
            (&python, "python", 5, 7),  // inside `return`: none
            (&rust, "rust", 3, 22),
            (&javascript, "javascript", 2, 10),
        ],
    );
    assert_eq!(printed[2], "", "no suggestion inside a word");
    assert!(printed.iter().filter(|p| !p.is_empty()).count() >= 3, "most places get a suggestion: {printed:?}");
}

#[test]
fn complete_prints_what_the_language_server_suggests_on_qwen_coder() {
    let home = home_with_real_models();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fibonacci.py");
    let rust = source_file(home.path(), "total.rs", RUST);
    let printed = assert_cli_matches_lsp(home.path(), "qwen2.5-coder-0.5b-instruct", &[(&example, "python", 8, 5), (&rust, "rust", 3, 22)]);
    // The README's first command: the function's next lines, and only them.
    assert!(printed[0].contains("fibonacci("), "{:?}", printed[0]);
    assert!(!printed[0].contains("```") && !printed[0].contains("__main__"), "{:?}", printed[0]);
}

#[test]
fn raw_json_and_plain_output_agree_on_smollm2() {
    let home = home_with_real_models();
    let file = source_file(home.path(), "circle.py", PYTHON);
    let location = format!("{}:9:5", file.display());
    let base = ["complete", &location, "--model", "smollm2-135m-instruct"];
    let run = |extra: &[&str]| stdout_of(&cria(home.path(), &[&base[..], extra].concat()));
    let v: Value = serde_json::from_str(&run(&["--json"])).expect("one JSON object");
    assert_eq!(v["mode"], "multi-line", "{v}");
    let (shown, raw) = (v["completion"].as_str().unwrap(), v["raw_completion"].as_str().unwrap());
    assert!(!shown.is_empty(), "{v}");
    assert_eq!(run(&[]), as_printed(shown));
    assert_eq!(run(&["--raw"]), format!("{raw}\n"));
    // What is shown is a cut of the raw text (indentation aside).
    let first_line = shown.lines().next().unwrap().trim();
    assert!(raw.contains(first_line), "{shown:?} is not from {raw:?}");
}

#[test]
fn no_suggestion_inside_a_word() {
    let home = home_with_real_models();
    let file = source_file(home.path(), "circle.py", PYTHON);
    let location = format!("{}:5:7", file.display());
    let base = ["complete", &location, "--model", "smollm2-135m-instruct"];
    assert_eq!(stdout_of(&cria(home.path(), &base)), "");
    assert_eq!(stdout_of(&cria(home.path(), &[&base[..], &["--raw"]].concat())), "");
    let out = stdout_of(&cria(home.path(), &[&base[..], &["--json"]].concat()));
    let v: Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!((&v["mode"], &v["completion"]), (&json!("none"), &json!("")));
}

#[test]
fn stdin_gives_the_text_and_the_file_name_its_language() {
    let home = home_with_real_models();
    let file = source_file(home.path(), "circle.py", PYTHON);
    let from_file = format!("{}:9:5", file.display());
    // The named file need not exist: only its name is read.
    let unsaved = format!("{}:9:5", home.path().join("unsaved/circle.py").display());
    let model = ["--model", "smollm2-135m-instruct", "--json"];
    let expected: Value =
        serde_json::from_str(&stdout_of(&cria(home.path(), &[&["complete", from_file.as_str()][..], &model].concat()))).unwrap();
    let out = cria_with_stdin(home.path(), &[&["complete", unsaved.as_str(), "--stdin"][..], &model].concat(), PYTHON);
    let got: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(
        (&got["completion"], &got["raw_completion"], &got["mode"]),
        (&expected["completion"], &expected["raw_completion"], &expected["mode"])
    );
    // Text that is not UTF-8 is refused as from a file.
    let bad = cria_with_stdin(home.path(), &["complete", unsaved.as_str(), "--stdin"], "x = 1\n\u{0}");
    assert_clean_error(&bad, &["binary"]);
}
