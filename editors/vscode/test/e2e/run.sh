#!/usr/bin/env bash
#
# editors/vscode/test/e2e/run.sh -- the real-VS-Code end-to-end test: installs
# (or finds cached) code-server, Chromium, ChromeDriver and Selenium with
# install.sh beside this file, then runs e2e.py, which installs the built
# extension (out/cria.vsix) into a throwaway code-server and checks ghost text,
# Tab and the suggest-widget case in a headless browser.
#
# Needs: out/cria.vsix (`npm run package`), the cria binary (CRIA_BIN, default
# ../../target/debug/cria) and the model smollm2-135m-instruct in
# $CRIA_HOME/models (scripts/fetch-models).  A missing piece is an error, never
# a skip.  Screenshots (also on failure) and logs: test-out/e2e/.
#
# Usage: test/e2e/run.sh [e2e.py options]     e.g. --measure --model qwen2.5-coder-0.5b-instruct
# (CRIA_BIN=/path/to/cria-release for timings).
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
EXTENSION="$(cd -- "$HERE/../.." && pwd -P)"

cria_bin="${CRIA_BIN:-$EXTENSION/../../target/debug/cria}"
vsix="$EXTENSION/out/cria.vsix"
[[ -x "$cria_bin" ]] || { echo "e2e: error: no cria binary at $cria_bin (cargo build -p cria --bin cria, or set CRIA_BIN)" >&2; exit 1; }
[[ -f "$vsix" ]] || { echo "e2e: error: no $vsix (npm run package)" >&2; exit 1; }

started=$SECONDS
paths="$("$HERE/install.sh")" # fails the script when the install fails
declare -A installed
while IFS='=' read -r name value; do
    installed[$name]="$value"
done <<<"$paths"
echo "e2e: installed or found cached in $((SECONDS - started)) s"

exec "${installed[python]}" "$HERE/e2e.py" \
    --code-server "${installed[code_server]}" \
    --chromium "${installed[chromium]}" \
    --chromedriver "${installed[chromedriver]}" \
    --cria-bin "$cria_bin" \
    --vsix "$vsix" \
    "$@"
