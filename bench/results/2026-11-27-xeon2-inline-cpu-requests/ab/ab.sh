#!/bin/bash
# A/B of bench_grains (official mixed run, then one worker) and the demo: base vs new, alternating.
set -u
bin=/tmp/abi
out=${OUT:-$bin/out}; mkdir -p $out
for i in 1 2 3; do
  for v in base new; do
    $bin/$v/bench_grains --benchmark_repetitions=7 --benchmark_enable_random_interleaving=true \
      --benchmark_min_time=0.3 --benchmark_report_aggregates_only=true \
      --benchmark_filter='grain_batch/(cpu|opencl)/(grains|telemetry_off|raw)' \
      --ratio_out=$out/ratios_${v}_$i.json > $out/bench_grains_${v}_$i.txt 2>&1
  done
done
for i in 1 2; do
  for v in base new; do
    $bin/$v/bench_grains --workers=1 --benchmark_repetitions=5 --benchmark_min_time=0.3 --benchmark_report_aggregates_only=true \
      --benchmark_filter='grain_batch/cpu/(grains|raw)' --ratio_out=$out/ratios_w1_${v}_$i.json > $out/bench_grains_w1_${v}_$i.txt 2>&1
  done
done
for i in 1 2; do
  for v in base new; do
    $bin/$v/gpubridge run --demo --duration 5 --set http.port=0 > $out/demo_${v}_$i.txt 2>&1
  done
done
echo finished > $out/done
