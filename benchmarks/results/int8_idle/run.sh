#!/bin/bash
# Issue 25's idle-box figures (RESULTS 8.5): 3 runs, each of one-thread CPU time and 2-thread wall
# time, of one model. Usage, from the repository root on an idle box:
#   benchmarks/results/int8_idle/run.sh resnet20 7; benchmarks/results/int8_idle/run.sh resnet18 5
# Writes benchmarks/results/int8_idle/<model>_<clock>_<run>.json and prints a line per run with the load.
set -u
out=benchmarks/results/int8_idle
PY=${PY:-.venv/bin/python}
model=$1; rep=$2
for run in 1 2 3; do
  for clock in thread wall; do
    if [ "$clock" = thread ]; then t="--threads 1"; else t="--threads 2"; fi
    echo "== $model $clock run $run start $(date -u +%T) $(uptime)"
    $PY benchmarks/bench_int8.py models --clock $clock $t --repeats "$rep" --models "$model" --no-progress \
      --json "$out/${model}_${clock}_${run}.json" > "$out/${model}_${clock}_${run}.log" 2>&1
    echo "== $model $clock run $run end $(date -u +%T) rc=$? $(uptime)"
  done
done
