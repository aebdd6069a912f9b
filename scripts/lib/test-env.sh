# The services the tests and benchmarks run against, and the MEDBOOK_TEST_* variables
# that tell them where they are. Sourced after scripts/lib/common.sh.

source "$(dirname "${BASH_SOURCE[0]}")/../../kafka/lib.sh"

# Ports of the test broker and mail sink: apart from those of ./scripts/run.sh, so
# both can run at once.
TEST_KAFKA_PORT="${MEDBOOK_TEST_KAFKA_PORT:-19092}"
TEST_SMTP_PORT="${MEDBOOK_TEST_SMTP_PORT:-11025}"
TEST_MAIL_WEB_PORT="${MEDBOOK_TEST_MAIL_WEB_PORT:-11080}"

start_test_services() {
    ensure_toolchain
    ensure_postgres
    ensure_redis
    ensure_tansu
    start_broker "$TEST_KAFKA_PORT"
    ensure_maildev
    start_maildev "$TEST_SMTP_PORT" "$TEST_MAIL_WEB_PORT"
    ensure_python_tools
    ensure_chromium

    export MEDBOOK_TEST_DATABASE_URL="${MEDBOOK_TEST_DATABASE_URL:-${PG_URL_BASE}/postgres}"
    export MEDBOOK_TEST_REDIS_URL="${MEDBOOK_TEST_REDIS_URL:-${REDIS_URL}}"
    export MEDBOOK_TEST_KAFKA_BROKERS="127.0.0.1:${TEST_KAFKA_PORT}"
    export MEDBOOK_TEST_TANSU_BIN="$TANSU_BIN"
    export MEDBOOK_TEST_SMTP_PORT="$TEST_SMTP_PORT"
    export MEDBOOK_TEST_MAILDEV_URL="http://127.0.0.1:${TEST_MAIL_WEB_PORT}"
    export MEDBOOK_TEST_MAILDEV_BIN="$MAILDEV_BIN"
    export MEDBOOK_TEST_PYTHON="$TOOLS_PYTHON"
    # The browser tests (booking-service/tests/browser) drive this Chromium through
    # this chromedriver; without them they fail, never skip.
    export MEDBOOK_TEST_CHROMIUM="${MEDBOOK_TEST_CHROMIUM:-${CHROMIUM_BIN}}"
    export MEDBOOK_TEST_CHROMEDRIVER="${MEDBOOK_TEST_CHROMEDRIVER:-${CHROMEDRIVER_BIN}}"
}
