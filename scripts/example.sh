#!/usr/bin/env bash
# Quick start, command 1: install what is needed, build the example image
# (recipes/hello.toml) and show what it is made of.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
kiln=$(bash scripts/build-kiln.sh)
"$kiln" build recipes/hello.toml -o out
"$kiln" inspect out/hello-1.0.tar
