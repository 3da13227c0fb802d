//! `cria pull`: downloads a model's GGUF file from the Hugging Face hub into
//! cria's models folder.
//!
//! The download is done by the `curl` binary rather than an HTTP library: curl is
//! on nearly every machine, handles proxies and redirects the way users have set
//! them up, and keeps TLS out of cria's dependencies. The file is written next
//! to its destination as `.part` and renamed only once complete and verified, so
//! a failed pull never leaves a file that looks usable.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::config::ModelConfig;

/// Where downloads come from.
const HF_BASE_URL: &str = "https://huggingface.co";

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The config does not say which repository serves the file.
    #[error(
        "model `{name}` has no `file.hf_repo`, so cria cannot download it{}",
        advice(get)
    )]
    NoSource {
        /// The model's name.
        name: String,
        /// The config's advice on getting the file.
        get: Option<String>,
    },
    /// The `curl` binary is not installed (or not on `PATH`).
    #[error("`curl` was not found; install it, or download {url} into {} by hand", dest.display())]
    CurlMissing {
        /// What would have been downloaded.
        url: String,
        /// Where it would have gone.
        dest: PathBuf,
    },
    /// A file or folder could not be created, read, renamed or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// curl ran and failed.
    #[error("downloading {url} failed ({status}): {}", stderr.trim())]
    DownloadFailed {
        /// What was downloaded.
        url: String,
        /// curl's exit status.
        status: String,
        /// What curl printed on its standard error.
        stderr: String,
    },
    /// The file is not the one the config expects.
    #[error("{} has SHA-256 {actual}, but the config expects {expected}", path.display())]
    ShaMismatch {
        /// The file checked.
        path: PathBuf,
        /// The config's digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
}

fn advice(get: &Option<String>) -> String {
    get.as_ref()
        .map(|get| format!("; {get}"))
        .unwrap_or_default()
}

/// The URL `pull` downloads `config`'s file from, if the config names a repository.
pub fn download_url(config: &ModelConfig) -> Option<String> {
    url_under(HF_BASE_URL, config)
}

fn url_under(base_url: &str, config: &ModelConfig) -> Option<String> {
    let repo = config.file.hf_repo.as_ref()?;
    Some(format!(
        "{base_url}/{repo}/resolve/main/{}",
        config.file.gguf
    ))
}

/// Downloads `config`'s GGUF file into `dest_dir` (created if missing) and
/// returns its path. A file already there is kept when its SHA-256 matches (or
/// none is known); a download is verified before it is renamed into place.
pub fn pull(config: &ModelConfig, dest_dir: &Path) -> Result<PathBuf, PullError> {
    pull_from(HF_BASE_URL, config, dest_dir)
}

/// `pull` from another server (tests use `file://` URLs).
pub(crate) fn pull_from(
    base_url: &str,
    config: &ModelConfig,
    dest_dir: &Path,
) -> Result<PathBuf, PullError> {
    let url = url_under(base_url, config).ok_or_else(|| PullError::NoSource {
        name: config.name.clone(),
        get: config.file.get.clone(),
    })?;
    let dest = dest_dir.join(&config.file.gguf);
    if dest.is_file() {
        verify(&dest, config.file.sha256.as_deref())?;
        return Ok(dest);
    }
    std::fs::create_dir_all(dest_dir).map_err(|source| PullError::Io {
        path: dest_dir.to_owned(),
        source,
    })?;
    let part = dest_dir.join(format!("{}.part", config.file.gguf));
    let result = download(&url, &part, &dest)
        .and_then(|()| verify(&part, config.file.sha256.as_deref()))
        .and_then(|()| {
            std::fs::rename(&part, &dest).map_err(|source| PullError::Io {
                path: dest.clone(),
                source,
            })
        });
    if result.is_err() {
        // The download's own error matters more than a failure to tidy up.
        let _ = std::fs::remove_file(&part);
    }
    result.map(|()| dest)
}

fn download(url: &str, part: &Path, dest: &Path) -> Result<(), PullError> {
    let output = Command::new("curl")
        .args(["--fail", "--location", "--silent", "--show-error", "-o"])
        .arg(part)
        .arg(url)
        .output()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => PullError::CurlMissing {
                url: url.to_owned(),
                dest: dest.to_owned(),
            },
            _ => PullError::Io {
                path: PathBuf::from("curl"),
                source,
            },
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(PullError::DownloadFailed {
        url: url.to_owned(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn verify(path: &Path, expected: Option<&str>) -> Result<(), PullError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let actual = sha256_file(path).map_err(|source| PullError::Io {
        path: path.to_owned(),
        source,
    })?;
    if actual == expected {
        Ok(())
    } else {
        Err(PullError::ShaMismatch {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual,
        })
    }
}

/// The SHA-256 of a file in lowercase hex, read in chunks (model files are
/// gigabytes), for checking a file against its config.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::catalogue::builtin;

    /// A builtin config pointed at `repo`, with `sha256`.
    fn config(sha256: Option<&str>) -> ModelConfig {
        let mut config = builtin("smollm2-135m-instruct").unwrap();
        config.file.gguf = "tiny.gguf".into();
        config.file.hf_repo = Some("org/repo".into());
        config.file.sha256 = sha256.map(str::to_owned);
        config
    }

    /// A fake hub under a temp dir serving `tiny.gguf` with `contents`.
    fn fake_hub(contents: &[u8]) -> (tempfile::TempDir, String) {
        let hub = tempfile::tempdir().unwrap();
        let dir = hub.path().join("org/repo/resolve/main");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tiny.gguf"), contents).unwrap();
        let base = format!("file://{}", hub.path().display());
        (hub, base)
    }

    // sha256("hello\n")
    const HELLO_SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn the_url_is_the_hub_resolve_url() {
        let config = builtin("codellama-7b").unwrap();
        expect_test::expect![[r#"https://huggingface.co/TheBloke/CodeLlama-7B-GGUF/resolve/main/codellama-7b.Q4_K_M.gguf"#]]
            .assert_eq(&download_url(&config).unwrap());
    }

    #[test]
    fn a_failed_download_is_reported_and_leaves_no_part_file() {
        let (_hub, base) = fake_hub(b"");
        let dest = tempfile::tempdir().unwrap();
        let mut config = config(None);
        config.file.gguf = "absent.gguf".into();
        let err = pull_from(&base, &config, dest.path()).unwrap_err();
        let PullError::DownloadFailed { url, stderr, .. } = &err else {
            panic!("not a download failure: {err}");
        };
        assert!(url.ends_with("/org/repo/resolve/main/absent.gguf"), "{url}");
        assert!(stderr.contains("curl:"), "curl's message is kept: {stderr}");
        assert!(err.to_string().starts_with("downloading file://"), "{err}");
        assert_eq!(
            std::fs::read_dir(dest.path()).unwrap().count(),
            0,
            "nothing is left behind"
        );
    }

    #[test]
    fn a_download_with_the_wrong_digest_is_removed() {
        let (_hub, base) = fake_hub(b"hello\n");
        let dest = tempfile::tempdir().unwrap();
        let wrong = "0".repeat(64);
        let err = pull_from(&base, &config(Some(&wrong)), dest.path()).unwrap_err();
        assert!(
            matches!(&err, PullError::ShaMismatch { actual, .. } if actual == HELLO_SHA),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(dest.path()).unwrap().count(),
            0,
            "nothing is left behind"
        );
    }

    #[test]
    fn a_verified_download_is_renamed_into_place() {
        let (_hub, base) = fake_hub(b"hello\n");
        let dest = tempfile::tempdir().unwrap();
        let models = dest.path().join("models");
        let path = pull_from(&base, &config(Some(HELLO_SHA)), &models).unwrap();
        assert_eq!(path, models.join("tiny.gguf"));
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\n");
        assert!(!models.join("tiny.gguf.part").exists());
        // A second pull keeps the verified file without downloading.
        let again = pull_from("file:///nowhere", &config(Some(HELLO_SHA)), &models).unwrap();
        assert_eq!(again, path);
    }

    #[test]
    fn a_config_without_a_repository_cannot_be_pulled() {
        let mut config = config(None);
        config.file.hf_repo = None;
        config.file.get = Some("ask a colleague".into());
        let err = pull(&config, Path::new("/nonexistent")).unwrap_err();
        expect_test::expect![[r#"model `smollm2-135m-instruct` has no `file.hf_repo`, so cria cannot download it; ask a colleague"#]]
            .assert_eq(&err.to_string());
    }
}
