#!/usr/bin/env bash
# Cold start to ready and idle RSS of the release server on an empty SQLite store.
# Usage: bench/serve.sh [runs]   (build first: cargo build --release -p medledger-api;
# MEDLEDGER_BIN=path runs another build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MEDLEDGER_BIN:-target/release/medledger}
runs=${1:-5}
port=18765
for i in $(seq 1 "$runs"); do
    dir=$(mktemp -d)
    start=$(date +%s%N)
    RUST_LOG=warn PORT=$port MEDLEDGER_DATA_DIR="$dir" "$bin" serve >/dev/null 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.005; done
    ready=$(( ($(date +%s%N) - start) / 1000000 ))
    sleep 3
    rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    echo "run $i: ready in ${ready} ms, idle RSS $((rss / 1024)) MB (${rss} kB)"
done
