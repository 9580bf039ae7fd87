#!/bin/bash
# usage: ab.sh filter rounds binA binB ...
f=$1; n=$2; shift 2
for r in $(seq $n); do for b in "$@"; do
  v=$($b --benchmark_filter="$f" --benchmark_min_time=1.5 2>&1 | grep -E "^grain_batch/" | sed -E 's/.*items_per_second=([0-9.]+[kM])\/s.*/\1/' | tr '\n' ' ')
  echo "$(basename $b) $v"
done; done
