#!/usr/bin/env bash
# Drives the silo's dashboard page in headless Chromium against a running silo (the demo
# workload) and checks that live values appear: the page refreshed itself from /api/status
# several times, shows a non-zero call rate, the health badge and the CPU device.
set -euo pipefail

cli="${GPUBRIDGE_CLI:?GPUBRIDGE_CLI must name the gpubridge binary}"
command -v chromium >/dev/null || { echo "FAIL: chromium is missing; run scripts/install-deps.sh"; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl is missing; run scripts/install-deps.sh"; exit 1; }

work="$(mktemp -d)"
silo_pid=""
cleanup() {
  if [ -n "$silo_pid" ] && kill -0 "$silo_pid" 2>/dev/null; then
    kill -TERM "$silo_pid" 2>/dev/null || true
    wait "$silo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$cli" run --demo --duration 120 --sensors 64 --callers 16 \
  --set silo.workers=2 --set http.port=0 >"$work/silo.out" 2>&1 &
silo_pid=$!

url=""
for _ in $(seq 1 300); do
  url="$(sed -n 's|^http: listening on \(http://[^ ]*\)$|\1|p' "$work/silo.out" | head -1)"
  [ -n "$url" ] && break
  kill -0 "$silo_pid" 2>/dev/null || { echo "FAIL: the silo exited early:"; cat "$work/silo.out"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "FAIL: no 'http: listening on' line within 30 s"; cat "$work/silo.out"; exit 1; }

# Let the workload and the one-second sampler produce a few samples.
for _ in $(seq 1 100); do
  if curl -fsS "$url/api/status" | grep -q '"grain_calls_per_second":[1-9]'; then break; fi
  sleep 0.2
done

timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
  --virtual-time-budget=5000 --dump-dom "$url/" >"$work/dom.html" 2>"$work/chromium.err" \
  || { echo "FAIL: chromium failed"; tail -20 "$work/chromium.err"; exit 1; }

fail=0
check() {  # check <description> <extended regex>
  if grep -Eq "$2" "$work/dom.html"; then echo "ok: $1"; else echo "FAIL: $1 (no match for $2)"; fail=1; fi
}
check "the page refreshed itself at least twice" 'data-refreshes="([2-9]|[1-9][0-9]+)"'
check "a live, non-zero grain call rate" 'id="calls-rate">[0-9.]*[1-9][0-9.]*k?M?<'
check "a batched request total" 'id="requests-total">[1-9][0-9]*<'
check "the health badge shows a status" 'id="health-status" class="badge (pass|warn)">(pass|warn)<'
check "latency percentiles" 'id="p99">[0-9.]+ (µs|ms|s)<'
check "the CPU device is listed" '<td[^>]*>cpu:0</td>'
check "health checks are listed" '<td[^>]*>kernel_smoke:cpu:0</td>'
check "no fetch error" 'id="error"></span>'
if [ "$fail" -ne 0 ]; then
  echo "--- dashboard DOM ---"; cat "$work/dom.html"
  exit 1
fi
echo "PASS"
