#!/usr/bin/env bash
# The real Prometheus scrapes a running silo: a generated config (1 s scrape and evaluation, the
# project's rule files) on a free loopback port with a temporary TSDB. Passes when
# gpubridge_build_info and gpubridge_grain_calls_total come back from the query API, the target is
# up, the rule files loaded, and a recording rule produced a value. Both processes are always
# stopped (EXIT trap). Needs: GPUBRIDGE_CLI, prometheus, curl, /usr/bin/python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/silo_process.sh"

command -v prometheus >/dev/null || fail "prometheus not found (Debian package 'prometheus'; run scripts/install-deps.sh)"

tmp="$(mktemp -d)"
SILO_PID=""
PROM_PID=""
cleanup() {
  stop_process "$PROM_PID" prometheus
  stop_process "$SILO_PID" silo
  rm -rf "$tmp"
}
trap cleanup EXIT

# query_result QUERY: prints the first sample's value; fails when the result is empty.
query_result() {
  curl -fsS --max-time 5 --get --data-urlencode "query=$1" "$PROM_URL/api/v1/query" 2>/dev/null |
    /usr/bin/python3 -c '
import json, sys
try:
    body = json.load(sys.stdin)
except ValueError:
    sys.exit(1)  # no answer yet (curl failed) or not JSON
result = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
if not result:
    sys.exit(1)
print(result[0]["value"][1])'
}

start_silo "$tmp/silo.log"
target="${SILO_URL#http://}"
target="${target%%/*}"

port="$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
PROM_URL="http://127.0.0.1:$port"
cat >"$tmp/prometheus.yml" <<CONFIG
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $root/monitoring/prometheus/rules/recording.yml
  - $root/monitoring/prometheus/rules/alerts.yml
scrape_configs:
  - job_name: gpubridge
    static_configs:
      - targets: ["$target"]
CONFIG

prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" >"$tmp/prometheus.log" 2>&1 &
PROM_PID=$!
echo "prometheus (pid $PROM_PID) on $PROM_URL scraping $target"

prometheus_alive() { kill -0 "$PROM_PID" 2>/dev/null; }
show_logs() {
  echo "--- prometheus log ---" >&2; tail -n 30 "$tmp/prometheus.log" >&2
  echo "--- silo output ---" >&2; tail -n 20 "$tmp/silo.log" >&2
}
build_info_scraped() {
  prometheus_alive || { show_logs; fail "prometheus exited early"; }
  query_result gpubridge_build_info >/dev/null
}
wait_until 60 "gpubridge_build_info in $PROM_URL" build_info_scraped || { show_logs; fail "Prometheus never returned gpubridge_build_info"; }

value="$(query_result 'sum(gpubridge_grain_calls_total)')" || { show_logs; fail "no value for gpubridge_grain_calls_total"; }
echo "gpubridge_grain_calls_total (sum): $value"
up="$(query_result 'up{job="gpubridge"}')" || fail "no up series for the silo"
[[ "$up" == "1" ]] || fail "the silo's target is not up (up=$up)"

curl -fsS --max-time 5 "$PROM_URL/api/v1/rules" -o "$tmp/rules.json" || fail "GET /api/v1/rules failed"
/usr/bin/python3 - "$tmp/rules.json" "$root/monitoring/prometheus/rules/alerts.yml" <<'PY' || fail "rule files not loaded as expected"
import json, re, sys
loaded = {r["name"] for g in json.load(open(sys.argv[1]))["data"]["groups"] for r in g["rules"]}
wanted = set(re.findall(r"^\s*-\s*alert:\s*(\S+)", open(sys.argv[2]).read(), re.M))
missing = wanted - loaded
if missing or not wanted:
    print(f"alerts not loaded: {sorted(missing)}", file=sys.stderr)
    sys.exit(1)
print(f"{len(loaded)} rules loaded")
PY

wait_until 30 "gpubridge_silo:grain_calls:rate5m" query_result 'gpubridge_silo:grain_calls:rate5m' >/dev/null ||
  { show_logs; fail "the recording rule gpubridge_silo:grain_calls:rate5m never produced a value"; }
echo "gpubridge_silo:grain_calls:rate5m: $(query_result 'gpubridge_silo:grain_calls:rate5m')"
echo "prometheus scrape test: ok"
