#!/bin/bash
# usage: ab.sh ROUNDS FILTER OUTDIR BIN...: runs the binaries (bench_grains builds) one after
# another for ROUNDS rounds with --benchmark_filter=FILTER --benchmark_min_time=1, keeping each
# run's output as OUTDIR/<binary>.<round>.txt, then prints per binary and case every round's
# time ratio (subject / raw, from the ratio table each run prints), sorted.
rounds=$1; filter=$2; out=$3; shift 3
mkdir -p "$out"
for r in $(seq "$rounds"); do for b in "$@"; do
  "$b" --benchmark_filter="$filter" --benchmark_min_time=1 > "$out/$(basename "$b").$r.txt" 2>&1
done; done
for b in "$@"; do
  echo "== $(basename "$b")"
  cat "$out/$(basename "$b")".*.txt | awk '/^\[/{be=$1} /^  grain_(batch|callers) /{print be, $1, $2, $7}' |
    sort -k1,3 -k4n | awk '{k=$1" "$2" "$3; v[k]=v[k]" "$4} END{for (k in v) print k ":" v[k]}' | sort
done
