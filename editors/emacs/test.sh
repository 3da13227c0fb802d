#!/usr/bin/env bash
# editors/emacs/test.sh -- cria.el in a real Emacs (emacs -nw in tmux) with
# lsp-mode, against the real cria server and the SmolLM2 model: the mode
# line says `cria: ready`, no warning shows, typing brings ghost text drawn
# in its own colour, Tab inserts exactly it (editors/tmux_ui.py emacs); and
# cria.el's re-asks after warming and after a late answer, in batch Emacs
# (tests/cria-reask-test.el).
#
# Why this way: lsp-mode's inline completion runs on idle timers and draws
# overlays, which only an interactive Emacs does (not `emacs --batch`), and
# only the screen shows what a person sees.
#
# What it installs: Emacs and lsp-mode's dependencies from the machine's
# Debian (apt-get: emacs-nox, elpa-dash, elpa-f, elpa-s, elpa-ht,
# elpa-spinner, elpa-markdown-mode, elpa-lv) and tmux. lsp-mode itself must
# have inline completion (lsp-inline-completion.el, lsp-mode 10.0.0+):
# Debian's elpa-lsp-mode when its version is 10 or later, otherwise
# Debian sid's elpa-lsp-mode and elpa-f (architecture-independent Emacs
# Lisp) fetched with `apt-get download` from the same mirror as the
# machine's sources, unpacked and byte-compiled once into
# $CRIA_HOME/emacs (the cache; default ~/.cache/cria/emacs). Fails, never
# skips, when any of it cannot be had.
#
#   CRIA_BIN=target/debug/cria editors/emacs/test.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
# shellcheck source=../preflight.sh
source "$here/../preflight.sh"
preflight_cria "$repo"
preflight_model smollm2-135m-instruct

cache="${CRIA_HOME:-$HOME/.cache/cria}/emacs"
mkdir -p "$cache"
started=$SECONDS

# --- Debian packages ---------------------------------------------------------
apt_lists_ready=0
apt_install() {
  if ((apt_lists_ready == 0)) && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
  fi
  apt_lists_ready=1
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

packages=(emacs-nox elpa-dash elpa-f elpa-s elpa-ht elpa-spinner elpa-markdown-mode elpa-lv tmux)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "installing with apt-get: ${missing[*]}"
  apt_install "${missing[@]}" || preflight_fail "apt-get install ${missing[*]} failed"
fi
command -v emacs >/dev/null || preflight_fail "no emacs after installing emacs-nox"
command -v tmux >/dev/null || preflight_fail "no tmux after installing it"

# --- lsp-mode with inline completion -----------------------------------------
elpa=/usr/share/emacs/site-lisp/elpa
lsp_dir=""
candidate="$(apt-cache policy elpa-lsp-mode 2>/dev/null | awk '/Candidate:/ {print $2}')"
if [[ -n "$candidate" && "$candidate" != "(none)" ]] && dpkg --compare-versions "$candidate" ge 10; then
  installed elpa-lsp-mode || apt_install elpa-lsp-mode || preflight_fail "apt-get install elpa-lsp-mode failed"
fi
for d in "$elpa"/lsp-mode-*/; do
  [[ -f "$d/lsp-inline-completion.el" || -f "$d/lsp-inline-completion.elc" ]] && lsp_dir="${d%/}"
done

sid="$cache/sid"
if [[ -z "$lsp_dir" ]]; then
  echo "Debian's lsp-mode (${candidate:-none}) has no inline completion: using Debian sid's elpa-lsp-mode"
  if [[ ! -f "$sid/done" ]]; then
    rm -rf "$sid"
    mkdir -p "$sid/apt/lists/partial" "$sid/apt/cache/archives/partial" "$sid/debs" "$sid/root"
    # The mirror of the machine's own Debian sources, suite sid.
    mirror="$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null | grep -v -- '-security' | grep -i debian | head -1)"
    [[ -n "$mirror" ]] || preflight_fail "no Debian mirror in the apt sources to fetch sid's lsp-mode from"
    echo "deb ${mirror%/} sid main" >"$sid/apt/sources.list"
    apt_opts=(
      -o "Dir::Etc::sourcelist=$sid/apt/sources.list" -o "Dir::Etc::sourceparts=/nonexistent"
      -o "Dir::State::Lists=$sid/apt/lists" -o "Dir::Cache=$sid/apt/cache"
      -o "Dir::State::status=/dev/null" -o "Acquire::Languages=none" -o "APT::Sandbox::User=root"
    )
    apt-get "${apt_opts[@]}" update -qq >/dev/null || preflight_fail "apt-get update of Debian sid's package list failed"
    (cd "$sid/debs" && apt-get "${apt_opts[@]}" download elpa-lsp-mode elpa-f >/dev/null) ||
      preflight_fail "apt-get download elpa-lsp-mode elpa-f (sid) failed"
    for deb in "$sid"/debs/*.deb; do dpkg-deb -x "$deb" "$sid/root"; done
    src="$sid/root/usr/share/emacs/site-lisp/elpa-src"
    mv "$src"/lsp-mode-* "$sid/lsp-mode"
    mv "$src"/f-* "$sid/f"
    rm -rf "$sid/root" "$sid/apt" "$sid/debs"
    [[ -f "$sid/lsp-mode/lsp-inline-completion.el" ]] || preflight_fail "sid's lsp-mode has no lsp-inline-completion.el"
    # Byte-compile once: lsp-mode loads many files, slowly from source.
    deps=()
    for d in "$elpa"/*/; do
      case "$(basename "$d")" in lsp-mode-* | f-*) ;; *) deps+=(-L "${d%/}") ;; esac
    done
    echo "byte-compiling lsp-mode $(sed -n 's/^;; Version: //p' "$sid/lsp-mode/lsp-mode.el") into $sid"
    emacs -Q --batch -L "$sid/f" -L "$sid/lsp-mode" "${deps[@]}" \
      --eval '(setq byte-compile-warnings nil)' -f batch-byte-compile "$sid"/f/*.el "$sid"/lsp-mode/*.el \
      >"$sid/compile.log" 2>&1 || true
    [[ -f "$sid/lsp-mode/lsp-mode.elc" && -f "$sid/lsp-mode/lsp-inline-completion.elc" ]] ||
      preflight_fail "byte-compiling lsp-mode failed (see $sid/compile.log)"
    touch "$sid/done"
  fi
  lsp_dir="$sid/lsp-mode"
  load_path="$sid/f:$lsp_dir"
else
  load_path="$lsp_dir"
fi
for d in "$elpa"/*/; do
  case "$(basename "$d")" in lsp-mode-* | f-*) [[ -z "${load_path##*$sid*}" ]] && continue ;; esac
  load_path="$load_path:${d%/}"
done
echo "$(emacs --version | head -1), lsp-mode $(sed -n 's/^;; Version: //p' "$lsp_dir/lsp-mode.el" 2>/dev/null | head -1) from $lsp_dir; set up in $((SECONDS - started)) s"

# --- The tests ---------------------------------------------------------------
# cria.el's re-asks (after warming, after a late answer), in batch Emacs
# with lsp-mode loaded and its request counted (tests/cria-reask-test.el).
load_args=()
IFS=: read -r -a load_dirs <<<"$load_path"
for d in "${load_dirs[@]}"; do load_args+=(-L "$d"); done
passed=0 failed=0
if timeout 120 emacs -Q --batch "${load_args[@]}" -L "$here" -l "$here/cria.el" \
  -l "$here/tests/cria-reask-test.el" -f ert-run-tests-batch-and-exit; then
  passed=$((passed + 1))
else
  echo "FAILED: cria.el's re-asks (tests/cria-reask-test.el)"
  failed=$((failed + 1))
fi

export CRIA_EMACS_LOAD_PATH="$load_path"
if timeout 600 python3 "$here/../tmux_ui.py" emacs; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
((failed == 0))
