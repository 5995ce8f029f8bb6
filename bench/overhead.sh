#!/usr/bin/env bash
# What a whole rewind run costs over the work it does, side by side in one
# run (issue 15, item 6):
#
#   chain10  `rewind backup` of a chain of 10 `command` steps each running
#            /bin/true (sandboxed plugin, grants checked, a process spawned
#            through the host, the journal and the manifest hash-chained
#            into the store) against a shell script running /bin/true 10
#            times. Target: under 50 ms more.
#   noop     one `rewind hook INSTANCE backup` of such a step (a whole
#            process: config, plugin load from the compile cache, the call)
#            against /bin/true itself.
#   guard    `rewind demo`: a guarded deploy that breaks, its automatic
#            rollback and the demo's own checks, minus the demo's configured
#            health delay (guard.retries x guard.delay_s). Target: under 1 s.
#
# Medians of BENCH_OVERHEAD_RUNS (default 9), compile cache warm.
#
#   bash bench/overhead.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
runs=${BENCH_OVERHEAD_RUNS:-9}

work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-overhead.XXXXXX")
trap 'rm -rf "$work"' EXIT
export REWIND_CACHE_DIR="$work/cache"

sha=$(sha256sum "$plugins/command.wasm" | cut -d' ' -f1)
{
    printf '[project]\nname = "overhead"\n[store]\nurl = "file://%s/store"\n' "$work"
    chain=()
    for i in $(seq 0 9); do
        printf '[plugins.step%s]\nsource = "%s/command.wasm"\nsha256 = "%s"\n' "$i" "$plugins" "$sha"
        printf 'grants.exec = ["/bin/true"]\nparams = { backup = ["/bin/true"], capture = false }\n'
        chain+=("\"step$i\"")
    done
    printf '[chains]\nbackup = [%s]\nrollback = []\n' "$(IFS=,; echo "${chain[*]}")"
} >"$work/rewind.toml"
printf '#!/bin/sh\n' >"$work/ten.sh"
for _ in $(seq 10); do echo /bin/true >>"$work/ten.sh"; done

rw() { "$rewind" --config "$work/rewind.toml" -q "$@"; }
rw backup >/dev/null # compile the plugin once, outside the measurement

rw_chain=$(median_of "$runs" rw backup)
sh_chain=$(median_of "$runs" sh "$work/ten.sh")
rw_hook=$(median_of "$runs" rw hook step0 backup)
true_one=$(median_of "$runs" /bin/true)

# The demo's guard waits guard.retries x guard.delay_s between health
# passes: configuration, not rewind's cost.
"$rewind" --config "$work/demo.toml" -q init --template demo --app "$work/demo-app" \
    --plugins "$plugins" >/dev/null
delay=$(awk -F'[ =#]+' '/^retries/ {r=$2} /^delay_s/ {d=$2} END {print r * d}' "$work/demo.toml")
"$rewind" demo --plugins "$plugins" >/dev/null # compile its plugins first
demo=$(median_of 3 "$rewind" demo --plugins "$plugins")

ms() { echo "($1 - $2) * 1000" | bc -l | xargs printf '%.0f ms more'; }
printf '\n%-8s %10s %10s\n' step reference rewind
printf '%-8s %10s %10s\n' chain10 "$sh_chain" "$rw_chain" noop "$true_one" "$rw_hook" demo - "$demo"
row "10 no-op plugin steps (rewind backup)" "$rw_chain" "sh: /bin/true x10" "$sh_chain" \
    "$(ms "$rw_chain" "$sh_chain")" "< 50 ms more"
row "one hook call, whole process" "$rw_hook" "/bin/true" "$true_one" "$(ms "$rw_hook" "$true_one")" "-"
row "guard of the demo app, minus ${delay} s health delay" \
    "$(echo "$demo - $delay" | bc -l | xargs printf '%.2f')" "-" "-" "-" "< 1 s"
