#!/usr/bin/env bash
# Checks the monitoring deliverables of deploy/: promtool on the Prometheus configuration
# (deployed and local), the rules and their unit tests; then every expression of the
# Grafana dashboards parses, against a throw-away Prometheus on PROMETHEUS_CHECK_PORT
# (default 19090). Installs Prometheus (Debian's package) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/prometheus.sh

trap stop_prometheus EXIT
ensure_prometheus
check_prometheus_config
check_dashboards_parse "${PROMETHEUS_CHECK_PORT:-19090}" target/prometheus-check
log "monitoring configuration OK"
