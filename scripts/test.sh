#!/usr/bin/env bash
# Runs every test: installs what is missing, starts PostgreSQL, runs the workspace's
# unit and functional tests against it, and validates the OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_toolchain
ensure_postgres
ensure_redis

export MEDBOOK_TEST_DATABASE_URL="${MEDBOOK_TEST_DATABASE_URL:-${PG_URL_BASE}/postgres}"
export MEDBOOK_TEST_REDIS_URL="${MEDBOOK_TEST_REDIS_URL:-${REDIS_URL}}"

log "cargo test"
mkdir -p target
cargo test --workspace --all-targets --locked 2>&1 | tee target/test-output.log

log "validating the OpenAPI document"
venv=target/tools-venv
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator==0.7.2
fi
cargo run --quiet --locked -p booking-service -- openapi > target/openapi.json
"$venv/bin/openapi-spec-validator" target/openapi.json

# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' \
    target/test-output.log
