#!/usr/bin/env bash
# Runs every test: installs what is missing, starts PostgreSQL, Redis, a Kafka-protocol
# broker (tansu) and a mail sink (maildev) for the tests, runs the workspace's unit and
# functional tests against them, validates the OpenAPI document, and runs the contract
# test (schemathesis against a live booking-service, scripts/contract-test.sh) and the
# gRPC smoke test (grpcurl against both gRPC services, scripts/grpc-smoke.sh), the
# Prometheus checks (promtool: config, rules, rule unit tests), the observability test
# (the whole system tracing into a real OTLP receiver, scripts/observability-test.sh) and
# the deployment checks (docker-compose, Dockerfile, Kubernetes; scripts/deploy-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

source scripts/lib/test-env.sh
start_test_services

log "cargo test"
mkdir -p target
# A snapshot that differs from its file fails the test; nothing is written (the
# OpenAPI document's snapshot is only rewritten on purpose, see tests/api/openapi.rs).
export INSTA_UPDATE=no
# Unit, integration and doc tests. Benchmarks are not run here (they are slow by design
# and print figures; see README), but clippy --all-targets compiles them in CI.
# booking-service's audit tests run the audit-service binary, its fleet test the
# notification-service binary: built first.
cargo build --locked -p audit-service -p notification-service
cargo test --workspace --lib --bins --tests --locked -- --skip the_fleet_ 2>&1 | tee target/test-output.log

log "fleet test (two booking-service and two notification-service processes, faults)"
# Alone, and printing its figures; each process's log is kept in target/fleet/.
cargo test --locked -p booking-service --test fleet -- --nocapture 2>&1 \
    | grep -v '^{"' | tee -a target/test-output.log

log "benchmarks, each once in its smoke mode (seconds; the figures mean nothing here)"
# Every benchmark target of the workspace (cargo metadata), so a new one cannot be
# forgotten and none can rot unnoticed. Debug build, as the tests; `cargo bench` gives
# the real figures (README, Benchmarks). db_ratio compares with pgbench.
apt_install postgresql-client
benches=$(cargo metadata --no-deps --format-version 1 --locked | "$TOOLS_PYTHON" -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "bench" in t["kind"]:
            print(p["name"], t["name"])')
while read -r package bench; do
    log "bench ${package} ${bench} (smoke)"
    MEDBOOK_BENCH_SMOKE=1 cargo test --locked -p "$package" --bench "$bench" 2>&1 \
        | grep -v '^{"' | tee -a target/test-output.log
done <<< "$benches"

log "validating the OpenAPI document"
cargo run --quiet --locked -p booking-service -- openapi > target/openapi.json
"$(dirname "$TOOLS_PYTHON")/openapi-spec-validator" target/openapi.json

log "contract test (schemathesis)"
scripts/contract-test.sh

log "gRPC smoke test (grpcurl)"
scripts/grpc-smoke.sh

log "Prometheus configuration, alert rules and their unit tests (promtool)"
scripts/prometheus-check.sh

log "observability test (one trace from booking to inbox; every dashboard query)"
scripts/observability-test.sh

log "deployment checks (docker-compose, Dockerfile, Kubernetes manifests against the code)"
scripts/deploy-check.sh

# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' \
    target/test-output.log
