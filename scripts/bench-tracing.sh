#!/usr/bin/env bash
# The tracing benchmark (booking-service/benches/tracing.rs): booking throughput and p99
# with tracing off and on, exporting every span to a local rotel. Prints the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/tracing.sh
ensure_toolchain
ensure_postgres
ensure_redis
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
grpc=$(free_port); http=$(free_port)
start_rotel "$grpc" "$http" target/bench-tracing/spans.jsonl
trap 'kill "$ROTEL_PID" 2>/dev/null || true' EXIT
MEDBOOK_BENCH_OTLP_ENDPOINT="http://127.0.0.1:${grpc}" cargo bench --locked -p booking-service --bench tracing
echo "spans received: $(wc -l <target/bench-tracing/spans.jsonl)"
