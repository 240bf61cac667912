#!/usr/bin/env bash
# Issue 16 on one GPU host (H200): the causal-LM serving comparison on a ~1B Qwen2 and a world-size-1 torchrun
# training run through the CLI on a file:// store. Writes benchmarks/results/serving_llm.json.
#   bash benchmarks/gpu_issue16.sh            (from the repository root; python = the host's python)
set -euo pipefail
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1
SNAP=${SNAP:-/tmp/qwen2-1b}
if [ "${SERVE:-1}" = 1 ]; then
[ -d "$SNAP" ] || $PY -m benchmarks.snapshots --family qwen2 --out "$SNAP" --config-json benchmarks/configs/qwen2-1b.json \
  --dtype bfloat16 --device cuda
# Today's path vs continuous batching: 128-token prompts, 128 new tokens (EOS ignored), 64 clients, bf16.
$PY benchmarks/serving_llm.py --snapshot "$SNAP" --device cuda --dtype bfloat16 --prompt-tokens 128 --new-tokens 128 \
  --engines "${ENGINES:-hf_generate,continuous_batching,continuous_batching+graphs}" \
  --clients 64 --requests 1024 --seconds 120 --p95-ceiling-ms "${P95_CEILING_MS:-30000}" \
  --out benchmarks/results/serving_llm.json
fi
# Training through the torchrun launch (training.devices; 1 on a 1-GPU host, 2 on a 2-GPU host), CLI on file://.
if [ "${TRAIN:-1}" = 1 ]; then
  WORK=$(mktemp -d)
  export PIPELINE_S3_ENDPOINT_URL="file://$WORK/store" PIPELINE__TRAINING__DEVICE=${TRAIN_DEVICE:-cuda} \
    PIPELINE__TRAINING__DEVICES="${DEVICES:-1}" PIPELINE__TRAINING__GRAD_SAMPLE_MODE="${GRAD_SAMPLE_MODE:-hooks}" \
    PIPELINE__TRAINING__SIZE=tiny PIPELINE__TRAINING__CHECKPOINT_ROOT="$WORK/ckpt" \
    PIPELINE__ARTIFACTS__CACHE_DIR="$WORK/cache"
  $PY -m pipelines sample load >/dev/null
  $PY -m pipelines ingest --domain legal --interval 2026-10-04_2026-10-11 --who gpu >/dev/null
  $PY -m pipelines train build-domain-base --domain legal --who gpu --if-missing
  $PY -m pipelines train domain --domain legal --who gpu --run-id "weekly-legal-gpu-$(date +%s)"
fi
