# editors/preflight.sh -- sourced by the editors' test.sh scripts: what every
# one of them needs before it runs (the cria binary, a downloaded model), or
# a failure that CI counts (never a skip).
#
#   source "$here/../preflight.sh"
#   preflight_cria "$repo"                 # sets CRIA_BIN (absolute, exported)
#   preflight_model smollm2-135m-instruct  # fails unless it is downloaded

# Prints the error and the suite's count line, and exits.
preflight_fail() {
  echo "error: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

# CRIA_BIN, default the repository's target/debug/cria, made absolute.
preflight_cria() {
  export CRIA_BIN="${CRIA_BIN:-$1/target/debug/cria}"
  [[ -x "$CRIA_BIN" ]] || preflight_fail "cria binary not found at $CRIA_BIN (build it: cargo build -p cria --bin cria, or set CRIA_BIN)"
  CRIA_BIN="$(cd "$(dirname "$CRIA_BIN")" && pwd)/$(basename "$CRIA_BIN")"
}

# The model a test uses must be there: a missing model is a failure.
preflight_model() {
  local line
  line="$("$CRIA_BIN" models 2>/dev/null | grep -E "^$1[[:space:]]" || true)"
  if [[ -z "$line" || "$line" == *"not downloaded"* ]]; then
    preflight_fail "model $1 is not downloaded (run scripts/fetch-models or: $CRIA_BIN pull $1)"
  fi
}
