#!/bin/sh
# Build kiln-init, the initramfs's /init, as a static, stripped, reproducible
# x86-64 binary. Run from anywhere; prints the binary's path.
#
# Static with only the x86_64-unknown-linux-gnu target: glibc's static
# libraries (libc6-dev) and rustc's crt-static. The explicit --target keeps
# RUSTFLAGS off build scripts and proc macros. Paths of the checkout and the
# cargo home are remapped so the bytes do not depend on where it was built.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
target=x86_64-unknown-linux-gnu
cd "$root"
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$root=/kiln --remap-path-prefix=$cargo_home=/cargo" \
cargo build --locked --quiet -p kiln-init --target "$target" \
    --profile kiln-init \
    --config 'profile.kiln-init.inherits="release"' \
    --config 'profile.kiln-init.opt-level="s"' \
    --config 'profile.kiln-init.panic="abort"' \
    --config 'profile.kiln-init.lto=true' \
    --config 'profile.kiln-init.codegen-units=1' \
    --config 'profile.kiln-init.strip=true'
echo "${CARGO_TARGET_DIR:-$root/target}/$target/kiln-init/kiln-init"
