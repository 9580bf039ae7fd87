#!/bin/bash
# Where a 2-core machine's CPU batches and workers should run. Variants, each a build of its own
# in /tmp/ab2/<variant>: base = 61a8f0d, run_here = base + ../run_here.patch
# (a submit that fills a CPU batch forms and runs it on the submitting worker), s0 / s200 = base
# with Scheduler kSearchRounds 0 / 200 (2000 in base). Alternating, 3 alternations.
cd /tmp/ab2 || exit 1
out=${OUT:-out}
mkdir -p "$out"
F='--benchmark_repetitions=3 --benchmark_report_aggregates_only=true'
for alt in 1 2 3; do
  for v in base run_here s0 s200; do
    for w in 1 2; do
      ./$v/bench_grains --workers=$w --benchmark_filter='grain_batch/cpu/(raw|telemetry_off)/256' $F \
        > "$out/${v}_w${w}_$alt.txt" 2>&1
    done
  done
done
echo ALLDONE
