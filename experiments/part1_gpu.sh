#!/usr/bin/env bash
# The Part 1 sweep and benchmark as run on a lent GPU machine (one H100), with that machine's own
# python3 and torch. Usage: bash experiments/part1_gpu.sh OUT_DIR [SEEDS...]
# Both sweeps run at the same time (one process each: each is limited by kernel launches, not by
# the GPU's arithmetic), then the benchmark runs alone. Results and logs go to OUT_DIR.
set -u
out=${1:?usage: part1_gpu.sh OUT_DIR [SEEDS...]}; shift
seeds=${*:-0 1 2 3 4}
work=/tmp/part1_sweep  # checkpoints stay here; only the result files go to OUT_DIR
export PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, tqdm; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(), tqdm.__version__)"
start=$(date +%s)
for model in rnn lstm; do
  timeout "${SWEEP_TIMEOUT:-330}" python3 -m experiments.part1_sweep --models $model --input-lengths 5-20 \
    --seeds $seeds --steps "${STEPS:-10000}" --device cuda --out $work > "$out/sweep_$model.log" 2>&1 &
done
wait
echo "sweeps done after $(( $(date +%s) - start )) s"
cp $work/rnn.json $work/lstm.json "$out"/
tail -n 2 "$out"/sweep_*.log
timeout "${BENCH_TIMEOUT:-120}" python3 -m experiments.part1_benchmark --device cuda --out "$out/benchmark_gpu.json" 2>&1 \
  | tee "$out/benchmark_gpu.log"
timeout 60 python3 -m experiments.part1_benchmark --device cuda --seeds 0 1 2 3 4 --no-separate \
  --out "$out/benchmark_gpu_5seeds.json" 2>&1 | tail -n 4
echo "all done after $(( $(date +%s) - start )) s"
