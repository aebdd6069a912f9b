#!/usr/bin/env bash
# Benchmarks the notification pipeline (release build): end-to-end latency from a
# booking's response to its email accepted by SMTP, and emails per second. Starts
# what it needs like ./scripts/test.sh. Tunables: BENCH_RATE, BENCH_SECONDS,
# BENCH_EMAILS (see notification-service/benches/pipeline.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/test-env.sh
start_test_services
cargo bench --locked -p notification-service --bench pipeline
