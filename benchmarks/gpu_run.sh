#!/usr/bin/env bash
# One unattended run on a CUDA machine: every gpu-marked test, then the CNN benchmark on cuda.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch, sklearn, skorch, numpy; print('torch', torch.__version__, 'sklearn', sklearn.__version__, 'skorch', skorch.__version__, 'numpy', numpy.__version__)"
python3 -m pytest -q -m gpu -p no:cacheprovider -o addopts="" tests/ 2>&1 | tee "$OUT/gpu_tests.log"
timeout 300 python3 benchmarks/bench_cnn.py --device cuda --out "$OUT" 2>&1 | tee "$OUT/bench_cnn_cuda.log"
