#!/usr/bin/env bash
# Name consistency against a live silo: every metric name the dashboards and the rule files use
# (recording-rule names and histogram suffixes aside) must be a family the running silo exports.
# The demo runs with a fault rule on vector.axpy so the fault, retry and fallback paths record
# their families; families that still need an event the demo cannot produce, and NVML families
# on machines without NVML, may be absent (monitoring_check.py says which and why).
# Needs: GPUBRIDGE_CLI (path of the gpubridge CLI), curl, /usr/bin/python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/silo_process.sh"

tmp="$(mktemp -d)"
SILO_PID=""
cleanup() {
  stop_process "$SILO_PID" silo
  rm -rf "$tmp"
}
trap cleanup EXIT

start_silo "$tmp/silo.log" --set "resilience.faults=backend=*,kernel=vector.axpy,mode=fail,probability=0.05"
wait_until 30 "a scrape of $SILO_URL/metrics with gpubridge_grain_calls_total" \
  scrape_has_calls "$SILO_URL" "$tmp/metrics.txt" ||
  fail "no grain calls in $SILO_URL/metrics (last scrape: $(head -c 300 "$tmp/metrics.txt" 2>/dev/null))"
# The fault rule hits about one vector.axpy execution in 20; wait (bounded) for its counter.
faults_counted() {
  curl -fsS --max-time 5 "$SILO_URL/metrics" -o "$tmp/metrics.txt" 2>/dev/null &&
    grep -q '^gpubridge_faults_injected_total' "$tmp/metrics.txt"
}
wait_until 30 "gpubridge_faults_injected_total in $SILO_URL/metrics" faults_counted ||
  fail "the fault switch was on but $SILO_URL/metrics never showed gpubridge_faults_injected_total"
/usr/bin/python3 "$here/monitoring_check.py" names-live "$tmp/metrics.txt" gpubridge_faults_injected_total
