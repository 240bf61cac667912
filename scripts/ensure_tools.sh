#!/usr/bin/env bash
# Install the command-line tools the tests need beyond the virtualenv: docker-compose (Debian's 1.29, which
# validates docker-compose.yaml with `docker-compose config -q` without a Docker engine), the clients the
# compose healthchecks call (tests/deploy runs each of them locally) and Debian's chromium, which the console's
# browser tests drive with playwright (never `playwright install`: its browser download is not reachable). Idempotent: a tool already on PATH is
# left alone. Needs root (or sudo) and apt-get; elsewhere it says what to install and
# exits 1. Run `scripts/ensure_tools.sh --help` for usage.
set -Eeuo pipefail

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

usage() {
  cat <<'USAGE'
Usage: scripts/ensure_tools.sh [--check] [--help]

Makes sure these tools are on PATH, installing the missing ones with apt-get:
  docker-compose   (package docker-compose, 1.29.x): validates docker-compose.yaml offline
  redis-cli        (redis-tools)         the redis healthcheck
  pg_isready       (postgresql-client)   the postgres healthcheck
  curl, wget       (curl, wget)          the HTTP healthchecks
  chromium         (chromium)            the console's browser tests (tests/e2e/test_console_*.py)

  --check   only report; exit 1 when a tool is missing
  --help    this text
USAGE
}

CHECK=0
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --check) CHECK=1 ;;
    *) printf 'ERROR: unknown argument %s\nUsage: scripts/ensure_tools.sh [--check] [--help]\n' "'$arg'" >&2; exit 2 ;;
  esac
done

# tool name -> Debian package that provides it
declare -A PACKAGES=([docker-compose]=docker-compose [redis-cli]=redis-tools [pg_isready]=postgresql-client
  [curl]=curl [wget]=wget [chromium]=chromium)

missing=()
for tool in "${!PACKAGES[@]}"; do
  if command -v "$tool" >/dev/null 2>&1; then
    log "$tool: $(command -v "$tool")"
  else
    missing+=("$tool")
  fi
done
(( ${#missing[@]} == 0 )) && { log "all tools present"; exit 0; }
(( CHECK )) && die "missing: ${missing[*]} (install with: scripts/ensure_tools.sh)"

pkgs=()
for tool in "${missing[@]}"; do pkgs+=("${PACKAGES[$tool]}"); done
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${pkgs[*]} with this system's package manager"
SUDO=()
if (( EUID != 0 )); then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run as root, or install ${pkgs[*]} yourself"
  SUDO=(sudo -n)
fi
log "installing ${pkgs[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
# A stale package index makes apt-get install fail with 404s: refresh it only when the first try fails.
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}"; then
  "${SUDO[@]}" apt-get update || die "apt-get update failed"
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}" || die "apt-get install ${pkgs[*]} failed"
fi
for tool in "${missing[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after installing ${PACKAGES[$tool]}"
  log "$tool: installed at $(command -v "$tool")"
done
