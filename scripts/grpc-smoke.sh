#!/usr/bin/env bash
# gRPC smoke test with grpcurl, as an operator would poke the services: the
# ScheduleService of booking-service (reflection lists it, health says SERVING,
# GetAvailableSlots answers for a demo doctor, BookSlot refuses a call without a token and
# books with a patient's, who cancels it again), and the audit-service (reflection, health, and Query finds the
# record of that booking, shipped by booking-service's audit relay).
# grpcurl 1.8.6 speaks the v1alpha reflection protocol, which both services serve beside
# v1. Fails on any unexpected answer; stops what it started and drops its databases.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/test-env.sh
start_test_services

grpcurl="$(dirname "$TOOLS_PYTHON")/grpcurl"
[ -x "$grpcurl" ] || die "grpcurl is not installed in $(dirname "$TOOLS_PYTHON")"
log "building booking-service and audit-service"
cargo build --quiet --locked -p booking-service -p audit-service
booking=target/debug/booking-service
audit=target/debug/audit-service

suffix="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
db="medbook_grpc_${suffix}"
audit_db="medbook_audit_grpc_${suffix}"
work="target/grpc-smoke"
mkdir -p "$work"
pids=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    for d in "$db" "$audit_db"; do
        psql "${PG_URL_BASE}/postgres" -qc "DROP DATABASE IF EXISTS ${d} WITH (FORCE)" >/dev/null 2>&1 || true
    done
    exit "$status"
}
trap cleanup EXIT INT TERM

expect() { # expect <what> <needle> <haystack>
    grep -qF -- "$2" <<<"$3" || die "grpc smoke: $1: expected '$2' in: $3"
    log "ok: $1"
}

psql "${PG_URL_BASE}/postgres" -qc "CREATE DATABASE ${db}"
psql "${PG_URL_BASE}/postgres" -qc "CREATE DATABASE ${audit_db}"

log "starting audit-service"
MEDBOOK_PROFILE=dev MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${audit_db}" \
    MEDBOOK_GRPC__ADDR=127.0.0.1:0 MEDBOOK_HTTP__OPS_ADDR=127.0.0.1:0 \
    MEDBOOK_AUDIT__SIGNING_KEY_FILE="$work/signing-${suffix}.key" \
    "$audit" serve >"$work/audit-service.log" 2>&1 &
pids+=($!)
audit_port=$(log_field "${pids[-1]}" "$work/audit-service.log" "grpc listening" port)

log "starting booking-service"
export MEDBOOK_PROFILE=dev MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${db}"
export MEDBOOK_AUTH__JWT_SECRET="grpc-smoke-secret-of-at-least-32-bytes!"
export MEDBOOK_AUTH__BCRYPT_COST=4 MEDBOOK_BOOKING__MIN_NOTICE_MINUTES=0
export MEDBOOK_REDIS__URL="$MEDBOOK_TEST_REDIS_URL" MEDBOOK_KAFKA__BROKERS="$MEDBOOK_TEST_KAFKA_BROKERS"
export MEDBOOK_OUTBOX__RELAY_ENABLED=false
export MEDBOOK_AUDIT__ADDR="http://127.0.0.1:${audit_port}"
"$booking" migrate >/dev/null
"$booking" seed-demo >/dev/null
MEDBOOK_HTTP__ADDR=127.0.0.1:0 MEDBOOK_HTTP__OPS_ADDR=127.0.0.1:0 MEDBOOK_GRPC__ADDR=127.0.0.1:0 \
    "$booking" serve >"$work/booking-service.log" 2>&1 &
pids+=($!)
grpc_port=$(log_field "${pids[-1]}" "$work/booking-service.log" "grpc listening" grpc_port)
http_port=$(log_field "${pids[-1]}" "$work/booking-service.log" "listening" port)
schedule="127.0.0.1:${grpc_port}"

out=$("$grpcurl" -plaintext "$schedule" list)
expect "reflection lists the ScheduleService" "medbook.schedule.v1.ScheduleService" "$out"
! grep -q "AuditService" <<<"$out" || die "grpc smoke: booking-service lists a service it does not serve: $out"
out=$("$grpcurl" -plaintext "$schedule" describe medbook.schedule.v1.ScheduleService)
expect "describe shows StreamDailyAppointments" "StreamDailyAppointments" "$out"
out=$("$grpcurl" -plaintext -d '{"service":"medbook.schedule.v1.ScheduleService"}' "$schedule" grpc.health.v1.Health/Check)
expect "health says SERVING" "SERVING" "$out"

doctor=$(psql -Atc "SELECT d.id FROM doctors d JOIN slots s ON s.doctor_id = d.id AND d.status = 'active'
    WHERE s.status = 'available' AND s.starts_at > now() + interval '1 hour' LIMIT 1" "${PG_URL_BASE}/${db}")
[ -n "$doctor" ] || die "the demo data has no doctor with a free slot"
out=$("$grpcurl" -plaintext -d "{\"doctor_id\":\"${doctor}\"}" "$schedule" \
    medbook.schedule.v1.ScheduleService/GetAvailableSlots)
expect "GetAvailableSlots lists slots" '"slots"' "$out"
slot=$("$TOOLS_PYTHON" -c 'import json,sys; print(json.loads(sys.stdin.read())["slots"][0]["id"])' <<<"$out")

out=$("$grpcurl" -plaintext -d "{\"slot_id\":\"${slot}\"}" "$schedule" \
    medbook.schedule.v1.ScheduleService/BookSlot 2>&1 || true)
expect "BookSlot without a token is refused" "Unauthenticated" "$out"

# A verified demo patient books through gRPC.
token=$("$TOOLS_PYTHON" - "http://127.0.0.1:${http_port}/api/v1/auth/login" <<'PY'
import json, sys, urllib.request
body = json.dumps({"email": "patient01@demo.medbook.local", "password": "demo-patient"}).encode()
req = urllib.request.Request(sys.argv[1], data=body, headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=30))["access_token"])
PY
)
out=$("$grpcurl" -plaintext -H "authorization: Bearer ${token}" \
    -d "{\"slot_id\":\"${slot}\",\"reason\":\"grpc smoke\"}" "$schedule" \
    medbook.schedule.v1.ScheduleService/BookSlot)
expect "BookSlot books for a patient" '"status": "booked"' "$out"
appointment=$("$TOOLS_PYTHON" -c 'import json,sys; print(json.loads(sys.stdin.read())["id"])' <<<"$out")
out=$("$grpcurl" -plaintext -H "authorization: Bearer ${token}" \
    -d "{\"appointment_id\":\"${appointment}\"}" "$schedule" \
    medbook.schedule.v1.ScheduleService/CancelAppointment)
expect "CancelAppointment cancels the patient's own" '"status": "cancelled"' "$out"

audit_addr="127.0.0.1:${audit_port}"
out=$("$grpcurl" -plaintext "$audit_addr" list)
expect "reflection lists the AuditService" "medbook.audit.v1.AuditService" "$out"
! grep -q "ScheduleService" <<<"$out" || die "grpc smoke: audit-service lists a service it does not serve: $out"
out=$("$grpcurl" -plaintext -d '{"service":"medbook.audit.v1.AuditService"}' "$audit_addr" grpc.health.v1.Health/Check)
expect "audit-service health says SERVING" "SERVING" "$out"
# The gRPC booking's audit record reaches the audit-service through the relay.
deadline=$((SECONDS + 30))
until out=$("$grpcurl" -plaintext -d '{"action":"appointment.booked","entity_type":"appointment"}' \
        "$audit_addr" medbook.audit.v1.AuditService/Query) && grep -q '"source": "grpc"' <<<"$out"; do
    [ "$SECONDS" -lt "$deadline" ] || die "grpc smoke: the booking's audit record did not arrive within 30 s: $out"
    sleep 0.5
done
log "ok: the booking's audit record is in the audit log"
log "grpc smoke test passed"
