#!/usr/bin/env bash
# Run the model serving service in the foreground (stop with Ctrl-C / SIGTERM).
#   scripts/serve.sh                      # every configured domain, serving.* from config/pipeline.yaml
#   scripts/serve.sh --domain legal --port 8601 --int8
# Tokens: serving.tokens_file, or PIPELINE_SERVING_TOKENS='token=domain,domain;token2=*'.
# The object store is the one scripts/services.sh started (credentials from <state>/credentials.env).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
load_env
export HF_HUB_OFFLINE=1
cd "$ROOT"
exec "$VENV/bin/python" -m pipelines.serving run "$@"
