#!/usr/bin/env bash
# Stops the local broker started by kafka/start-broker.sh. Its topics are gone after.
#   KAFKA_PORT (default 9092)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source kafka/lib.sh

stop_broker "${KAFKA_PORT:-9092}"
