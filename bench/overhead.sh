#!/usr/bin/env bash
# What a whole rewind run costs over the work it does, side by side in one
# run (issue 15, item 6):
#
#   chain10  `rewind backup` of a chain of 10 `command` steps each running
#            /bin/true (sandboxed plugin, grants checked, a process spawned
#            through the host, the run's manifest hash-chained into the
#            store) against a shell script running /bin/true 10 times.
#            Target: under 50 ms more.
#   noop     one `rewind hook backup` of a `command` step running /bin/true
#            against /bin/true itself.
#   guard    `rewind demo`: a guarded deploy that breaks, its automatic
#            rollback and the demo's own checks, minus the demo's configured
#            health delay (guard.retries x guard.delay_s). Target: under 1 s.
#
# Medians of BENCH_RUNS (default 7) runs each, compile cache warm.
#
#   bash bench/overhead.sh
#   BENCH_PROFILE=debug BENCH_RUNS=3 bash bench/overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_PROFILE:-release}
runs=${BENCH_RUNS:-7}

if [ "$profile" = release ]; then ./build --release -q; else ./build -q; fi
rewind="$PWD/target/$profile/rewind"
plugins="$PWD/target/wasm32-wasip2/release"

work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-bench-overhead.XXXXXX")
trap 'rm -rf "$work"' EXIT
export REWIND_CACHE_DIR="$work/cache"

# Median wall seconds of `runs` runs of a command.
median() {
    local times=()
    for _ in $(seq "$runs"); do
        local start end
        start=$(date +%s%N)
        "$@" >/dev/null 2>&1
        end=$(date +%s%N)
        times+=("$(( (end - start) / 1000 ))")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.4f", a[int((NR+1)/2)] / 1e6}'
}

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
# Compile the plugin once, outside the measurement; check the chain runs.
rw backup

rw_chain=$(median rw backup)
sh_chain=$(median sh "$work/ten.sh")
rw_hook=$(median rw hook step0 backup)
true_one=$(median /bin/true)

# The demo's guard waits guard.retries x guard.delay_s between health
# passes; that wait is configuration, not rewind's cost.
"$rewind" --config "$work/demo.toml" -q init --template demo --app "$work/demo-app" \
    --plugins "$plugins" >/dev/null
delay=$(awk -F'[ =#]+' '/^retries/ {r=$2} /^delay_s/ {d=$2} END {print r * d}' "$work/demo.toml")
demo=$(median "$rewind" demo --plugins "$plugins")

printf '\n%-8s %-44s %10s %10s %10s\n' step what reference rewind "extra"
row() { printf '%-8s %-44s %10.3f %10.3f %10s\n' "$1" "$2" "$3" "$4" "$5"; }
row chain10 "10 no-op steps vs sh running /bin/true x10" "$sh_chain" "$rw_chain" \
    "$(echo "($rw_chain - $sh_chain) * 1000" | bc -l | xargs printf '%.0f ms')"
row noop "rewind hook backup vs /bin/true" "$true_one" "$rw_hook" \
    "$(echo "($rw_hook - $true_one) * 1000" | bc -l | xargs printf '%.0f ms')"
row guard "rewind demo minus ${delay} s of health delay" 0 \
    "$(echo "$demo - $delay" | bc -l)" "target 1 s"
