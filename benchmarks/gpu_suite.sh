#!/usr/bin/env bash
# The GPU suite in one call on a lent GPU machine (benchmarks/README.md, "gpu_suite"): install the wheels
# carried in .whl/ (the machine has no package index), name the card, run benchmarks/gpu_suite.py into $OUT.
# Arguments go to gpu_suite.py after the defaults (e.g. --only vram profile, or --tiny to try it on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the results go to}"
# The target's path must contain site-packages: datasets' dill hashing pickles other modules by value.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-packages .whl/*.whl
export PYTHONPATH=/tmp/site-packages:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
PYTHONUNBUFFERED=1 exec python3 benchmarks/gpu_suite.py --out "$OUT" --budget 480 "$@"
