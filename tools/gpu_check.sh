#!/usr/bin/env bash
# GPU checks, for a machine with CuPy and a CUDA GPU (CI has neither): the CuPy tests
# (CPU = GPU to 1e-6 on the reference nets, forward pass against onnxruntime), then the
# benchmark of the per-layer method on the GPU and on the CPU of the same machine.
#
# Usage: tools/gpu_check.sh [OUT_DIR] [MODELS]   (MODELS: comma-separated, default all four)
# Runs from a checkout without installing it (PYTHONPATH); needs numpy, scipy, onnx,
# onnxruntime, typer, rich, threadpoolctl, pytest, hypothesis and cupy.
set -uo pipefail
out=${1:-gpu_check_out}
models=${2:-mnist_lenet,cifar10_net,alexnet,vgg16}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import cupy, numpy, onnxruntime; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/test_gpu.log"
for device in gpu cpu; do
  timeout 420 python3 tools/bench.py --models "$models" --stages paper --device "$device" --repeat 3 \
    --time-limit 150 --cache /tmp/onnxlip_models --json "$out/bench_$device.json" 2>&1 | tee "$out/bench_$device.log"
done
