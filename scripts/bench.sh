#!/usr/bin/env bash
# kiln's benchmark against its anchors: one run, one side-by-side table for
# recipes/hello.toml and recipes/debian-web.toml. Targets are ratios measured
# in this run, printed with met/NOT met and never asserted (STYLE.md, "Tests"):
# a missed target does not change the exit status.
#
# Measured for each recipe:
#  - kiln cold build: a fresh store, so mmdebstrap and apt download every
#    package from the host's Debian sources;
#  - kiln warm no-op build: the same recipe, store and output directory
#    again (every layer cached), median of 5 (hello) or 3 (debian-web);
#  - kiln app-only rebuild: the app layer's page edited (in a copy of
#    recipes/ and layers/, never the working tree), median of 5 edits (debian-web: 3);
#  - the plain-tools pipeline, scripts/plain-image.sh: mmdebstrap to a
#    tarball (fresh downloads too), mkfs.ext4 -d, veritysetup format, cpio +
#    zstd, objcopy UKI, mkfs.vfat + mcopy, sfdisk + dd; cold, and its
#    app-only analog (the kept mmdebstrap tarball, everything after it
#    redone). It runs after kiln's cold build, so any warmth of the mirror
#    or a proxy favours the plain pipeline, not kiln;
#  - mkosi (Debian's package), when it can build a bootable image on this
#    host; otherwise one line saying why;
#  - the physical floor: `cp` of kiln's finished image, median of 5;
#  - image sizes, apparent and allocated, and the root filesystem's used
#    bytes and inodes (dumpe2fs) for kiln and the plain pipeline.
# Ratios: warm no-op / cp (target < 3), app-only / cp (hello: target < 10),
# kiln cold / plain cold (target <= 1), kiln / mkosi.
#
# Fleet section: Debian's docker-registry on loopback as a layer cache
# (`kiln build --cache`): debian-web built by a first runner (fresh store,
# builds and pushes every layer) and a second (fresh store, every layer from
# the registry; checked, as is the equal image digest), ratio second / first
# (target < 0.5); then every recipe in recipes/ built one by one (one kiln
# per recipe) against all of them in one `kiln build recipes/*.toml` run,
# each from a fresh store, three rounds in alternating order (medians),
# ratio one run / one by one (target < 1); the image digests of the two
# must be equal in every round.
#
# Secondary section, as before: hello's allocated size against 24 MiB,
# debian-web's stripped base against 80 MiB and its layer sizes, the boot
# test of hello (start to verdict, phases and the ratio to a direct
# -kernel/-initrd boot, scripts/bench-boot.sh), the same with Secure Boot
# and with Secure Boot and a TPM (medians of 3, alternating), and the encoders bench
# (builder/benches/encoders.rs: kiln's packer and ext4 writer against tar |
# zstd and mkfs.ext4 -d).
#
# Needs root, the Debian mirror and the tools scripts/setup-host.sh installs;
# tools it lacks it installs with apt-get, else exits 3 naming the Debian
# package. Scratch space is one temporary directory, removed on exit; no
# process or loop device is left behind. Takes about 25-30 minutes on 2
# cores, most of it the cold debian-web builds.
set -euo pipefail
trap 'echo "bench: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: run as root (mmdebstrap's root mode, owners and device nodes in the roots)" >&2; exit 3; }
# ensure COMMAND DEBIAN-PACKAGE: install the package when the command is missing.
ensure() {
  command -v "$1" >/dev/null && return
  echo "bench: $1 not found: installing the Debian package $2" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1; } || true
  command -v "$1" >/dev/null || { echo "bench: $1 not found: install the Debian package $2 (scripts/setup-host.sh does)" >&2; exit 3; }
}
command -v cargo >/dev/null || { echo "bench: cargo not found: install a stable Rust toolchain (rustup: https://rustup.rs)" >&2; exit 3; }
ensure python3 python3
ensure tar tar
ensure zstd zstd
ensure mkfs.ext4 e2fsprogs
ensure dumpe2fs e2fsprogs
ensure mmdebstrap mmdebstrap
ensure veritysetup cryptsetup-bin
ensure mkfs.vfat dosfstools
ensure mcopy mtools
ensure sfdisk fdisk
ensure objcopy binutils
ensure cpio cpio
ensure depmod kmod
ensure qemu-system-x86_64 qemu-system-x86
ensure docker-registry docker-registry
ensure swtpm swtpm
if [ ! -f /usr/share/OVMF/OVMF_CODE_4M.fd ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ovmf >/dev/null 2>&1 || true
  [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "bench: /usr/share/OVMF/OVMF_CODE_4M.fd not found: install the Debian package ovmf" >&2; exit 3; }
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
reg_pid=""
trap '[ -z "$reg_pid" ] || { kill "$reg_pid"; wait "$reg_pid"; } 2>/dev/null; rm -rf "$tmp"' EXIT
rows="$tmp/rows.tsv" # secondary section: label, kiln, reference, ratio, note
: >"$rows"

now() { date +%s%N; }
# secs START_NS END_NS
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR + 1) / 2)] }'; }
# alternate ROUNDS A B [AFTER]: runs the commands A and B ROUNDS times, A
# first in odd rounds and B first in even ones (so neither always runs
# second, on a warmer machine), then AFTER, if given, each round.
alternate() {
  local i
  for i in $(seq "$1"); do
    if [ $((i % 2)) = 1 ]; then "$2"; "$3"; else "$3"; "$2"; fi
    [ -z "${4:-}" ] || "$4"
  done
}
# row LABEL KILN REFERENCE RATIO NOTE (secondary section)
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$rows"; }
# json FILE PYTHON-EXPRESSION-OVER-r
json() { python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# ratio A B [DIGITS]
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b > 0) printf "%.*f", d, a / b; else print "-" }'; }
# verdict VALUE LIMIT STRICT(lt|le): "met" or "NOT met"
verdict() { awk -v v="$1" -v l="$2" -v s="$3" 'BEGIN { ok = (s == "lt") ? v < l : v <= l; print ok ? "met" : "NOT met" }'; }
alloc() { stat -c '%b %B' "$1" | awk '{ printf "%d", $1 * $2 }'; }
# rootfs IMAGE: "USED_BYTES INODES" of the root-x86-64 partition's ext4.
rootfs() {
  local start
  start=$(sfdisk --json "$1" | python3 -c 'import json, sys
t = json.load(sys.stdin)["partitiontable"]
print(next(p["start"] for p in t["partitions"] if p.get("name") == "root-x86-64") * t.get("sectorsize", 512))')
  dumpe2fs -h "$1?offset=$start" 2>/dev/null | awk -F: '
    /^Block count/ { b = $2 } /^Free blocks/ { f = $2 } /^Block size/ { s = $2 }
    /^Inode count/ { i = $2 } /^Free inodes/ { fi = $2 }
    END { printf "%d %d\n", (b - f) * s, i - fi }'
}

declare -A V # V[metric:recipe]: the side-by-side table's cells

# 1. Binaries (not timed).
echo "bench: building release kiln, kiln-init and the encoders bench" >&2
kiln=$(bash scripts/build-kiln.sh)
KILN_INIT=$(sh builder/init/build-static.sh)
export KILN_INIT
cargo bench --locked -q -p kiln --bench encoders --no-run 2>/dev/null ||
  cargo bench --locked -p kiln --bench encoders --no-run
[ -x "$kiln" ] || die "build-kiln.sh printed $kiln, which is not an executable"

# mkosi: Debian's mkosi 14 builds a bootable image by mounting its ESP (vfat)
# and root from a loop device and installing packages with debootstrap and
# systemd-nspawn. Where the kernel has no vfat it cannot; say so and why.
mkosi_why=""
if ! grep -qw vfat /proc/filesystems && ! modinfo vfat >/dev/null 2>&1; then
  mkosi_why="not run: mkosi 14 mounts the ESP of a bootable image from a loop device and this kernel ($(uname -r)) has no vfat (not in /proc/filesystems, no module); tried here: \"mount: …/root/efi: unknown filesystem type 'vfat'\"; with --bootable=no it got further (after --nspawn-keep-unit and a tmpfs on /run/systemd/nspawn for nspawn's \"Failed to open system bus\" and \"Attempted to remove disk file system under /run/systemd/nspawn/propagate/…, and we can't allow that\") but wrote the verity partition into a regular file /dev/loop0p2 (no partition device node) and died with \"OSError: [Errno 6] No such device or address\""
else
  ensure mkosi mkosi
  ensure systemd-nspawn systemd-container
fi
# mkosi_build RECIPE PACKAGES OUTDIR: time a bootable, verity-protected
# gpt_ext4 image of those Debian packages (mkosi adds systemd, a kernel and
# dracut's initrd); prints "SECONDS IMAGE" or "FAIL last error line".
mkosi_build() {
  local out=$3 t0 img
  mkdir -p "$out" "$tmp/mkosi-ws"
  t0=$(now)
  if timeout 1200 unshare -m --propagation private sh -c '
      mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec "$@"' sh \
      mkosi --distribution debian --release bookworm --format gpt_ext4 --bootable --verity \
      --package "$2" --kernel-command-line "console=ttyS0" --nspawn-keep-unit \
      --workspace-dir "$tmp/mkosi-ws" --output "$out/$1.raw" --force build >"$out/log" 2>&1; then
    img=$(find "$out" -maxdepth 2 -name '*.raw' -type f -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
    echo "$(secs "$t0" "$(now)") $img"
  else
    echo "FAIL $(grep -E 'Error|error:|Errno|failed' "$out/log" | tail -n 1)"
  fi
}

# 2. Each recipe: kiln cold, warm no-op, app-only; plain cold and app-only;
# mkosi; cp; sizes.
declare -A APP_PAGE=(
  [hello]=layers/apps/hello/files/srv/hello/index.html
  [debian-web]=layers/apps/web/files/srv/www/index.html
)
# shellcheck disable=SC2054 # commas: mkosi's package list
declare -A MKOSI_PKGS=(
  [hello]=busybox-static
  [debian-web]=systemd-sysv,udev,dbus,iproute2,nginx-light
)
declare -A WARM_REPS=([hello]=5 [debian-web]=3)
# App-only rebuilds: hello's take tens of ms, as many as its cp (5).
declare -A APP_REPS=([hello]=5 [debian-web]=3)
mkosi_fail=""
for r in hello debian-web; do
  src="$tmp/src-$r"
  mkdir "$src"
  cp -a recipes layers "$src/"
  store="$tmp/store-$r"
  out="$tmp/out-$r"
  recipe="$src/recipes/$r.toml"

  echo "bench: $r: kiln cold build (fresh store, runs mmdebstrap)" >&2
  t0=$(now)
  "$kiln" build "$recipe" -o "$out" --store "$store" --json >"$tmp/$r-cold.json"
  V[kcold:$r]=$(secs "$t0" "$(now)")

  echo "bench: $r: kiln warm no-op builds (${WARM_REPS[$r]})" >&2
  for ((i = 1; i <= WARM_REPS[$r]; i++)); do
    t0=$(now)
    "$kiln" build "$recipe" -o "$out" --store "$store" --json >"$tmp/$r-warm.json"
    secs "$t0" "$(now)"
    echo
    [ "$(json "$tmp/$r-warm.json" 'all(l["cached"] for l in r["layers"])')" = True ] ||
      die "$r: warm build $i rebuilt a layer: $(cat "$tmp/$r-warm.json")"
  done >"$tmp/$r-warm.times"
  V[kwarm:$r]=$(median <"$tmp/$r-warm.times")
  image=$(json "$tmp/$r-warm.json" 'r["image"]["path"]')
  V[ksize:$r]="$(mib "$(stat -c %s "$image")") / $(mib "$(alloc "$image")")"
  V[kalloc:$r]=$(alloc "$image")

  echo "bench: $r: cp of the image (5)" >&2
  # cp and the app-only rebuilds below each start with nothing left to write
  # back: the plain pipeline between them writes hundreds of MB, whose
  # writeback would otherwise slow the rebuilds' writes and not cp's.
  sync
  for i in 1 2 3 4 5; do
    rm -f "$tmp/copy.raw"
    t0=$(now)
    cp "$image" "$tmp/copy.raw"
    secs "$t0" "$(now)"
    echo
  done >"$tmp/$r-cp.times"
  V[cp:$r]=$(median <"$tmp/$r-cp.times")
  # The image as built, with its manifest (kiln test reads it); the
  # app-only builds below overwrite both.
  mkdir "$tmp/$r-kiln"
  kimg="$tmp/$r-kiln/${image##*/}"
  mv "$tmp/copy.raw" "$kimg"
  cp "${image%.raw}.manifest.json" "$tmp/$r-kiln/"
  V[kimg:$r]=$kimg

  echo "bench: $r: plain-tools pipeline, cold (fresh mmdebstrap)" >&2
  bash scripts/plain-image.sh --cache "$tmp/plain-cache-$r" "$recipe" "$tmp/plain-$r" >"$tmp/$r-plain.kv"
  V[pcold:$r]=$(sed -n 's/^total_secs=//p' "$tmp/$r-plain.kv")
  V[pmmdeb:$r]=$(sed -n 's/^mmdebstrap_secs=//p' "$tmp/$r-plain.kv")
  plain_image=$(sed -n 's/^image=//p' "$tmp/$r-plain.kv")
  V[proot:$r]=$(sed -n 's/^root_bytes=//p' "$tmp/$r-plain.kv")

  echo "bench: $r: kiln app-only rebuilds (${APP_REPS[$r]} edits of ${APP_PAGE[$r]})" >&2
  sync
  for ((i = 1; i <= APP_REPS[$r]; i++)); do
    echo "<h1>$r, edited by the bench ($i)</h1>" >"$src/${APP_PAGE[$r]}"
    t0=$(now)
    "$kiln" build "$recipe" -o "$out" --store "$store" --json >"$tmp/$r-app.json"
    secs "$t0" "$(now)"
    echo
    [ "$(json "$tmp/$r-app.json" '[l["cached"] for l in r["layers"]][::-1].index(False) == 0 and sum(not l["cached"] for l in r["layers"]) == 1')" = True ] ||
      die "$r: app-only build $i did not rebuild exactly the app layer: $(cat "$tmp/$r-app.json")"
  done >"$tmp/$r-app.times"
  V[kapp:$r]=$(median <"$tmp/$r-app.times")

  echo "bench: $r: plain-tools pipeline, app-only analog (kept mmdebstrap tarball)" >&2
  bash scripts/plain-image.sh --cache "$tmp/plain-cache-$r" "$recipe" "$tmp/plain-$r" >"$tmp/$r-plain-app.kv"
  V[papp:$r]=$(sed -n 's/^total_secs=//p' "$tmp/$r-plain-app.kv")

  if [ -z "$mkosi_why" ]; then
    echo "bench: $r: mkosi (bootable gpt_ext4 with verity)" >&2
    res=$(mkosi_build "$r" "${MKOSI_PKGS[$r]}" "$tmp/mkosi-$r")
    if [ "${res%% *}" = FAIL ]; then
      V[mkosi:$r]="failed"
      mkosi_fail+="$r: ${res#FAIL }; "
    else
      V[mkosi:$r]=${res%% *}
      m_img=${res#* }
      V[msize:$r]="$(mib "$(stat -c %s "$m_img")") / $(mib "$(alloc "$m_img")")"
      rm -f "$m_img"
    fi
  fi

  V[psize:$r]="$(mib "$(stat -c %s "$plain_image")") / $(mib "$(alloc "$plain_image")")"
  read -r kused kinodes < <(rootfs "$kimg")
  read -r pused pinodes < <(rootfs "$plain_image")
  V[kfs:$r]="$(mib "$kused") MiB, $kinodes inodes"
  V[pfs:$r]="$(mib "$pused") MiB, $pinodes inodes"
  rm -rf "$tmp/plain-cache-$r" "$tmp/plain-$r"
done

# 2b. Fleet: the registry layer cache, and many recipes in one run.
echo "bench: fleet: docker-registry on loopback as the layer cache" >&2
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$tmp/registry" "$port" >"$tmp/registry.yml"
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "docker-registry did not listen on 127.0.0.1:$port: $(cat "$tmp/registry.log")"
cache="oci://127.0.0.1:$port/kiln/bench-cache"
fleet="$tmp/src-fleet"
mkdir "$fleet"
cp -a recipes layers "$fleet/"
echo "bench: fleet: debian-web, first runner (fresh store, builds and pushes)" >&2
t0=$(now)
"$kiln" build "$fleet/recipes/debian-web.toml" -o "$tmp/fleet-out1" --store "$tmp/fleet-store1" --cache "$cache" --json >"$tmp/fleet1.json"
V[fleet1]=$(secs "$t0" "$(now)")
echo "bench: fleet: debian-web, second runner (fresh store, layers from the registry)" >&2
t0=$(now)
"$kiln" build "$fleet/recipes/debian-web.toml" -o "$tmp/fleet-out2" --store "$tmp/fleet-store2" --cache "$cache" --cache-read-only --json >"$tmp/fleet2.json"
V[fleet2]=$(secs "$t0" "$(now)")
[ "$(json "$tmp/fleet2.json" 'all(l["source"] == "registry" for l in r["layers"])')" = True ] ||
  die "fleet: the second runner did not take every layer from the registry: $(cat "$tmp/fleet2.json")"
[ "$(json "$tmp/fleet1.json" 'r["image"]["digest"]')" = "$(json "$tmp/fleet2.json" 'r["image"]["digest"]')" ] ||
  die "fleet: the two runners' images differ"
# fleet_same_digests: each recipe's image is the same built alone or with
# the others in one run.
fleet_same_digests() {
  local rec name one all
  for rec in "$fleet"/recipes/*.toml; do
    name=$(json "$tmp/fleet-seq-$(basename "$rec").json" 'r["image"]["name"]')
    one=$(json "$tmp/fleet-seq-$(basename "$rec").json" 'r["image"]["digest"]')
    all=$(json "$tmp/fleet-all.json" "[i['image']['digest'] for i in r['images'] if i['image']['name'] == '$name'][0]")
    [ "$one" = "$all" ] || die "fleet: $name built in one run ($all) differs from its own build ($one)"
  done
}
# One by one and in one run alternate (one by one first in odd rounds, one
# run first in even ones), each round from fresh stores, so that neither
# always meets a warm page cache or mirror; the table shows medians.
fleet_seq() {
  echo "bench: fleet: every recipe, one kiln per recipe (fresh store)" >&2
  rm -rf "$tmp/fleet-seq-store" "$tmp/fleet-seq"
  local t0
  t0=$(now)
  for rec in "$fleet"/recipes/*.toml; do
    "$kiln" build "$rec" -o "$tmp/fleet-seq" --store "$tmp/fleet-seq-store" --json >"$tmp/fleet-seq-$(basename "$rec").json"
  done
  secs "$t0" "$(now)" >>"$tmp/times-fleet-seq"
  echo >>"$tmp/times-fleet-seq"
}
fleet_all() {
  echo "bench: fleet: every recipe in one kiln run (fresh store)" >&2
  rm -rf "$tmp/fleet-all-store" "$tmp/fleet-all"
  local t0
  t0=$(now)
  "$kiln" build "$fleet"/recipes/*.toml -o "$tmp/fleet-all" --store "$tmp/fleet-all-store" --json >"$tmp/fleet-all.json"
  secs "$t0" "$(now)" >>"$tmp/times-fleet-all"
  echo >>"$tmp/times-fleet-all"
}
fleet_rounds=3
alternate "$fleet_rounds" fleet_seq fleet_all fleet_same_digests
V[seq]=$(median <"$tmp/times-fleet-seq")
V[all]=$(median <"$tmp/times-fleet-all")
V[nrecipes]=$(json "$tmp/fleet-all.json" 'len(r["images"])')
kill "$reg_pid" 2>/dev/null || true
wait "$reg_pid" 2>/dev/null || true
reg_pid=""
rm -rf "$tmp/fleet-"* "$tmp/registry"

# 3. Secondary: sizes against their targets, the boot test, the encoders.
hello_image=${V[kimg:hello]}
target=$((24 << 20))
row "hello: image allocated (target 24 MiB)" "$(mib "${V[kalloc:hello]}") MiB" "24.0 MiB" \
  "$(ratio "${V[kalloc:hello]}" "$target")" "$(verdict "${V[kalloc:hello]}" "$target" le)"
"$kiln" ls --store "$tmp/store-debian-web" --json >"$tmp/webls.json"
base_tar=$(json "$tmp/webls.json" 'max(l["tar_size"] for l in r["layers"] if l["name"] == "base/debian")')
row "debian-web: stripped base, uncompressed" "$(mib "$base_tar") MiB" "80.0 MiB" \
  "$(ratio "$base_tar" $((80 << 20)))" "$(verdict "$base_tar" $((80 << 20)) lt) (target under 80 MiB, includes the 13.5 MiB kernel that moves to the UKI)"
python3 - "$tmp/webls.json" >>"$rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
seen = set()
for l in r["layers"]:
    if l["name"] in seen:
        continue
    seen.add(l["name"])
    print("debian-web: layer %s\t%.1f MiB\t-\t-\tzstd blob; %.1f MiB uncompressed" % (l["name"], l["size"] / 1048576, l["tar_size"] / 1048576))
PY

# The boot test: `kiln test` of hello, start to verdict (target <= 10 s under
# TCG), against the direct -kernel/-initrd boot of the same kernel, initramfs
# and command line (target ratio <= 2.5), medians of 3, with the boot phases
# (seconds since QEMU started): scripts/bench-boot.sh.
echo "bench: kiln test of hello against the direct-boot floor" >&2
bash scripts/bench-boot.sh --kiln "$kiln" --image "$hello_image" --store "$tmp/store-hello" --runs 3 --rows "$rows" ||
  die "the boot bench of hello failed"
# The plain verdict's median, which the Secure Boot rows compare with.
test_wall=$(awk -F'\t' '$1 == "hello: kiln test, start to verdict (median)" { print $2 }' "$rows")
[ -n "$test_wall" ] || die "bench-boot.sh wrote no verdict row"

# What Secure Boot and the TPM add to a verdict: hello signed by a fresh
# db key, booted with the keys enrolled (Secure Boot firmware with SMM),
# then also with a software TPM; each as a ratio to the plain boot above.
echo "bench: kiln test of signed hello with --secure-boot, then --secure-boot --tpm" >&2
"$kiln" keygen --secure-boot -o "$tmp/sb" >/dev/null
"$kiln" build recipes/hello.toml -o "$tmp/hello-signed" --store "$tmp/store-hello" \
  --secure-boot-key "$tmp/sb/db.key" --secure-boot-cert "$tmp/sb/db.crt" --json >"$tmp/signed.json"
signed_image=$(json "$tmp/signed.json" 'r["image"]["path"]')
sb_test() {
  local t0
  t0=$(now)
  "$kiln" test "$signed_image" --store "$tmp/store-hello" --secure-boot "$tmp/sb" --json >"$tmp/test-sb.json" ||
    die "kiln test --secure-boot of signed hello failed: $(cat "$tmp/test-sb.json")"
  secs "$t0" "$(now)" >>"$tmp/times-sb"
  echo >>"$tmp/times-sb"
}
sbtpm_test() {
  local t0
  t0=$(now)
  "$kiln" test "$signed_image" --store "$tmp/store-hello" --secure-boot "$tmp/sb" --tpm --json >"$tmp/test-sbtpm.json" ||
    die "kiln test --secure-boot --tpm of signed hello failed: $(cat "$tmp/test-sbtpm.json")"
  secs "$t0" "$(now)" >>"$tmp/times-sbtpm"
  echo >>"$tmp/times-sbtpm"
}
# Medians of 3, the two alternating (as bench-boot.sh takes the plain
# boot's median of 3).
sb_rounds=3
alternate "$sb_rounds" sb_test sbtpm_test
sb_wall=$(median <"$tmp/times-sb")
sbtpm_wall=$(median <"$tmp/times-sbtpm")
row "hello: kiln test --secure-boot (median of $sb_rounds)" "$sb_wall" "$test_wall" "$(ratio "$sb_wall" "$test_wall")" \
  "ratio to the plain median, order alternated; last firmware phase $(json "$tmp/test-sb.json" 'r["phases"]["firmware"]') s"
row "hello: kiln test --secure-boot --tpm (median of $sb_rounds)" "$sbtpm_wall" "$test_wall" "$(ratio "$sbtpm_wall" "$test_wall")" \
  "ratio to the plain median, order alternated; $(json "$tmp/test-sbtpm.json" '[c["detail"] for c in r["checks"] if c["name"] == "pcr11"][0]')"

# The encoders, on hello's composed root...
echo "bench: encoders on hello's composed root" >&2
sed -e "s|\"\.\./layers/|\"$repo/layers/|g" -e '/^\[disk\]/a format = "tar"' recipes/hello.toml >"$tmp/hello-tar.toml"
grep -q '^format = "tar"' "$tmp/hello-tar.toml" || die "could not add format = \"tar\" to hello's [disk]"
"$kiln" build "$tmp/hello-tar.toml" -o "$tmp/tarout" --store "$tmp/store-hello" --json >"$tmp/tar.json"
root_tar=$(json "$tmp/tar.json" 'r["image"]["path"]')
mkdir "$tmp/hello-root"
tar -xpf "$root_tar" -C "$tmp/hello-root" --numeric-owner --xattrs --xattrs-include='*'
bench() { cargo bench --locked -q -p kiln --bench encoders -- --work "$tmp/work" "$@"; }
mkdir "$tmp/work"
bench --label hello --dir "$tmp/hello-root" --tar "$root_tar" --reps 5 >"$tmp/bench.out"

# ... and on a bigger tree from the host's /usr: whole directories, in this
# order, until 150 MiB; relative symlinks with '..' are dropped (some would
# escape the copy, which read_dir_tree refuses), as are sockets and fifos.
# /usr/share/man is left out on purpose: its man3 holds thousands of files
# in one directory, where mkfs.ext4 -d goes quadratic (about 35 s for 24k
# entries here), which would swamp the run and flatter kiln.
echo "bench: encoders on a ~150-250 MiB tree copied from /usr" >&2
syn="$tmp/usr-tree"
mkdir "$syn"
have=0
for d in /usr/lib/python3.* /usr/share/perl /usr/share/doc /usr/share/locale /usr/lib/gcc; do
  [ -d "$d" ] || continue
  s=$(du -s --apparent-size --block-size=1 "$d" | cut -f1)
  [ $((have + s)) -le $((250 << 20)) ] || continue
  cp -a "$d" "$syn/$(echo "${d#/usr/}" | tr / _)"
  have=$((have + s))
  [ "$have" -lt $((150 << 20)) ] || break
done
[ "$have" -ge $((64 << 20)) ] || die "found only $(mib "$have") MiB to copy from /usr; the big-tree ratios would mean little"
find "$syn" -type l -lname '*..*' -delete
find "$syn" ! -type f ! -type d ! -type l -delete
bench --label usr --dir "$syn" --reps 3 >>"$tmp/bench.out"
grep -q '^ROW' "$tmp/bench.out" || die "the encoders bench printed no rows"
grep '^ROW' "$tmp/bench.out" | cut -f2- >>"$rows"

# 4. The tables.
echo
echo "kiln bench — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kiln $(git rev-parse --short HEAD 2>/dev/null || echo '?'), kernel $(uname -r)"
echo "times in seconds (medians where repeated); only ratios within this run mean anything on a shared machine"
fmt='%-50s %-24s %-24s\n'
# shellcheck disable=SC2059
line() { printf "$fmt" "$1" "${V[$2:hello]:--}" "${V[$2:debian-web]:--}"; }
# shellcheck disable=SC2059
printf "$fmt" "" hello debian-web
# shellcheck disable=SC2059
printf "$fmt" "$(printf '%.0s-' {1..50})" "$(printf '%.0s-' {1..24})" "$(printf '%.0s-' {1..24})"
line "kiln cold build (fresh store)" kcold
line "kiln warm no-op build (median of 5 / 3)" kwarm
line "kiln app-only rebuild (median of 5, debian-web 3)" kapp
line "plain pipeline cold (fresh mmdebstrap)" pcold
line "  of which mmdebstrap" pmmdeb
line "plain pipeline app-only (kept tarball)" papp
if [ -n "$mkosi_why" ]; then
  V[mkosi:hello]="not run (below)" V[mkosi:debian-web]="not run (below)"
fi
line "mkosi cold, bootable gpt_ext4 + verity" mkosi
line "floor: cp of kiln's image (median of 5)" cp
line "kiln image MiB, apparent / allocated" ksize
line "plain image MiB, apparent / allocated" psize
line "mkosi image MiB, apparent / allocated" msize
line "kiln root ext4, used" kfs
line "plain root ext4, used" pfs
for r in hello debian-web; do
  V[proot:$r]="$(mib "${V[proot:$r]}") MiB"
  V[rwarm:$r]=$(ratio "${V[kwarm:$r]}" "${V[cp:$r]}" 1)
  V[rwarm:$r]="${V[rwarm:$r]} $(verdict "${V[rwarm:$r]}" 3 lt)"
  V[rapp:$r]=$(ratio "${V[kapp:$r]}" "${V[cp:$r]}" 1)
  V[rcold:$r]=$(ratio "${V[kcold:$r]}" "${V[pcold:$r]}")
  V[rcold:$r]="${V[rcold:$r]} $(verdict "${V[rcold:$r]}" 1 le)"
  V[rpapp:$r]=$(ratio "${V[kapp:$r]}" "${V[papp:$r]}")
  case "${V[mkosi:$r]:-}" in
    [0-9]*) V[rmkosi:$r]=$(ratio "${V[kcold:$r]}" "${V[mkosi:$r]}") ;;
    *) V[rmkosi:$r]="-" ;;
  esac
done
V[rapp:hello]="${V[rapp:hello]} $(verdict "${V[rapp:hello]}" 10 lt)"
V[rapp:debian-web]="${V[rapp:debian-web]} (no target)"
line "plain root tree, du --apparent-size" proot
echo
echo "ratios (target)"
line "warm no-op / cp (< 3)" rwarm
line "app-only / cp (hello < 10)" rapp
line "kiln cold / plain cold (<= 1)" rcold
line "kiln app-only / plain app-only (none)" rpapp
line "kiln cold / mkosi cold (none)" rmkosi
[ -z "$mkosi_why" ] || echo "mkosi: $mkosi_why"
[ -z "$mkosi_fail" ] || echo "mkosi: failed: $mkosi_fail(logs were in $tmp/mkosi-*/log)"
echo "plain: one mmdebstrap of every layer's packages (kiln: the base with mmdebstrap, then apt in a chroot for the package layer), every layer's strip rules once over the whole root, depmod's full index set; see scripts/plain-image.sh"
echo
echo "fleet (a registry layer cache; many recipes in one run)"
printf '%-50s %s\n' "debian-web, first runner: builds, pushes" "${V[fleet1]}"
printf '%-50s %s\n' "debian-web, second runner: layers from registry" "${V[fleet2]}"
r2=$(ratio "${V[fleet2]}" "${V[fleet1]}")
printf '%-50s %s %s\n' "ratio second / first (< 0.5)" "$r2" "$(verdict "$r2" 0.5 lt)"
printf '%-50s %s\n' "${V[nrecipes]} recipes, one kiln per recipe (median of $fleet_rounds)" "${V[seq]}"
printf '%-50s %s\n' "${V[nrecipes]} recipes, one kiln run, $(nproc) jobs (median of $fleet_rounds)" "${V[all]}"
echo "(one by one and one run alternate: one by one first in rounds 1 and 3, one run first in round 2; fresh stores each round)"
r3=$(ratio "${V[all]}" "${V[seq]}")
printf '%-50s %s %s\n' "ratio one run / one by one (< 1)" "$r3" "$(verdict "$r3" 1 lt)"
echo
echo "secondary"
sfmt='%-48s %12s %12s %6s  %s\n'
# shellcheck disable=SC2059
printf "$sfmt" measurement kiln reference ratio note
# shellcheck disable=SC2059
printf "$sfmt" "$(printf '%.0s-' {1..48})" ------------ ------------ ------ ----
while IFS=$'\t' read -r label k ref rat note; do
  # shellcheck disable=SC2059
  printf "$sfmt" "$label" "$k" "$ref" "$rat" "$note"
done <"$rows"
echo "encoder rows: ratio = kiln / reference (tar | zstd, mkfs.ext4 -d); target ext4 ratio <= 1"
