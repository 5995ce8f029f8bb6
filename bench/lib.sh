# Shared by the benchmarks (sourced): timing, medians, the rewind binary,
# and the table every part adds its rows to.
#
# A row is `step|rewind s|reference|reference s|ratio|target`, appended to
# $BENCH_TABLE; bench/run prints them all at the end.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile=${BENCH_PROFILE:-release}
if [ -z "${BENCH_BUILT:-}" ]; then
    if [ "$profile" = release ]; then ./build --release -q; else ./build -q; fi
    export BENCH_BUILT=1
fi
rewind="$PWD/target/$profile/rewind"
plugins="$PWD/target/wasm32-wasip2/release"
export BENCH_TABLE=${BENCH_TABLE:-/dev/stdout}

# Wall seconds of one command (its stdout discarded).
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

# The median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# median_of N CMD...: run CMD N times (after `before_each`, if defined),
# print the median seconds.
median_of() {
    local n=$1 i times=()
    shift
    for ((i = 0; i < n; i++)); do
        if declare -F before_each >/dev/null; then before_each; fi
        times+=("$(seconds "$@")")
    done
    median "${times[@]}"
}

# row STEP REWIND_S REFERENCE REFERENCE_S RATIO TARGET
row() { printf '%s|%s|%s|%s|%s|%s\n' "$@" >>"$BENCH_TABLE"; }

ratio() { echo "scale=2; $1 / $2" | bc -l | sed 's/^\./0./'; }

# A rewind.toml for one `command` instance `dump` whose backup prints
# $1 and whose revert writes its input to $2, storing in $3.
dump_config() {
    local sha
    sha=$(sha256sum "$plugins/command.wasm" | cut -d' ' -f1)
    cat <<TOML
[project]
name = "bench"
[store]
url = "file://$3"
keep_days = 365
keep_last = 100
[plugins.dump]
source = "$plugins/command.wasm"
sha256 = "$sha"
grants.exec = ["sh -c *"]
params = { backup = ["sh", "-c", "cat $1"], revert = ["sh", "-c", "cat > $2"], restore_stdin = true }
limits = { timeout_s = 3600 }
[chains]
backup = ["dump"]
rollback = ["dump"]
TOML
}
