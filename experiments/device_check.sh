#!/usr/bin/env bash
# One call on a lent GPU: check the Pallas kernels, tune the time loops, then time the GPU benchmark suite.
#
#   bash experiments/device_check.sh [OUT_DIR]      # OUT_DIR: default $OUT (the device tool's), else /tmp/device_check
#
# Made for the device machine's 10-minute command limit (about 8 minutes here): each stage has its
# own timeout, the tuning and the benchmark start no new setting or shape after their budgets and
# save their JSON after each, so a stage cut short keeps what it measured. It writes 8 files (the most
# the device tool returns):
#   gpu.txt                  GPU, driver, clocks; jax, flax, torch versions
#   pallas_check_gpu.json    experiments/pallas_check.py: impl="pallas" vs impl="scan", relative errors
#   loops_tune_gpu.json      experiments/loops_tune.py: lax.scan per unroll, Pallas per block setting
#   bench_gpu.json/.md       experiments/bench.py --device gpu, float32 (lstm_jax variants incl. bf16 compute)
#   bench_gpu_fp16.json/.md  the same for float16: torch (cuDNN's persistent kernels) and lstm_jax
#   device_check.log         everything printed
# Afterwards, here: copy the JSON to experiments/results/ and regenerate the docs' tables, e.g.
#   python experiments/bench.py --from experiments/results/bench_gpu.json --docs docs/benchmarks.md
set -u -o pipefail
out=${1:-${OUT:-/tmp/device_check}}
mkdir -p "$out"
log="$out/device_check.log"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  $py -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
  $py -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$out/gpu.txt" | tee -a "$log"

stage() {  # stage NAME SECONDS COMMAND...: run with a timeout, log, and remember the exit code
  local name=$1 seconds=$2
  shift 2
  echo "== $name (timeout ${seconds} s)" | tee -a "$log"
  timeout "$seconds" "$@" 2>&1 | tee -a "$log"
  local rc=$?
  echo "== $name exit $rc" | tee -a "$log"
  failures=$((failures + (rc != 0)))
}
failures=0

# Correctness on the GPU first: the timing of a wrong kernel means nothing.
stage pallas_check 100 $py experiments/pallas_check.py --out "$out/pallas_check_gpu.json"
stage loops_tune 130 $py experiments/loops_tune.py --budget-s 100 --out "$out/loops_tune_gpu.json"
stage bench_fp32 170 $py experiments/bench.py --device gpu --dtypes float32 --repeats 20 --quiet 1 --budget-s 110 \
  --variants default,pallas,bf16_compute,pallas_bf16_compute --out "$out/bench_gpu.json" --table
stage bench_fp16 60 $py experiments/bench.py --device gpu --dtypes float16 --impls lstm_jax,torch --repeats 20 \
  --quiet 1 --budget-s 25 --variants default,pallas --out "$out/bench_gpu_fp16.json" --table
echo "stages failed: $failures" | tee -a "$log"
exit $((failures > 0))
