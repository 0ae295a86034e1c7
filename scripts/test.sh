#!/usr/bin/env bash
# Quick start, command 2: every test. Unit and build tests (`cargo test`, no
# QEMU, no network), then the end-to-end tests in qemu-tests/, which build the
# repo's recipes with the real tools. A test whose tool is missing fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -q -- -D warnings
cargo test --locked -p kiln
# 9 s per fuzz target, two at a time: 13 targets, about a minute.
bash scripts/fuzz.sh 9
KILN_BIN=$(bash scripts/build-kiln.sh)
export KILN_BIN
cargo test --locked -p kiln-init -p kiln-format
cargo test --locked -p kiln-qemu-tests -- --test-threads=1
