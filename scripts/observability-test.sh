#!/usr/bin/env bash
# Observability test: the whole system (booking-, notification- and audit-service on
# fresh databases, the test broker and mail sink) exporting spans to a real OTLP
# receiver (rotel) and scraped by a real Prometheus. It books with a known traceparent
# and checks the trace across every hop (scripts/observability/e2e.py), then runs every
# Grafana panel's PromQL against the live Prometheus: each must parse and return series
# (scripts/observability/check_dashboards.py). Last, with the receiver frozen (SIGSTOP:
# a dead collector), requests still succeed at once and booking-service still stops
# within its export timeout.
#
# Called by scripts/test.sh; runs on its own too. Logs and spans go to target/observability.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/test-env.sh
source scripts/lib/prometheus.sh
source scripts/lib/tracing.sh
start_test_services
ensure_prometheus
ensure_rotel
grpcurl="$(dirname "$TOOLS_PYTHON")/grpcurl"
[ -x "$grpcurl" ] || die "grpcurl is not installed in $(dirname "$TOOLS_PYTHON")"

out=target/observability
rm -rf "$out"
mkdir -p "$out"
log "building the services"
cargo build --quiet --locked -p booking-service -p notification-service -p audit-service
booking=target/debug/booking-service
notification=target/debug/notification-service
audit=target/debug/audit-service

free_port() { "$TOOLS_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
otlp_grpc=$(free_port); otlp_http=$(free_port)
http_port=$(free_port); booking_ops=$(free_port); schedule_port=$(free_port)
audit_grpc=$(free_port); audit_ops=$(free_port); notification_ops=$(free_port)
prometheus_port=$(free_port)

run_id="obs$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
db="medbook_${run_id}"
pids=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -n "${ROTEL_PID:-}" ] && kill -CONT "$ROTEL_PID" 2>/dev/null
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for d in "$db" "${db}_notifications" "${db}_audit"; do
        psql "${PG_URL_BASE}/postgres" -qc "DROP DATABASE IF EXISTS ${d} WITH (FORCE)" >/dev/null 2>&1 || true
    done
    exit "$status"
}
trap cleanup EXIT INT TERM

log "starting the trace receiver (rotel, OTLP gRPC ${otlp_grpc}, spans in ${out}/spans.jsonl)"
start_rotel "$otlp_grpc" "$otlp_http" "$out/spans.jsonl"
pids+=("$ROTEL_PID")

for d in "$db" "${db}_notifications" "${db}_audit"; do
    psql "${PG_URL_BASE}/postgres" -qc "CREATE DATABASE ${d}"
done
create_topics "$TEST_KAFKA_PORT" 2 "${run_id}." >/dev/null

export MEDBOOK_PROFILE=dev
export MEDBOOK_REDIS__URL="$MEDBOOK_TEST_REDIS_URL"
export MEDBOOK_KAFKA__BROKERS="$MEDBOOK_TEST_KAFKA_BROKERS"
export MEDBOOK_KAFKA__TOPIC_PREFIX="${run_id}."
export MEDBOOK_TRACING__OTLP_ENDPOINT="http://127.0.0.1:${otlp_grpc}"
export MEDBOOK_TRACING__SAMPLE_RATIO=1.0
# Short batches, so spans are readable soon after the request.
export OTEL_BSP_SCHEDULE_DELAY=500
export MEDBOOK_LOG__LEVEL=info

MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${db}" "$booking" migrate >/dev/null
MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${db}" "$booking" seed-demo >/dev/null
MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${db}" MEDBOOK_ADMIN_PASSWORD=violet-lantern-meadow \
    "$booking" create-admin --email admin@e2e.medbook.test >/dev/null

log "starting audit-service, notification-service and booking-service (logs in ${out})"
MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${db}_audit" MEDBOOK_GRPC__ADDR="127.0.0.1:${audit_grpc}" \
    MEDBOOK_HTTP__OPS_ADDR="127.0.0.1:${audit_ops}" MEDBOOK_AUDIT__SIGNING_KEY_FILE="$(pwd)/${out}/audit.key" \
    "$audit" serve >"$out/audit-service.log" 2>&1 &
pids+=($!)
MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${db}_notifications" MEDBOOK_HTTP__ADDR="127.0.0.1:${notification_ops}" \
    MEDBOOK_SMTP__HOST=127.0.0.1 MEDBOOK_SMTP__PORT="$MEDBOOK_TEST_SMTP_PORT" \
    MEDBOOK_CONSUMER__GROUP_ID="notification-${run_id}" \
    "$notification" serve >"$out/notification-service.log" 2>&1 &
pids+=($!)
MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${db}" MEDBOOK_HTTP__ADDR="127.0.0.1:${http_port}" \
    MEDBOOK_HTTP__OPS_ADDR="127.0.0.1:${booking_ops}" MEDBOOK_GRPC__ADDR="127.0.0.1:${schedule_port}" \
    MEDBOOK_AUDIT__ADDR="http://127.0.0.1:${audit_grpc}" \
    "$booking" serve >"$out/booking-service.log" 2>&1 &
booking_pid=$!
pids+=("$booking_pid")
for port in "$audit_grpc" "$notification_ops" "$http_port" "$schedule_port"; do
    deadline=$((SECONDS + 60))
    until port_open "$port"; do
        [ "$SECONDS" -lt "$deadline" ] || die "nothing listens on ${port} after 60 s; see ${out}/*.log"
        sleep 0.2
    done
done

log "container health checks: each binary's healthcheck against its running process"
MEDBOOK_HTTP__OPS_ADDR="0.0.0.0:${booking_ops}" "$booking" healthcheck \
    || die "booking-service healthcheck failed against a running booking-service"
MEDBOOK_HTTP__ADDR="0.0.0.0:${notification_ops}" "$notification" healthcheck \
    || die "notification-service healthcheck failed against a running notification-service"
MEDBOOK_HTTP__OPS_ADDR="127.0.0.1:${audit_ops}" "$audit" healthcheck \
    || die "audit-service healthcheck failed against a running audit-service"

log "starting Prometheus on ${prometheus_port} (scraping every second)"
PROMETHEUS_SCRAPE_INTERVAL=1s start_prometheus "$prometheus_port" "$booking_ops" "$notification_ops" "$audit_ops" "$out/prometheus"
pids+=("$PROMETHEUS_PID")

# Five free slots of one active doctor, far enough ahead for the booking rules.
read -r doctor slots < <(psql -At -F ' ' -c "
    SELECT s.doctor_id, string_agg(s.id::text, ',' ORDER BY s.starts_at)
    FROM (SELECT s.* FROM slots s JOIN doctors d ON d.id = s.doctor_id AND d.status = 'active'
          WHERE s.status = 'available' AND s.starts_at > now() + interval '1 day'
            AND s.starts_at < now() + interval '20 days') s
    GROUP BY s.doctor_id HAVING count(*) >= 5 LIMIT 1" "${PG_URL_BASE}/${db}")
[ -n "${doctor:-}" ] || die "the demo data has no active doctor with five free slots"

log "trace check"
"$TOOLS_PYTHON" scripts/observability/e2e.py --api "http://127.0.0.1:${http_port}" \
    --spans "$out/spans.jsonl" --grpcurl "$grpcurl" --grpc "127.0.0.1:${schedule_port}" \
    --doctor "$doctor" --slots "$slots" --booking-log "$out/booking-service.log" \
    --notification-log "$out/notification-service.log" --audit-log "$out/audit-service.log"

log "dashboard check: every panel's PromQL against the live Prometheus"
"$TOOLS_PYTHON" scripts/observability/check_dashboards.py \
    --prometheus "http://127.0.0.1:${prometheus_port}" --rate-interval 1m --deadline 120

log "a dead collector: the receiver frozen (SIGSTOP)"
kill -STOP "$ROTEL_PID"
"$TOOLS_PYTHON" - "http://127.0.0.1:${http_port}" <<'PY'
import sys, time, urllib.request
slowest = 0.0
for i in range(50):
    start = time.monotonic()
    with urllib.request.urlopen(sys.argv[1] + "/api/v1/doctors?per_page=5", timeout=10) as r:
        assert r.status == 200, r.status
    slowest = max(slowest, time.monotonic() - start)
# A generous bound: an export that blocked requests would take the 3 s export timeout.
if slowest > 2.0:
    sys.exit(f"FAIL a request took {slowest:.2f} s while the collector was frozen")
print(f"ok   50 requests answered while the collector was frozen; slowest {slowest * 1000:.0f} ms")
PY
start=$SECONDS
kill -TERM "$booking_pid"
wait "$booking_pid" || die "booking-service exited non-zero on SIGTERM with the collector frozen"
took=$((SECONDS - start))
# The grace period (30 s) would only be used by open requests; the flush waits at most
# the export timeout (3 s).
[ "$took" -le 15 ] || die "booking-service took ${took} s to stop with the collector frozen"
log "ok   booking-service stopped in ${took} s with the collector frozen"
if MEDBOOK_HTTP__OPS_ADDR="127.0.0.1:${booking_ops}" "$booking" healthcheck --timeout-ms 1000 \
    >/dev/null 2>&1; then
    die "booking-service healthcheck passed with booking-service stopped"
fi
log "ok   healthcheck fails once booking-service has stopped"
kill -CONT "$ROTEL_PID"
echo "observability test passed"
