#!/bin/bash
# The serving limits benchmark on the lent GPU host's 16 idle CPU cores (no GPU used), with the wheels carried in .whl/:
#   run(command="bash benchmarks/gpu_serving_limits.sh", carry=[".whl"])   (the device tool; results land in $OUT)
#   the wheels, once, here: .venv/bin/pip download -d .whl/serving --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 \
#     --platform manylinux_2_28_x86_64 fastapi uvicorn uvloop httptools pydantic pydantic_core python-multipart a2wsgi email-validator watchfiles click  (pins: requirements.txt)
set -e
python -m pip install -q --no-index --no-deps --target /tmp/site .whl/serving/*.whl .whl/fastjsonschema-*.whl .whl/pyahocorasick-*.whl .whl/ahocorasick_rs-*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
python -c "import fastapi, uvicorn, uvloop, httptools; print('deps ok')"
nproc
python benchmarks/serving.py --compare-limits --rounds 6 --seconds 8 --requests 8000 --concurrency 32 --skip-int8 --out $OUT/serving_limits.json
# then: cp <files_at>/serving_limits.json benchmarks/results/
