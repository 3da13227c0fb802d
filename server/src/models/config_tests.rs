//! Tests of config parsing: the builtins' facts, and that each kind of mistake
//! yields a message naming the file, the key and the line.

use expect_test::{expect, Expect};

use super::*;

/// A small valid config; each mistake test breaks one thing in it.
const GOOD: &str = r#"name = "tiny"
description = "A test model."
architecture = "llama"
context_length = 4096

[rope]
theta = 10000.0

[tokens]
bos = { text = "<s>", id = 1 }
eos = { text = "</s>", id = 2 }
pre = { text = "<PRE>", id = 3 }
suf = { text = "<SUF>", id = 4 }
mid = { text = "<MID>", id = 5 }

[fim]
orders = ["psm", "prefix"]
psm = ["bos", "pre", "$prefix", "suf", "$suffix", "mid"]
prefix = ["bos", "$prefix"]

[stop]
tokens = ["eos"]

[file]
gguf = "tiny.gguf"
hf_repo = "org/tiny-GGUF"
"#;

/// Parses `GOOD` with `from` replaced by `to` (which must occur) and checks the
/// error message.
fn check_mistake(from: &str, to: &str, expected: Expect) {
    assert!(GOOD.contains(from), "{from:?} is not in the test config");
    let text = GOOD.replacen(from, to, 1);
    match ModelConfig::parse("configs/tiny.toml", &text) {
        Ok(_) => panic!("parsed despite {from:?} -> {to:?}"),
        Err(err) => expected.assert_eq(&err.to_string()),
    }
}

#[test]
fn the_good_config_parses() {
    let config = ModelConfig::parse("configs/tiny.toml", GOOD).unwrap();
    assert_eq!(config.preferred_order(), FimOrder::Psm);
    assert_eq!(config.stop_token_ids(), [2]);
    assert_eq!(
        config.token("pre"),
        Some(&SpecialToken {
            text: "<PRE>".into(),
            id: 3
        })
    );
    assert_eq!(config.fim.suffix_encoding, SuffixEncoding::Plain);
    assert_eq!(
        config.template(FimOrder::Prefix),
        Some(&[TemplatePart::Token("bos".into()), TemplatePart::Prefix][..])
    );
    assert_eq!(config.template(FimOrder::Spm), None);
    assert!(config.stop.strings.is_empty());
    assert_eq!(config.rope.scaling, None);
}

#[test]
fn a_label_that_is_not_a_toml_path_skips_the_name_check() {
    assert!(ModelConfig::parse("<stdin>", GOOD).is_ok());
}

#[test]
fn unknown_key() {
    check_mistake(
        "[rope]\n",
        "[rope]\nbase = 2\n",
        expect![
            "configs/tiny.toml:7: `rope.base`: unknown field `base`, expected `theta` or `scaling`"
        ],
    );
    check_mistake(
        "tokens = [\"eos\"]",
        "tokens = [\"eos\"]\nstring = [\"\\n\\n\"]",
        expect!["configs/tiny.toml:23: `stop.string`: unknown field `string`, expected `tokens` or `strings`"],
    );
    check_mistake(
        "id = 3 }",
        "id = 3, special = true }",
        expect!["configs/tiny.toml:12: `tokens.pre.special`: unknown field `special`, expected `text` or `id`"],
    );
}

#[test]
fn missing_field() {
    check_mistake(
        "theta = 10000.0\n",
        "",
        expect!["configs/tiny.toml:6: `rope`: missing field `theta`"],
    );
    check_mistake(
        "context_length = 4096\n",
        "",
        expect!["configs/tiny.toml: missing field `context_length`"],
    );
}

#[test]
fn wrong_type_or_value() {
    check_mistake(
        "context_length = 4096",
        "context_length = \"4k\"",
        expect![[
            r#"configs/tiny.toml:4: `context_length`: invalid type: string "4k", expected u32"#
        ]],
    );
    check_mistake(
        "architecture = \"llama\"",
        "architecture = \"gpt2\"",
        expect!["configs/tiny.toml:3: `architecture`: unknown variant `gpt2`, expected `llama` or `qwen2`"],
    );
    check_mistake(
        "orders = [\"psm\", \"prefix\"]",
        "orders = [\"psm\", \"pms\"]",
        expect!["configs/tiny.toml:17: `fim.orders[1]`: unknown variant `pms`, expected one of `psm`, `spm`, `prefix`"],
    );
    check_mistake(
        "context_length = 4096",
        "context_length = 0",
        expect!["configs/tiny.toml:4: `context_length`: must be greater than 0"],
    );
}

#[test]
fn bad_template() {
    check_mistake(
        "\"$suffix\", \"mid\"",
        "\"$sufix\", \"mid\"",
        expect!["configs/tiny.toml:18: `fim.psm[4]`: unknown placeholder `$sufix`; the placeholders are `$prefix` and `$suffix`"],
    );
    check_mistake(
        "\"suf\", \"$suffix\"",
        "\"sfx\", \"$suffix\"",
        expect!["configs/tiny.toml:18: `fim.psm[3]`: `sfx` is not defined in [tokens]"],
    );
    check_mistake(
        "\"$suffix\", \"mid\"",
        "\"$prefix\", \"mid\"",
        expect!["configs/tiny.toml:18: `fim.psm`: must contain `$prefix` once, found it 2 times"],
    );
    check_mistake(
        "\"suf\", \"$suffix\", ",
        "\"suf\", ",
        expect!["configs/tiny.toml:18: `fim.psm`: must contain `$suffix` once, found it never"],
    );
    check_mistake(
        "prefix = [\"bos\", \"$prefix\"]",
        "prefix = [\"bos\", \"$prefix\", \"$suffix\"]",
        expect!["configs/tiny.toml:19: `fim.prefix`: must contain `$suffix` never, found it once"],
    );
    check_mistake(
        "orders = [\"psm\", \"prefix\"]",
        "orders = [\"psm\", \"spm\"]",
        expect!["configs/tiny.toml:17: `fim.orders[1]`: order `spm` is listed but `fim.spm` is not defined"],
    );
    check_mistake(
        "orders = [\"psm\", \"prefix\"]",
        "orders = []",
        expect![[
            r#"configs/tiny.toml:17: `fim.orders`: lists no order; give at least one of "psm", "spm", "prefix""#
        ]],
    );
    check_mistake(
        "orders = [\"psm\", \"prefix\"]",
        "orders = [\"psm\", \"psm\"]",
        expect!["configs/tiny.toml:17: `fim.orders[1]`: `psm` is listed twice"],
    );
}

#[test]
fn undefined_stop_token() {
    check_mistake(
        "tokens = [\"eos\"]",
        "tokens = [\"eos\", \"eot\"]",
        expect!["configs/tiny.toml:22: `stop.tokens[1]`: `eot` is not defined in [tokens]"],
    );
}

#[test]
fn bad_file_section() {
    check_mistake(
        "gguf = \"tiny.gguf\"",
        "gguf = \"../tiny.gguf\"",
        expect![[
            r#"configs/tiny.toml:25: `file.gguf`: must be a bare file name ending in `.gguf`, not "../tiny.gguf""#
        ]],
    );
    check_mistake(
        "hf_repo = \"org/tiny-GGUF\"",
        "hf_repo = \"https://huggingface.co/org/tiny-GGUF\"",
        expect![[
            r#"configs/tiny.toml:26: `file.hf_repo`: must be a Hugging Face repository as `owner/name`, not "https://huggingface.co/org/tiny-GGUF""#
        ]],
    );
    check_mistake(
        "hf_repo = \"org/tiny-GGUF\"",
        "hf_repo = \"org/tiny-GGUF\"\nsha256 = \"abc123\"",
        expect![[
            r#"configs/tiny.toml:27: `file.sha256`: must be 64 lowercase hexadecimal digits, not "abc123""#
        ]],
    );
}

#[test]
fn name_must_match_the_file() {
    check_mistake(
        "name = \"tiny\"",
        "name = \"small\"",
        expect!["configs/tiny.toml:1: `name`: the name is `small` but the file is `tiny.toml`; they must be equal"],
    );
}

#[test]
fn toml_syntax_error() {
    check_mistake(
        "[stop]",
        "[stop",
        expect!["configs/tiny.toml:21: unclosed table, expected `]`"],
    );
}

#[test]
fn vocabulary_check() {
    let config = ModelConfig::parse("configs/tiny.toml", GOOD).unwrap();
    let vocab = ["<unk>", "<s>", "</s>", "<PRE>", "<SUF>", "<MID>"];
    let lookup =
        |vocab: Vec<&'static str>| move |id: u32| vocab.get(id as usize).map(|t| t.to_string());
    assert!(config
        .check_vocabulary("tiny.gguf", lookup(vocab.to_vec()))
        .is_ok());

    let short = config.check_vocabulary("configs/tiny.toml", lookup(vocab[..5].to_vec()));
    expect![[
        r#"configs/tiny.toml: `tokens.mid`: id 5 ("<MID>") is not in the model's vocabulary"#
    ]]
    .assert_eq(&short.unwrap_err().to_string());

    let mut other = vocab.to_vec();
    other[3] = "▁<PRE>";
    let wrong = config.check_vocabulary("configs/tiny.toml", lookup(other));
    expect![[r#"configs/tiny.toml: `tokens.pre`: id 3 is "▁<PRE>" in the model's vocabulary, but the config says "<PRE>""#]]
        .assert_eq(&wrong.unwrap_err().to_string());
}

#[test]
fn builtin_facts() {
    let config = |name: &str| crate::models::builtin(name).unwrap();

    let codellama = config("codellama-7b");
    assert_eq!(codellama.architecture, Architecture::Llama);
    assert_eq!(codellama.preferred_order(), FimOrder::Spm);
    assert_eq!(codellama.fim.suffix_encoding, SuffixEncoding::Infill);
    assert_eq!(codellama.stop_token_ids(), [32010, 2]);
    assert_eq!(codellama.rope.theta, 1e6);

    let qwen = config("qwen2.5-coder-1.5b");
    assert_eq!(qwen.architecture, Architecture::Qwen2);
    assert_eq!(qwen.fim.orders, [FimOrder::Psm]);
    assert_eq!(qwen.token("bos"), None);
    assert_eq!(qwen.context_length, 32768);

    let deepseek = config("deepseek-coder-6.7b-base");
    assert_eq!(
        deepseek.rope.scaling,
        Some(RopeScaling::Linear { factor: 4.0 })
    );
    assert_eq!(deepseek.token("fim_hole").map(|t| t.id), Some(32015));
    assert_eq!(deepseek.stop_token_ids(), [32014]);

    let smol = config("smollm2-135m-instruct");
    assert_eq!(smol.fim.orders, [FimOrder::Prefix]);
    assert_eq!(
        smol.template(FimOrder::Prefix),
        Some(&[TemplatePart::Prefix][..])
    );
    assert_eq!(smol.stop_token_ids(), [0, 2, 1]);
}

/// Every builtin's templates rendered, so that a change to any prompt format
/// shows up in review.
#[test]
fn builtin_templates() {
    let mut out = String::new();
    for name in crate::models::builtin_names() {
        let config = crate::models::builtin(name).unwrap();
        for &order in &config.fim.orders {
            let parts: Vec<String> = config
                .template(order)
                .unwrap_or_default()
                .iter()
                .map(|part| match part {
                    TemplatePart::Prefix => "$prefix".to_owned(),
                    TemplatePart::Suffix => "$suffix".to_owned(),
                    TemplatePart::Token(name) => {
                        config.token(name).map_or("?".into(), |t| t.text.clone())
                    }
                })
                .collect();
            out.push_str(&format!("{name} {order}: {}\n", parts.join(" ")));
        }
    }
    expect![[r#"
        codellama-13b spm: <s> ▁<PRE> ▁<SUF> $suffix ▁<MID> $prefix
        codellama-13b psm: <s> ▁<PRE> $prefix ▁<SUF> $suffix ▁<MID>
        codellama-13b-instruct spm: <s> ▁<PRE> ▁<SUF> $suffix ▁<MID> $prefix
        codellama-13b-instruct psm: <s> ▁<PRE> $prefix ▁<SUF> $suffix ▁<MID>
        codellama-7b spm: <s> ▁<PRE> ▁<SUF> $suffix ▁<MID> $prefix
        codellama-7b psm: <s> ▁<PRE> $prefix ▁<SUF> $suffix ▁<MID>
        codellama-7b-instruct spm: <s> ▁<PRE> ▁<SUF> $suffix ▁<MID> $prefix
        codellama-7b-instruct psm: <s> ▁<PRE> $prefix ▁<SUF> $suffix ▁<MID>
        deepseek-coder-1.3b-base psm: <｜begin▁of▁sentence｜> <｜fim▁begin｜> $prefix <｜fim▁hole｜> $suffix <｜fim▁end｜>
        deepseek-coder-6.7b-base psm: <｜begin▁of▁sentence｜> <｜fim▁begin｜> $prefix <｜fim▁hole｜> $suffix <｜fim▁end｜>
        qwen2.5-coder-0.5b-instruct psm: <|fim_prefix|> $prefix <|fim_suffix|> $suffix <|fim_middle|>
        qwen2.5-coder-1.5b psm: <|fim_prefix|> $prefix <|fim_suffix|> $suffix <|fim_middle|>
        qwen2.5-coder-7b psm: <|fim_prefix|> $prefix <|fim_suffix|> $suffix <|fim_middle|>
        smollm2-135m-instruct prefix: $prefix
    "#]].assert_eq(&out);
}
