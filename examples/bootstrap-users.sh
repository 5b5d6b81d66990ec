#!/usr/bin/env bash
# Creates the demo account for `just run` on first use: alice@example.org
# with password `alice-password`. The example listeners are loopback-only;
# never reuse this account or password anywhere reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

users=data/users
if [ -s "$users" ]; then
    exit 0
fi
mkdir -p data
printf 'alice-password\n' |
    ./target/debug/mailhost user add --config examples/mailhost.toml \
        alice@example.org
echo "created demo account alice@example.org (password: alice-password)"
