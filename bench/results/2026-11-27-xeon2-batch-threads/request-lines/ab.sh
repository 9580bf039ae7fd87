#!/bin/bash
# A/B of the request layout: base = faf25e9, reorder = BatchRequest's dispatcher fields first and
# together (priority, deadline, enqueue time, elements), reqpf = reorder + the CPU backend fetching
# each request's views 4 segments ahead. Builds in /tmp/ab3/<variant>; 5 alternations.
cd /tmp/ab3 || exit 1
for alt in 1 2 3 4 5; do
  for v in base reorder reqpf; do
    for w in 1 2; do
      ./$v/bench_grains --benchmark_filter='grain_batch/cpu/(raw|telemetry_off)/256' --benchmark_repetitions=3 \
        --benchmark_min_time=0.5 --benchmark_report_aggregates_only=true --workers=$w > out/${v}_w${w}_$alt.txt 2>&1
    done
  done
done
