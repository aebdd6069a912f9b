# The local trace receiver: rotel (PyPI `rotel`, an OpenTelemetry collector binary),
# receiving OTLP over gRPC and HTTP and writing every span as a JSON line
# (scripts/observability/rotel_spans.py), optionally forwarding to another OTLP
# collector; and the local trace UI, Arize Phoenix (PyPI `arize-phoenix`), which rotel
# forwards to in a local run. Sourced after scripts/lib/common.sh, not executed.

ROTEL_VERSION=0.0.1a15

# Installs rotel into .tools/rotel-venv; sets ROTEL_BIN. The binary links the system's
# libpython3.11 (its trace processors are Python).
ensure_rotel() {
    local venv="$TOOLS_DIR/rotel-venv"
    if ! ldconfig -p 2>/dev/null | grep -q 'libpython3\.11\.so\.1\.0'; then
        apt_install libpython3.11
    fi
    ensure_venv_packages "$venv" "rotel==${ROTEL_VERSION}"
    ROTEL_BIN=$(ls "$venv"/lib/python3*/site-packages/rotel/rotel-agent 2>/dev/null | head -n1 || true)
    [ -x "$ROTEL_BIN" ] || die "rotel was not installed ($ROTEL_BIN)"
    export ROTEL_BIN
}

# Starts rotel: OTLP gRPC on 127.0.0.1:$1, OTLP HTTP on 127.0.0.1:$2, spans appended to
# file $3; with $4 (an OTLP/HTTP base URL, e.g. Phoenix's http://127.0.0.1:6006) it also
# forwards them there. Sets ROTEL_PID.
start_rotel() {
    local grpc=$1 http=$2 spans=$3 forward=${4:-} dir
    ensure_rotel
    dir=$(dirname "$spans")
    mkdir -p "$dir"
    : >"$spans"
    local exporter=(--exporter blackhole)
    if [ -n "$forward" ]; then
        exporter=(--exporter otlp --otlp-exporter-endpoint "$forward" --otlp-exporter-protocol http)
    fi
    MEDBOOK_SPANS_FILE="$(cd "$dir" && pwd)/$(basename "$spans")" "$ROTEL_BIN" start \
        "${exporter[@]}" \
        --otlp-grpc-endpoint "127.0.0.1:${grpc}" --otlp-http-endpoint "127.0.0.1:${http}" \
        --otlp-with-trace-processor "$(pwd)/scripts/observability/rotel_spans.py" \
        --pid-file "$dir/rotel-${grpc}.pid" --log-file "$dir/rotel-${grpc}.log" \
        >"$dir/rotel-${grpc}.out" 2>&1 &
    ROTEL_PID=$!
    for _ in $(seq 1 100); do
        port_open "$grpc" && port_open "$http" && return 0
        kill -0 "$ROTEL_PID" 2>/dev/null || die "rotel exited at start-up; see $dir/rotel-${grpc}.out"
        sleep 0.1
    done
    die "rotel did not listen on ${grpc}/${http} within 10 s; see $dir/rotel-${grpc}.out"
}

PHOENIX_VERSION=20.26.1

# Installs Arize Phoenix into .tools/phoenix-venv (about 850 MB, a few minutes the first
# time); sets PHOENIX_BIN.
ensure_phoenix() {
    local venv="$TOOLS_DIR/phoenix-venv"
    [ -x "$venv/bin/phoenix" ] || log "the trace UI, Phoenix, is about 850 MB: its first install takes a few minutes"
    ensure_venv_packages "$venv" "arize-phoenix==${PHOENIX_VERSION}"
    PHOENIX_BIN="$venv/bin/phoenix"
    [ -x "$PHOENIX_BIN" ] || die "Phoenix was not installed ($PHOENIX_BIN)"
}

# Starts Phoenix in the background: its UI and OTLP/HTTP receiver (/v1/traces) on
# 127.0.0.1:$1, its OTLP/gRPC receiver on port $2 (Phoenix binds that one on every
# interface; nothing sends to it here), its SQLite data in directory $3. Sets
# PHOENIX_PID; wait_phoenix waits until it answers.
start_phoenix() {
    local port=$1 grpc=$2 dir=$3
    ensure_phoenix
    mkdir -p "$dir"
    PHOENIX_HOST=127.0.0.1 PHOENIX_PORT="$port" PHOENIX_GRPC_PORT="$grpc" \
        PHOENIX_WORKING_DIR="$(cd "$dir" && pwd)" PHOENIX_TELEMETRY_ENABLED=false \
        "$PHOENIX_BIN" serve >"$dir/phoenix.log" 2>&1 &
    PHOENIX_PID=$!
    PHOENIX_PORT_IN_USE=$port
}

# Waits (up to 180 s: its first start migrates its database) for Phoenix's /healthz
# (http_get_ok: scripts/lib/prometheus.sh).
wait_phoenix() {
    local deadline=$((SECONDS + 180))
    until http_get_ok "$PHOENIX_PORT_IN_USE" /healthz; do
        kill -0 "$PHOENIX_PID" 2>/dev/null || die "Phoenix exited at start-up; see its phoenix.log"
        [ "$SECONDS" -lt "$deadline" ] || die "Phoenix did not answer within 180 s"
        sleep 0.5
    done
}
