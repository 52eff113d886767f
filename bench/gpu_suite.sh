#!/usr/bin/env bash
# The GPU comparison of issue 12, in priority order, each case's table written to $OUT as it finishes,
# so a run cut short still returns what it measured. On the GPU machine, after the two staging calls of
# ../shared/gpu/README.md:   source .devcarry/activate.sh && bash bench/gpu_suite.sh [shape] [iters]
# Here, to check it end to end on the CPU:   PY=.venv/bin/python OUT=/tmp/out bash bench/gpu_suite.sh tiny 4
# pytest for the core tests there: mkdir -p .devcarry/pylib && cp -r .venv/lib/python3*/site-packages/{pytest,_pytest,\
#   pluggy,iniconfig,py.py} .devcarry/pylib/   and carry .devcarry/pylib with the second call.
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:-}"
shape=${1:-1b}; iters=${2:-60}; PY=${PY:-python3}; OUT=${OUT:-/tmp/gpu-suite}; mkdir -p "$OUT"
work=/tmp/bench-models-$shape
bench() {  # name, then the bench's flags
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/summary.txt"
  $PY bench/bench_vs_mlx_lm.py --shape "$shape" --iters "$iters" --reps 1 --batch 8 --val-batches 4 \
    --work "$work" "$@" > "$OUT/$name.txt" 2>&1
  echo "   exit $?" >> "$OUT/summary.txt"; tail -n 8 "$OUT/$name.txt" >> "$OUT/summary.txt"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$OUT/summary.txt" 2>/dev/null
# Equal shapes first (rows cut to 96 tokens: every batch the same width for both tools), mlx-lm first: the
# first run of a kind compiles the CUDA kernels the two share (MLX caches them on disk), and a steady-state
# step is what is compared. Learned on an H100, 2026-11-26: 15 device minutes fit about five cases.
same="--max-len 96 --iters 30 --mlx-lm-first"
bench bf16-same --dtypes bf16 $same
bench q4-mlx-kernels-same --dtypes q4 --no-fast-quant $same
bench q4-dequantize-same --dtypes q4 $same
bench bf16-grad-ckpt-same --dtypes bf16 --grad-checkpoint $same
bench chat-mask-q4 --dtypes q4 --no-fast-quant --mask-prompt
# the core tests on this backend (no Qt there); pytest travels in .devcarry/pylib when the machine lacks it
[ -d .devcarry/pylib ] && export PYTHONPATH="$PYTHONPATH:$PWD/.devcarry/pylib"
if $PY -c "import pytest" 2>/dev/null; then
  timeout 150 $PY -m pytest -q -p no:cacheprovider -m "not slow" tests --ignore=tests/test_gui.py \
    --ignore=tests/test_gui_after_training.py --ignore=tests/test_bundle.py --ignore=tests/test_install.py > "$OUT/core-tests.txt" 2>&1
  echo "core tests exit $?" >> "$OUT/summary.txt"; tail -n 15 "$OUT/core-tests.txt" >> "$OUT/summary.txt"
else
  echo "no pytest on this machine" >> "$OUT/summary.txt"
fi
bench bf16 --dtypes bf16
