#!/usr/bin/env bash
# kiln's benchmark: one run, one table. Speed targets are printed as ratios
# measured in this run and never asserted (STYLE.md, "Tests").
#
# Measures, on a host prepared by scripts/setup-host.sh:
#  1. builds release kiln and kiln-init (not timed);
#  2. recipes/hello.toml into a fresh store: the cold build, the warm no-op
#     build (median of 5, every layer cached), which is also today's assembly
#     time from cached layers, and the image's size and allocated bytes
#     against the 24 MiB target;
#  3. through `cargo bench --bench encoders` (builder/benches/encoders.rs):
#     kiln's layer packer vs `tar --sort=name -c | zstd -3` and kiln's ext4
#     writer vs `mkfs.ext4 -d` (same size), on hello's composed root and on
#     a ~150-250 MiB tree copied from the host's /usr;
#     The boot test: kiln test of hello, start to verdict, and its phases.
#  4. the physical floor: `cp` of the finished image (median of 5).
# Scratch space is one temporary directory, removed on exit. Takes about
# 1-3 minutes once the binaries are built (the cold build runs mmdebstrap,
# so it needs the Debian mirror). Exit 3: a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "bench: $*" >&2; exit 1; }
need() { # need COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null || {
    echo "bench: $1 not found: install the Debian package $2 (scripts/setup-host.sh does)" >&2
    exit 3
  }
}
need cargo "cargo (or rustup: https://rustup.rs)"
need python3 python3
need tar tar
need zstd zstd
need mkfs.ext4 e2fsprogs
need mmdebstrap mmdebstrap
need du coreutils
[ "$(id -u)" = 0 ] || die "run as root: hello's root is unpacked with its owners and device nodes, as GNU tar does only for root"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rows="$tmp/rows.tsv" # label, kiln, reference, ratio, note (seconds)
: >"$rows"

now() { date +%s%N; }
# secs START_NS END_NS
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", (b - a) / 1e9 }'; }
# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.4f", v[int((NR + 1) / 2)] }'; }
# row LABEL KILN REFERENCE RATIO NOTE
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$rows"; }
# json FILE PYTHON-EXPRESSION-OVER-r
json() { python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# 1. Binaries (not timed).
echo "bench: building release kiln, kiln-init and the encoders bench" >&2
kiln=$(bash scripts/build-kiln.sh)
KILN_INIT=$(sh builder/init/build-static.sh)
export KILN_INIT
cargo bench --locked -q -p kiln --bench encoders --no-run 2>/dev/null ||
  cargo bench --locked -p kiln --bench encoders --no-run
[ -x "$kiln" ] || die "build-kiln.sh printed $kiln, which is not an executable"

# 2. hello: cold, warm (no-op) builds; image size.
store="$tmp/store"
echo "bench: cold build of recipes/hello.toml (runs mmdebstrap)" >&2
t0=$(now)
"$kiln" build recipes/hello.toml -o "$tmp/out" --store "$store" --json >"$tmp/cold.json"
cold=$(secs "$t0" "$(now)")
row "hello: cold build (fresh store)" "$cold" - - "$(json "$tmp/cold.json" 'sum(not l["cached"] for l in r["layers"])') layers built"

echo "bench: warm no-op builds of hello (5)" >&2
for i in 1 2 3 4 5; do
  t0=$(now)
  "$kiln" build recipes/hello.toml -o "$tmp/out" --store "$store" --json >"$tmp/warm.json"
  secs "$t0" "$(now)"
  echo
  [ "$(json "$tmp/warm.json" 'all(l["cached"] for l in r["layers"])')" = True ] ||
    die "warm build $i rebuilt a layer: $(cat "$tmp/warm.json")"
done >"$tmp/warm.times"
warm=$(median <"$tmp/warm.times")
row "hello: warm no-op build (median of 5)" "$warm" - - "every layer \"cached\": true"
row "hello: assembly from cached layers" "$warm" - - "= the warm build today: layers cached, disk reassembled"

image=$(json "$tmp/warm.json" 'r["image"]["path"]')
size=$(stat -c %s "$image")
alloc=$(stat -c '%b %B' "$image" | awk '{ print $1 * $2 }')
du_alloc=$(du --block-size=1 "$image" | cut -f1)
target=$((24 << 20))
verdict=$([ "$alloc" -le "$target" ] && echo "meets" || echo "OVER")
row "hello: image size" "$(mib "$size")" - - "$(basename "$image")"
row "hello: image allocated (target 24 MiB)" "$(mib "$alloc")" "$(mib "$target")" \
  "$(awk -v a="$alloc" -v t="$target" 'BEGIN { printf "%.2f", a / t }')" "$verdict the target; du says $(mib "$du_alloc")"

# The boot test: time from `kiln test` start to verdict, and its boot phases
# (seconds since QEMU started). Target under TCG on 2 cores: verdict within 15 s.
echo "bench: kiln test of hello" >&2
t0=$(now)
"$kiln" test "$image" --store "$store" --json >"$tmp/test.json" || die "kiln test of hello failed: $(cat "$tmp/test.json")"
test_wall=$(secs "$t0" "$(now)")
verdict_secs=$(json "$tmp/test.json" 'round(r["duration_secs"], 2)')
row "hello: kiln test, start to verdict" "$test_wall" "15" \
  "$(awk -v a="$test_wall" 'BEGIN { printf "%.2f", a / 15 }')" "target 15 s under TCG; $(json "$tmp/test.json" 'r["accel"]'), verdict says ${verdict_secs} s"
row "hello: boot phases (s since QEMU start)" - - - \
  "$(json "$tmp/test.json" '", ".join("%s %.1f" % (k, r["phases"][k]) for k in ("firmware", "kernel", "init", "ready") if r["phases"][k] is not None)')"

# 3. The encoders, on hello's composed root...
echo "bench: hello's composed root as a tar" >&2
sed -e "s|\"\.\./layers/|\"$repo/layers/|g" -e '/^\[disk\]/a format = "tar"' recipes/hello.toml >"$tmp/hello-tar.toml"
grep -q '^format = "tar"' "$tmp/hello-tar.toml" || die "could not add format = \"tar\" to hello's [disk]"
"$kiln" build "$tmp/hello-tar.toml" -o "$tmp/tarout" --store "$store" --json >"$tmp/tar.json"
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
echo "bench: copying a ~150-250 MiB tree from /usr" >&2
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
[ "$have" -ge $((64 << 20)) ] || die "found only $(mib "$have") to copy from /usr; the big-tree ratios would mean little"
find "$syn" -type l -lname '*..*' -delete
find "$syn" ! -type f ! -type d ! -type l -delete
bench --label usr --dir "$syn" --reps 3 >>"$tmp/bench.out"
grep -c '^ROW' "$tmp/bench.out" >/dev/null || die "the encoders bench printed no rows"
grep '^ROW' "$tmp/bench.out" | cut -f2- >>"$rows"

# debian-web (issue 5): cold, warm no-op and app-only builds, the stripped
# base's uncompressed size, each layer's size, and the cold build beside a
# plain mmdebstrap of the same package set into a tarball.
echo "bench: debian-web cold build (mmdebstrap base + apt package layer)" >&2
web="$tmp/web"
mkdir "$web"
cp -a recipes layers "$web/"
wstore="$tmp/webstore"
t0=$(now)
"$kiln" build "$web/recipes/debian-web.toml" -o "$tmp/webout" --store "$wstore" --json >"$tmp/webcold.json"
web_cold=$(secs "$t0" "$(now)")
row "debian-web: cold build (fresh store)" "$web_cold" - - "$(json "$tmp/webcold.json" 'sum(not l["cached"] for l in r["layers"])') layers built"
t0=$(now)
"$kiln" build "$web/recipes/debian-web.toml" -o "$tmp/webout" --store "$wstore" --json >"$tmp/webwarm.json"
row "debian-web: warm no-op build" "$(secs "$t0" "$(now)")" - - "cached: $(json "$tmp/webwarm.json" '[l["cached"] for l in r["layers"]]')"
echo "<h1>debian-web, edited by the bench</h1>" >"$web/layers/apps/web/files/srv/www/index.html"
t0=$(now)
"$kiln" build "$web/recipes/debian-web.toml" -o "$tmp/webout" --store "$wstore" --json >"$tmp/webapp.json"
row "debian-web: app-only rebuild" "$(secs "$t0" "$(now)")" - - "cached: $(json "$tmp/webapp.json" '[l["cached"] for l in r["layers"]]')"
"$kiln" ls --store "$wstore" --json >"$tmp/webls.json"
base_tar=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(max(l["tar_size"] for l in r["layers"] if l["name"]=="base/debian"))' "$tmp/webls.json")
row "debian-web: stripped base, uncompressed" "$(mib "$base_tar")" "80.0 MiB" \
  "$(awk -v a="$base_tar" 'BEGIN { printf "%.2f", a / (80 * 1048576) }')" "target under 80 MiB with systemd (includes the 13.5 MiB kernel, which moves to the UKI)"
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
echo "bench: plain mmdebstrap of the same package set into a tarball" >&2
pkgs=$(python3 -c 'import re,sys; t=open(sys.argv[1]).read()+open(sys.argv[2]).read(); print(",".join(p for m in re.findall(r"packages = \[([^\]]*)\]", t) for p in re.findall(r"\"([^\"]+)\"", m)))' layers/base/debian/layer.toml layers/packages/nginx/layer.toml)
t0=$(now)
mmdebstrap --quiet --variant=minbase --include="$pkgs" bookworm "$tmp/plain.tar" >/dev/null
plain=$(secs "$t0" "$(now)")
row "debian-web: cold build vs plain mmdebstrap" "$web_cold" "$plain" \
  "$(awk -v a="$web_cold" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')" "mmdebstrap --variant=minbase --include=$pkgs to a tarball, no disk"

# 4. The physical floor: copying the finished image.
for i in 1 2 3 4 5; do
  rm -f "$tmp/copy.raw"
  t0=$(now)
  cp "$image" "$tmp/copy.raw"
  secs "$t0" "$(now)"
  echo
done >"$tmp/cp.times"
row "floor: cp of the hello image (median of 5)" "$(median <"$tmp/cp.times")" - - "$(mib "$size") apparent, page cache, no sync"

# The table.
echo
echo "kiln bench — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kiln $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "times in seconds (medians); ratio = kiln / reference, < 1 means kiln is faster; ratios are targets to read, not assertions"
fmt='%-44s %10s %10s %6s  %s\n'
# shellcheck disable=SC2059
printf "$fmt" measurement kiln reference ratio note
# shellcheck disable=SC2059
printf "$fmt" "$(printf '%.0s-' {1..44})" ---------- ---------- ------ ----
while IFS=$'\t' read -r label k r ratio note; do
  # shellcheck disable=SC2059
  printf "$fmt" "$label" "$k" "$r" "$ratio" "$note"
done <"$rows"
echo "targets: ext4 ratio <= 1 (kiln no slower than mkfs.ext4); hello allocated <= 24 MiB"
