#!/usr/bin/env bash
# GPU check (< 5 min on one recent NVIDIA GPU): per-stage throughput and the end-to-end goals of issue 10.
#  1. host pipeline with the stand-in backbone (no network): can the host feed the GPU? goal >= 2,000 slices/s
#  2. ViT-S/16, ViT-B/16, ViT-L/16 at 512, random weights, bf16, batch from free memory, end to end including
#     the cache write: goals >= 2,000 / 600 / 180 slices/s
# Each step prints its per-stage table and ends with "pipeline N slices/s". Not part of CI. Run from the
# repository root:
#   bash benchmarks/gpu_check.sh                 # uses .venv/bin/python, or $PYTHON
#   DEVICE=cpu SCALE=0.005 RES=128 bash benchmarks/gpu_check.sh   # dry run of the same steps on a CPU
# VARIANTS=1 adds ViT-S with 3 batches read ahead, and ViT-S under torch.compile with the cache both on disk
# and in /dev/shm (RAM: the pipeline without the disk), about 2 more minutes. Where tensorstore writes the
# chunks, every step also runs end to end with zarr-python writing them, interleaved, for the ratio.
# EXTRA=1 adds two steps (about 3 more minutes): `bench --demo` on the device, then ViT-B under torch.compile;
# the demo's report is written to $REPORT_DIR (default ./gpu_demo), to compare with a CPU run of the same demo
# (same rows: bf16 features must score like fp32 ones).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}      # multiplies the slice counts (the dry run on a CPU uses a small fraction)
RES=${RES:-512}
STEP_TIMEOUT=${STEP_TIMEOUT:-75}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DEVICE" = cuda ]; then
  "$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name(0) if ok else 'no CUDA device'); sys.exit(0 if ok else 1)" || exit 1
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm --format=csv,noheader || true
fi
n() { "$PY" -c "print(max(4, int($1 * $SCALE)))"; }
export DINOMED_CACHE="$(mktemp -d)"      # fresh cache: every slice is computed
trap 'rm -rf "$DINOMED_CACHE"' EXIT
start=$(date +%s)
run() {  # name, goal, args...
  local name=$1 goal=$2; shift 2
  echo "== $name (goal >= $goal slices/s) =="
  timeout "$STEP_TIMEOUT" "$PY" benchmarks/bench_pipeline.py --device "$DEVICE" --repeats 2 --goal "$goal" \
    --resolution "$RES" --size "$RES" "$@" \
    || echo "$name: failed or timed out after ${STEP_TIMEOUT} s (exit $?)"
}
echo "== disk: how fast this file system takes feature chunks (the ceiling of every end-to-end rate) =="
for d in "$DINOMED_CACHE" /dev/shm; do
  [ -d "$d" ] && timeout 60 "$PY" benchmarks/bench_disk.py --dir "$d" --files "$(n 400)" | tail -n 5
done
run "host pipeline, stand-in backbone" 2000 --slices "$(n 1000)" --batch-size 32
run "ViT-S/16 @$RES" 2000 --backbone real --model S --slices "$(n 1000)" --batch-size auto
run "ViT-B/16 @$RES" 600 --backbone real --model B --slices "$(n 800)" --batch-size auto
run "ViT-L/16 @$RES" 180 --backbone real --model L --slices "$(n 640)" --batch-size auto
if [ "${VARIANTS:-0}" = 1 ]; then
  run "ViT-S/16 @$RES, 3 batches read ahead" 2000 --backbone real --model S --slices "$(n 1000)" --batch-size auto \
    --prefetch 3
  shm=(); [ -d /dev/shm ] && shm=(--also-cache-in /dev/shm)
  STEP_TIMEOUT=150 run "ViT-S/16 @$RES, torch.compile" 2000 --backbone real --model S --slices "$(n 1000)" --batch-size auto \
    --compile "${shm[@]}"
fi
if [ "${EXTRA:-0}" = 1 ]; then
  echo "== bench --demo on $DEVICE =="
  t0=$(date +%s)
  timeout 240 "$PY" -m dinomed_napari.cli.main bench --demo --device "$DEVICE" --no-progress --overwrite \
    --out "${REPORT_DIR:-gpu_demo}" | tail -n 5 || echo "bench --demo: failed or timed out (exit $?)"
  echo "bench --demo on $DEVICE: $(( $(date +%s) - t0 )) s"
  STEP_TIMEOUT=150 run "ViT-B/16 @$RES, torch.compile" 600 --backbone real --model B --slices "$(n 400)" --batch-size auto --compile
fi
echo "gpu_check done in $(( $(date +%s) - start )) s"
