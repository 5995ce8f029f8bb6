#!/usr/bin/env bash
# rewind against the seeds' MariaDB path and the tools alone, side by side
# in one run (issue 15, item 5): a MariaDB server in a temp dir, a seeded
# table, then
#
#   backup   `mariadb-dump | gzip -6 > f` (the seeds), `mariadb-dump > f`
#            (the tool alone), `rewind backup` (the `mysql` plugin in its
#            sandbox, the dump streamed into the chunked, compressed,
#            checksummed store)
#   restore  `gunzip -c f | mariadb` (the seeds), `mariadb < f` (alone),
#            `rewind rollback --quick --yes` (the stored dump proven intact,
#            then streamed into `mariadb`, its digest checked as it goes)
#
# Medians of BENCH_RUNS (default 3).
#
#   bash bench/mariadb.sh                  # 1,000,000 rows, release build
#   BENCH_ROWS=100000 bash bench/mariadb.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rows=${BENCH_ROWS:-1000000}
runs=${BENCH_RUNS:-3}

work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-mariadb.XXXXXX")
cache=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-cache.XXXXXX")
user=()
if [ "$(id -u)" -eq 0 ]; then user=(--user=mysql); chown mysql "$work"; fi
cleanup() {
    if [ -f "$work/pid" ]; then kill "$(cat "$work/pid")" 2>/dev/null || true; sleep 1; fi
    rm -rf "$work" "$cache"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mariadb-install-db --datadir="$work/data" --auth-root-authentication-method=normal --skip-test-db \
    "${user[@]}" >/dev/null
/usr/sbin/mariadbd --no-defaults --datadir="$work/data" --socket="$work/sock" --pid-file="$work/pid" \
    --bind-address=127.0.0.1 --port="$port" --innodb-flush-log-at-trx-commit=0 "${user[@]}" \
    >/dev/null 2>"$cache/log" &
for _ in $(seq 300); do
    mariadb --no-defaults --socket="$work/sock" -u root -e "
        ALTER USER 'root'@'localhost' IDENTIFIED BY 'bench';
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY 'bench';
        GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" 2>/dev/null && break
    sleep 0.2
done
export MYSQL_PWD=bench
client=(--no-defaults -h 127.0.0.1 -P "$port" -u root)

echo "seeding $rows rows"
mariadb "${client[@]}" -e "create database shop"
mariadb "${client[@]}" shop -e "
    create table orders (id bigint primary key, customer varchar(40), amount decimal(10,2), note char(32));
    insert into orders select seq, concat('customer ', seq % 5000), (seq * 37 % 100000) / 100.0, md5(seq)
      from seq_1_to_$rows;"

# The plugin's own flags, so every path dumps the same.
dump_flags=(--single-transaction --routines --triggers --events --hex-blob --default-character-set=utf8mb4)
seeds_backup() { mariadb-dump "${client[@]}" "${dump_flags[@]}" shop | gzip -6 >"$cache/dump.sql.gz"; }
alone_backup() { mariadb-dump "${client[@]}" "${dump_flags[@]}" shop >"$cache/dump.sql"; }
seeds_restore() { gunzip -c "$cache/dump.sql.gz" | mariadb "${client[@]}" shop; }
alone_restore() { mariadb "${client[@]}" shop <"$cache/dump.sql"; }

sha=$(sha256sum "$plugins/mysql.wasm" | cut -d' ' -f1)
cat >"$cache/rewind.toml" <<TOML
[project]
name = "bench"
[store]
url = "file://$cache/store"
[plugins.db]
source = "$plugins/mysql.wasm"
sha256 = "$sha"
grants.exec = ["mariadb-dump **", "mariadb **"]
grants.env = ["MYSQL_PWD"]
params = { database = "shop", port = $port, password_env = "MYSQL_PWD", dump_program = "mariadb-dump", client_program = "mariadb" }
limits = { timeout_s = 3600 }
[chains]
backup = ["db"]
rollback = ["db"]
TOML
export REWIND_CACHE_DIR="$cache/cache"
rw() { "$rewind" --config "$cache/rewind.toml" -q "$@"; }
rw plugins inspect db >/dev/null # compile once, outside the measurement

seeds_backup_s=$(median_of "$runs" seeds_backup)
alone_backup_s=$(median_of "$runs" alone_backup)
rw_backup=$(median_of "$runs" rw backup)
seeds_restore_s=$(median_of "$runs" seeds_restore)
alone_restore_s=$(median_of "$runs" alone_restore)
rw_restore=$(median_of "$runs" rw rollback --quick --yes)
count=$(mariadb "${client[@]}" -N shop -e "select count(*) from orders")
[ "$count" = "$rows" ] || { echo "after the rollback orders has $count rows, not $rows" >&2; exit 1; }

printf '\n%s rows: dump %s bytes, gzip -6 %s bytes, rewind store %s bytes\n' "$rows" \
    "$(stat -c %s "$cache/dump.sql")" "$(stat -c %s "$cache/dump.sql.gz")" "$(du -sb "$cache/store/blobs" | cut -f1)"
row "mariadb backup ($rows rows)" "$rw_backup" "mariadb-dump > f" "$alone_backup_s" \
    "$(ratio "$rw_backup" "$alone_backup_s")x the time" "-"
row "mariadb backup vs the seeds' path" "$rw_backup" "mariadb-dump | gzip" "$seeds_backup_s" \
    "$(ratio "$seeds_backup_s" "$rw_backup")x faster" ">= 3x"
row "mariadb restore" "$rw_restore" "mariadb < f" "$alone_restore_s" \
    "$(ratio "$rw_restore" "$alone_restore_s")x the time" "-"
row "mariadb restore vs the seeds' path" "$rw_restore" "gunzip -c | mariadb" "$seeds_restore_s" \
    "$(ratio "$seeds_restore_s" "$rw_restore")x faster" ">= 3x"
