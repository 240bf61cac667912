#!/usr/bin/env bash
# Run the test suite: installs what it needs (scripts/bootstrap.sh), then pytest lane by lane (unit, s3,
# airflow, gpu, e2e; tests/conftest.py marks them) and prints the seconds each lane took. The tests start every
# service they use themselves (a SeaweedFS server on free loopback ports, a throwaway Airflow home), so
# nothing has to be running first. Extra arguments go to pytest in every lane (e.g. scripts/test.sh -k dedup).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
bash "$HERE/bootstrap.sh" || { echo "error: installing the test environment failed" >&2; exit 1; }
# docker-compose (validates docker-compose.yaml offline) and the healthcheck clients tests/deploy runs.
bash "$HERE/ensure_tools.sh" || { echo "error: installing the test tools failed (scripts/ensure_tools.sh)" >&2; exit 1; }
cd "$ROOT"
export PYTHONDONTWRITEBYTECODE=1

# A -m EXPR among the arguments narrows every lane (pytest would let a second -m replace the lane's).
USER_MARK=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -m) USER_MARK="$2"; shift 2 ;;
    -m*) USER_MARK="${1#-m}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
set -- ${ARGS[@]+"${ARGS[@]}"}

# Every test is in exactly one lane: a test with several lane markers runs in the last lane it has.
LANE_NAMES=(unit s3 airflow gpu e2e)
LANE_EXPRS=("unit" "s3 and not airflow and not gpu and not e2e" "airflow and not gpu and not e2e" "gpu and not e2e" "e2e")
LOG="$(mktemp -d)"
trap 'rm -rf "$LOG"' EXIT
status=0
total_start=$(date +%s.%N)
declare -a SECONDS_OF RC_OF
for i in "${!LANE_NAMES[@]}"; do
  lane="${LANE_NAMES[$i]}"
  expr="${LANE_EXPRS[$i]}"
  [ -n "$USER_MARK" ] && expr="($expr) and ($USER_MARK)"
  echo "=== lane $lane: pytest -m \"$expr\" $*"
  start=$(date +%s.%N)
  "$ROOT/.venv/bin/python" -m pytest -m "$expr" "$@" 2>&1 | tee "$LOG/$lane.out"
  rc=${PIPESTATUS[0]}
  SECONDS_OF[$i]=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ "$rc" -eq 5 ] && rc=0  # no test of this lane matched the arguments
  RC_OF[$i]=$rc
  [ "$rc" -ne 0 ] && status=$rc
done
total=$(awk -v a="$total_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

echo
echo "=== lane times"
for i in "${!LANE_NAMES[@]}"; do
  printf 'lane %-8s %8ss  exit %s\n' "${LANE_NAMES[$i]}" "${SECONDS_OF[$i]}" "${RC_OF[$i]}"
done
printf 'lane %-8s %8ss\n' total "$total"
echo
# pytest's own summary line of each lane, last, for whoever reads the tail ("N passed").
for lane in "${LANE_NAMES[@]}"; do
  line=$(grep -E '^(=+ )?([0-9]+ [a-z]+|no tests ran).* in [0-9.]+s' "$LOG/$lane.out" | tail -n 1)
  echo "${line:-=== lane $lane: no output}"
done
exit "$status"
