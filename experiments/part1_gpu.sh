#!/usr/bin/env bash
# The Part 1 checks, benchmark and sweep as run on a lent GPU machine (one H100 or H200), with that
# machine's own python3 and torch. Usage: bash experiments/part1_gpu.sh OUT_DIR [SEEDS...]
# First the float64 equivalence and gradcheck tests on the GPU, then the benchmark alone, then both
# sweeps at the same time (one process each: each is limited by kernel launches, not by the GPU's
# arithmetic). Results and logs (8 files) go to OUT_DIR; checkpoints stay in /tmp.
set -u
out=${1:?usage: part1_gpu.sh OUT_DIR [SEEDS...]}; shift
seeds=${*:-0 1 2 3 4}
work=/tmp/part1_sweep
export PYTHONUNBUFFERED=1
mkdir -p "$out"
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, tqdm; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(), tqdm.__version__)"
timeout 120 python3 -m pytest tests/project/test_part1_sweep.py -k cuda -q -p no:cacheprovider > "$out/pytest_gpu.log" 2>&1
tail -n 3 "$out/pytest_gpu.log"
timeout "${BENCH_TIMEOUT:-120}" python3 -m experiments.part1_benchmark --device cuda --out "$out/benchmark_gpu.json" \
  > "$out/benchmark_gpu.log" 2>&1
timeout 60 python3 -m experiments.part1_benchmark --device cuda --seeds $seeds --no-separate \
  --out "$out/benchmark_gpu_5seeds.json" >> "$out/benchmark_gpu.log" 2>&1
cat "$out/benchmark_gpu.log"
echo "checks and benchmark done after $(( $(date +%s) - start )) s"
for model in rnn lstm; do
  timeout "${SWEEP_TIMEOUT:-330}" python3 -m experiments.part1_sweep --models $model --input-lengths 5-20 \
    --seeds $seeds --steps "${STEPS:-10000}" --device cuda --out $work > "$out/sweep_$model.log" 2>&1 &
done
wait
cp $work/rnn.json $work/lstm.json "$out"/
tail -n 2 "$out"/sweep_*.log
echo "all done after $(( $(date +%s) - start )) s"
