#!/usr/bin/env bash
#
# editors/vscode/test.sh -- what CI runs for the VS Code extension: a clean
# install from package-lock.json, lint, type check and bundle, unit tests and
# the integration test against the real server, then the .vsix.
#
# The integration test needs the cria binary (CRIA_BIN, default
# ../../target/debug/cria: build it first with `cargo build -p cria --bin cria`)
# and the model smollm2-135m-instruct in $CRIA_HOME/models (scripts/fetch-models).
# Without either it fails; it never skips.
#
# Last, the end-to-end test in a real VS Code (test/e2e/run.sh): the .vsix in
# code-server, driven in headless Chromium.  Its first run installs
# code-server, Chromium and Selenium (about a minute and a half, cached in
# $CRIA_HOME/vscode-e2e); after that it takes about 20 seconds.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")"

echo "== node $(node --version), npm $(npm --version)"
npm ci --no-audit --no-fund
npm run lint
npm run build
npm test
npm run package
ls -l out/cria.vsix
test/e2e/run.sh
