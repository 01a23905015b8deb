#!/usr/bin/env bash
# One call on a lent GPU: check the Pallas kernels against the scan, then time the GPU benchmark suite.
#
#   bash experiments/device_check.sh [OUT_DIR]      # OUT_DIR: default $OUT (the device tool's), else /tmp/device_check
#
# Made for the device machine's 10-minute command limit: each stage has its own timeout, and the
# benchmark starts no new shape after its budget and saves its JSON after every shape, so a stage
# cut short still leaves what it measured. It writes (at most 8 files, as the device tool returns):
#   gpu.txt                 GPU, driver, clocks; jax, flax, torch versions
#   pallas_check_gpu.json   experiments/pallas_check.py: impl="pallas" vs impl="scan", relative errors
#   bench_gpu.json/.md      experiments/bench.py --device gpu: fp32, bf16, fp16 rows and tables
#   *.log                   each stage's output
# Afterwards, here: copy bench_gpu.json to experiments/results/ and regenerate docs/benchmarks.md with
#   python experiments/bench.py --from experiments/results/bench_gpu.json --docs docs/benchmarks.md
set -u -o pipefail
out=${1:-${OUT:-/tmp/device_check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  $py -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
  $py -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$out/gpu.txt"

# Correctness on the GPU first: the benchmark of a wrong kernel means nothing.
timeout 150 $py experiments/pallas_check.py --out "$out/pallas_check_gpu.json" 2>&1 | tee "$out/pallas_check.log"
check=$?

# The suite: every GPU shape in fp32, bf16 and fp16 (the last is cuDNN's persistent-kernel dtype).
timeout 360 $py experiments/bench.py --device gpu --repeats 20 --quiet 1 --budget-s 300 \
  --variants default,pallas,bf16_compute,pallas_bf16_compute \
  --out "$out/bench_gpu.json" --table 2>&1 | tee "$out/bench_gpu.log"
bench=$?

echo "pallas_check exit $check, bench exit $bench"
exit $(( check || bench ))
