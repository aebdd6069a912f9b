#!/usr/bin/env bash
# Creates the topics of kafka/topics.txt on the local broker (existing ones are kept).
#   KAFKA_PORT (default 9092), KAFKA_PARTITIONS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source kafka/lib.sh

create_topics "${KAFKA_PORT:-9092}" "${KAFKA_PARTITIONS:-3}"
