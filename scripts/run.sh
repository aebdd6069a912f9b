#!/usr/bin/env bash
# Runs medbook locally: installs what is missing, starts PostgreSQL, migrates and
# serves the API on http://127.0.0.1:8080 (Swagger UI at /swagger).
# Environment variables override any setting (MEDBOOK_HTTP__ADDR, …).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_toolchain
ensure_postgres
ensure_redis
ensure_database medbook

export MEDBOOK_PROFILE="${MEDBOOK_PROFILE:-dev}"
export MEDBOOK_DATABASE__URL="${MEDBOOK_DATABASE__URL:-${PG_URL_BASE}/medbook}"
export MEDBOOK_HTTP__ADDR="${MEDBOOK_HTTP__ADDR:-127.0.0.1:8080}"
export MEDBOOK_REDIS__URL="${MEDBOOK_REDIS__URL:-${REDIS_URL}}"

log "building booking-service"
cargo build --locked -p booking-service
bin=target/debug/booking-service

"$bin" migrate >/dev/null
# Demo data on first start (does nothing once the database has clinics).
"$bin" seed-demo | grep -q '"skipped": false' && log "loaded the demo data (patients: patientNN@demo.medbook.local / demo-patient)" || true

# A development admin, so the admin endpoints can be tried at once.
admin_email="${MEDBOOK_DEV_ADMIN_EMAIL:-admin@medbook.local}"
admin_password="${MEDBOOK_DEV_ADMIN_PASSWORD:-medbook-admin}"
if MEDBOOK_ADMIN_PASSWORD="$admin_password" "$bin" create-admin --email "$admin_email" >/dev/null 2>&1; then
    log "created admin ${admin_email} / ${admin_password}"
else
    log "admin ${admin_email} already exists"
fi

log "serving on http://${MEDBOOK_HTTP__ADDR} (Swagger UI: http://${MEDBOOK_HTTP__ADDR}/swagger)"
exec "$bin" serve
