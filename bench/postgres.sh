#!/usr/bin/env bash
# rewind against the references, side by side in one run (issue 15, item
# 5): a PostgreSQL backup with `pg_dump -Fc` to a file and the seeds' path
# (`pg_dump | gzip`), a restore with `pg_restore --clean --single-transaction`
# and the seeds' path (`gunzip -c | psql`), then the same through
# `rewind backup` and `rewind rollback --quick` (sandboxed plugin, the dump
# streamed into the chunked, zstd-compressed, checksummed store and back,
# the stored bytes proven intact first). Medians of BENCH_RUNS (default 3).
#
#   bash bench/postgres.sh                 # 1,000,000 rows, release build
#   BENCH_ROWS=100000 BENCH_PROFILE=debug bash bench/postgres.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rows=${BENCH_ROWS:-1000000}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench.XXXXXX")
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work" "${cache:-}"; }
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] && chown postgres "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$bin/initdb" -D "$work/data" -U postgres --auth=trust --no-sync >/dev/null
as_pg "$bin/pg_ctl" -D "$work/data" -l "$work/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $work -c fsync=off" start >/dev/null
psql() { "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres "$@"; }

echo "seeding $rows rows"
psql -d postgres -c "create database shop"
psql -d shop -c "create table orders (id bigint primary key, customer text, amount numeric(10,2), note text);
  insert into orders select i, 'customer ' || (i % 5000), (i * 37 % 100000) / 100.0, md5(i::text) from generate_series(1, $rows) i;"
size=$(psql -d shop -At -c "select pg_size_pretty(pg_database_size('shop'))")

runs=${BENCH_RUNS:-3}
conn=(-h 127.0.0.1 -p "$port" -U postgres -d shop)
ref_backup=$(median_of "$runs" "$bin/pg_dump" "${conn[@]}" -Fc -f "$work/dump")
ref_restore=$(median_of "$runs" "$bin/pg_restore" "${conn[@]}" --clean --if-exists --single-transaction "$work/dump")
# The seeds' path: a plain dump through gzip, and back through psql (with
# --clean, so a restore replaces what is there, as the other two do).
seeds_backup() { "$bin/pg_dump" "${conn[@]}" --clean --if-exists | gzip -6 >"$work/dump.sql.gz"; }
seeds_restore() { gunzip -c "$work/dump.sql.gz" | "$bin/psql" -X -q "${conn[@]}" --single-transaction -v ON_ERROR_STOP=1; }
seeds_backup_s=$(median_of "$runs" seeds_backup)
seeds_restore_s=$(median_of "$runs" seeds_restore)

sha=$(sha256sum "$plugins/postgres.wasm" | cut -d' ' -f1)
cat >"$work/rewind.toml" <<TOML
[project]
name = "bench"
[store]
url = "file://$work/store"
[plugins.db]
source = "$plugins/postgres.wasm"
sha256 = "$sha"
grants.exec = ["$bin/pg_dump **", "$bin/pg_restore **", "$bin/psql **"]
params = { database = "shop", port = $port, bin_dir = "$bin" }
limits = { timeout_s = 3600 }
[chains]
backup = ["db"]
rollback = ["db"]
TOML
# The compile cache must sit in directories only root (or we) can write,
# and $work belongs to postgres when we run as root.
cache=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-cache.XXXXXX")
export REWIND_CACHE_DIR="$cache/cache"
# Compile the plugin once, outside the measurement.
"$rewind" --config "$work/rewind.toml" -q plugins inspect db >/dev/null
rw_backup=$(median_of "$runs" "$rewind" --config "$work/rewind.toml" -q backup)
rw_restore=$(median_of "$runs" "$rewind" --config "$work/rewind.toml" -q rollback --quick --yes)
count=$(psql -d shop -At -c "select count(*) from orders")
[ "$count" = "$rows" ] || { echo "after the rollback orders has $count rows, not $rows" >&2; exit 1; }

dump_bytes=$(stat -c %s "$work/dump")
stored=$(du -sb "$work/store/blobs" | cut -f1)
printf '\n%s rows (%s), pg_dump -Fc file %s bytes, rewind store %s bytes\n' "$rows" "$size" "$dump_bytes" "$stored"
printf '%-10s %12s %12s %8s\n' step reference rewind ratio
printf '%-10s %12.2f %12.2f %8.2f\n' backup "$ref_backup" "$rw_backup" "$(echo "$rw_backup / $ref_backup" | bc -l)"
printf '%-10s %12.2f %12.2f %8.2f\n' restore "$ref_restore" "$rw_restore" "$(echo "$rw_restore / $ref_restore" | bc -l)"
row "postgres backup ($rows rows)" "$rw_backup" "pg_dump -Fc" "$ref_backup" \
    "$(ratio "$rw_backup" "$ref_backup")x the time" "<= 1.0x"
row "postgres restore" "$rw_restore" "pg_restore" "$ref_restore" \
    "$(ratio "$rw_restore" "$ref_restore")x the time" "<= 1.0x"
row "postgres backup vs the seeds' path" "$rw_backup" "pg_dump | gzip" "$seeds_backup_s" \
    "$(ratio "$seeds_backup_s" "$rw_backup")x faster" ">= 3x"
row "postgres restore vs the seeds' path" "$rw_restore" "gunzip -c | psql" "$seeds_restore_s" \
    "$(ratio "$seeds_restore_s" "$rw_restore")x faster" ">= 3x"
