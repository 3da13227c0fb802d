#!/usr/bin/env bash
#
# editors/vscode/test/e2e/install.sh -- install what the real-VS-Code test
# needs, from package registries only, and cache it under $CRIA_HOME.
#
# Why: the test drives a real VS Code (code-server, VS Code served to a
# browser) in a real browser (Debian's Chromium, through ChromeDriver and
# Selenium).  This machine reaches package registries and nothing else, so
# every step that would download a prebuilt binary from elsewhere is replaced:
#
#   - Debian's `chromium`, `chromium-driver` and `ripgrep` come from apt
#     (apt-get update + install, only when one of them is missing).
#   - Selenium comes from PyPI into a virtual environment, pinned by
#     requirements.txt beside this file; the environment is kept in
#     $CRIA_HOME/vscode-e2e/venv-<sha256 of requirements.txt>.
#   - code-server comes from the npm registry, version pinned and its
#     tarball checked against a pinned sha256.  Its postinstall script would
#     run `npm install` in lib/vscode, whose @vscode/ripgrep postinstall
#     downloads rg from GitHub and whose native modules try prebuilt
#     downloads first, so everything is installed with --ignore-scripts and
#     the postinstall's work is redone here by hand:
#       1. `npm install --omit=dev --ignore-scripts` in lib/vscode (its
#          npm-shrinkwrap.json pins the tree) and in lib/vscode/extensions;
#       2. the native modules that code-server loads on Linux are compiled
#          from source with node-gyp (npm's bundled copy) against the system
#          Node's headers (npm_config_nodedir=/usr: /usr/include/node);
#          @vscode/spdlog, native-watchdog and node-pty; argon2 through
#          its own node-pre-gyp with --build-from-source (no download try).
#          @parcel/watcher ships a prebuilt linux-x64 binary in an npm
#          package; kerberos (proxy authentication only, and it needs
#          libkrb5-dev), @vscode/deviceid (native on Windows only) and the
#          windows-* modules are left out;
#       3. Debian's /usr/bin/rg is linked where @vscode/ripgrep expects its
#          binary, and node_modules.asar and the bin/ scripts are linked as
#          the postinstall does.
#     The result is kept in $CRIA_HOME/vscode-e2e/code-server-<version>-
#     <first 16 hex of the tarball's sha256>-node<ABI>: the native modules
#     are built for one Node ABI, so another Node gets its own copy.  A
#     folder is only used once its `.complete` marker exists (written last),
#     so an interrupted install is redone, not trusted.
#
# Anything that cannot be installed is an error (exit 1): the test never
# skips.  Output: `name=path` lines on stdout for the caller (chromium,
# chromedriver, python, code_server); progress on stderr.
#
# Usage: install.sh            (idempotent; a second run makes no network request)
set -euo pipefail

CODE_SERVER_VERSION=4.100.3 # VS Code 1.100.3; needs Node 20 (4.101 and later need Node 22)
CODE_SERVER_TARBALL_SHA256=a85138ac3a382a9ba1df652a751901ec598fed24f673b8a8653de7be8335bfaa
NODE_MAJOR_REQUIRED=20

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$HERE/../../../.." && pwd -P)"
CRIA_SCRIPT_NAME="vscode-e2e install"
# shellcheck source=../../../../scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"

CACHE="$(cria_home)/vscode-e2e"
mkdir -p -- "$CACHE"

# One installer at a time (two test runs sharing $CRIA_HOME).
exec 9>"$CACHE/.install.lock"
flock 9

# ---------------------------------------------------------------------------
# Debian packages: the browser, its driver, ripgrep

install_debian_packages() {
    local missing=()
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    [[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
    [[ -x /usr/bin/rg ]] || missing+=(ripgrep)
    if ((${#missing[@]} == 0)); then
        cria_log "Debian packages: ok (installed)"
        return
    fi
    cria_log "Debian packages: installing ${missing[*]}"
    command -v apt-get >/dev/null || cria_die "apt-get not found: install ${missing[*]} by hand"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >&2 || cria_die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || cria_die "apt-get install ${missing[*]} failed"
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver && -x /usr/bin/rg ]] ||
        cria_die "chromium, chromedriver or rg still missing after apt-get install"
}

# ---------------------------------------------------------------------------
# Selenium in a virtual environment

install_selenium() {
    local requirements="$HERE/requirements.txt" key venv
    key="$(cria_sha256 "$requirements" | cut -c1-16)"
    venv="$CACHE/venv-$key"
    if [[ -f "$venv/.complete" ]]; then
        cria_log "selenium: ok (cached): $venv"
    else
        cria_log "selenium: installing into $venv"
        rm -rf -- "$venv"
        "$(cria_python)" -m venv "$venv" >&2 || cria_die "python3 -m venv failed"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
            --require-hashes -r "$requirements" >&2 ||
            cria_die "pip install -r $requirements failed"
        touch "$venv/.complete"
    fi
    PYTHON="$venv/bin/python"
}

# ---------------------------------------------------------------------------
# code-server

node_gyp() {
    # npm's own copy of node-gyp (npm ships it for packages' install scripts).
    local npm_root
    npm_root="$(npm root -g)/npm"
    [[ -f "$npm_root/node_modules/node-gyp/bin/node-gyp.js" ]] ||
        cria_die "node-gyp not found in $npm_root (npm's bundled copy)"
    node "$npm_root/node_modules/node-gyp/bin/node-gyp.js" "$@"
}

install_code_server() {
    command -v node >/dev/null || cria_die "node not found (code-server $CODE_SERVER_VERSION needs Node $NODE_MAJOR_REQUIRED)"
    local node_major abi
    node_major="$(node -p 'process.versions.node.split(".")[0]')"
    abi="$(node -p 'process.versions.modules')"
    [[ "$node_major" == "$NODE_MAJOR_REQUIRED" ]] ||
        cria_die "code-server $CODE_SERVER_VERSION needs Node $NODE_MAJOR_REQUIRED; this is Node $(node --version)"
    [[ -f /usr/include/node/node_api.h ]] ||
        cria_die "Node's headers are not in /usr/include/node (Debian: nodejs from NodeSource, or libnode-dev)"

    local dir="$CACHE/code-server-$CODE_SERVER_VERSION-${CODE_SERVER_TARBALL_SHA256:0:16}-node$abi"
    CODE_SERVER="$dir/node_modules/code-server/out/node/entry.js"
    if [[ -f "$dir/.complete" ]]; then
        cria_log "code-server: ok (cached): $dir"
        return
    fi
    cria_log "code-server: installing $CODE_SERVER_VERSION into $dir"
    local tmp="$dir.partial"
    rm -rf -- "$tmp" "$dir"
    mkdir -p -- "$tmp"

    # The tarball, checked before anything in it is used.
    local tarball="$tmp/code-server-$CODE_SERVER_VERSION.tgz"
    (cd -- "$tmp" && npm pack --silent "code-server@$CODE_SERVER_VERSION" >/dev/null) ||
        cria_die "npm pack code-server@$CODE_SERVER_VERSION failed"
    local got
    got="$(cria_sha256 "$tarball")"
    [[ "$got" == "$CODE_SERVER_TARBALL_SHA256" ]] ||
        cria_die "code-server tarball sha256 $got, expected $CODE_SERVER_TARBALL_SHA256"

    # code-server and its own dependencies (its npm-shrinkwrap.json pins them).
    echo '{"name": "cria-vscode-e2e", "private": true}' >"$tmp/package.json"
    (cd -- "$tmp" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error "$tarball" >&2) ||
        cria_die "npm install code-server failed"

    local vscode="$tmp/node_modules/code-server/lib/vscode"
    (cd -- "$vscode" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
        cria_die "npm install in code-server's lib/vscode failed"
    (cd -- "$vscode/extensions" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2 &&
        node postinstall.mjs >/dev/null) ||
        cria_die "npm install in code-server's lib/vscode/extensions failed"

    # Native modules, from source against the system Node's headers.
    export npm_config_nodedir=/usr
    local module
    for module in @vscode/spdlog native-watchdog node-pty; do
        cria_log "code-server: building $module"
        (cd -- "$vscode/node_modules/$module" && node_gyp rebuild --jobs=2 >"$tmp/build-${module//\//_}.log" 2>&1) ||
            cria_die "building $module failed; see $tmp/build-${module//\//_}.log"
    done
    cria_log "code-server: building argon2"
    (cd -- "$tmp/node_modules/argon2" &&
        node ../@mapbox/node-pre-gyp/bin/node-pre-gyp rebuild --build-from-source >"$tmp/build-argon2.log" 2>&1) ||
        cria_die "building argon2 failed; see $tmp/build-argon2.log"

    # What the postinstall links: rg (Debian's), node_modules.asar, the CLI scripts.
    mkdir -p -- "$vscode/node_modules/@vscode/ripgrep/bin"
    ln -sfn /usr/bin/rg "$vscode/node_modules/@vscode/ripgrep/bin/rg"
    ln -sfn node_modules "$vscode/node_modules.asar"
    ln -sfn code-linux.sh "$vscode/bin/remote-cli/code-server"
    ln -sfn browser-linux.sh "$vscode/bin/helpers/browser.sh"

    # It loads, native modules included.
    # (XDG_*: it writes a default config.yaml there, which is nobody's business.)
    (cd -- "$tmp/node_modules/code-server" &&
        XDG_CONFIG_HOME="$tmp/xdg" XDG_DATA_HOME="$tmp/xdg" node out/node/entry.js --version >&2) ||
        cria_die "the installed code-server does not start"
    (cd -- "$vscode" && node -e 'for (const m of ["@vscode/spdlog", "native-watchdog", "node-pty"]) require(m)') ||
        cria_die "a native module of code-server does not load"

    rm -f -- "$tarball"
    mv -- "$tmp" "$dir"
    touch "$dir/.complete"
}

install_debian_packages
install_selenium
install_code_server

echo "chromium=/usr/bin/chromium"
echo "chromedriver=/usr/bin/chromedriver"
echo "python=$PYTHON"
echo "code_server=$CODE_SERVER"
