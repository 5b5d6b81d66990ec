#!/usr/bin/env bash
# Release builds of the host and of the load generator and baselines,
# optimised with a profile of themselves at work (profile-guided
# optimisation, PGO). Behind `just release` and `just bench`; what it
# changes and by how much: docs/benchmarks.md.
#
#   1. build both instrumented (`-Cprofile-generate`) into
#      target/pgo-train;
#   2. run them as the benchmarks do, briefly: `bench/run.sh` with small
#      counts (echo sessions plain and over TLS, idle connections, the
#      in-process sessions; the native baseline and the load client the
#      same way) and `bench/protocols.py --quick` (SMTP, POP3 and IMAP
#      through the real plugins and mail store);
#   3. merge what every process wrote with `llvm-profdata`;
#   4. build both again with that profile (`-Cprofile-use`) into
#      target/pgo.
#
# Prints the two binaries' paths on the last lines. Needs the release
# plugins (`just plugins`) and the `llvm-tools` rustup component, which
# it installs when missing. Overrides: CARGO_TARGET_DIR (target).

set -euo pipefail

cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
target_dir=$(realpath -m "$target_dir")
triple=$(rustc -vV | sed -n 's/^host: //p')
train_dir=$target_dir/pgo-train
use_dir=$target_dir/pgo
profiles=$train_dir/profiles
merged=$train_dir/merged.profdata
plugin_dir=$target_dir/wasm32-wasip2/release

fail() {
    echo "pgo: $*" >&2
    exit 1
}

[[ -f $plugin_dir/mailhost_echo.wasm ]] ||
    fail "no release plugins in \`$plugin_dir\`; run \`just plugins\` first"

profdata=$(rustc --print sysroot)/lib/rustlib/$triple/bin/llvm-profdata
if [[ ! -x $profdata ]]; then
    echo "pgo: installing the llvm-tools component for llvm-profdata" >&2
    rustup component add llvm-tools
fi
[[ -x $profdata ]] || fail "no llvm-profdata at \`$profdata\`"

# `--target` keeps the flags off build scripts and procedural macros,
# which run at build time and have nothing to learn.
build() {
    local dir=$1 flags=$2
    RUSTFLAGS="$flags" CARGO_TARGET_DIR=$dir cargo build --release \
        --target "$triple" -p mailhost -p mailhost-bench
}

# Run the instrumented binaries on the training workload and merge what
# they wrote into $merged. A fresh profile each time: counts of an older
# build would not match.
train() {
    rm -rf "$profiles"
    mkdir -p "$profiles"
    # `%m` merges every process of one binary into one file under a lock.
    # The fork baseline is stopped by a signal and its children end with
    # `_exit`, so it writes nothing and its code is built unprofiled
    # (docs/benchmarks.md measures what that changes).
    export LLVM_PROFILE_FILE=$profiles/%m.profraw

    echo "pgo: training on the benchmarks' workload" >&2
    MAILHOST_BIN=$trained_host BENCH_BIN=$trained_bench \
        MAILHOST_PLUGIN_DIR=$plugin_dir \
        BENCH_ROUNDS=1 BENCH_SECONDS=2 BENCH_CLIENTS=16 BENCH_IDLE=1000 \
        BENCH_FORK_IDLE=100 BENCH_INSTANTIATE=2000 BENCH_SESSIONS=5000 \
        BENCH_INSTRUCTIONS=0 ./bench/run.sh >"$train_dir/train-run.log" ||
        fail "training run failed; see $train_dir/train-run.log"
    python3 bench/protocols.py --bin "$trained_host" \
        --plugins "$plugin_dir" --quick >"$train_dir/train-protocols.log" ||
        fail "protocol training failed; see $train_dir/train-protocols.log"
    unset LLVM_PROFILE_FILE

    shopt -s nullglob
    raw=("$profiles"/*.profraw)
    [[ ${#raw[@]} -gt 0 ]] || fail "the training run wrote no profile"
    "$profdata" merge -o "$merged" "${raw[@]}"
}

echo "pgo: building instrumented binaries into $train_dir" >&2
build "$train_dir" "-Cprofile-generate=$profiles"
trained_host=$train_dir/$triple/release/mailhost
trained_bench=$train_dir/$triple/release/mailhost-bench

# Train again only when the instrumented binaries or the plugins
# changed: rustc tracks the profile file, so a new profile, which never
# has quite the same counts, rebuilds everything.
stamp=$train_dir/trained.sha256
fingerprint=$(sha256sum "$trained_host" "$trained_bench" "$plugin_dir"/*.wasm)
if [[ -f $merged && -f $stamp && $(cat "$stamp") == "$fingerprint" ]]; then
    echo "pgo: binaries and plugins unchanged; keeping the profile" >&2
else
    train
    printf '%s\n' "$fingerprint" >"$stamp"
fi

echo "pgo: building optimised binaries into $use_dir" >&2
# Functions the training never ran are expected; no warning for each.
build "$use_dir" \
    "-Cprofile-use=$merged -Cllvm-args=-pgo-warn-missing-function=false"

echo "$use_dir/$triple/release/mailhost"
echo "$use_dir/$triple/release/mailhost-bench"
