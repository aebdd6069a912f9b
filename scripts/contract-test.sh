#!/usr/bin/env bash
# Contract test: runs schemathesis against a live booking-service, as a client
# generator would use the API. The service runs on a fresh database (migrated, demo data
# loaded, one admin and one verified patient) and is stopped, and its database dropped,
# on exit. schemathesis runs three times — anonymous, as the patient, as the admin — with
# every check, positive and negative data, and a cap on the examples so the three runs
# stay within a few minutes. Any failure, or a missing tool, fails the script.
#
# Called by scripts/test.sh; runs on its own too (it starts what it needs). Variables:
#   CONTRACT_MAX_EXAMPLES    test cases per operation and phase (default 100)
#   CONTRACT_SEED            schemathesis seed (default fixed, so a run can be repeated)
#   CONTRACT_RUN_LIMIT_SECS  time limit of one run (default 240); past it the run fails
#   CONTRACT_REPORT_DIR      where logs and JUnit reports go (default target/contract)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/test-env.sh
start_test_services

max_examples="${CONTRACT_MAX_EXAMPLES:-100}"
seed="${CONTRACT_SEED:-20260101}"
# Seconds one run may take (about 40 s on two cores with 100 examples).
run_limit="${CONTRACT_RUN_LIMIT_SECS:-240}"
report_dir="${CONTRACT_REPORT_DIR:-target/contract}"
schemathesis="$(dirname "$TOOLS_PYTHON")/schemathesis"
[ -x "$schemathesis" ] || die "schemathesis is not installed in $(dirname "$TOOLS_PYTHON")"

log "building booking-service and audit-service"
cargo build --quiet --locked -p booking-service -p audit-service
booking=target/debug/booking-service
audit=target/debug/audit-service
[ -x "$booking" ] || die "booking-service was not built ($booking is missing)"
[ -x "$audit" ] || die "audit-service was not built ($audit is missing)"

db="medbook_contract_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
db_url="${PG_URL_BASE}/${db}"
audit_db="${db}_audit"
mkdir -p "$report_dir"
service_log="$report_dir/booking-service.log"
audit_log="$report_dir/audit-service.log"
service_pid=
audit_pid=

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in $service_pid $audit_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for d in "$db" "$audit_db"; do
        psql "${PG_URL_BASE}/postgres" -qc "DROP DATABASE IF EXISTS ${d} WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -f "$report_dir/audit-signing.key"
    exit "$status"
}
trap cleanup EXIT INT TERM

# The service's settings for this run: dev profile (cheap bcrypt), the test Redis and
# broker, no relay (events stay in the outbox), and limits that let schemathesis hammer
# registration and login without being locked out (the limits have their own tests).
export MEDBOOK_PROFILE=dev
export MEDBOOK_DATABASE__URL="$db_url"
export MEDBOOK_HTTP__ADDR=127.0.0.1:0
export MEDBOOK_HTTP__OPS_ADDR=127.0.0.1:0
export MEDBOOK_GRPC__ADDR=127.0.0.1:0
export MEDBOOK_AUTH__JWT_SECRET="contract-test-secret-of-at-least-32-bytes"
export MEDBOOK_AUTH__BCRYPT_COST=4
export MEDBOOK_AUTH__LOGIN__MAX_FAILURES_PER_CLIENT=1000000
export MEDBOOK_ACCOUNTS__RESPONSE_FLOOR_MS=20
export MEDBOOK_ACCOUNTS__REQUESTS_PER_CLIENT=1000000
export MEDBOOK_REDIS__URL="$MEDBOOK_TEST_REDIS_URL"
export MEDBOOK_KAFKA__BROKERS="$MEDBOOK_TEST_KAFKA_BROKERS"
export MEDBOOK_OUTBOX__RELAY_ENABLED=false
export MEDBOOK_LOG__LEVEL=warn

log "preparing database ${db}"
psql "${PG_URL_BASE}/postgres" -qc "CREATE DATABASE ${db}"
"$booking" migrate >/dev/null
"$booking" seed-demo >/dev/null
admin_email=admin@contract.medbook.test
admin_password=violet-lantern-meadow
MEDBOOK_ADMIN_PASSWORD="$admin_password" "$booking" create-admin --email "$admin_email" >/dev/null

# The audit-service answers GET /api/v1/audit (and takes the audit records).
log "starting audit-service (log: ${audit_log})"
psql "${PG_URL_BASE}/postgres" -qc "CREATE DATABASE ${audit_db}"
MEDBOOK_DATABASE__URL="${PG_URL_BASE}/${audit_db}" MEDBOOK_GRPC__ADDR=127.0.0.1:0 \
    MEDBOOK_HTTP__OPS_ADDR=127.0.0.1:0 MEDBOOK_AUDIT__SIGNING_KEY_FILE="$report_dir/audit-signing.key" \
    MEDBOOK_LOG__LEVEL=info "$audit" serve >"$audit_log" 2>&1 &
audit_pid=$!
audit_port=$(log_field "$audit_pid" "$audit_log" "grpc listening" port)
export MEDBOOK_AUDIT__ADDR="http://127.0.0.1:${audit_port}"

log "starting booking-service (log: ${service_log})"
MEDBOOK_LOG__LEVEL=info "$booking" serve >"$service_log" 2>&1 &
service_pid=$!
port=$(log_field "$service_pid" "$service_log" "listening" port)
base="http://127.0.0.1:${port}"

# POSTs JSON ($2) to $1 and prints the response body; fails on a non-2xx answer.
post_json() {
    "$TOOLS_PYTHON" - "${base}$1" "$2" <<'EOF'
import sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as e:
    sys.exit(f"POST {sys.argv[1]}: {e.code} {e.read().decode()}")
EOF
}
access_token() {
    post_json /api/v1/auth/login "{\"email\":\"$1\",\"password\":\"$2\"}" \
        | "$TOOLS_PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

patient_email=patient@contract.medbook.test
patient_password=orchid-harbor-42
post_json /api/v1/auth/register \
    "{\"email\":\"${patient_email}\",\"password\":\"${patient_password}\",\"full_name\":\"Contract Patient\"}" >/dev/null
psql "$db_url" -qc "UPDATE users SET email_verified_at = now() WHERE email = '${patient_email}'"
patient_token=$(access_token "$patient_email" "$patient_password")
admin_token=$(access_token "$admin_email" "$admin_password")

# schemathesis (hypothesis) keeps its working files with the reports, not in the tree.
export HYPOTHESIS_STORAGE_DIRECTORY="${report_dir}/hypothesis"
export PYTHONDONTWRITEBYTECODE=1

# One run of schemathesis; $1 names it, the rest are extra options. Every check, positive
# and negative data (`--mode all`), all phases (examples, coverage, fuzzing, stateful);
# stopped, and failed, if it outlasts its time limit.
run_schemathesis() {
    local name=$1
    shift
    log "schemathesis as ${name}"
    timeout --signal=INT --kill-after=10 "$run_limit" \
        "$schemathesis" --config-file scripts/contract/schemathesis.toml run "${base}/openapi.json" \
        --checks all \
        --mode all \
        --max-examples "$max_examples" \
        --seed "$seed" \
        --workers 2 \
        --request-timeout 20 \
        --no-color \
        --report junit --report-junit-path "${report_dir}/schemathesis-${name}.xml" \
        "$@" 2>&1 | tee "${report_dir}/schemathesis-${name}.log"
}

# One line per run: operations tested, test cases, failures, and the failures the
# document explains (hooks.py: `x-medbook-rules`, `x-medbook-kept-as`).
summary() {
    local name=$1 result=$2 out="${report_dir}/schemathesis-${1}.log"
    local tested cases filtered
    tested=$(sed -n 's/^ *Tested: *\([0-9]*\).*/\1/p' "$out" | tail -n1)
    cases=$(grep -E '^ *[0-9]+ generated' "$out" | tail -n1 | sed 's/^ *//')
    filtered=$(sed -n 's/^Filtered: *\([0-9]*\).*/\1/p' "$out" | tail -n1)
    printf 'schemathesis %s: %s; %s operations, %s (%s failures the document explains)\n' \
        "$name" "$result" "${tested:-?}" "${cases:-no test cases}" "${filtered:-0}"
}

failed=()
results=()
# Logging out revokes the access token it is sent with, which would end the run's
# authentication; logout is exercised by the anonymous run.
for run in anonymous patient admin; do
    case $run in
        anonymous) extra=() ;;
        patient) extra=(-H "Authorization: Bearer ${patient_token}" --exclude-path /api/v1/auth/logout) ;;
        admin) extra=(-H "Authorization: Bearer ${admin_token}" --exclude-path /api/v1/auth/logout) ;;
    esac
    if run_schemathesis "$run" "${extra[@]}"; then
        results+=("$(summary "$run" passed)")
    else
        failed+=("$run")
        results+=("$(summary "$run" FAILED)")
    fi
done

printf '%s\n' "${results[@]}" >&2
[ ${#failed[@]} -eq 0 ] || die "schemathesis found contract violations (runs: ${failed[*]}); see ${report_dir}"
log "schemathesis: no contract violations as anonymous, patient and admin"
