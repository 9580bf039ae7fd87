#!/usr/bin/env bash
# bench-ab.sh [--rounds N] [--min-time S] [--counter NAME] --filter REGEX BINARY...: compares
# builds of one Google Benchmark program on a shared machine. Runs the binaries one after another,
# N rounds (default 5), each with --benchmark_filter=REGEX and --benchmark_min_time=S (default
# 1.5), so that the machine's drift over minutes falls on every build alike; then prints, per
# benchmark and binary, every round's value of the counter (default items_per_second; e.g. a
# ratio-report counter such as p50_ns) sorted, and their median. Binaries are named by their
# path. A binary that fails, or a benchmark without the counter, is an error (exit 1).
set -euo pipefail
rounds=5 min_time=1.5 counter=items_per_second filter=
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --min-time) min_time=$2; shift 2 ;;
    --counter) counter=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ -z "$filter" ] || [ $# -eq 0 ]; then
  echo "usage: $0 [--rounds N] [--min-time S] [--counter NAME] --filter REGEX BINARY..." >&2
  exit 2
fi
case "$rounds" in '' | *[!0-9]* | 0) echo "--rounds takes a positive integer" >&2; exit 2 ;; esac
for b in "$@"; do [ -x "$b" ] || { echo "$b: not an executable" >&2; exit 2; }; done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
i=0
for r in $(seq "$rounds"); do
  for b in "$@"; do
    i=$((i + 1))
    if ! "$b" --benchmark_filter="$filter" --benchmark_min_time="$min_time" \
         --benchmark_out="$out/$i.json" --benchmark_out_format=json > "$out/$i.log" 2>&1; then
      echo "$b failed in round $r:" >&2
      tail -5 "$out/$i.log" >&2
      exit 1
    fi
    printf '%s\t%s\n' "$b" "$out/$i.json" >> "$out/index"
  done
done

/usr/bin/python3 - "$out/index" "$counter" <<'EOF'
import json, statistics, sys
index, counter = sys.argv[1], sys.argv[2]
values = {}  # (benchmark, binary) -> [value per round]
order = []
for line in open(index):
    binary, path = line.rstrip("\n").split("\t")
    try:
        report = json.load(open(path))
    except ValueError:  # the program wrote nothing: no benchmark matched
        report = {}
    for b in report.get("benchmarks", []):
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        if counter not in b:
            sys.exit(f"{b['name']} has no counter {counter}")
        key = (b["name"], binary)
        if key not in values:
            values[key] = []
            order.append(key)
        values[key].append(float(b[counter]))
if not values:
    sys.exit("no benchmark ran: check the filter")
for name in dict.fromkeys(k[0] for k in order):
    print(name)
    for key in (k for k in order if k[0] == name):
        v = sorted(values[key])
        print(f"  {key[1]}: " + " ".join(f"{x:.4g}" for x in v) + f"  median {statistics.median(v):.4g}")
EOF
