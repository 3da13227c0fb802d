//! Tests of model resolution against folders laid out in temp dirs: by path, by
//! name in cria's folder and in the hub cache, and every way it can fail.

use std::ffi::OsString;

use expect_test::expect;

use super::*;
use crate::models::ConfigSource;

/// A temp dir with `models/` and `hub/` search folders.
struct Fixture {
    dir: tempfile::TempDir,
    search: SearchPaths,
    catalogue: Catalogue,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let search = SearchPaths {
            cria_models: dir.path().join("models"),
            hf_hub: dir.path().join("hub"),
        };
        Fixture {
            dir,
            search,
            catalogue: Catalogue::builtin().unwrap(),
        }
    }

    /// Creates `relative` (and its folders) under the temp dir.
    fn touch(&self, relative: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"GGUF").unwrap();
        path
    }

    fn resolve(&self, spec: &str) -> Result<ResolvedModel, ResolveError> {
        resolve(spec, &self.search, &self.catalogue)
    }

    /// An error's message with the temp dir written as `$TMP`.
    fn message(&self, err: ResolveError) -> String {
        err.to_string()
            .replace(&self.dir.path().display().to_string(), "$TMP")
    }
}

#[test]
fn a_path_to_a_known_file_gets_its_config() {
    let fx = Fixture::new();
    let path = fx.touch("elsewhere/codellama-7b.Q4_K_M.gguf");
    let resolved = fx.resolve(path.to_str().unwrap()).unwrap();
    assert_eq!(resolved.gguf, path);
    assert_eq!(
        resolved.config.map(|c| c.name).as_deref(),
        Some("codellama-7b")
    );
}

#[test]
fn a_path_to_an_unknown_file_has_no_config() {
    let fx = Fixture::new();
    let path = fx.touch("mine.gguf");
    let resolved = fx.resolve(path.to_str().unwrap()).unwrap();
    assert_eq!(resolved.gguf, path);
    assert_eq!(resolved.config, None);
}

#[test]
fn a_path_must_be_an_existing_file() {
    let fx = Fixture::new();
    let missing = fx.dir.path().join("missing.gguf");
    let err = fx.resolve(missing.to_str().unwrap()).unwrap_err();
    expect!["model file $TMP/missing.gguf does not exist"].assert_eq(&fx.message(err));

    let err = fx.resolve("nothing-here.gguf").unwrap_err();
    expect!["model file nothing-here.gguf does not exist"].assert_eq(&fx.message(err));

    std::fs::create_dir(fx.dir.path().join("folder")).unwrap();
    let folder = format!("{}/folder", fx.dir.path().display());
    let err = fx.resolve(&folder).unwrap_err();
    expect!["$TMP/folder is not a file; give the path of a .gguf file"].assert_eq(&fx.message(err));
}

#[test]
fn a_name_is_found_in_the_cria_folder_first() {
    let fx = Fixture::new();
    let in_cria = fx.touch("models/qwen2.5-coder-1.5b-q8_0.gguf");
    fx.touch("hub/models--ggml-org--Qwen2.5-Coder-1.5B-Q8_0-GGUF/snapshots/abc/qwen2.5-coder-1.5b-q8_0.gguf");
    let resolved = fx.resolve("qwen2.5-coder-1.5b").unwrap();
    assert_eq!(resolved.gguf, in_cria);
    assert_eq!(
        resolved.config.map(|c| c.name).as_deref(),
        Some("qwen2.5-coder-1.5b")
    );
}

#[test]
fn a_name_is_found_in_the_hub_cache() {
    let fx = Fixture::new();
    let repo = "hub/models--TheBloke--deepseek-coder-1.3b-base-GGUF";
    let file = "deepseek-coder-1.3b-base.Q4_K_M.gguf";
    fx.touch(&format!("{repo}/snapshots/aaa/{file}"));
    let main = fx.touch(&format!("{repo}/snapshots/bbb/{file}"));
    std::fs::create_dir_all(fx.dir.path().join(repo).join("snapshots/ccc")).unwrap();
    std::fs::create_dir_all(fx.dir.path().join(repo).join("refs")).unwrap();
    std::fs::write(fx.dir.path().join(repo).join("refs/main"), "bbb").unwrap();
    let resolved = fx.resolve("deepseek-coder-1.3b-base").unwrap();
    assert_eq!(
        resolved.gguf, main,
        "the snapshot refs/main names comes first"
    );
}

#[test]
fn any_snapshot_will_do_without_refs_main() {
    let fx = Fixture::new();
    let file = "hub/models--TheBloke--CodeLlama-7B-GGUF/snapshots/0123/codellama-7b.Q4_K_M.gguf";
    let path = fx.touch(file);
    assert_eq!(fx.resolve("codellama-7b").unwrap().gguf, path);
}

#[test]
fn an_unknown_name_lists_the_known_ones() {
    let fx = Fixture::new();
    let err = fx.resolve("codellama-70b").unwrap_err();
    expect!["unknown model `codellama-70b`; known models: codellama-13b, codellama-13b-instruct, codellama-7b, codellama-7b-instruct, deepseek-coder-1.3b-base, deepseek-coder-6.7b-base, qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b, qwen2.5-coder-7b, smollm2-135m-instruct. Or give the path of a .gguf file."]
        .assert_eq(&fx.message(err));
}

#[test]
fn a_missing_file_says_where_it_looked_and_how_to_get_it() {
    let fx = Fixture::new();
    // A snapshot without the file, and the file in the wrong repository.
    std::fs::create_dir_all(
        fx.dir
            .path()
            .join("hub/models--TheBloke--CodeLlama-7B-GGUF/snapshots/x"),
    )
    .unwrap();
    fx.touch("hub/models--someone--else/snapshots/x/codellama-7b.Q4_K_M.gguf");
    let err = fx.resolve("codellama-7b").unwrap_err();
    expect![[r#"
        the file of model `codellama-7b` (codellama-7b.Q4_K_M.gguf) was not found; looked in:
          $TMP/models/codellama-7b.Q4_K_M.gguf
          $TMP/hub/models--TheBloke--CodeLlama-7B-GGUF/snapshots/*/codellama-7b.Q4_K_M.gguf
        To get it, run `cria pull codellama-7b`, or download codellama-7b.Q4_K_M.gguf from https://huggingface.co/TheBloke/CodeLlama-7B-GGUF"#]].assert_eq(&fx.message(err));
}

#[test]
fn a_config_without_a_repository_is_only_looked_for_in_the_cria_folder() {
    let mut fx = Fixture::new();
    let mut config = fx.catalogue.get("smollm2-135m-instruct").unwrap().clone();
    config.file.hf_repo = None;
    config.file.get = None;
    fx.catalogue.insert(config, ConfigSource::Builtin);
    let err = fx.resolve("smollm2-135m-instruct").unwrap_err();
    expect![[r#"
        the file of model `smollm2-135m-instruct` (SmolLM2-135M-Instruct.Q4_1.gguf) was not found; looked in:
          $TMP/models/SmolLM2-135M-Instruct.Q4_1.gguf
        To get it, run `cria pull smollm2-135m-instruct`"#]].assert_eq(&fx.message(err));
}

fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| OsString::from(value))
    }
}

#[test]
fn cria_home_from_variables() {
    let home =
        CriaHome::from_vars(vars(&[("CRIA_HOME", "/data/cria"), ("HOME", "/home/u")])).unwrap();
    assert_eq!(home.root(), Path::new("/data/cria"));
    assert_eq!(home.models_dir(), Path::new("/data/cria/models"));
    assert_eq!(
        home.model_configs_dir(),
        Path::new("/data/cria/model-configs")
    );

    let home = CriaHome::from_vars(vars(&[("CRIA_HOME", ""), ("HOME", "/home/u")])).unwrap();
    assert_eq!(home.root(), Path::new("/home/u/.cache/cria"));

    assert!(matches!(
        CriaHome::from_vars(vars(&[])),
        Err(NoHome)
    ));
}

#[test]
fn hub_cache_from_variables() {
    let home = CriaHome::new("/c");
    let hub = |pairs: &'static [(&'static str, &'static str)]| {
        SearchPaths::from_vars(&home, vars(pairs)).unwrap().hf_hub
    };
    let all = &[
        ("HF_HUB_CACHE", "/hub"),
        ("HF_HOME", "/hf"),
        ("XDG_CACHE_HOME", "/xdg"),
        ("HOME", "/home/u"),
    ];
    assert_eq!(hub(all), Path::new("/hub"));
    assert_eq!(hub(&all[1..]), Path::new("/hf/hub"));
    assert_eq!(hub(&all[2..]), Path::new("/xdg/huggingface/hub"));
    assert_eq!(hub(&all[3..]), Path::new("/home/u/.cache/huggingface/hub"));
    assert_eq!(hub(&[("HUGGINGFACE_HUB_CACHE", "/old")]), Path::new("/old"));
    let search = SearchPaths::from_vars(&home, vars(&all[..1])).unwrap();
    assert_eq!(search.cria_models, Path::new("/c/models"));
    assert!(SearchPaths::from_vars(&home, vars(&[])).is_err());
}
