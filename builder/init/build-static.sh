#!/bin/sh
# Print the path of kiln-init, the initramfs's /init, exactly as the kiln
# binary carries it. builder/build.rs builds it (a static, stripped,
# reproducible x86-64 binary; the flags live there) whenever cargo builds
# kiln, so this builds the release kiln and reads the path from cargo's
# report of the build script. kiln itself needs none of this; it is for
# tools that want the file (scripts/plain-image.sh).
set -eu
cd "$(dirname "$0")/../.."
init=$(cargo build --release --locked --quiet -p kiln --message-format=json |
  sed -n 's/.*\["KILN_INIT_BINARY","\([^"]*\)"\].*/\1/p')
if [ -z "$init" ] || [ ! -f "$init" ]; then
  echo "build-static.sh: cargo did not report the kiln-init that builder/build.rs built" >&2
  exit 1
fi
echo "$init"
