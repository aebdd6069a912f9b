#!/usr/bin/env bash
# Starts the local broker (tansu) and creates the topics.
#   KAFKA_PORT (default 9092), KAFKA_PARTITIONS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source kafka/lib.sh

start_broker "${KAFKA_PORT:-9092}"
create_topics "${KAFKA_PORT:-9092}" "${KAFKA_PARTITIONS:-3}"
