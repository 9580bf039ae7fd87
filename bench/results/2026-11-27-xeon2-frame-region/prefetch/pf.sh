#!/bin/bash
# A/B: base = one-line prefetch of the next frame block (b14a31a), new = its first 16 lines.
cd /tmp/fr
F='--benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true'
for alt in 1 2 3; do
  for v in base new; do
    d=$([ $v = base ] && echo new || echo Q)
    ./$d/bench_grains --workers=1 --benchmark_filter='grain_batch/cpu/(grains|raw)/' $F > pf/w1_${v}_$alt.txt 2>&1
    ./$d/bench_grains --benchmark_filter='grain_batch/cpu/(grains|raw)/' $F > pf/w2_${v}_$alt.txt 2>&1
    ./$d/bench_runtime --benchmark_filter='grain_call/(pipelined|sequential)/(runtime|stateless)/' $F > pf/runtime_${v}_$alt.txt 2>&1
  done
done
echo ALLDONE
