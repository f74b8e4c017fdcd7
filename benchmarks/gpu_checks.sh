#!/usr/bin/env bash
# CNNEncoder on a CUDA machine, unattended: the gpu-marked tests, then bench_cnn.py on cuda.
# Extra arguments go to bench_cnn.py (e.g. --part speed --batch-size 256).
# Results: benchmarks/results/bench_cnn_cuda_*.json
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv || true
python -m pytest -q -m gpu tests/
python benchmarks/bench_cnn.py --device cuda "$@"
