//! cria as Helix drives it: the real binary spoken to over stdio with the
//! initialize request Helix 25.x sends (no inline completion, utf-8 offered
//! first) and the settings from `editors/helix/languages.toml`, on the real
//! SmolLM2 model. Checks what Helix relies on: utf-8 positions, the single
//! completion item carrying the whole suggestion, and the server's copy of a
//! document staying equal to the editor's through multi-byte edits.

#[path = "../server/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::lsp_client::LspClient;

/// How long one step may take on a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(45);

/// `cria/documentText`, which must not fail.
fn document_text(client: &mut LspClient, uri: &str) -> Value {
    client.call("cria/documentText", json!({"uri": uri}), STEP)
}

/// What Helix 25.x sends in `initialize` (helix-lsp's `Client::initialize`),
/// with the workspace and `initializationOptions` of this test.
fn helix_initialize(root: &Path, options: Value) -> Value {
    let root_uri = format!("file://{}", root.display());
    json!({
        "processId": std::process::id(),
        "rootPath": root.display().to_string(),
        "rootUri": root_uri,
        "workspaceFolders": [{"uri": root_uri, "name": root.file_name().unwrap().to_string_lossy()}],
        "initializationOptions": options,
        "clientInfo": {"name": "helix", "version": "25.07.1"},
        "capabilities": {
            "workspace": {
                "configuration": true,
                "didChangeConfiguration": {"dynamicRegistration": false},
                "workspaceFolders": true,
                "applyEdit": true,
                "symbol": {"dynamicRegistration": false},
                "executeCommand": {"dynamicRegistration": false},
                "inlayHint": {"refreshSupport": false},
                "workspaceEdit": {
                    "documentChanges": true,
                    "resourceOperations": ["create", "rename", "delete"],
                    "failureHandling": "abort",
                    "normalizesLineEndings": false
                },
                "didChangeWatchedFiles": {"dynamicRegistration": true, "relativePatternSupport": false},
                "fileOperations": {"willRename": true, "didRename": true}
            },
            "textDocument": {
                "completion": {
                    "completionItem": {
                        "snippetSupport": true,
                        "resolveSupport": {"properties": ["documentation", "detail", "additionalTextEdits"]},
                        "insertReplaceSupport": true,
                        "deprecatedSupport": true,
                        "tagSupport": {"valueSet": [1]}
                    },
                    "completionItemKind": {}
                },
                "hover": {"contentFormat": ["markdown"]},
                "signatureHelp": {
                    "signatureInformation": {
                        "documentationFormat": ["markdown"],
                        "parameterInformation": {"labelOffsetSupport": true},
                        "activeParameterSupport": true
                    }
                },
                "rename": {"dynamicRegistration": false, "prepareSupport": true, "honorsChangeAnnotations": false},
                "formatting": {"dynamicRegistration": false},
                "codeAction": {
                    "codeActionLiteralSupport": {"codeActionKind": {"valueSet": [
                        "", "quickfix", "refactor", "refactor.extract", "refactor.inline",
                        "refactor.rewrite", "source", "source.organizeImports"
                    ]}},
                    "isPreferredSupport": true,
                    "disabledSupport": true,
                    "dataSupport": true,
                    "resolveSupport": {"properties": ["edit", "command"]}
                },
                "publishDiagnostics": {"versionSupport": true, "tagSupport": {"valueSet": [1, 2]}},
                "inlayHint": {"dynamicRegistration": false}
            },
            "window": {"workDoneProgress": true},
            "general": {"positionEncodings": ["utf-8", "utf-32", "utf-16"]}
        }
    })
}

/// `editors/helix/languages.toml`, parsed.
fn languages_toml() -> toml::Table {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../editors/helix/languages.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()))
}

#[test]
fn languages_toml_adds_cria_to_every_supported_language() {
    let table = languages_toml();
    let server = &table["language-server"]["cria"];
    assert_eq!(server["command"].as_str(), Some("cria"));
    assert_eq!(server["args"].as_array().unwrap(), &vec![toml::Value::from("lsp")]);
    assert!(server["config"].is_table());
    let languages = table["language"].as_array().expect("[[language]] entries");
    for name in ["rust", "python", "javascript", "typescript", "tsx", "go", "c", "cpp", "java"] {
        let language = languages
            .iter()
            .find(|l| l["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no [[language]] for {name}"));
        let servers: Vec<&str> = language["language-servers"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
        assert!(servers.contains(&"cria"), "{name}: {servers:?}");
        assert!(servers.len() >= 2, "{name} keeps its usual server next to cria: {servers:?}");
    }
}

/// Byte length of a string as a utf-8 LSP `character`.
fn utf8_len(s: &str) -> u32 {
    s.len() as u32
}

#[test]
fn helix_session_on_smollm2() {
    let smollm2 = support::smollm2();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("models")).unwrap();
    std::os::unix::fs::symlink(&smollm2, home.path().join("models").join(smollm2.file_name().unwrap())).unwrap();
    let project = home.path().join("project");
    std::fs::create_dir_all(&project).unwrap();

    // Helix sends the `config` table as initializationOptions and again
    // with didChangeConfiguration. The test model is the fast one, and the
    // budget is generous for slow CI machines.
    let table = languages_toml();
    let mut options = serde_json::to_value(table["language-server"]["cria"]["config"].clone()).unwrap();
    options["model"] = json!("smollm2-135m-instruct");
    options["latencyBudgetMs"] = json!(30000);
    // Short suggestions keep the test quick on a loaded machine.
    options["maxTokens"] = json!(24);

    // Helix sets no log level: the server's default (warnings).
    let mut client = LspClient::start_with_env(home.path(), &[], &[("CRIA_LOG", "warn")]);
    let started = Instant::now();
    let init = client.call("initialize", helix_initialize(&project, options.clone()), STEP);
    let caps = &init["capabilities"];
    assert_eq!(caps["positionEncoding"], "utf-8", "utf-8 is Helix's first choice: {caps}");
    assert!(caps["completionProvider"].is_object(), "{caps}");
    assert_eq!(caps["textDocumentSync"]["change"], 2, "incremental sync: {caps}");
    assert_eq!(init["serverInfo"]["name"], "cria");
    client.notify("initialized", json!({}));
    client.notify("workspace/didChangeConfiguration", json!({"settings": options}));

    let ready = client.wait_for(STEP, "cria/status ready", |m| {
        m["method"] == "cria/status" && matches!(m["params"]["state"].as_str(), Some("ready" | "error"))
    });
    assert_eq!(ready["params"]["state"], "ready", "{ready}");
    assert_eq!(ready["params"]["model"], "smollm2-135m-instruct");

    // A Python file, the cursor in the middle of typing `rad` (for `radius`).
    let uri = format!("file://{}/circle.py", project.display());
    let text = "import math\n\n\ndef circle_area(radius):\n    return math.pi * radius ** 2\n\n\ndef circle_circumference(radius):\n    return 2 * math.pi * rad";
    client.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": "python", "version": 0, "text": text}}));
    assert_eq!(document_text(&mut client, &uri), json!(text));

    let line = "    return 2 * math.pi * rad";
    let cursor = json!({"line": 8, "character": utf8_len(line)});
    let list = client.call(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": cursor, "context": {"triggerKind": 1}}),
        STEP,
    );
    check_single_item(&list, 8, utf8_len("    return 2 * math.pi * "), "rad", &cursor);
    let status = client.wait_for(STEP, "cria/status after the completion", |m| {
        m["method"] == "cria/status" && m["params"]["lastLatencyMs"].is_u64()
    });
    assert_eq!(status["params"]["state"], "ready");

    // Edits in utf-8 positions around multi-byte characters, as Helix sends
    // them: 2-byte é, 3-byte →, 4-byte 😀.
    let mut expected = text.to_string();
    let edits: [(u32, u32, u32, u32, &str); 5] = [
        // Insert a comment line at the top.
        (0, 0, 0, 0, "# café → 😀 naïve\n"),
        // Replace `naïve` (after the emoji) with `résumé`.
        (0, utf8_len("# café → 😀 "), 0, utf8_len("# café → 😀 naïve"), "résumé"),
        // Insert after the 4-byte emoji.
        (0, utf8_len("# café → 😀"), 0, utf8_len("# café → 😀"), " 🚀"),
        // Delete `é ` across a multi-byte boundary.
        (0, utf8_len("# caf"), 0, utf8_len("# café "), ""),
        // A new last line that ends in an identifier with a multi-byte letter.
        (9, utf8_len(line), 9, utf8_len(line), "\n    naïve_total = naï"),
    ];
    for (version, (sl, sc, el, ec, new_text)) in edits.into_iter().enumerate() {
        apply(&mut expected, sl, sc, el, ec, new_text);
        client.notify(
            "textDocument/didChange",
            json!({
                "textDocument": {"uri": uri, "version": version + 1},
                "contentChanges": [{"range": {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}}, "text": new_text}]
            }),
        );
        assert_eq!(document_text(&mut client, &uri), json!(expected), "after edit {version}: {new_text:?}");
    }
    assert!(expected.starts_with("# caf→ 😀 🚀 résumé\n"), "{expected}");

    // Completing `naï`: the edit starts at `n`, counted in utf-8 bytes.
    let last = "    naïve_total = naï";
    let cursor = json!({"line": 10, "character": utf8_len(last)});
    let list = client.call(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": cursor, "context": {"triggerKind": 1}}),
        STEP,
    );
    check_single_item(&list, 10, utf8_len("    naïve_total = "), "naï", &cursor);

    // Helix closes the document and shuts the server down on exit.
    client.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
    assert_eq!(document_text(&mut client, &uri), Value::Null);
    assert_eq!(client.call("shutdown", Value::Null, STEP), Value::Null);
    client.notify("exit", Value::Null);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = client.process().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "cria did not exit after `exit`");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
}

/// The completion list Helix gets: one item carrying the whole suggestion,
/// its edit starting at the identifier being typed.
fn check_single_item(list: &Value, line: u32, word_start: u32, word: &str, cursor: &Value) {
    assert_eq!(list["isIncomplete"], true, "{list}");
    let items = list["items"].as_array().unwrap_or_else(|| panic!("a CompletionList: {list}"));
    assert_eq!(items.len(), 1, "one item with the whole suggestion: {list}");
    let item = &items[0];
    assert_eq!(item["insertTextFormat"], 1, "plain text, never a snippet: {item}");
    assert_eq!(item["detail"], "cria");
    let edit = &item["textEdit"];
    assert_eq!(edit["range"]["start"], json!({"line": line, "character": word_start}), "{item}");
    assert_eq!(edit["range"]["end"], *cursor, "nothing after the cursor to replace: {item}");
    let new_text = edit["newText"].as_str().unwrap();
    assert!(new_text.starts_with(word) && new_text.len() > word.len(), "newText {new_text:?} extends {word:?}");
    let label = item["label"].as_str().unwrap();
    assert!(label.starts_with(word) && !label.contains('\n'), "label {label:?}");
    assert_eq!(item["filterText"].as_str(), Some(new_text), "Helix filters by the typed word");
}

/// Applies an LSP edit with utf-8 positions to a string.
fn apply(text: &mut String, sl: u32, sc: u32, el: u32, ec: u32, new_text: &str) {
    let offset = |line: u32, character: u32| -> usize {
        let start: usize = text.split_inclusive('\n').take(line as usize).map(str::len).sum();
        start + character as usize
    };
    let (start, end) = (offset(sl, sc), offset(el, ec));
    assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
    text.replace_range(start..end, new_text);
}
