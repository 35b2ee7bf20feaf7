#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one short run (CI has none; see docs/benchmarks.md):
# the CUDA tests, generation throughput (torch backend against model.generate) on the
# starter and on a model of Qwen2.5-0.5B's shape, and the R1-Zero curve on the GPU.
#
#   scripts/gpu-check.sh                 # logs under var/gpu-check (or $OUT)
#   PY=python3 scripts/gpu-check.sh      # the interpreter that has torch with CUDA
#
# Needs the dense starter under $PONDER_DATA_DIR (var/ by default; built if missing).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-var/gpu-check}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PONDER_DATA_DIR=${PONDER_DATA_DIR:-var}
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -n 25 || { echo "== $name failed"; status=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
step tests 150 $PY -m pytest tests/engine/test_cuda.py -p no:django -p no:cacheprovider -o addopts= -q -rs
step generation-starter 60 $PY benchmarks/bench_generation.py --device cuda --rounds 3
step generation-0.5b 110 $PY benchmarks/bench_generation.py --device cuda --dtype bfloat16 --shape qwen2.5-0.5b --rounds 3
step r1zero 100 $PY benchmarks/bench_r1zero.py --minutes 1.2 --eval-every 4 --set device='"cuda"' \
    --out var/gpu-check-runs --tag=-cuda
cp var/gpu-check-runs/*.png "$OUT"/ 2>/dev/null
exit $status
