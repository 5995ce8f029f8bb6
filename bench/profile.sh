#!/usr/bin/env bash
# Instruction counts (callgrind) of the store alone ingesting, verifying
# and reading one SQL-shaped dump (BENCH_PROFILE_MB, default 50): unlike
# wall time they do not move when other work shares the machine. With
# BENCH_BEFORE=path/to/another/storebench (the same example built from
# another commit, bench/README.md), the two side by side.
#
#   bash bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${BENCH_PROFILE_MB:-50}
cargo build --release -q -p rewind-store --example storebench
after=$PWD/target/release/examples/storebench
work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-profile.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 bench/dump.py make "$mb" "$work/dump.sql"

# instructions BIN STEP...: total instructions (all threads) of one run.
instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$@" >"$work/out" 2>"$work/err" ||
        { cat "$work/err" >&2; return 1; }
    grep -m1 '^summary:' "$work/cg.out" | awk '{print $2}'
}

profile() { # BIN NAME
    local bin=$1 store="$work/store-$2" record
    rm -rf "$store"
    local ingest
    ingest=$(instructions "$bin" ingest "$work/dump.sql" "$store")
    record=$(cat "$work/out")
    local verify read
    verify=$(instructions "$bin" verify "$store" "$record")
    read=$(instructions "$bin" read "$store" "$record")
    cmp -s "$work/out" "$work/dump.sql" || { echo "$2: read gave other bytes" >&2; return 1; }
    printf '%s %s %s %s\n' "$2" "$ingest" "$verify" "$read"
}

{
    echo "store instructions per byte ingest verify read"
    [ -n "${BENCH_BEFORE:-}" ] && profile "$BENCH_BEFORE" before
    profile "$after" after
} | awk -v bytes="$(stat -c %s "$work/dump.sql")" '
    NR == 1 { printf "%-8s %10s %10s %10s   (instructions per byte of a %d-byte dump)\n", "store", "ingest", "verify", "read", bytes; next }
    { printf "%-8s %10.2f %10.2f %10.2f\n", $1, $2 / bytes, $3 / bytes, $4 / bytes }'
