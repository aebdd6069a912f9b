#!/usr/bin/env bash
# A broker outage longer than librdkafka's 300 s delivery timeout (about 6 minutes):
# bookings during it, and every event delivered after it. Release build.
# Tunables: BENCH_OUTAGE_SECS (330), BENCH_OUTAGE_BOOKINGS (50).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/test-env.sh
start_test_services
cargo bench --locked -p booking-service --bench broker_outage
