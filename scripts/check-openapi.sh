#!/usr/bin/env bash
# Proves /openapi.json against the running server, then checks /docs in a browser.
#
#   1. schemathesis (PyPI, installed into target/schemathesis-venv) generates requests
#      for every operation from the document and checks each answer: no 5xx, and the
#      body matches the schema documented for its status.
#   2. scripts/check-docs-browser.py drives headless Chromium (Debian's `chromium`)
#      through /docs: the operations are listed, and "Try it out" of GET /api/models with
#      a bearer token (entered through Swagger UI's Authorize dialog) answers 200.
#
# The debug server runs on a fresh data directory with rate limits off, as an admin and
# a user created with the CLI. Artifacts (schemathesis report, screenshot, server log)
# go to target/openapi-check/. Environment: SCHEMATHESIS_MAX_EXAMPLES (default 20 per
# operation), SKIP_BROWSER=1 to run schemathesis only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=target/openapi-check
VENV=target/schemathesis-venv
SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-20}
mkdir -p "$OUT"
rm -f "$OUT"/schemathesis-*.xml "$OUT"/docs*.png

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The same build as the test command (features unified with the tests), so nothing
# is compiled twice: the binary is already there after `cargo nextest run --workspace`.
cargo test --locked --workspace --no-run --quiet
BIN=target/debug/medledger

DATA=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT

export MEDLEDGER_DATA_DIR="$DATA"
export MEDLEDGER_FAST_PASSWORD_HASH=1
export MEDLEDGER_AUTH_RATE_LIMIT=0 MEDLEDGER_API_RATE_LIMIT=0 MEDLEDGER_TASK_RATE_LIMIT=0 MEDLEDGER_REFRESH_RATE_LIMIT=0
export MEDLEDGER_COLLECTIONS_PER_USER=100000
export RUST_LOG=${RUST_LOG:-warn}

ADMIN_PASSWORD=openapi-check-admin-1
USER_PASSWORD=openapi-check-user-12
echo "$ADMIN_PASSWORD" | "$BIN" user create --email admin@example.org --username admin --admin --password-stdin >/dev/null
echo "$USER_PASSWORD" | "$BIN" user create --email doctor@example.org --username doctor --role doctor --password-stdin >/dev/null

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
"$BIN" serve --port "$PORT" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server did not start:"; cat "$OUT/server.log"; exit 1; }
    sleep 0.5
done

token() {
    curl -fsS "$BASE/oauth/login" -d "username=$1" --data-urlencode "password=$2" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
ADMIN_TOKEN=$(token admin "$ADMIN_PASSWORD")
USER_TOKEN=$(token doctor "$USER_PASSWORD")
curl -fsS "$BASE/openapi.json" -o "$OUT/openapi.json"

# Two operations can end the run's own credentials: an admin's change of a user can
# deactivate or demote the run's admin (ids are small integers), and 001's logout with
# a Bearer token ends that token's session. They run last, one after the other.
LAST=(put_api_users_id post_logout)
EXCLUDE_LAST=()
for op in "${LAST[@]}"; do
    EXCLUDE_LAST+=(--exclude-operation-id "$op")
done

# Stateful testing follows the document's links (a dataset created, then read,
# changed, retired) as well as the single-request phases.
run_schemathesis() {
    local name=$1 token=$2 phases=$3
    shift 3
    echo "schemathesis as $name ($MAX_EXAMPLES examples per operation)"
    # From the artifacts directory: schemathesis keeps its replay cache in the working
    # directory (.schemathesis/), which is no place for it in the repository.
    (cd "$OUT" && "$ROOT/$VENV/bin/schemathesis" run "$BASE/openapi.json" \
        -H "Authorization: Bearer $token" \
        --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
        --phases "$phases" \
        --max-examples "$MAX_EXAMPLES" \
        --workers 2 \
        --seed 16 \
        --request-timeout 40 \
        --suppress-health-check all \
        --report junit --report-dir . --report-junit-path "schemathesis-$name.xml" \
        "$@")
}

ALL=examples,coverage,fuzzing,stateful
run_schemathesis admin "$ADMIN_TOKEN" "$ALL" "${EXCLUDE_LAST[@]}"
# The admin-only operations as a plain user: every refusal must be documented too.
run_schemathesis user "$USER_TOKEN" "$ALL" "${EXCLUDE_LAST[@]}" \
    --include-path-regex '^/api/(v1/admin|users|audit-logs|events|verify|models$)|^/metrics$'

if [ "${SKIP_BROWSER:-0}" != 1 ]; then
    if ! command -v chromium >/dev/null 2>&1; then
        echo "chromium is missing: apt-get install -y chromium (or SKIP_BROWSER=1)"
        exit 1
    fi
    python3 scripts/check-docs-browser.py "$BASE" "$ADMIN_TOKEN" "$OUT"
fi
for op in "${LAST[@]}"; do
    run_schemathesis "$op" "$ADMIN_TOKEN" examples,coverage,fuzzing --include-operation-id "$op"
done
echo "OpenAPI checks passed; artifacts in $OUT"
