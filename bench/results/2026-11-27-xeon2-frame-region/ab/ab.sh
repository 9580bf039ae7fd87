#!/bin/bash
# A/B of the frame region: base = 5b247c5, new = working tree. Alternating, 3 alternations.
cd /tmp/fr
F='--benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true'
for alt in 1 2 3; do
  for v in base new; do
    ./$v/bench_grains --benchmark_filter='grain_batch/cpu/(grains|raw)/256' $F > out/alone256_${v}_$alt.txt 2>&1
    ./$v/bench_grains --benchmark_filter='grain_batch/cpu/(grains/4096|telemetry_off/256)' $F > out/after4096_${v}_$alt.txt 2>&1
    ./$v/bench_grains --workers=1 --benchmark_filter='grain_batch/(cpu|opencl)/(grains|raw)/' $F > out/w1_${v}_$alt.txt 2>&1
    ./$v/bench_runtime --benchmark_filter='grain_call/(pipelined|sequential)/(runtime|stateless)' $F > out/runtime_${v}_$alt.txt 2>&1
  done
done
for alt in 1 2; do
  for v in base new; do
    ./$v/bench_grains --benchmark_repetitions=7 --benchmark_enable_random_interleaving=true \
      --benchmark_min_time=0.3 --benchmark_report_aggregates_only=true \
      --benchmark_filter='grain_batch/(cpu|opencl)/(grains|telemetry_off|raw)' --ratio_out=out/mixed_${v}_$alt.json > out/mixed_${v}_$alt.txt 2>&1
  done
done
echo ALLDONE
