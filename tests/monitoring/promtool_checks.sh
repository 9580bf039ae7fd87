#!/usr/bin/env bash
# promtool checks of monitoring/prometheus: `rules` (syntax of both rule files), `config`
# (prometheus.yml and the rule files it loads), `unit` (promtool unit tests in tests/*.yml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prom="$root/monitoring/prometheus"
command -v promtool >/dev/null || { echo "FAIL: promtool not found (Debian package 'prometheus'; run scripts/install-deps.sh)" >&2; exit 1; }
case "${1:-}" in
  rules) promtool check rules "$prom/rules/recording.yml" "$prom/rules/alerts.yml" ;;
  config) promtool check config "$prom/prometheus.yml" ;;
  unit)
    shopt -s nullglob
    tests=("$prom"/tests/*.yml)
    ((${#tests[@]} > 0)) || { echo "FAIL: no promtool tests in $prom/tests" >&2; exit 1; }
    promtool test rules "${tests[@]}"
    ;;
  *) echo "usage: $0 rules|config|unit" >&2; exit 2 ;;
esac
