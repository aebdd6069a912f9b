#!/usr/bin/env bash
# Runs medbook locally: installs what is missing; starts PostgreSQL, Redis, the Kafka
# broker (tansu) with its topics and the mail sink (maildev); migrates, loads demo
# data, and runs booking-service (http://127.0.0.1:8080, Swagger UI at /swagger, gRPC
# ScheduleService on 127.0.0.1:50051), notification-service (emails readable at
# http://127.0.0.1:1080) and audit-service (gRPC on 127.0.0.1:50052; its dev signing key
# in .local/audit-signing.key), with a trace receiver (rotel: OTLP on 127.0.0.1:4317 and
# :4318, every span as a JSON line in .local/traces/spans.jsonl), the trace UI (Arize
# Phoenix, http://127.0.0.1:6006; MEDBOOK_TRACE_UI=off skips it) and Prometheus
# (http://127.0.0.1:9090, the deployed alert rules loaded). Ctrl-C stops them all.
# Environment variables override any setting (MEDBOOK_HTTP__ADDR, …).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source kafka/lib.sh
source scripts/lib/prometheus.sh
source scripts/lib/tracing.sh

KAFKA_PORT="${KAFKA_PORT:-9092}"
SMTP_PORT="${SMTP_PORT:-1025}"
MAIL_WEB_PORT="${MAIL_WEB_PORT:-1080}"

ensure_toolchain
ensure_postgres
ensure_redis
ensure_database medbook
ensure_database medbook_notifications
ensure_database medbook_audit
start_broker "$KAFKA_PORT"
create_topics "$KAFKA_PORT" "${KAFKA_PARTITIONS:-3}"
start_maildev "$SMTP_PORT" "$MAIL_WEB_PORT"
OTLP_GRPC_PORT="${OTLP_GRPC_PORT:-4317}"
OTLP_HTTP_PORT="${OTLP_HTTP_PORT:-4318}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
ensure_prometheus
ensure_rotel

# Each service gets the settings it reads (a key it does not know is logged as a warning).
profile="${MEDBOOK_PROFILE:-dev}"
redis_url="${MEDBOOK_REDIS__URL:-${REDIS_URL}}"
brokers="${MEDBOOK_KAFKA__BROKERS:-127.0.0.1:${KAFKA_PORT}}"
smtp_host="${MEDBOOK_SMTP__HOST:-127.0.0.1}"
smtp_port="${MEDBOOK_SMTP__PORT:-${SMTP_PORT}}"
booking_db="${MEDBOOK_DATABASE__URL:-${PG_URL_BASE}/medbook}"
notifications_db="${MEDBOOK_NOTIFICATIONS_DATABASE_URL:-${PG_URL_BASE}/medbook_notifications}"
audit_db="${MEDBOOK_AUDIT_DATABASE_URL:-${PG_URL_BASE}/medbook_audit}"
grpc_addr="${MEDBOOK_GRPC__ADDR:-127.0.0.1:50051}"
audit_addr="${MEDBOOK_AUDIT_GRPC_ADDR:-127.0.0.1:50052}"
mkdir -p .local
# The dev profile creates the key on first start; keep it, or old checkpoints no longer
# verify (see the README's audit runbook).
audit_key="${MEDBOOK_AUDIT__SIGNING_KEY_FILE:-$(pwd)/.local/audit-signing.key}"
audit_url="${MEDBOOK_AUDIT__ADDR:-http://${audit_addr}}"
http_addr="${MEDBOOK_HTTP__ADDR:-127.0.0.1:8080}"
ops_addr="${MEDBOOK_HTTP__OPS_ADDR:-127.0.0.1:9464}"
notification_addr="${MEDBOOK_NOTIFICATION_HTTP_ADDR:-127.0.0.1:8081}"
audit_ops_addr="${MEDBOOK_AUDIT_OPS_ADDR:-127.0.0.1:8082}"
# The links in verification and reset e-mails open this booking-service's own pages.
verify_url="${MEDBOOK_ACCOUNTS__VERIFY_EMAIL_URL:-http://${http_addr}/account/verify-email}"
reset_url="${MEDBOOK_ACCOUNTS__RESET_PASSWORD_URL:-http://${http_addr}/account/reset-password}"
unset MEDBOOK_PROFILE MEDBOOK_REDIS__URL MEDBOOK_KAFKA__BROKERS MEDBOOK_SMTP__HOST \
    MEDBOOK_SMTP__PORT MEDBOOK_DATABASE__URL MEDBOOK_HTTP__ADDR MEDBOOK_HTTP__OPS_ADDR \
    MEDBOOK_GRPC__ADDR MEDBOOK_AUDIT__SIGNING_KEY_FILE MEDBOOK_AUDIT__ADDR \
    MEDBOOK_ACCOUNTS__VERIFY_EMAIL_URL MEDBOOK_ACCOUNTS__RESET_PASSWORD_URL
booking_env=(MEDBOOK_PROFILE="$profile" MEDBOOK_DATABASE__URL="$booking_db"
    MEDBOOK_REDIS__URL="$redis_url" MEDBOOK_KAFKA__BROKERS="$brokers" MEDBOOK_AUDIT__ADDR="$audit_url"
    MEDBOOK_ACCOUNTS__VERIFY_EMAIL_URL="$verify_url" MEDBOOK_ACCOUNTS__RESET_PASSWORD_URL="$reset_url")
notification_env=(MEDBOOK_DATABASE__URL="$notifications_db" MEDBOOK_KAFKA__BROKERS="$brokers"
    MEDBOOK_SMTP__HOST="$smtp_host" MEDBOOK_SMTP__PORT="$smtp_port")
audit_env=(MEDBOOK_PROFILE="$profile" MEDBOOK_DATABASE__URL="$audit_db"
    MEDBOOK_AUDIT__SIGNING_KEY_FILE="$audit_key"
    MEDBOOK_AUDIT__VERIFY_STATE_FILE="$(pwd)/.local/audit-verify-state.json")

# The trace UI starts first: it takes half a minute, which the build and migrations hide.
pids=()
stop() {
    trap - INT TERM EXIT
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT
TRACE_UI_PORT="${TRACE_UI_PORT:-6006}"
trace_ui=
if [ "${MEDBOOK_TRACE_UI:-phoenix}" = off ]; then
    log "trace UI off (MEDBOOK_TRACE_UI=off): spans only in .local/traces/spans.jsonl"
elif port_open "$TRACE_UI_PORT"; then
    log "something already listens on 127.0.0.1:${TRACE_UI_PORT}; not starting the trace UI"
else
    start_phoenix "$TRACE_UI_PORT" "${PHOENIX_GRPC_PORT:-4319}" .local/phoenix
    pids+=("$PHOENIX_PID")
    trace_ui="http://127.0.0.1:${TRACE_UI_PORT}"
fi

log "building the services"
cargo build --locked -p booking-service -p notification-service -p audit-service
booking=target/debug/booking-service
notification=target/debug/notification-service
audit=target/debug/audit-service

env "${booking_env[@]}" "$booking" migrate >/dev/null
env "${notification_env[@]}" "$notification" migrate
env "${audit_env[@]}" "$audit" migrate >/dev/null
# Demo data on first start (does nothing once the database has clinics).
# (The report is read whole: `grep -q` on the pipe would cut the command off.)
seeded=$(env "${booking_env[@]}" "$booking" seed-demo)
grep -q '"skipped": false' <<<"$seeded" \
    && log "loaded the demo data (patients: patientNN@demo.medbook.local / demo-patient)" || true

# A development admin, so the admin endpoints can be tried at once.
admin_email="${MEDBOOK_DEV_ADMIN_EMAIL:-admin@medbook.local}"
admin_password="${MEDBOOK_DEV_ADMIN_PASSWORD:-clinic-console-2026}"
if env "${booking_env[@]}" MEDBOOK_ADMIN_PASSWORD="$admin_password" \
    "$booking" create-admin --email "$admin_email" >/dev/null 2>&1; then
    log "created admin ${admin_email} / ${admin_password}"
else
    log "admin ${admin_email} already exists"
fi

# Spans go to the local receiver (or to a collector already listening there), which
# writes each as a JSON line and forwards them to the trace UI.
otlp="${MEDBOOK_TRACING__OTLP_ENDPOINT:-http://127.0.0.1:${OTLP_GRPC_PORT}}"
unset MEDBOOK_TRACING__OTLP_ENDPOINT
if [ -n "$trace_ui" ]; then
    log "waiting for the trace UI (Phoenix) at ${trace_ui}"
    wait_phoenix
fi
if port_open "$OTLP_GRPC_PORT"; then
    log "an OTLP collector already listens on 127.0.0.1:${OTLP_GRPC_PORT}; spans go there"
else
    start_rotel "$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT" .local/traces/spans.jsonl "$trace_ui"
    pids+=("$ROTEL_PID")
fi

env "${audit_env[@]}" MEDBOOK_TRACING__OTLP_ENDPOINT="$otlp" MEDBOOK_GRPC__ADDR="$audit_addr" \
    MEDBOOK_HTTP__OPS_ADDR="$audit_ops_addr" "$audit" serve &
pids+=($!)
env "${notification_env[@]}" MEDBOOK_TRACING__OTLP_ENDPOINT="$otlp" \
    MEDBOOK_HTTP__ADDR="$notification_addr" "$notification" serve &
pids+=($!)
env "${booking_env[@]}" MEDBOOK_TRACING__OTLP_ENDPOINT="$otlp" MEDBOOK_HTTP__ADDR="$http_addr" \
    MEDBOOK_HTTP__OPS_ADDR="$ops_addr" MEDBOOK_GRPC__ADDR="$grpc_addr" "$booking" serve &
pids+=($!)
if port_open "$PROMETHEUS_PORT"; then
    log "something already listens on 127.0.0.1:${PROMETHEUS_PORT}; not starting Prometheus"
else
    start_prometheus "$PROMETHEUS_PORT" "${ops_addr##*:}" "${notification_addr##*:}" \
        "${audit_ops_addr##*:}" .local/prometheus
    pids+=("$PROMETHEUS_PID")
fi

log "booking-service: http://${http_addr} (Swagger UI: http://${http_addr}/swagger)"
log "booking-service metrics and readiness (operators only): http://${ops_addr}/metrics, /ready"
log "booking-service gRPC ScheduleService: ${grpc_addr} (grpcurl -plaintext ${grpc_addr} list)"
log "audit-service gRPC: ${audit_addr}; verify the log: MEDBOOK_DATABASE__URL=${audit_db} MEDBOOK_PROFILE=${profile} ${audit} verify"
log "emails sent to patients: http://127.0.0.1:${MAIL_WEB_PORT}"
[ -n "$trace_ui" ] && log "traces: ${trace_ui} (Phoenix: Projects → default → a trace's spans)"
log "traces, one JSON line per span: .local/traces/spans.jsonl (grep a log line's trace_id); OTLP at ${otlp}"
log "Prometheus: http://127.0.0.1:${PROMETHEUS_PORT} (alerts: /alerts; dashboards for Grafana in deploy/grafana)"
# Runs until Ctrl-C, or until either service exits.
wait -n "${pids[@]}"
