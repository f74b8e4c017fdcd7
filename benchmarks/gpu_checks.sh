#!/usr/bin/env bash
# CNNEncoder on a CUDA machine, unattended: the gpu-marked tests (including the
# streaming data path: pinned memory, non-blocking copies, store fit == in-memory
# fit on cuda, and the video core), then bench_cnn.py and a short streaming /
# video benchmark on cuda. Extra arguments go to bench_cnn.py (e.g. --part speed).
# Results: benchmarks/results/bench_cnn_cuda_*.json and the printed tables.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv || true
python -m pytest -q -m gpu -p no:randomly tests/
python benchmarks/bench_cnn.py --device cuda "$@"
timeout 600 python benchmarks/bench_streaming.py --device cuda --size-gb 0.2 --epochs 1 \
    --video-samples 256
