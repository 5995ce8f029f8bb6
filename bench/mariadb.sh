#!/usr/bin/env bash
# rewind against the seeds' MariaDB path, side by side in one run
# (issue 15, item 5): a MariaDB server in a temp dir, a seeded table, then
#
#   backup   `mariadb-dump | gzip -6 > f` (the seeds), `mariadb-dump > f`
#            (the tool alone), `rewind backup` (the `mysql` plugin in its
#            sandbox, the dump streamed into the zstd-compressed,
#            checksummed store)
#   restore  `gunzip -c f | mariadb` (the seeds), `mariadb < f` (alone),
#            `rewind rollback --quick --yes` (the stored dump proven intact,
#            then streamed into `mariadb` with its digest checked as it goes)
#
# Prints seconds (median of BENCH_RUNS, default 3) and ratios.
#
#   bash bench/mariadb.sh                  # 1,000,000 rows, release build
#   BENCH_ROWS=100000 BENCH_PROFILE=debug bash bench/mariadb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${BENCH_ROWS:-1000000}
profile=${BENCH_PROFILE:-release}
runs=${BENCH_RUNS:-3}

if [ "$profile" = release ]; then ./build --release -q; else ./build -q; fi
rewind="$PWD/target/$profile/rewind"
plugins="$PWD/target/wasm32-wasip2/release"

work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-mariadb.XXXXXX")
user=()
[ "$(id -u)" -eq 0 ] && user=(--user=mysql) && chown mysql "$work"
cleanup() {
    [ -f "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null && sleep 1
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mariadb-install-db --datadir="$work/data" --auth-root-authentication-method=normal --skip-test-db \
    "${user[@]}" >/dev/null
/usr/sbin/mariadbd --no-defaults --datadir="$work/data" --socket="$work/sock" --pid-file="$work/pid" \
    --bind-address=127.0.0.1 --port="$port" --innodb-flush-log-at-trx-commit=0 "${user[@]}" \
    >/dev/null 2>"$work/log" &
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

median() {
    local times=()
    for _ in $(seq "$runs"); do
        local start end
        start=$(date +%s%N)
        "$@" >/dev/null 2>&1
        end=$(date +%s%N)
        times+=("$(( (end - start) / 1000 ))")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)] / 1e6}'
}
dump_flags=(--single-transaction --routines --triggers --events --hex-blob --default-character-set=utf8mb4)
seeds_backup() { mariadb-dump "${client[@]}" "${dump_flags[@]}" shop | gzip -6 >"$work/dump.sql.gz"; }
alone_backup() { mariadb-dump "${client[@]}" "${dump_flags[@]}" shop >"$work/dump.sql"; }
seeds_restore() { gunzip -c "$work/dump.sql.gz" | mariadb "${client[@]}" shop; }
alone_restore() { mariadb "${client[@]}" shop <"$work/dump.sql"; }

sha=$(sha256sum "$plugins/mysql.wasm" | cut -d' ' -f1)
cat >"$work/rewind.toml" <<TOML
[project]
name = "bench"
[store]
url = "file://$work/store"
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
export REWIND_CACHE_DIR="$work/cache"
rw() { "$rewind" --config "$work/rewind.toml" -q "$@"; }
rw plugins inspect db >/dev/null # compile once, outside the measurement

ref_seeds_backup=$(median seeds_backup)
ref_alone_backup=$(median alone_backup)
rw_backup=$(median rw backup)
ref_seeds_restore=$(median seeds_restore)
ref_alone_restore=$(median alone_restore)
rw_restore=$(median rw rollback --quick --yes)
count=$(mariadb "${client[@]}" -N shop -e "select count(*) from orders")
[ "$count" = "$rows" ] || { echo "after the rollback orders has $count rows, not $rows" >&2; exit 1; }

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
printf '\n%s rows: dump %s bytes, gzip -6 %s bytes, rewind store %s bytes\n' "$rows" \
    "$(stat -c %s "$work/dump.sql")" "$(stat -c %s "$work/dump.sql.gz")" "$(du -sb "$work/store/blobs" | cut -f1)"
printf '%-8s %14s %14s %10s %14s %14s\n' step "seeds (gzip)" "tool alone" rewind "vs seeds" "vs alone"
printf '%-8s %14s %14s %10s %14s %14s\n' backup "$ref_seeds_backup" "$ref_alone_backup" "$rw_backup" \
    "$(ratio "$ref_seeds_backup" "$rw_backup")x faster" "$(ratio "$rw_backup" "$ref_alone_backup")"
printf '%-8s %14s %14s %10s %14s %14s\n' restore "$ref_seeds_restore" "$ref_alone_restore" "$rw_restore" \
    "$(ratio "$ref_seeds_restore" "$rw_restore")x faster" "$(ratio "$rw_restore" "$ref_alone_restore")"
