#!/usr/bin/env bash
# Benchmark: does a login storm starve the rest of the API?
#
# Starts a release build of booking-service (bcrypt cost 12) on 127.0.0.1:18080 against
# a scratch database, then measures GET /health throughput and latency with wrk:
#   1. alone, and
#   2. while 64 connections hammer POST /api/v1/auth/login.
# Prints both figures and how the logins were answered (200 served, 503 shed).
# Local traffic only; every load phase is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_toolchain
ensure_postgres
apt_install wrk
psql "${PG_URL_BASE}/postgres" -qc "DROP DATABASE IF EXISTS medbook_bench WITH (FORCE)"
ensure_database medbook_bench

cargo build --release --locked -p booking-service
bin=target/release/booking-service
port=18080
base="http://127.0.0.1:${port}"
export MEDBOOK_DATABASE__URL="${PG_URL_BASE}/medbook_bench"
export MEDBOOK_HTTP__ADDR="127.0.0.1:${port}"
ops_port=19464
ops="http://127.0.0.1:${ops_port}"
export MEDBOOK_HTTP__OPS_ADDR="127.0.0.1:${ops_port}"
export MEDBOOK_GRPC__ADDR=127.0.0.1:0
export MEDBOOK_AUTH__JWT_SECRET="bench-secret-bench-secret-bench-secret-42"
export MEDBOOK_AUTH__BCRYPT_COST=12
export MEDBOOK_AUTH__LOGIN__MAX_FAILURES_PER_CLIENT=1000000
export MEDBOOK_LOG__LEVEL=warn

"$bin" serve > target/bench-service.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -sf "$base/health" >/dev/null && break; sleep 0.5; done

curl -sf -X POST "$base/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-violin-42","full_name":"Bench"}' >/dev/null

login_lua=$(mktemp)
cat > "$login_lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"bench-violin-42"}'
LUA

summary() { grep -E "Requests/sec|Latency|99%" "$1" | sed 's/^/    /'; }
login_count() {
    curl -s "$ops/metrics" | awk -v s="$1" -F' ' \
        '$1 ~ /^http_requests_total/ && $1 ~ /auth\/login/ && $1 ~ ("status=\"" s "\"") { print $2 }' | head -n1
}

echo "== GET /health alone (16 connections, 10 s)"
wrk -t1 -c16 -d10s --latency "$base/health" > target/bench-health-alone.txt
summary target/bench-health-alone.txt

echo "== GET /health during a login storm (64 connections on POST /login)"
wrk -t1 -c64 -d16s --latency -s "$login_lua" "$base/api/v1/auth/login" > target/bench-login.txt &
storm=$!
sleep 3
wrk -t1 -c16 -d10s --latency "$base/health" > target/bench-health-storm.txt
wait $storm
summary target/bench-health-storm.txt
echo "== the logins themselves"
summary target/bench-login.txt
echo "    served (200): $(login_count 200 || echo 0), shed (503 overloaded): $(login_count 503 || echo 0)"
