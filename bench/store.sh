#!/usr/bin/env bash
# Targets 1-3 of the performance issue: ingest, verify, the pre-restore
# check and restore of one SQL-shaped dump (BENCH_MB, default 500) through
# `rewind` (the `command` plugin's backup, streamed into the store; its
# revert fed from the store), each beside its reference tool on the same
# bytes, in the same run: medians of BENCH_RUNS (default 3).
#
#   bash bench/store.sh          # normally through bench/run
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mb=${BENCH_MB:-500}
runs=${BENCH_RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-store.XXXXXX")
trap 'rm -rf "$work"' EXIT
export REWIND_CACHE_DIR="$work/cache"

echo "store: making a ${mb} MB dump" >&2
python3 bench/dump.py make "$mb" "$work/dump.sql"
dump_config "$work/dump.sql" "$work/restored.sql" "$work/store" >"$work/rewind.toml"
rw() { "$rewind" --config "$work/rewind.toml" -q "$@"; }
rw plugins inspect dump >/dev/null # compile the plugin once, outside the measurement
cat "$work/dump.sql" >/dev/null    # both sides read it from the page cache

echo "store: ingest" >&2
before_each() { rm -rf "$work/store"; }
rw_ingest=$(median_of "$runs" rw backup)
unset -f before_each
zstd_ingest=$(median_of "$runs" zstd -3 -T0 -q -f "$work/dump.sql" -o "$work/ref.zst")
gzip_ingest=$(seconds sh -c "gzip -6 -c '$work/dump.sql' >'$work/ref.gz'")
stored=$(du -sb "$work/store/blobs" | cut -f1)
zstd_size=$(stat -c %s "$work/ref.zst")

echo "store: verify" >&2
rw_verify=$(median_of "$runs" rw artifacts verify)
sha_plain=$(median_of "$runs" openssl dgst -sha256 "$work/dump.sql")
rw_check=$(median_of "$runs" rw rollback --quick --dry-run)

echo "store: restore" >&2
rw_restore=$(median_of "$runs" rw rollback --quick --yes)
cmp "$work/dump.sql" "$work/restored.sql"
zstd_restore=$(median_of "$runs" sh -c "zstd -dcq '$work/ref.zst' | sh -c 'cat > \"$work/restored.ref\"'")

row "ingest (${mb} MB dump, whole backup)" "$rw_ingest" "zstd -3 -T0" "$zstd_ingest" \
    "$(ratio "$zstd_ingest" "$rw_ingest")x throughput" ">= 0.9x"
row "ingest vs gzip -6" "$rw_ingest" "gzip -6" "$gzip_ingest" \
    "$(ratio "$gzip_ingest" "$rw_ingest")x faster" ">= 5x"
row "stored size (bytes)" "$stored" "zstd -3 file" "$zstd_size" \
    "$(ratio "$stored" "$zstd_size")x size" "<= 1.02x"
row "artifacts verify" "$rw_verify" "openssl dgst -sha256" "$sha_plain" \
    "$(ratio "$sha_plain" "$rw_verify")x throughput" ">= 0.8x"
row "pre-restore check (rollback --dry-run)" "$rw_check" "openssl dgst -sha256" "$sha_plain" \
    "$(ratio "$rw_check" "$sha_plain")x the time" "a fraction"
row "restore (rollback --quick) to a file" "$rw_restore" "zstd -d to the same" "$zstd_restore" \
    "$(ratio "$rw_restore" "$zstd_restore")x the time" "<= 1.2x"
