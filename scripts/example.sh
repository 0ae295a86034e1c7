#!/usr/bin/env bash
# Quick start, command 1: install what is needed, build the example image
# (recipes/hello.toml), show what it is made of, and boot-test it under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
kiln=$(bash scripts/build-kiln.sh)
KILN_INIT=$(bash builder/init/build-static.sh)
export KILN_INIT
"$kiln" build recipes/hello.toml -o out
"$kiln" inspect out/hello-1.0.raw
# Boot test: OVMF → UKI → kiln-init → verity root → busybox → hello on :8080,
# judged by the recipe's [test] checks; the verdict is recorded in the store.
"$kiln" test out/hello-1.0.raw --junit out/hello-1.0.junit.xml
