#!/usr/bin/env bash
# thread-cpu.sh [--at S] [--for S] -- COMMAND...: runs COMMAND and reports how busy each of its
# threads was between S and S + D seconds after the start (defaults 3 and 4), in cores, summed by
# thread name with trailing digits dropped (GpuBridge names its threads gb-<role>[-N]; see
# include/gpubridge/core/thread_name.hpp). Linux only (/proc). COMMAND's own output goes to stderr.
set -euo pipefail
at=3 span=4
while [ $# -gt 0 ]; do
  case "$1" in
    --at) at=$2; shift 2 ;;
    --for) span=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--at S] [--for S] -- COMMAND..." >&2; exit 2; }

"$@" >&2 &
pid=$!
ticks=$(getconf CLK_TCK)
snapshot() {  # tid name utime+stime, one line per live thread
  local t
  for t in /proc/$pid/task/*; do
    [ -r "$t/stat" ] || continue
    # comm may hold spaces: the fields after the closing parenthesis are fixed.
    awk -v tid="${t##*/}" -v name="$(tr ' ' '_' < "$t/comm" 2>/dev/null)" \
      '{ sub(/^.*\) /, ""); print tid, name, $12 + $13 }' "$t/stat" 2>/dev/null || true
  done
}
sleep "$at"
kill -0 "$pid" 2>/dev/null || { wait "$pid"; echo "thread-cpu: the command ended before ${at} s" >&2; exit 1; }
before=$(snapshot); t0=$(date +%s.%N)
sleep "$span"
after=$(snapshot); t1=$(date +%s.%N)
wait "$pid" || true
join <(sort <<<"$before") <(sort <<<"$after") |
  awk -v t0="$t0" -v t1="$t1" -v hz="$ticks" '
    BEGIN { dt = t1 - t0 }
    { role = $2; sub(/-?[0-9]+$/, "", role); busy[role] += ($5 - $3) / hz / dt; n[role]++ }
    END { for (r in busy) printf "%-16s %3d thread(s) %6.2f cores\n", r, n[r], busy[r] }' | sort -k4 -rn
