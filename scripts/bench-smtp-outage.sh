#!/usr/bin/env bash
# Benchmarks recovery (release build): a 2-minute SMTP outage at 20 bookings/s — how
# long after the server is back the backlog is delivered, and emails/s while it drains —
# and reminders/s from due to accepted by SMTP. Starts what it needs like
# ./scripts/test.sh. Tunables: BENCH_RATE, BENCH_OUTAGE_SECONDS, BENCH_REMINDERS (see
# notification-service/benches/smtp_outage.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/test-env.sh
start_test_services
cargo bench --locked -p notification-service --bench smtp_outage
