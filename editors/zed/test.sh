#!/usr/bin/env bash
# editors/zed/test.sh -- Zed's edit-prediction request (provider
# `open_ai_compatible_api`) posted to the real `cria serve` as Zed posts it,
# and the answer checked as Zed parses it (zed_request.py). Zed itself is not
# run: it is a GPU desktop application with no headless mode; its request
# shape is taken from its source (see README.md). Needs the FIM model
# qwen2.5-coder-0.5b-instruct (scripts/fetch-models); fails, never skips,
# when it or the cria binary is missing.
#
#   CRIA_BIN=target/debug/cria editors/zed/test.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
# shellcheck source=../preflight.sh
source "$here/../preflight.sh"
preflight_cria "$repo"
preflight_model qwen2.5-coder-0.5b-instruct
exec timeout 600 python3 "$here/zed_request.py"
