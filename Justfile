# mailhost: `just` lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

wasm_target := "wasm32-wasip2"
plugin_dir := "target/" + wasm_target + "/release"

# List the recipes.
default:
    @just --list

# Build the host and every plugin.
build: plugins
    cargo build -p mailhost

# Build the protocol, echo and test plugins as components.
plugins:
    cargo build --release --target {{wasm_target}} \
        -p mailhost-echo -p mailhost-bare -p mailhost-hostile \
        -p mailhost-snoop -p mailhost-smtp -p mailhost-pop3 \
        -p mailhost-imap -p mailhost-template

# The Python plugin, built by componentize-py (installed if missing).
python_plugin := "target/python/mailhost_python_echo.wasm"

# Build the Python plugin in plugins/python-echo into a component.
python-plugin:
    #!/usr/bin/env bash
    set -euo pipefail
    out={{python_plugin}}
    source=plugins/python-echo
    if [ -f "$out" ] && [ -z "$(find "$source/app.py" wit -newer "$out")" ]; then
        exit 0
    fi
    if ! command -v componentize-py >/dev/null; then
        python3 -m pip install --quiet componentize-py==0.25.1
    fi
    mkdir -p "$(dirname "$out")"
    componentize-py -d wit -w session componentize --stub-wasi \
        -p "$source" app -o "$out"
    rm -rf "$source/__pycache__"

# Create plugins/NAME from the template plugin, then `just test-plugin NAME`.
new-plugin name:
    ./plugins/template/new-plugin.sh {{name}}

# Build plugins/NAME and run its transcripts with `mailhost plugin test`.
test-plugin name:
    cargo build -p mailhost
    cargo build --release --target {{wasm_target}} -p mailhost-{{name}}
    ./target/debug/mailhost plugin test --cache target/plugin-test-cache \
        {{plugin_dir}}/mailhost_{{replace(name, "-", "_")}}.wasm \
        plugins/{{name}}/transcripts/*.txt

# Run the host on the example config (loopback only, ports + 2000).
run: build
    mkdir -p data
    ./target/debug/mailhost self-signed-cert --config examples/mailhost.toml
    ./examples/bootstrap-users.sh
    ./target/debug/mailhost run --config examples/mailhost.toml

# Run every test: unit tests, then the integration tests on loopback.
test: build python-plugin
    cargo test --workspace

# Validate a config and the plugins it names.
check config="examples/mailhost.toml": build
    ./target/debug/mailhost check --config {{config}}

# Formatting check and clippy with warnings denied.
lint: fmt-check clippy

# What CI runs: the lints, then the tests.
ci: lint test

# Profile-guided release build of the host (bench/pgo.sh), in target/pgo/.
release: plugins
    ./bench/pgo.sh

# Benchmarks on the builds of `just release` (docs/benchmarks.md).
bench: plugins
    #!/usr/bin/env bash
    set -euo pipefail
    built=$(./bench/pgo.sh | tail -n 2)
    host=$(sed -n 1p <<<"$built")
    MAILHOST_BIN=$host BENCH_BIN=$(sed -n 2p <<<"$built") ./bench/run.sh
    cargo run --release -p mailhost-store --example store_bench
    python3 bench/protocols.py --bin "$host" --plugins {{plugin_dir}}
    python3 bench/startup.py --bin "$host" --plugins {{plugin_dir}}

[private]
fmt-check:
    cargo fmt --all -- --check

[private]
clippy:
    cargo clippy -p mailhost -p mailhost-store -p mailhost-tests \
        -p mailhost-bench --all-targets -- -D warnings
    cargo clippy --target {{wasm_target}} -p mailhost-sdk -p mailhost-echo \
        -p mailhost-bare -p mailhost-hostile -p mailhost-snoop \
        -p mailhost-smtp -p mailhost-pop3 -p mailhost-imap \
        -p mailhost-template -- -D warnings
