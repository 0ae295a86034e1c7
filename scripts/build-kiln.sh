#!/usr/bin/env bash
# Build the kiln binary (release) and print its path. It carries kiln-init,
# which builder/build.rs builds along with it: the binary needs nothing else
# from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p kiln >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
