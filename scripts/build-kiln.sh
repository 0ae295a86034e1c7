#!/usr/bin/env bash
# Build the kiln binary (release) and print its path.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p kiln >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
