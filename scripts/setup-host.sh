#!/usr/bin/env bash
# Install every host tool kiln and its tests use, on Debian or Ubuntu.
# Idempotent: packages already installed are left alone, and apt-get update
# runs only when something is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # building layers
  mmdebstrap tar zstd ca-certificates uidmap arch-test
  # kiln-init is linked statically against glibc
  libc6-dev util-linux
  # booting and checking images
  qemu-system-x86 qemu-utils ovmf systemd-boot-efi
  e2fsprogs dosfstools mtools cryptsetup-bin fdisk gdisk binutils cpio busybox-static
  # publishing
  minisign skopeo docker-registry
  # reproducibility checks and benchmarks
  faketime python3 python3-venv curl
)

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup-host: run as root or install sudo" >&2; exit 3; }
  sudo="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  $sudo apt-get update -qq || echo "setup-host: apt-get update reported errors (unreachable extra sources?); continuing" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The SPDX project's own validator, for the SBOM tests: spdx-tools from PyPI
# in a virtual environment (Debian's python refuses system-wide pip installs).
KILN_TOOLS=${KILN_TOOLS:-/opt/kiln-tools}
if [ ! -x "$KILN_TOOLS/bin/pyspdxtools" ]; then
  echo "setup-host: installing spdx-tools into $KILN_TOOLS"
  $sudo python3 -m venv "$KILN_TOOLS"
  $sudo "$KILN_TOOLS/bin/pip" install -q spdx-tools
fi

if ! command -v cargo >/dev/null; then
  cat >&2 <<'MSG'
setup-host: cargo is not installed. kiln needs a current stable Rust toolchain:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
MSG
  exit 3
fi
echo "setup-host: all host tools present"
