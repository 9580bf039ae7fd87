# Shared by the monitoring scripts (source it; it defines functions only).
# start_silo starts `$GPUBRIDGE_CLI run --demo` with its HTTP server on a free loopback port and
# waits (bounded) for the `http: listening on <url>` line; stop_process ends a child with SIGTERM,
# then SIGKILL after a bounded wait. Callers install an EXIT trap that stops what they started.

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.5 s until it succeeds.
wait_until() {
  local limit="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${limit}s waiting for ${what}" >&2
      return 1
    fi
    sleep 0.5
  done
}

# stop_process PID NAME: SIGTERM, up to 15 s to exit, then SIGKILL. Never fails.
stop_process() {
  local pid="$1" name="$2"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "warning: $name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

silo_url_from_log() {
  SILO_URL="$(grep -m1 -oE 'http: listening on http://[^[:space:]]+' "$1" | sed 's/^http: listening on //')" || true
  [[ -n "$SILO_URL" ]]
}

# start_silo LOG [--set key=value ...]: sets SILO_PID and SILO_URL (e.g. http://127.0.0.1:41234).
start_silo() {
  local log="$1"
  shift
  [[ -n "${GPUBRIDGE_CLI:-}" ]] || fail "GPUBRIDGE_CLI is not set (the path of the gpubridge CLI)"
  [[ -x "$GPUBRIDGE_CLI" ]] || fail "GPUBRIDGE_CLI=$GPUBRIDGE_CLI is not an executable file"
  command -v curl >/dev/null || fail "curl not found (run scripts/install-deps.sh)"
  # Line-buffered stdout, so the listening line reaches the log as soon as it is printed.
  stdbuf -oL -eL "$GPUBRIDGE_CLI" run --demo --duration 60 --set http.port=0 --set telemetry.enabled=true "$@" \
    >"$log" 2>&1 &
  SILO_PID=$!
  SILO_URL=""
  local deadline=$((SECONDS + 30))
  until silo_url_from_log "$log"; do
    if ! kill -0 "$SILO_PID" 2>/dev/null; then
      wait "$SILO_PID" && rc=0 || rc=$?
      SILO_PID=""
      echo "--- silo output ---" >&2
      tail -n 40 "$log" >&2
      fail "the silo exited (status $rc) before printing 'http: listening on <url>'"
    fi
    if ((SECONDS >= deadline)); then
      echo "--- silo output ---" >&2
      tail -n 40 "$log" >&2
      fail "the silo did not print 'http: listening on <url>' within 30 s"
    fi
    sleep 0.2
  done
  echo "silo (pid $SILO_PID) listening on $SILO_URL"
}

# scrape_has_calls URL FILE: fetches URL/metrics into FILE; succeeds once it holds grain calls.
scrape_has_calls() {
  curl -fsS --max-time 5 "$1/metrics" -o "$2" 2>/dev/null && grep -q '^gpubridge_grain_calls_total' "$2"
}
