#!/usr/bin/env bash
# Fuzz every reader of untrusted bytes for SECONDS (default 60) each: random
# damaged inputs from a seed taken from the clock (printed, so a failure can
# be replayed with KILN_FUZZ_SEED=HEX). Runs the targets of
# builder/tests/fuzz_readers.rs two at a time, in the debug build `cargo test`
# makes (overflow checks on, so wrapping arithmetic panics); a failing
# input is saved under target/tmp/fuzz-failures/ for the corpus.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
export KILN_FUZZ_SECS="$secs"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked -p kiln --test fuzz_readers -- fuzz_ \
    --nocapture --test-threads=2 >"$log" 2>&1 || status=$?
# One line per target: cases run, time, seed.
grep -E '^fuzz [a-z0-9_]+: ' "$log" || true
if [ "$status" -ne 0 ]; then
    cat "$log"
    exit "$status"
fi
