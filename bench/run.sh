#!/usr/bin/env bash
# The host-core benchmarks behind `just bench` (issue 2) and the implicit
# TLS session rate (issue 4). What each figure means: docs/benchmarks.md.
#
# Run from anywhere; paths are taken from the repo root. Overrides:
#   MAILHOST_BIN         host binary       (target/release/mailhost)
#   MAILHOST_PLUGIN_DIR  plugin directory  (target/wasm32-wasip2/release)
#   BENCH_BIN            load generator and baselines (built into
#                        target/release when unset)
#   BENCH_ROUNDS         alternating rounds per rate figure (5)
#   BENCH_SECONDS        seconds per round (3)
#   BENCH_CLIENTS        concurrent clients (16)
#   BENCH_IDLE           idle connections held (10000)
#   BENCH_FORK_IDLE      idle connections held by fork-echo (1000)
#   BENCH_HOST_LOG       the host's RUST_LOG during the run (warn)
#   BENCH_INSTANTIATE    instantiations for the latency figure (10000)
#   BENCH_SESSIONS       in-process sessions for the sandbox figure (20000)
#   BENCH_INSTRUCTIONS   sessions for the instruction counts (2000; 0 skips)

set -euo pipefail

cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
host_bin=${MAILHOST_BIN:-$target_dir/release/mailhost}
plugin_dir=${MAILHOST_PLUGIN_DIR:-$target_dir/wasm32-wasip2/release}
rounds=${BENCH_ROUNDS:-5}
seconds=${BENCH_SECONDS:-3}
clients=${BENCH_CLIENTS:-16}
idle=${BENCH_IDLE:-10000}
fork_idle=${BENCH_FORK_IDLE:-1000}
host_log=${BENCH_HOST_LOG:-warn}
instantiate_count=${BENCH_INSTANTIATE:-10000}
session_count=${BENCH_SESSIONS:-20000}
instruction_sessions=${BENCH_INSTRUCTIONS:-2000}

# Seconds allowed for the host to compile the plugin and answer.
readonly STARTUP_WAIT=120
# Descriptors each side needs beyond the idle connections.
readonly FD_SLACK=1024
# Seconds the idle connections settle before the host's memory is read.
readonly IDLE_SETTLE=2
# Seconds of unmeasured load per server before the rounds.
readonly WARMUP=1
# Sessions of the shorter of the two counted runs; the difference of the
# runs leaves out startup and shutdown.
readonly COUNT_BASE=200
# Connection limit of the counted host: valgrind cannot reserve the pool
# that the rate figures' limits size.
readonly COUNT_MAX_CONNECTIONS=64

fail() {
    echo "bench: $*" >&2
    exit 1
}

# Absolute paths: the config lives in a temporary directory.
host_bin=$(realpath "$host_bin" 2>/dev/null) || host_bin=
plugin=$(realpath "$plugin_dir/mailhost_echo.wasm" 2>/dev/null) || plugin=
[[ -x $host_bin ]] || fail "no host binary; build it with" \
    "\`cargo build --release -p mailhost\` or set MAILHOST_BIN"
[[ -f $plugin ]] || fail "no echo plugin in \`$plugin_dir\`; build it with" \
    "\`cargo build --release --target wasm32-wasip2 -p mailhost-echo\`" \
    "or set MAILHOST_PLUGIN_DIR"

if [[ -n ${BENCH_BIN:-} ]]; then
    bench=$(realpath "$BENCH_BIN" 2>/dev/null) || bench=
    [[ -x $bench ]] || fail "BENCH_BIN \`$BENCH_BIN\` is not an executable"
else
    echo "bench: building the load generator and baselines"
    cargo build --release --quiet -p mailhost-bench
    bench=$(realpath "$target_dir/release/mailhost-bench")
fi

# Both the host and idle-hold keep one descriptor per idle connection.
need_fds=$((idle + FD_SLACK))
hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt $need_fds ]]; then
    fail "the hard descriptor limit is $hard; $need_fds are needed for" \
        "$idle idle connections (lower BENCH_IDLE)"
fi
ulimit -n "$need_fds"

work=$(mktemp -d "${TMPDIR:-/tmp}/mailhost-bench.XXXXXX")
pids=()
cleanup() {
    # Only the processes this script started, by pid.
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Start a baseline server in the background; sets $address and $pid.
start_baseline() {
    local name=$1
    shift
    "$bench" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pid=$!
    pids+=("$pid")
    address=
    for _ in $(seq 100); do
        address=$(sed -n 's/^listening address=//p' "$work/$name.out")
        [[ -n $address ]] && break
        sleep 0.1
    done
    [[ -n $address ]] || fail "$name did not start: $(cat "$work/$name.err")"
}

# VmRSS of a process, in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Proportional set size of a process and its children, in KiB: each page
# shared by N processes counts 1/N. For fork-echo, whose children share
# most of their pages with the parent and each other, summed RSS would
# count every shared page once per child.
pss_tree_kib() {
    local parent=$1 stat pid ppid rest total=0 pss
    for stat in /proc/[0-9]*/stat; do
        # Field 4 is the parent pid; the command in field 2 may hold
        # spaces, so cut after its closing parenthesis.
        read -r rest <"$stat" 2>/dev/null || continue
        pid=${rest%% *}
        rest=${rest##*) }
        read -r _ ppid _ <<<"$rest"
        [[ $pid == "$parent" || $ppid == "$parent" ]] || continue
        pss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null)
        total=$((total + ${pss:-0}))
    done
    echo "$total"
}

# CPU time a process and its reaped children used, in clock ticks: for
# fork-echo the children do the work.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat"
}
clock_tick=$(getconf CLK_TCK)

# One load run against server $2 (ours, native, fork, ours-tls,
# native-tls); prints its result and leaves the sessions/s in $rate and
# the server's CPU microseconds per session in $cpu.
run_load() {
    local label=$1 server=$2 duration=$3
    local tls=()
    [[ $server == *-tls ]] && tls=(--tls "$work/cert.pem")
    local pid=${pid_of[$server]} before out completed
    before=$(cpu_ticks "$pid")
    out=$("$bench" load --label "$label" --addr "${addr_of[$server]}" \
        -c "$clients" -d "$duration" "${tls[@]}")
    rate=$(echo "$out" | sed -n 's/^load .* rate=\([0-9]*\) .*/\1/p' | head -n 1)
    completed=$(echo "$out" | sed -n 's/^load .* completed=\([0-9]*\) .*/\1/p')
    [[ -n $rate && -n $completed ]] || fail "no rate in the output of load $label"
    cpu=$(awk -v a="$before" -v b="$(cpu_ticks "$pid")" -v n="$completed" \
        -v hz="$clock_tick" 'BEGIN { printf "%.0f", n ? (b - a) * 1e6 / hz / n : 0 }')
    echo "$out" | sed "s/^load .*/& server_cpu_us=$cpu/; s/^/  /"
}

memory=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "bench: machine: $(nproc) cores, $memory, $(uname -sr);" \
    "client and servers share the cores"
echo "bench: host \`$host_bin\`, plugin \`$plugin\`," \
    "host log level \`$host_log\`"

# A host config: the data directory, both connection limits at $1 and a
# plaintext echo listener on port $2.
host_config() {
    cat <<EOF
data-dir = "$work/data"
shutdown-grace = 1

[limits]
max-connections = $1
max-connections-per-ip = $1

[[listener]]
name = "echo"
address = "127.0.0.1:$2"
protocol = "other"
role = "session"
plugin = "$plugin"
EOF
}

# The host: a plaintext and an implicit-TLS echo listener, limits sized
# for the idle figure (they also size the instance pool).
port=$("$bench" free-port)
tls_port=$("$bench" free-port)
[[ $port != "$tls_port" ]] || tls_port=$("$bench" free-port)
max_connections=$((idle + FD_SLACK))

{
    host_config "$max_connections" "$port"
    cat <<EOF

[[listener]]
name = "echo-tls"
address = "127.0.0.1:$tls_port"
protocol = "other"
role = "session"
plugin = "$plugin"
tls = "implicit"

[tls]
certificate = "$work/cert.pem"
key = "$work/key.pem"
EOF
} >"$work/mailhost.toml"
"$host_bin" self-signed-cert --config "$work/mailhost.toml" >/dev/null

RUST_LOG=$host_log NO_COLOR=1 "$host_bin" run --config "$work/mailhost.toml" \
    2>"$work/host.log" &
host_pid=$!
pids+=("$host_pid")
if ! "$bench" probe --addr "127.0.0.1:$port" --wait "$STARTUP_WAIT" >/dev/null; then
    tail -n 20 "$work/host.log" >&2
    fail "the host did not serve an echo session"
fi
"$bench" probe --addr "127.0.0.1:$tls_port" --tls "$work/cert.pem" --wait 10 >/dev/null ||
    fail "the host's TLS listener did not serve an echo session"

start_baseline native native-echo
native=$address native_pid=$pid
start_baseline native-tls native-echo \
    --certificate "$work/cert.pem" --key "$work/key.pem"
native_tls=$address native_tls_pid=$pid
start_baseline fork fork-echo --max-children 1024
fork=$address fork_pid=$pid

# Where each server of the rate figures listens and which process does
# its work.
declare -A addr_of=(
    [ours]=127.0.0.1:$port [ours-tls]=127.0.0.1:$tls_port
    [native]=$native [native-tls]=$native_tls [fork]=$fork
)
declare -A pid_of=(
    [ours]=$host_pid [ours-tls]=$host_pid
    [native]=$native_pid [native-tls]=$native_tls_pid [fork]=$fork_pid
)
servers=(ours native fork ours-tls native-tls)

# Idle connections: a server's memory before and while it holds $4 of
# them (default $idle), read by the function $5 (default rss_kib).
idle_figure() {
    local name=$1 pid=$2 addr=$3 count=${4:-$idle} memory=${5:-rss_kib}
    local before with line opened
    before=$("$memory" "$pid")
    "$bench" idle-hold --addr "$addr" -n "$count" --hold 600 >"$work/idle-$name.out" &
    local holder=$!
    pids+=("$holder")
    for _ in $(seq 1200); do
        line=$(sed -n 's/^idle-hold holding=//p' "$work/idle-$name.out")
        [[ -n $line ]] && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $line ]] || fail "idle-hold against $name did not finish opening"
    sleep "$IDLE_SETTLE"
    with=$("$memory" "$pid")
    opened=$line
    sed -n "s/^idle-hold /  idle $name: /p" "$work/idle-$name.out" | grep -v holding= || true
    kill "$holder"
    wait "$holder" 2>/dev/null || true
    if [[ $opened -eq 0 ]]; then
        fail "no idle connection to $name opened"
    fi
    per_conn=$(awk -v a="$before" -v b="$with" -v n="$opened" \
        'BEGIN { printf "%.1f", (b - a) / n }')
    local measure=${memory%%_*}
    echo "  idle $name: ${measure}_before=${before}KiB ${measure}_with=${with}KiB" \
        "connections=$opened per_connection=${per_conn}KiB"
}

echo "bench: idle connections ($idle), RSS from /proc/PID/status"
idle_figure ours "$host_pid" "127.0.0.1:$port"
idle_ours=$per_conn
idle_figure native "$native_pid" "$native"
idle_native=$per_conn
# A fork-echo of its own, allowed a child for every idle connection (the
# rate rounds' one stops at 1,024), and measured by PSS.
echo "bench: idle connections to fork per connection ($fork_idle), PSS" \
    "of the server and its children from /proc/PID/smaps_rollup"
start_baseline fork-idle fork-echo --max-children $((fork_idle + FD_SLACK))
idle_figure fork "$pid" "$address" "$fork_idle" pss_tree_kib
idle_fork=$per_conn
kill "$pid"
# Let the host finish the sessions the holder just closed.
sleep "$IDLE_SETTLE"

echo "bench: warm-up (${WARMUP}s each, not counted)"
for server in "${servers[@]}"; do
    run_load "warmup-$server" "$server" "$WARMUP" >/dev/null
done

echo "bench: session rate, $rounds alternating rounds of ${seconds}s," \
    "$clients clients"
echo "bench: load average before the rounds: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A rates cpus
# Ratios within each round: the servers of one round ran seconds apart,
# under the same background load, so these are steadier than the ratio
# of the medians on a shared machine.
per_native=() per_fork=() per_tls=()
for round in $(seq "$rounds"); do
    echo " round $round"
    declare -A this=()
    for server in "${servers[@]}"; do
        run_load "$server" "$server" "$seconds"
        rates[$server]+="$rate "
        cpus[$server]+="$cpu "
        this[$server]=$rate
    done
    a=$("$bench" ratio "${this[ours]}" "${this[native]}")
    b=$("$bench" ratio "${this[ours]}" "${this[fork]}")
    c=$("$bench" ratio "${this[ours-tls]}" "${this[native-tls]}")
    echo "  round $round ratios: ours/native=$a ours/fork=$b" \
        "ours-tls/native-tls=$c"
    # A baseline that completed nothing has no ratio; leave it out.
    [[ $a == n/a ]] || per_native+=("$a")
    [[ $b == n/a ]] || per_fork+=("$b")
    [[ $c == n/a ]] || per_tls+=("$c")
done
echo "bench: load average after the rounds: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { "$bench" median "$@"; }
declare -A m_rate m_cpu
for server in "${servers[@]}"; do
    # Word splitting wanted: each list is space-separated numbers.
    # shellcheck disable=SC2086
    m_rate[$server]=$(median ${rates[$server]})
    # shellcheck disable=SC2086
    m_cpu[$server]=$(median ${cpus[$server]})
done
r_native=$("$bench" ratio "${m_rate[ours]}" "${m_rate[native]}")
r_fork=$("$bench" ratio "${m_rate[ours]}" "${m_rate[fork]}")
r_tls_native=$("$bench" ratio "${m_rate[ours-tls]}" "${m_rate[native-tls]}")
r_tls_plain=$("$bench" ratio "${m_rate[ours-tls]}" "${m_rate[ours]}")
# Two decimals: the ratios are around 1.
median_ratio() { "$bench" median --decimals 2 "$@" 2>/dev/null || echo n/a; }
rr_native=$(median_ratio "${per_native[@]}")
rr_fork=$(median_ratio "${per_fork[@]}")
rr_tls=$(median_ratio "${per_tls[@]}")

echo "bench: instantiation latency and whole sessions in process"
sandbox_cpu=
if "$host_bin" plugin bench --help 2>/dev/null | grep -q -- --sessions; then
    timed=$("$host_bin" plugin bench "$plugin" --count "$instantiate_count" \
        --sessions "$session_count" 2>&1 || true)
    instantiate=$(echo "$timed" | grep -m 1 '^instantiate ' || true)
    [[ -n $instantiate ]] || instantiate="instantiate: no result line"
    echo "$timed" | grep '^session ' | sed 's/^/  /'
    sandbox_cpu=$(echo "$timed" |
        sed -n 's/^session cpu_per_session=\([0-9.]*\)us.*/\1/p')
elif "$host_bin" plugin bench --help >/dev/null 2>&1; then
    instantiate=$("$host_bin" plugin bench "$plugin" --count "$instantiate_count" 2>&1 |
        grep -m 1 '^instantiate' || true)
    [[ -n $instantiate ]] || instantiate="instantiate: no result line"
else
    instantiate="not measured: this host has no \`mailhost plugin bench\`"
fi
echo "  $instantiate"
p99=$(echo "$instantiate" | sed -n 's/.*p99=\([0-9.]*\)us.*/\1/p')

# User-space instructions per session of a server run by valgrind's
# cachegrind ($1 names it, $2 is its address, the rest its command): the
# difference between a run of COUNT_BASE sessions and one of
# COUNT_BASE + $instruction_sessions, divided by the latter. Unlike the
# rates it does not move with the machine's load; kernel work is not in
# it. Leaves the figure in $instructions.
count_instructions() {
    local name=$1 addr=$2 sessions refs vpid
    shift 2
    local counted=()
    for sessions in "$COUNT_BASE" $((COUNT_BASE + instruction_sessions)); do
        valgrind --tool=cachegrind --cache-sim=no \
            --cachegrind-out-file=/dev/null "$@" \
            >"$work/count-$name.out" 2>"$work/count-$name.err" &
        vpid=$!
        pids+=("$vpid")
        "$bench" probe --addr "$addr" --wait "$STARTUP_WAIT" >/dev/null ||
            fail "$name under valgrind did not serve:" \
                "$(tail -n 5 "$work/count-$name.err")"
        "$bench" load --addr "$addr" -c 4 -d 600 --max-sessions "$sessions" \
            >/dev/null
        # TERM, not INT: a background job of a script ignores SIGINT.
        kill -TERM "$vpid"
        wait "$vpid" 2>/dev/null || true
        refs=$(sed -n 's/^==[0-9]*== I *refs: *//p' "$work/count-$name.err" |
            tr -d ,)
        [[ -n $refs ]] || fail "no instruction count for $name"
        counted+=("$refs")
    done
    instructions=$(((counted[1] - counted[0]) / instruction_sessions))
    echo "  $name: ${counted[0]} instructions for $COUNT_BASE sessions," \
        "${counted[1]} for $((COUNT_BASE + instruction_sessions)):" \
        "$instructions per session"
}

instructions_ours=n/a instructions_native=n/a instructions_ratio=n/a
if [[ $instruction_sessions -eq 0 ]]; then
    echo "bench: instruction counts skipped (BENCH_INSTRUCTIONS=0)"
elif ! command -v valgrind >/dev/null; then
    echo "bench: instruction counts not measured: no valgrind" \
        "(apt-get install valgrind)"
else
    echo "bench: user-space instructions per session under valgrind" \
        "($instruction_sessions sessions)"
    count_port=$("$bench" free-port)
    # The rate host's data directory: its compiled plugin is reused.
    host_config "$COUNT_MAX_CONNECTIONS" "$count_port" >"$work/count.toml"
    RUST_LOG=$host_log NO_COLOR=1 count_instructions ours \
        "127.0.0.1:$count_port" "$host_bin" run --config "$work/count.toml"
    instructions_ours=$instructions
    count_port=$("$bench" free-port)
    count_instructions native "127.0.0.1:$count_port" \
        "$bench" native-echo --listen "127.0.0.1:$count_port"
    instructions_native=$instructions
    instructions_ratio=$(awk -v a="$instructions_ours" \
        -v b="$instructions_native" 'BEGIN { printf "%.2f", a / b }')
fi

# Whether a figure meets its target from the issue.
verdict() {
    awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
        if (v == "n/a") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
        print ok ? "meets" : "MISSES"
    }'
}

echo
echo "bench: summary (medians of $rounds rounds)"
printf '  %-40s %10s  %s\n' "figure" "value" "target"
row() { printf '  %-40s %10s  %s\n' "$1" "$2" "${3:-}"; }
row "sessions/s ours" "${m_rate[ours]}"
row "sessions/s native tokio" "${m_rate[native]}"
row "sessions/s fork per connection" "${m_rate[fork]}"
row "ours / native (of medians)" "$r_native" \
    ">= 0.8 $(verdict "$r_native" 0.8 '>=')"
row "ours / native (median of rounds)" "$rr_native" \
    ">= 0.8 $(verdict "$rr_native" 0.8 '>=')"
row "ours / fork (of medians)" "$r_fork" ">= 2 $(verdict "$r_fork" 2 '>=')"
row "ours / fork (median of rounds)" "$rr_fork" \
    ">= 2 $(verdict "$rr_fork" 2 '>=')"
row "TLS sessions/s ours" "${m_rate[ours-tls]}"
row "TLS sessions/s native tokio" "${m_rate[native-tls]}"
row "ours TLS / native TLS (of medians)" "$r_tls_native"
row "ours TLS / native TLS (median of rounds)" "$rr_tls"
row "ours TLS / ours plaintext" "$r_tls_plain"
for server in "${servers[@]}"; do
    row "server CPU us per session, $server" "${m_cpu[$server]}"
done
row "KiB per idle connection, ours" "$idle_ours" "<= 64 $(verdict "$idle_ours" 64 '<=')"
row "KiB per idle connection, native" "$idle_native"
row "KiB per idle connection, fork (PSS)" "$idle_fork"
if [[ -n $p99 ]]; then
    row "instantiate p99 (us)" "$p99" \
        "< 50 $(awk -v v="$p99" 'BEGIN { print (v + 0 < 50) ? "meets" : "MISSES" }')"
else
    row "instantiate p99 (us)" "n/a"
fi
row "host CPU us per in-process session" "${sandbox_cpu:-n/a}"
row "instructions per session, ours" "$instructions_ours"
row "instructions per session, native" "$instructions_native"
row "instructions ours / native" "$instructions_ratio"
