#!/usr/bin/env bash
# One-shot of docker-compose.yml (service kafka-topics, in the apache/kafka image):
# creates every topic of kafka/topics.txt, mounted at $TOPICS_FILE, on the broker at
# $BOOTSTRAP_SERVER. The file is read as kafka/lib.sh reads it: the first column of each
# line, blank lines and '#' comments skipped. Each topic gets $TOPIC_PARTITIONS partitions
# (3 by default, as scripts/run.sh) and replication factor 1 (one broker); topics that
# exist are left as they are (--if-not-exists), so every `docker compose up` may run it.
set -euo pipefail

bootstrap=${BOOTSTRAP_SERVER:-kafka:9092}
partitions=${TOPIC_PARTITIONS:-3}
file=${TOPICS_FILE:-/etc/medbook/topics.txt}
# The image's tool; scripts/compose-check.sh puts a stand-in here to test this script.
kafka_topics=${TOPICS_TOOL:-/opt/kafka/bin/kafka-topics.sh}

[ -r "$file" ] || { echo "create-topics: cannot read ${file}" >&2; exit 1; }
case "$partitions" in
    '' | *[!0-9]* | 0) echo "create-topics: TOPIC_PARTITIONS must be a positive integer, not '${partitions}'" >&2; exit 1 ;;
esac

created=0
while read -r topic _; do
    case "$topic" in '' | '#'*) continue ;; esac
    config=()
    # kafka/topics.txt: accounts.emails carries single-use links that expire within
    # 24 h, waitlist.offers booking links that die with their hold (minutes): both keep
    # their messages for 24 h only.
    case "$topic" in
        accounts.emails | waitlist.offers) config=(--config retention.ms=86400000) ;;
    esac
    "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor 1 "${config[@]}"
    created=$((created + 1))
done <"$file"

[ "$created" -gt 0 ] || { echo "create-topics: no topic in ${file}" >&2; exit 1; }
echo "create-topics: ${created} topics present on ${bootstrap}:"
"$kafka_topics" --bootstrap-server "$bootstrap" --list
