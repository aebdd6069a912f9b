#!/bin/sh
# One-shot of docker-compose.yml (service data-dirs, run as root): creates the state
# directories under $MEDBOOK_DATA_DIR (mounted at /data) and hands each to the user its
# container runs as, since Docker creates a missing bind-mount directory owned by root.
# PostgreSQL and Redis are absent: their images start as root and fix ownership themselves.
set -eu

own() { # own DIR OWNER [SUBDIR...]: create /data/DIR (and SUBDIRs in it), give all to OWNER
    dir=$1 owner=$2
    shift 2
    mkdir -p "/data/$dir"
    for sub in "$@"; do mkdir -p "/data/$dir/$sub"; done
    chown -R "$owner" "/data/$dir"
}

own kafka appuser:appuser   # apache/kafka runs as appuser (this image's own user)
own prometheus 65534:65534  # prom/prometheus runs as nobody
own grafana 472:0           # grafana/grafana runs as uid 472, group root
own jaeger 10001:0 keys values  # jaegertracing/jaeger runs as uid 10001; Badger's dirs
own audit 10001:10001       # medbook's images run as uid 10001 (Dockerfile)
mkdir -p /data/postgres /data/redis
echo "data-dirs: ready"
