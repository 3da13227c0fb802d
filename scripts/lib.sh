# shellcheck shell=bash disable=SC2034
# (SC2034: the constants and status variables here are read by the scripts
# that source this file.)
#
# scripts/lib.sh -- helpers shared by scripts/fetch-models,
# scripts/build-llama-cpp and scripts/check-cuda.
#
# Why this exists: these scripts need the same idea of where cria keeps its
# large, machine-local artefacts ($CRIA_HOME, outside the repository), the
# same sha256 checks, the same stderr logging, and the same pinned
# llama-cpp-python source distribution (the models' vocab files and the
# llama.cpp baseline both come out of it).  Keeping that in one place means
# the pins cannot drift apart between the two scripts.
#
# Source it; do not execute it.  It defines functions and read-only
# constants only, and changes no shell options of the caller.

# ---------------------------------------------------------------------------
# Pins

# llama-cpp-python source distribution.  Its vendor/llama.cpp tree is what we
# build the baseline from, and its vendor/llama.cpp/models/ggml-vocab-* files
# are the tokenizer fixtures.
CRIA_LCP_VERSION=0.3.36
CRIA_LCP_SDIST_NAME="llama_cpp_python-${CRIA_LCP_VERSION}.tar.gz"
CRIA_LCP_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CRIA_LCP_TOPDIR="llama_cpp_python-${CRIA_LCP_VERSION}"

# ---------------------------------------------------------------------------
# Logging (everything human-facing goes to stderr; stdout is for results)

cria_log() {
    printf '%s: %s\n' "${CRIA_SCRIPT_NAME:-cria}" "$*" >&2
}

cria_warn() {
    printf '%s: warning: %s\n' "${CRIA_SCRIPT_NAME:-cria}" "$*" >&2
}

cria_die() {
    printf '%s: error: %s\n' "${CRIA_SCRIPT_NAME:-cria}" "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Locations

# Print the absolute cria home directory, creating it if needed.
# CRIA_HOME overrides the default ~/.cache/cria.
cria_home() {
    local home="${CRIA_HOME:-}"
    if [[ -z "$home" ]]; then
        [[ -n "${HOME:-}" ]] || cria_die "neither CRIA_HOME nor HOME is set"
        home="$HOME/.cache/cria"
    fi
    mkdir -p -- "$home" || cria_die "cannot create CRIA_HOME directory '$home'"
    (cd -- "$home" && pwd -P)
}

# The python interpreter used for pip and for reading wheels.
cria_python() {
    printf '%s\n' "${CRIA_PYTHON:-python3}"
}

# ---------------------------------------------------------------------------
# sha256

# Print the sha256 (lower-case hex) of a file.  Prefers openssl, which uses
# the CPU's SHA extensions and is several times faster than coreutils on the
# ~500 MB model files; that keeps a warm, all-cached run well under a second.
cria_sha256() {
    local file="$1" out
    if command -v openssl >/dev/null 2>&1 &&
        out="$(openssl dgst -sha256 -r -- "$file" 2>/dev/null)"; then
        printf '%s\n' "${out%% *}"
    elif command -v sha256sum >/dev/null 2>&1; then
        out="$(sha256sum -- "$file")" || return 1
        printf '%s\n' "${out%% *}"
    else
        "$(cria_python)" - "$file" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())
PY
    fi
}

# cria_sha256_many FILE...: print "<sha256>  <file>" (sha256sum's format) for
# each FILE, hashing them all in one process.
cria_sha256_many() {
    (($#)) || return 0
    if command -v openssl >/dev/null 2>&1; then
        # openssl -r prints "<hash> *<file>"
        openssl dgst -sha256 -r -- "$@" | sed 's/^\([0-9a-f]*\) \*/\1  /'
    elif command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$@"
    else
        "$(cria_python)" - "$@" <<'PY'
import hashlib, sys
for name in sys.argv[1:]:
    h = hashlib.sha256()
    with open(name, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    print(f"{h.hexdigest()}  {name}")
PY
    fi
}

# cria_sha256_ok FILE EXPECTED: succeed iff FILE is a regular file whose
# sha256 is EXPECTED.  Sets CRIA_LAST_SHA256 to the actual digest (empty when
# the file is missing) so callers can report it.
CRIA_LAST_SHA256=""
cria_sha256_ok() {
    local file="$1" expected="$2"
    CRIA_LAST_SHA256=""
    [[ -f "$file" ]] || return 1
    CRIA_LAST_SHA256="$(cria_sha256 "$file")" || return 1
    [[ "$CRIA_LAST_SHA256" == "$expected" ]]
}

# ---------------------------------------------------------------------------
# Locking: serialise concurrent runs that write the same part of CRIA_HOME.

# cria_lock LOCKFILE: take an exclusive lock for the rest of the process's
# life (file descriptor 9).  Without flock we only warn.
cria_lock() {
    local lockfile="$1"
    if ! command -v flock >/dev/null 2>&1; then
        cria_warn "flock not found; not guarding against concurrent runs"
        return 0
    fi
    exec 9>>"$lockfile" || cria_die "cannot open lock file $lockfile"
    if ! flock -n 9; then
        cria_log "waiting for another run holding $lockfile ..."
        flock 9 || cria_die "cannot lock $lockfile"
    fi
}

# ---------------------------------------------------------------------------
# Temporary directories inside CRIA_HOME (same filesystem as the final files,
# so the last `mv` is an atomic rename).  Everything listed in CRIA_TMPDIRS
# (directories, or half-written .part files) is removed by
# cria_cleanup_tmpdirs, which callers install as their EXIT trap.

CRIA_TMPDIRS=()
cria_cleanup_tmpdirs() {
    local d
    for d in "${CRIA_TMPDIRS[@]+"${CRIA_TMPDIRS[@]}"}"; do
        if [[ -n "$d" && ( -e "$d" || -L "$d" ) ]]; then
            rm -rf -- "$d"
        fi
    done
    return 0
}

# cria_mktemp_dir VAR: create a fresh temp dir under $CRIA_HOME/tmp and store
# its path in VAR (no subshell, so the cleanup list stays up to date).
cria_mktemp_dir() {
    local __var="$1" __home __dir
    __home="$(cria_home)"
    mkdir -p -- "$__home/tmp"
    __dir="$(mktemp -d "$__home/tmp/${CRIA_SCRIPT_NAME:-cria}.XXXXXX")" ||
        cria_die "cannot create a temporary directory under $__home/tmp"
    CRIA_TMPDIRS+=("$__dir")
    printf -v "$__var" '%s' "$__dir"
}

# ---------------------------------------------------------------------------
# Build tooling from PyPI (only installed when missing)

# Make sure `cmake` is runnable, installing the PyPI cmake package if not.
cria_ensure_cmake() {
    if command -v cmake >/dev/null 2>&1 && cmake --version >/dev/null 2>&1; then
        return 0
    fi
    local py
    py="$(cria_python)"
    cria_log "cmake not found; installing it with '$py -m pip install cmake'"
    "$py" -m pip install cmake >&2 || cria_die "pip install cmake failed"
    hash -r
    if ! command -v cmake >/dev/null 2>&1; then
        # pip may have put the entry point in a scripts dir not on PATH.
        local scripts
        scripts="$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
        [[ -x "$scripts/cmake" ]] || cria_die "cmake installed but not found on PATH or in $scripts"
        PATH="$scripts:$PATH"
        export PATH
    fi
    cmake --version >/dev/null 2>&1 || cria_die "cmake is installed but does not run"
}

# Make sure the python modules needed to let pip prepare the llama-cpp-python
# sdist's metadata without build isolation are importable.
cria_ensure_scikit_build_core() {
    local py
    py="$(cria_python)"
    if "$py" -c 'import scikit_build_core' >/dev/null 2>&1; then
        return 0
    fi
    cria_log "scikit-build-core not found; installing it with '$py -m pip install scikit-build-core'"
    "$py" -m pip install scikit-build-core >&2 || cria_die "pip install scikit-build-core failed"
}

# ---------------------------------------------------------------------------
# The pinned llama-cpp-python sdist, cached at
# $CRIA_HOME/downloads/llama_cpp_python-<version>.tar.gz

cria_lcp_sdist_path() {
    printf '%s/downloads/%s\n' "$(cria_home)" "$CRIA_LCP_SDIST_NAME"
}

# cria_ensure_lcp_sdist: make sure the cached sdist exists with the pinned
# sha256; download it with pip when it does not.  Makes no network request
# when the cached copy is good.  Sets CRIA_LCP_SDIST_STATUS to "cached" or
# "fetched".  Returns non-zero (after logging why) on failure.
CRIA_LCP_SDIST_STATUS=""
cria_ensure_lcp_sdist() {
    local dest py tmp found
    dest="$(cria_lcp_sdist_path)"
    CRIA_LCP_SDIST_STATUS=""
    if cria_sha256_ok "$dest" "$CRIA_LCP_SDIST_SHA256"; then
        CRIA_LCP_SDIST_STATUS=cached
        return 0
    fi
    if [[ -e "$dest" ]]; then
        cria_warn "$dest has sha256 $CRIA_LAST_SHA256, expected $CRIA_LCP_SDIST_SHA256; re-fetching"
        rm -f -- "$dest"
    fi
    mkdir -p -- "$(dirname -- "$dest")"

    # pip prepares the sdist's metadata even for `pip download`; without
    # build isolation that needs the build backend and cmake locally.
    cria_ensure_cmake
    cria_ensure_scikit_build_core

    py="$(cria_python)"
    cria_mktemp_dir tmp
    cria_log "downloading llama-cpp-python==$CRIA_LCP_VERSION (sdist) with pip"
    if ! "$py" -m pip download --no-deps --no-build-isolation --no-binary :all: \
        --no-cache-dir --dest "$tmp" "llama-cpp-python==$CRIA_LCP_VERSION" >&2; then
        cria_log "pip download of llama-cpp-python==$CRIA_LCP_VERSION failed"
        return 1
    fi
    found="$tmp/$CRIA_LCP_SDIST_NAME"
    if [[ ! -f "$found" ]]; then
        cria_log "pip did not produce $CRIA_LCP_SDIST_NAME in $tmp"
        return 1
    fi
    if ! cria_sha256_ok "$found" "$CRIA_LCP_SDIST_SHA256"; then
        cria_log "sha256 mismatch for $dest (llama-cpp-python==$CRIA_LCP_VERSION sdist): expected $CRIA_LCP_SDIST_SHA256, actual $CRIA_LAST_SHA256"
        return 1
    fi
    mv -f -- "$found" "$dest.part"
    mv -f -- "$dest.part" "$dest"
    CRIA_LCP_SDIST_STATUS=fetched
}
