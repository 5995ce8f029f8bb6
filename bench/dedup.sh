#!/usr/bin/env bash
# Target 4 of the performance issue: 10 successive backups of a dump
# (BENCH_DEDUP_MB, default 1000) of which 1% of the rows changed before
# each (one stretch, a different one each time); store growth and time of
# each backup. Then the case chunking cannot help: one backup after 1% of
# the rows changed spread evenly.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mb=${BENCH_DEDUP_MB:-1000}
backups=${BENCH_DEDUP_BACKUPS:-10}
work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-dedup.XXXXXX")
trap 'rm -rf "$work"' EXIT
export REWIND_CACHE_DIR="$work/cache"

echo "dedup: making a ${mb} MB dump" >&2
python3 bench/dump.py make "$mb" "$work/dump.sql"
dump_config "$work/dump.sql" "$work/restored.sql" "$work/store" >"$work/rewind.toml"
rw() { "$rewind" --config "$work/rewind.toml" -q "$@"; }
rw plugins inspect dump >/dev/null
size=$(stat -c %s "$work/dump.sql")
blobs() { du -sb "$work/store/blobs" | cut -f1; }

times=() growth=()
for ((i = 1; i <= backups; i++)); do
    if ((i > 1)); then
        python3 bench/dump.py stretch "$i" "$work/dump.sql" "$work/next.sql"
        mv "$work/next.sql" "$work/dump.sql"
    fi
    cat "$work/dump.sql" >/dev/null
    before=$( [ -d "$work/store/blobs" ] && blobs || echo 0)
    t=$(seconds rw backup)
    after=$(blobs)
    times+=("$t")
    growth+=("$((after - before))")
    printf 'dedup: backup %2d: %6.2f s, store +%d bytes\n' "$i" "$t" "$((after - before))" >&2
done
first_t=${times[0]} first_g=${growth[0]}
later_t=$(median "${times[@]:1}")
later_g=$(median "${growth[@]:1}")
total=$(blobs)
rw artifacts verify >/dev/null

python3 bench/dump.py scatter 99 "$work/dump.sql" "$work/next.sql"
mv "$work/next.sql" "$work/dump.sql"
before=$(blobs)
scatter_t=$(seconds rw backup)
scatter_g=$(($(blobs) - before))

pct() { echo "scale=1; 100 * $1 / $2" | bc -l | sed 's/^\./0./'; }
row "dedup: later backup, 1% rows changed in a stretch (median)" "$later_t" "first backup" "$first_t" \
    "$(ratio "$later_t" "$first_t")x the time" "<= 1x"
row "dedup: store growth per later backup" "$later_g" "first backup's" "$first_g" \
    "$(pct "$later_g" "$size")% of the dump" "< 5%"
row "dedup: store after $backups backups (bytes)" "$total" "$backups whole backups" "$((first_g * backups))" \
    "$(ratio "$total" "$((first_g * backups))")x" "little more than one"
row "dedup: 1% rows changed, spread evenly" "$scatter_t" "first backup" "$first_t" \
    "$(pct "$scatter_g" "$size")% of the dump added" "(out of reach: see docs)"
