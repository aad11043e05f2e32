#!/usr/bin/env bash
# GPU speed check (< 5 min on one recent NVIDIA GPU): ViT-S/16 and ViT-B/16 at 512 with bf16 autocast,
# batch sweep 1-32, bf16 GEMM rate, extract_features overhead over the bare forward.
# Not part of CI: the CPU test suite never needs a GPU. Run from the repository root:
#   bash benchmarks/gpu_check.sh            # uses .venv/bin/python, or $PYTHON
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name(0) if ok else 'no CUDA device'); sys.exit(0 if ok else 1)"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
export DINOMED_CACHE="$(mktemp -d)"      # fresh cache: every slice is computed
trap 'rm -rf "$DINOMED_CACHE"' EXIT
for model in S B; do
  timeout 120 "$PY" benchmarks/bench_extract.py --device cuda --model "$model" --slices 64 \
    --batch-sizes 1,2,4,8,16,32 --repeats 3 || echo "model $model: failed or timed out (exit $?)"
done
