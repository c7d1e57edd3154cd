#!/bin/bash
# Issue 25's idle-box figures: 3 runs each of one-thread CPU time and 2-thread wall time, ResNet-20 then ResNet-18.
# Usage: run.sh MODEL ; writes /work/coord/int8idle/<model>_<clock>_<run>.json and a log line per run.
cd /work/main
PY=/work/main/.venv/bin/python
model=$1; rep=$2
for run in 1 2 3; do
  for clock in thread wall; do
    if [ $clock = thread ]; then t="--threads 1"; else t="--threads 2"; fi
    echo "== $model $clock run $run start $(date -u +%T) $(uptime)"
    $PY benchmarks/bench_int8.py models --clock $clock $t --repeats $rep --models $model --no-progress \
      --json /work/coord/int8idle/${model}_${clock}_${run}.json > /work/coord/int8idle/${model}_${clock}_${run}.log 2>&1
    echo "== $model $clock run $run end $(date -u +%T) rc=$? $(uptime)"
  done
done
