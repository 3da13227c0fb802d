//! One source for the settings: the server's list (`cria::protocol::SETTINGS`)
//! against every place that repeats it — VS Code's `package.json` and the
//! keys its extension sends, the Neovim help, the Helix README and the
//! README's table. A setting added to the server and forgotten in an editor
//! (as `contextShare` and `backend` once were) fails here.

use std::path::{Path, PathBuf};

use cria::protocol::{ServerConfig, SETTINGS};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of the markdown table whose header starts with `| key | default`:
/// (key, default) with backticks removed.
fn settings_table(markdown: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        if line.starts_with("| key | default") {
            inside = true;
            continue;
        }
        if inside {
            let Some(row) = line.strip_prefix('|') else { break };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            if cells[0].starts_with("---") {
                continue;
            }
            rows.push((cells[0].trim_matches('`').to_string(), cells[1].trim_matches('`').to_string()));
        }
    }
    rows
}

#[test]
fn the_readme_and_the_helix_readme_list_every_setting_with_its_default() {
    for path in ["README.md", "editors/helix/README.md"] {
        let rows = settings_table(&read(path));
        assert!(!rows.is_empty(), "{path}: no `| key | default |` table");
        for setting in SETTINGS {
            let row = rows.iter().find(|(key, _)| key == setting.name).unwrap_or_else(|| panic!("{path} does not list `{}`", setting.name));
            assert_eq!(row.1, setting.default_shown, "{path}: the default of `{}`", setting.name);
        }
        for (key, _) in &rows {
            assert!(SETTINGS.iter().any(|s| s.name == key), "{path} lists `{key}`, which the server does not read");
        }
    }
}

#[test]
fn vs_code_offers_documents_and_sends_every_setting_with_the_servers_default() {
    let package: Value = serde_json::from_str(&read("editors/vscode/package.json")).expect("package.json is JSON");
    let properties = &package["contributes"]["configuration"]["properties"];
    let sent = read("editors/vscode/src/settings.ts");
    let server_keys =
        sent.split("export const SERVER_KEYS = [").nth(1).and_then(|rest| rest.split(']').next()).expect("SERVER_KEYS in settings.ts");
    let readme = read("editors/vscode/README.md");
    for setting in SETTINGS {
        assert!(readme.contains(&format!("| `cria.{}` |", setting.name)), "editors/vscode/README.md does not list `cria.{}`", setting.name);
        let property = &properties[format!("cria.{}", setting.name)];
        assert!(property.is_object(), "package.json has no `cria.{}`", setting.name);
        assert!(server_keys.contains(&format!("'{}'", setting.name)), "settings.ts does not send `{}`", setting.name);
        // The editor's default, applied, gives the server's own default
        // (an empty model means "the server's"; the editor's languages
        // leave prose out on purpose).
        let default = &property["default"];
        if (setting.name == "model" && default == "") || setting.name == "enabledLanguages" {
            continue;
        }
        let mut config = ServerConfig::default();
        assert_eq!(config.apply(&json!({ setting.name: default })), vec![], "`cria.{}`'s default {default}", setting.name);
        assert_eq!(
            config,
            ServerConfig::default(),
            "`cria.{}`'s default {default} is not the server's ({})",
            setting.name,
            setting.default_json
        );
    }
}

#[test]
fn the_neovim_help_names_every_setting() {
    let help = read("editors/neovim/doc/cria.txt");
    let block = help.split("*cria-settings*").nth(1).and_then(|rest| rest.split("*cria-filetypes*").next()).expect("the settings entry");
    for setting in SETTINGS.iter().filter(|s| s.name != "model") {
        assert!(
            block.lines().any(|l| l.trim_start().starts_with(setting.name)),
            "doc/cria.txt's settings entry does not name `{}`",
            setting.name
        );
    }
}
