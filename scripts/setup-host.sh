#!/usr/bin/env bash
# Install every host tool kiln and its tests use, on Debian or Ubuntu.
# Idempotent and fast when everything is there: a package counts as present
# only when it is installed AND the commands and files kiln uses from it
# exist and run; apt-get update runs only when something is missing.
# Whatever is missing goes in one apt-get transaction, simulated first, that
# may not remove a listed package (a newer qemu-utils from backports would
# otherwise be removed by Debian's qemu-system-x86). Afterwards every command
# and file is checked again. Exit 3 when the host cannot be set up.
# Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # building layers
  mmdebstrap tar zstd ca-certificates uidmap arch-test
  # kiln-init is linked statically against glibc
  libc6-dev util-linux
  # booting and checking images
  qemu-system-x86 qemu-utils ovmf systemd-boot-efi
  e2fsprogs dosfstools mtools cryptsetup-bin fdisk gdisk binutils cpio busybox-static
  # systemd-dissect reads the images as systemd would; curl is the client
  # that debian-web's [[test.command]] runs against the guest
  systemd-container curl
  # publishing
  minisign skopeo docker-registry
  # reproducibility checks and benchmarks
  faketime python3 python3-venv
  # Secure Boot and measured boot: sbverify, openssl (test certificates), a
  # software TPM, systemd-measure (PCR 11 oracle)
  sbsigntool openssl swtpm swtpm-tools systemd
)

# What kiln and its tests use from each package: a command name (looked up in
# PATH, sbin directories included) or an absolute path (a glob is allowed)
# that must exist.
declare -A PROVIDES=(
  [mmdebstrap]="mmdebstrap"
  [tar]="tar"
  [zstd]="zstd"
  [ca-certificates]="/etc/ssl/certs/ca-certificates.crt"
  [uidmap]="newuidmap newgidmap"
  [arch-test]="arch-test"
  [libc6-dev]="/usr/lib/*/libc.a"
  [util-linux]="setpriv unshare"
  [qemu-system-x86]="qemu-system-x86_64"
  [qemu-utils]="qemu-img"
  [ovmf]="/usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd /usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
  [systemd-boot-efi]="/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
  [e2fsprogs]="mkfs.ext4 e2fsck debugfs"
  [dosfstools]="fsck.vfat mkfs.vfat"
  [mtools]="mcopy mdir"
  [cryptsetup-bin]="veritysetup"
  [fdisk]="sfdisk"
  [gdisk]="sgdisk"
  [binutils]="objcopy objdump"
  [cpio]="cpio"
  [busybox-static]="busybox"
  [minisign]="minisign"
  [skopeo]="skopeo"
  [docker-registry]="/usr/bin/docker-registry"
  [faketime]="faketime"
  [python3]="/usr/bin/python3"
  [python3-venv]="/usr/bin/python3"
  [curl]="curl"
  [systemd-container]="systemd-dissect"
  [sbsigntool]="sbverify"
  [openssl]="openssl"
  [swtpm]="swtpm"
  [swtpm-tools]="swtpm_setup"
  [systemd]="/lib/systemd/systemd-measure"
)

# Commands that must also run, not only exist (a missing shared library or a
# half-removed package shows up here). Run with bash -c, output discarded.
declare -A PROBES=(
  [mmdebstrap]="mmdebstrap --version"
  [qemu-system-x86]="qemu-system-x86_64 --version"
  [qemu-utils]="qemu-img --version"
  [cryptsetup-bin]="veritysetup --version"
  [busybox-static]="busybox true"
  [minisign]="minisign -v"
  [skopeo]="skopeo --version"
  [faketime]="[ \"\$(faketime '2001-02-03 04:05:06' date +%Y)\" = 2001 ]"
  [python3-venv]="/usr/bin/python3 -c 'import ensurepip, venv'"
)

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup-host: run as root or install sudo" >&2; exit 3; }
  sudo="sudo"
fi

# mkfs.ext4, e2fsck, sfdisk… live in sbin, which a user's PATH may lack.
LOOKUP_PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# Print "item" for every command or file of package $1 that is missing or
# does not run (its probe fails); print nothing when all is well.
broken_items() {
  local p=$1 item
  for item in ${PROVIDES[$p]-}; do
    if [[ $item == /* ]]; then
      compgen -G "$item" >/dev/null || echo "$item"
    else
      PATH=$LOOKUP_PATH command -v "$item" >/dev/null || echo "$item"
    fi
  done
  if [ -n "${PROBES[$p]-}" ] &&
    ! PATH=$LOOKUP_PATH timeout 60 bash -c "${PROBES[$p]}" </dev/null >/dev/null 2>&1; then
    echo "'${PROBES[$p]}' fails"
  fi
}

# Installed version of every listed package that dpkg has installed (held or not).
declare -A INSTALLED=()
read_installed() {
  local name abbrev version
  INSTALLED=()
  while read -r name abbrev version; do
    [ "${abbrev:1:1}" = i ] && INSTALLED[${name%%:*}]=$version
  done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\n' "${PACKAGES[@]}" 2>/dev/null || true)
}

# Package -> why it counts as missing.
declare -A MISSING=()
find_missing() {
  local p bad
  MISSING=()
  read_installed
  for p in "${PACKAGES[@]}"; do
    bad=$(broken_items "$p")
    if [ -z "${INSTALLED[$p]+x}" ]; then
      MISSING[$p]="not installed"
    elif [ -n "$bad" ]; then
      MISSING[$p]="installed, but missing or broken: ${bad//$'\n'/, }"
    fi
  done
}

# The version of $1 to ask the archive for: apt's candidate when a configured
# source has it, else the newest version a configured source has (the
# installed one may come from a source no longer configured). Empty if none.
archive_version() {
  local p=$1 candidate versions
  versions=$(LC_ALL=C apt-cache madison "$p" 2>/dev/null |
    awk -F' [|] ' '$3 ~ /Packages$/ { gsub(/ /, "", $2); print $2 }')
  candidate=$(LC_ALL=C apt-cache policy "$p" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
  if [ -n "$candidate" ] && grep -qxF -- "$candidate" <<<"$versions"; then
    echo "$candidate"
  else
    head -n 1 <<<"$versions"
  fi
}

# The request, in PACKAGES order: name, or name=version when pinned.
request_list() {
  local p
  for p in "${PACKAGES[@]}"; do
    [ -n "${request[$p]+x}" ] && echo "${request[$p]}"
  done
  return 0
}

is_listed() {
  local p
  for p in "${PACKAGES[@]}"; do [ "$p" = "$1" ] && return 0; done
  return 1
}

find_missing
if [ "${#MISSING[@]}" -gt 0 ]; then
  for p in "${PACKAGES[@]}"; do
    [ -n "${MISSING[$p]+x}" ] && echo "setup-host: $p: ${MISSING[$p]}"
  done
  $sudo apt-get update -qq || echo "setup-host: apt-get update reported errors (unreachable extra sources?); continuing" >&2

  # What to ask apt for: the package name, or name=version when pinned.
  declare -A request=()
  declare -A pinned=()
  reinstall=()
  for p in "${PACKAGES[@]}"; do
    [ -n "${MISSING[$p]+x}" ] || continue
    if [ -n "${INSTALLED[$p]+x}" ]; then
      # Installed but broken: reinstall from the archive, at the installed
      # version when the archive still has it, else at the archive's.
      v=$(archive_version "$p")
      if [ -z "$v" ]; then
        echo "setup-host: $p is ${MISSING[$p]}, and no configured apt source has it" >&2
        exit 3
      fi
      request[$p]="$p=$v"
      pinned[$p]=$v
      [ "$v" = "${INSTALLED[$p]}" ] && reinstall=(--reinstall)
    else
      request[$p]=$p
    fi
  done

  # Simulate; for every listed package the transaction would remove, ask for
  # the archive's version of it too (apt then picks versions that go
  # together, e.g. qemu-utils at qemu-system-x86's version), and simulate
  # again. Each package is pinned at most once, so this ends.
  apt_opts=(--no-install-recommends --allow-downgrades "${reinstall[@]}")
  while :; do
    mapfile -t req < <(request_list)
    if ! sim=$($sudo env LC_ALL=C apt-get install -s "${apt_opts[@]}" "${req[@]}" 2>&1); then
      echo "setup-host: apt cannot install ${req[*]}:" >&2
      grep -E '^(E:|W:| )' <<<"$sim" | tail -n 40 >&2
      exit 3
    fi
    removed=$(awk '$1 == "Remv" || $1 == "Purg" { sub(/:.*/, "", $2); print $2 }' <<<"$sim")
    unlisted=() repinned=0 stuck=()
    for r in $removed; do
      if ! is_listed "$r"; then
        unlisted+=("$r")
      elif [ -n "${pinned[$r]+x}" ]; then
        stuck+=("$r")
      else
        v=$(archive_version "$r")
        if [ -z "$v" ]; then
          stuck+=("$r")
          continue
        fi
        echo "setup-host: that would remove $r ${INSTALLED[$r]-}; asking for $r=$v (the archive's version) too"
        request[$r]="$r=$v"
        pinned[$r]=$v
        repinned=1
      fi
    done
    if [ "${#stuck[@]}" -gt 0 ]; then
      echo "setup-host: apt-get install ${req[*]} would remove ${stuck[*]}, which kiln needs, and no version in the configured apt sources avoids that; resolve by hand:" >&2
      grep -E "^(Remv|Purg) " <<<"$sim" >&2
      exit 3
    fi
    [ "$repinned" = 1 ] || break
  done
  if [ "${#unlisted[@]}" -gt 0 ]; then
    echo "setup-host: note: this also removes ${unlisted[*]} (not a kiln tool)" >&2
  fi

  echo "setup-host: installing ${req[*]}"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${apt_opts[@]}" "${req[@]}" >"$log" 2>&1; then
    echo "setup-host: apt-get install failed:" >&2
    tail -n 40 "$log" >&2
    exit 3
  fi

  # Check every package again, not only those just installed.
  find_missing
  if [ "${#MISSING[@]}" -gt 0 ]; then
    echo "setup-host: after installing, still missing:" >&2
    for p in "${PACKAGES[@]}"; do
      [ -n "${MISSING[$p]+x}" ] && echo "  package $p: ${MISSING[$p]}" >&2
    done
    exit 3
  fi
fi

# The SPDX project's own validator, for the SBOM tests: spdx-tools from PyPI
# in a virtual environment (Debian's python refuses system-wide pip installs).
KILN_TOOLS=${KILN_TOOLS:-/opt/kiln-tools}
if [ ! -x "$KILN_TOOLS/bin/pyspdxtools" ]; then
  echo "setup-host: installing spdx-tools into $KILN_TOOLS"
  $sudo python3 -m venv "$KILN_TOOLS"
  $sudo "$KILN_TOOLS/bin/pip" install -q spdx-tools
fi
# virt-firmware's virt-fw-vars reads OVMF variable stores: the outside check
# of the Secure Boot keys kiln enrolls (same virtual environment).
if [ ! -x "$KILN_TOOLS/bin/virt-fw-vars" ]; then
  echo "setup-host: installing virt-firmware into $KILN_TOOLS"
  [ -x "$KILN_TOOLS/bin/pip" ] || $sudo python3 -m venv "$KILN_TOOLS"
  $sudo "$KILN_TOOLS/bin/pip" install -q virt-firmware
fi

if ! command -v cargo >/dev/null; then
  cat >&2 <<'MSG'
setup-host: cargo is not installed. kiln needs a current stable Rust toolchain:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
MSG
  exit 3
fi
echo "setup-host: all host tools present"
