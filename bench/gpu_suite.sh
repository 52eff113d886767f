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
# Kernels per optimizer step, ours and mlx-lm's, at the 1B layer structure (issue 27): nothing runs, seconds.
# On the GPU the graph is the GPU's (its attention may be one fused kernel where the CPU composes it).
echo "== kernels per step (1B structure, bf16 and 4-bit)" | tee -a "$OUT/summary.txt"
$PY bench/bench_kernels.py --json "$OUT/kernels.json" > "$OUT/kernels.txt" 2>&1
echo "   exit $?" >> "$OUT/summary.txt"; tail -n 4 "$OUT/kernels.txt" >> "$OUT/summary.txt"
$PY bench/bench_kernels.py --grad-clip 1 --json "$OUT/kernels-clip.json" > "$OUT/kernels-clip.txt" 2>&1
tail -n 4 "$OUT/kernels-clip.txt" >> "$OUT/summary.txt"
step() {  # name, then bench_step.py's flags: one step, both tools, the very same batch, in one process
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/summary.txt"
  $PY bench/bench_step.py --work "$work" "$@" > "$OUT/$name.txt" 2>&1
  echo "   exit $?" >> "$OUT/summary.txt"; tail -n 4 "$OUT/$name.txt" >> "$OUT/summary.txt"
}
# The 1B shape (all 16 layers, bf16, batch 8) on one batch: equal work, so peaks and step times compare exactly.
if [ "$shape" = 1b ]; then
  one="--hidden 2048 --layers 16 --inter 8192 --heads 32 --kv-heads 8 --vocab 128256 --dtype bfloat16 --steps 10 --rounds 1"
  step step-bf16-96 $one --len 96
  step step-bf16-96-grad-ckpt $one --len 96 --grad-checkpoint
  step step-bf16-96-grad-ckpt-ceiling $one --len 96 --grad-checkpoint --ceiling  # off on GPUs until this says
  step step-bf16-512 $one --len 512
fi
# the core tests on this backend (no Qt there); pytest travels in .devcarry/pylib when the machine lacks it
[ -d .devcarry/pylib ] && export PYTHONPATH="$PYTHONPATH:$PWD/.devcarry/pylib"
if $PY -c "import pytest" 2>/dev/null; then
  timeout 150 $PY -m pytest -q -p no:cacheprovider -m "not slow" tests --ignore=tests/test_gui.py \
    --ignore=tests/test_gui_after_training.py --ignore=tests/test_bundle.py --ignore=tests/test_install.py > "$OUT/core-tests.txt" 2>&1
  echo "core tests exit $?" >> "$OUT/summary.txt"; tail -n 15 "$OUT/core-tests.txt" >> "$OUT/summary.txt"
else
  echo "no pytest on this machine" >> "$OUT/summary.txt"
fi
# Equal shapes first (rows cut to 96 tokens: every batch the same width for both tools), mlx-lm first: the
# first run of a kind compiles the CUDA kernels the two share (MLX caches them on disk), and a steady-state
# step is what is compared. Learned on an H100, 2026-11-26: 15 device minutes fit about five cases.
same="--max-len 96 --iters 30 --mlx-lm-first"
bench bf16-same --dtypes bf16 $same
bench q4-mlx-kernels-same --dtypes q4 --no-fast-quant $same
bench q4-dequantize-same --dtypes q4 $same
bench bf16-grad-ckpt-same --dtypes bf16 --grad-checkpoint $same
bench chat-mask-q4 --dtypes q4 --no-fast-quant --mask-prompt
bench bf16 --dtypes bf16
