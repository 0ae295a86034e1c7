#!/usr/bin/env bash
# The plain-tools anchor for scripts/bench.sh: builds the same image content
# as `kiln build recipes/NAME.toml` the way a person would by hand, with the
# stock tools and no kiln code (kiln-init, the initramfs's /init, is the one
# kiln piece in it, since the image boots through it).
#
#   scripts/plain-image.sh [--cache DIR] RECIPE OUTDIR
#
#  1. mmdebstrap of the recipe's Debian packages into a tarball, in ONE run:
#     the base layer's variant with the base and package layers' packages
#     together (kiln installs a package layer with apt over the base instead);
#     from the host's Debian sources, downloading everything fresh. With
#     --cache DIR the tarball is kept as DIR/NAME.tar and, when present,
#     reused: that skips mmdebstrap, the analog of kiln's app-only rebuild;
#  2. tar -x, then every layer's [strip] rules at once with find (delete
#     globs, keep globs with their parents, kernel modules cut to the
#     keep_modules closure from `modprobe --show-depends`, depmod);
#  3. each layer's files (tar, .keep files skipped, owners root, modes 0644
#     or 0755, [[override]] modes, .wh. whiteouts), the layers' [[service]]
#     declarations as /etc/kiln/services/NAME/{run,restart};
#  4. the kernel and the EFI stub taken out of the root; `mkfs.ext4 -d`
#     (no journal, no reserved blocks, the recipe's root_margin_percent of
#     free space); `veritysetup format`;
#  5. the initramfs: kiln-init as /init, the initrd modules with their
#     dependencies and /etc/kiln/modules listing them in load order, as
#     `cpio -H newc | zstd`;
#  6. the UKI: `objcopy --add-section` .osrel .cmdline .uname .initrd .linux
#     onto systemd's stub at page-aligned addresses after its last section,
#     as systemd 252's ukify does;
#  7. the ESP: `mkfs.vfat` + `mcopy` of the UKI to \EFI\BOOT\BOOTX64.EFI;
#  8. the disk: `sfdisk` writes the GPT (the same partition types, labels,
#     read-only flags and the root/verity partition UUIDs from the root hash
#     that kiln-init looks for), `dd conv=notrunc,sparse` places the three
#     partitions.
# Writes OUTDIR/NAME-VERSION.raw and prints key=value lines on stdout
# (image, root_bytes, root_files, seconds per step); progress on stderr.
# Needs root (mmdebstrap's root mode, owners, /dev/console), the kiln-init
# binary in $KILN_INIT (builder/init/build-static.sh prints its path) and the
# Debian mirror. Exit 3: a tool is missing.
set -euo pipefail
trap 'echo "plain-image: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

usage() { echo "usage: $0 [--cache DIR] RECIPE OUTDIR" >&2; exit 2; }
cache=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) [ $# -ge 2 ] || usage; cache=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || usage
recipe=$(realpath "$1")
outdir=$2

need() { # need COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null || {
    echo "plain-image: $1 not found: install the Debian package $2" >&2
    exit 3
  }
}
need mmdebstrap mmdebstrap
need python3 python3
need mkfs.ext4 e2fsprogs
need veritysetup cryptsetup-bin
need mkfs.vfat dosfstools
need mcopy mtools
need sfdisk fdisk
need objcopy binutils
need objdump binutils
need cpio cpio
need zstd zstd
need depmod kmod
need modprobe kmod
[ "$(id -u)" = 0 ] || { echo "plain-image: run as root" >&2; exit 3; }
if [ -z "${KILN_INIT:-}" ] || [ ! -x "$KILN_INIT" ]; then
  echo "plain-image: set KILN_INIT to the kiln-init binary (builder/init/build-static.sh prints its path)" >&2
  exit 3
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/plain-image.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log() { echo "plain-image: $*" >&2; }
now() { date +%s%N; }
t_last=$(now)
# lap NAME: print the seconds since the last lap as NAME_secs=...
lap() {
  local t
  t=$(now)
  awk -v n="$1" -v a="$t_last" -v b="$t" 'BEGIN { printf "%s_secs=%.3f\n", n, (b - a) / 1e9 }'
  t_last=$t
}
t_start=$t_last

# The recipe and its layers, read with Python's tomllib into shell variables
# (reading the configuration is the only thing Python does here). Globs are
# turned into extended regular expressions for find -regex, with the
# meaning kiln gives them (globset, `*` stops at `/`, `**` crosses it).
python3 - "$recipe" >"$tmp/recipe.sh" <<'PY'
import os, re, shlex, sys, tomllib

def q(v):
    return shlex.quote(str(v))

def ere(glob):
    g = glob.lstrip("/")
    out, i = "", 0
    while i < len(g):
        if g.startswith("**/", i):
            out += "(.*/)?"; i += 3
        elif g.startswith("/**", i) and i + 3 == len(g):
            out += "(/.*)?"; i += 3
        elif g.startswith("**", i):
            out += ".*"; i += 2
        elif g[i] == "*":
            out += "[^/]*"; i += 1
        elif g[i] == "?":
            out += "[^/]"; i += 1
        elif g[i] == "[":
            j = g.index("]", i + 1)
            out += g[i:j + 1].replace("[!", "[^"); i = j + 1
        else:
            out += re.escape(g[i]); i += 1
    return out

path = sys.argv[1]
r = tomllib.load(open(path, "rb"))
img, boot, disk = r["image"], r.get("boot", {}), r.get("disk", {})
layers = [os.path.normpath(os.path.join(os.path.dirname(path), l)) for l in img["layers"]]
variant, suite, packages = None, None, []
delete, keep, modules = [], [], []
files, overrides, services = [], [], []
for n, d in enumerate(layers):
    l = tomllib.load(open(os.path.join(d, "layer.toml"), "rb"))
    deb = l.get("debian")
    if deb:
        if variant is None:
            variant = deb.get("variant", "minbase")
            suite = deb.get("suite", "bookworm")
        packages += deb.get("packages", [])
    s = l.get("strip", {})
    delete += [ere(g) for g in s.get("delete", [])]
    keep += [ere(g) for g in s.get("keep", [])]
    modules += s.get("keep_modules", [])
    if "files" in l:
        files.append(os.path.join(d, l["files"].get("dir", "files")))
        for o in l.get("override", []):
            overrides.append("%d\t%s\t%s\t%s\t%s" % (len(files) - 1, ere(o["path"]), o.get("mode", ""), o.get("uid", ""), o.get("gid", "")))
    for sv in l.get("service", []):
        services.append((sv["name"], sv["command"], sv.get("restart", "always"), os.path.basename(os.path.dirname(d)) + "/" + os.path.basename(d)))
print("name=%s version=%s" % (q(img["name"]), q(img["version"])))
print("variant=%s suite=%s" % (q(variant), q(suite)))
print("packages=%s" % q(",".join(dict.fromkeys(packages))))
print("delete_re=%s" % q("|".join(delete)))
print("keep_re=%s" % q("|".join(keep)))
print("keep_modules=%s" % q(" ".join(m.replace("-", "_") for m in modules)))
print("initrd_modules=%s" % q(" ".join(boot.get("initrd_modules", ["virtio_pci", "virtio_blk", "dm_verity"]))))
print("cmdline=%s init=%s" % (q(boot.get("cmdline", "console=ttyS0")), q(boot.get("init", "/sbin/init"))))
print("margin=%s extra_mib=%s" % (q(disk.get("root_margin_percent", 10)), q(disk.get("root_extra_mib", 0))))
print("files_dirs=(%s)" % " ".join(q(f) for f in files))
print("overrides=%s" % q("\n".join(overrides)))
# Services as kiln renders them (builder/src/source.rs, add_services).
for name, cmd, restart, layer in services:
    run = "#!/bin/sh\n# Service %r, declared in %s (generated by kiln).\nexec %s\n" % (
        name, layer, " ".join("'%s'" % a.replace("'", "'\\''") for a in cmd))
    print("services+=(%s %s %s)" % (q(name), q(run), q(restart + "\n")))
PY
name="" version="" variant="" suite="" packages="" delete_re="" keep_re="" keep_modules=""
initrd_modules="" cmdline="" init="" margin=10 extra_mib=0 overrides=""
files_dirs=()
services=()
# shellcheck source=/dev/null
. "$tmp/recipe.sh"
[ -n "$variant" ] || { echo "plain-image: $recipe: no layer has a [debian] section" >&2; exit 2; }
mkdir -p "$outdir"
image="$outdir/$name-$version.raw"
root="$tmp/root"
mkdir "$root"

# 1. mmdebstrap: one run, every package, the host's Debian sources.
tarball="$tmp/rootfs.tar"
[ -z "$cache" ] || { mkdir -p "$cache"; tarball="$cache/$name.tar"; }
if [ -s "$tarball" ]; then
  log "reusing $tarball (no mmdebstrap)"
else
  log "mmdebstrap --variant=$variant --include=$packages $suite"
  mirrors=()
  while read -r line; do mirrors+=("$line"); done < <(
    python3 - "$suite" <<'PY'
import glob, sys
suite = sys.argv[1]
fam = lambda s: s == suite or s.startswith(suite + "-")
for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
    try:
        text = open(f).read()
    except OSError:
        continue
    if f.endswith(".sources"):
        for st in text.split("\n\n"):
            kv = {}
            for l in st.splitlines():
                if ":" in l and not l.startswith("#"):
                    k, v = l.split(":", 1)
                    kv[k.strip().lower()] = v.strip()
            if "deb" in kv.get("types", "").split():
                for u in kv.get("uris", "").split():
                    for s in filter(fam, kv.get("suites", "").split()):
                        print("deb %s %s main" % (u, s))
    else:
        for l in text.splitlines():
            w = l.split()
            if w[:1] == ["deb"] and not w[1].startswith("[") and len(w) > 2 and fam(w[2]):
                print("deb %s %s main" % (w[1], w[2]))
PY
  )
  mmdebstrap --quiet --format=tar --variant="$variant" --include="$packages" "$suite" "$tarball.tmp" "${mirrors[@]}" >/dev/null
  mv "$tarball.tmp" "$tarball"
fi
lap mmdebstrap

# 2. Unpack and strip.
tar -xpf "$tarball" -C "$root" --numeric-owner --xattrs --xattrs-include='*'
cd "$root"
if [ -n "$delete_re" ]; then
  find . -mindepth 1 -depth -regextype posix-extended -regex "\./($delete_re)" -printf '%y %P\n' >"$tmp/delete"
  : >"$tmp/keep"
  [ -z "$keep_re" ] ||
    find . -mindepth 1 -regextype posix-extended -regex "\./($keep_re)" -printf '%P\n' |
    awk -F/ '{ p = $1; print p; for (i = 2; i <= NF; i++) { p = p "/" $i; print p } }' | sort -u >"$tmp/keep"
  # Files first, then directories deepest first (find -depth order), kept
  # paths and their parents spared.
  awk 'NR == FNR { k[$0] = 1; next } { t = $1; p = substr($0, 3); if (!(p in k)) print t "\t" p }' "$tmp/keep" "$tmp/delete" >"$tmp/doomed"
  awk -F'\t' '$1 != "d" { print $2 }' "$tmp/doomed" | xargs -r -d '\n' rm -f --
  awk -F'\t' '$1 == "d" { print $2 }' "$tmp/doomed" | xargs -r -d '\n' rmdir --ignore-fail-on-non-empty --
fi
# A merged /usr, as kiln's roots are: packages unpacked without base-files
# (the extract variant) leave /lib and the rest out, and depmod and modprobe
# look in /lib/modules.
for d in bin sbin lib lib64; do
  [ -e "$d" ] || [ -L "$d" ] || [ ! -d "usr/$d" ] || ln -s "usr/$d" "$d"
done
moddir=$(find . -maxdepth 4 -path '*/lib/modules/*' -type d -name '[0-9]*' -printf '%P\n' | head -n 1)
kver=${moddir##*/}
[ -n "$kver" ] || { echo "plain-image: no kernel modules directory in the root" >&2; exit 1; }
[ -f "$moddir/modules.dep" ] || depmod -b "$root" "$kver"
if [ -n "$keep_modules" ]; then
  # shellcheck disable=SC2086
  modprobe -d "$root" -S "$kver" -a --show-depends $keep_modules | awk '$1 == "insmod" { print $2 }' |
    sed "s|.*/lib/modules/$kver/||" | LC_ALL=C sort -u >"$tmp/modules.keep"
  (cd "$moddir" && find kernel -name '*.ko*' -type f) | LC_ALL=C sort | LC_ALL=C comm -23 - "$tmp/modules.keep" |
    (cd "$moddir" && xargs -r -d '\n' rm -f --)
  find "$moddir/kernel" -mindepth 1 -depth -type d -empty -delete
  depmod -b "$root" "$kver"
fi
lap unpack_strip

# 3. The layers' files and services.
overlay() { # overlay INDEX DIR: a layer's files onto the root
  local stage="$tmp/files$1"
  mkdir "$stage"
  tar -C "$2" --exclude=.keep --owner=0 --group=0 --numeric-owner --mode='u=rwX,go=rX' -cf - . | tar -C "$stage" -xpf - --numeric-owner
  printf '%s\n' "$overrides" | while IFS=$'\t' read -r idx re mode uid gid; do
    [ "$idx" = "$1" ] || continue
    (cd "$stage" && find . -mindepth 1 -regextype posix-extended -regex "\./($re)" -print0) >"$tmp/match"
    [ -z "$mode" ] || (cd "$stage" && xargs -r -0 chmod "$mode" <"$tmp/match")
    [ -z "$uid$gid" ] || (cd "$stage" && xargs -r -0 chown -h "${uid:-0}:${gid:-0}" <"$tmp/match")
  done
  # OCI whiteouts: .wh.NAME deletes NAME from the layers below.
  (cd "$stage" && find . -name '.wh.*' -printf '%P\n') | while read -r wh; do
    dir=$(dirname "$wh")
    rm -rf "${root:?}/$dir/${wh##*/.wh.}" "${stage:?}/$wh"
  done
  tar -C "$stage" -cf - . | tar -C "$root" -xpf - --numeric-owner --keep-directory-symlink
}
for i in "${!files_dirs[@]}"; do overlay "$i" "${files_dirs[$i]}"; done
for ((i = 0; i < ${#services[@]}; i += 3)); do
  d="$root/etc/kiln/services/${services[i]}"
  mkdir -p "$d"
  printf '%s' "${services[i + 1]}" >"$d/run"
  printf '%s' "${services[i + 2]}" >"$d/restart"
  chmod 0755 "$d/run"
  chmod 0644 "$d/restart"
done
lap files

# 4. Boot files out of the root; ext4; dm-verity.
cp "$root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
stub=usr/lib/systemd/boot/efi/linuxx64.efi.stub
cp "$root/$stub" "$tmp/stub.efi"
for f in "$root/etc/os-release" "$root/usr/lib/os-release"; do
  [ -f "$f" ] && { cp "$f" "$tmp/os-release"; break; }
done
[ -f "$tmp/os-release" ] || echo "ID=kiln" >"$tmp/os-release"
# The initrd modules, in load order, before the root loses anything.
# shellcheck disable=SC2086
modprobe -d "$root" -S "$kver" -a --show-depends $initrd_modules | awk '$1 == "insmod" { print $2 }' |
  awk '!seen[$0]++' >"$tmp/initrd.modules"
mkdir -p "$tmp/initrd/lib/modules/$kver"
while read -r m; do
  rel=${m#*/lib/modules/"$kver"/}
  mkdir -p "$tmp/initrd/lib/modules/$kver/$(dirname "$rel")"
  cp "$m" "$tmp/initrd/lib/modules/$kver/$rel"
  echo "$rel"
done <"$tmp/initrd.modules" >"$tmp/initrd.list"
rm -f "$root"/boot/vmlinuz-* "$root"/boot/initrd.img-* "$root"/boot/System.map-* "$root"/boot/config-*
rm -rf "$root/usr/lib/systemd/boot/efi"
cd "$tmp"
root_files=$(find "$root" | wc -l)
root_bytes=$(du -s --apparent-size --block-size=1 "$root" | cut -f1)
blocks=$(du -s --block-size=4096 "$root" | cut -f1)
inodes=$((root_files + root_files * margin / 100 + 16))
# Data blocks with the margin, the inode tables (256 bytes an inode), and
# per-group metadata and directory slack.
fs_blocks=$((blocks + blocks * margin / 100 + inodes / 16 + extra_mib * 256 + 256 + blocks / 64))
fs_bytes=$(((fs_blocks * 4096 + (1 << 20) - 1) / (1 << 20) * (1 << 20)))
rm -f root.ext4
truncate -s "$fs_bytes" root.ext4
mkfs.ext4 -q -F -t ext4 -b 4096 -I 256 -N "$inodes" -m 0 -O ^has_journal,^resize_inode \
  -E root_owner=0:0 -L root -d "$root" root.ext4
lap mkfs_ext4
veritysetup format root.ext4 root.verity --root-hash-file=roothash >/dev/null
roothash=$(cat roothash)
lap veritysetup

# 5. Initramfs.
cd "$tmp/initrd"
mkdir -p dev proc sys sysroot run etc/kiln
mknod -m 0600 dev/console c 5 1
cp "$KILN_INIT" init
chmod 0755 init
{
  echo "# Kernel modules kiln-init loads, in order (generated by kiln)."
  cat "$tmp/initrd.list"
} >etc/kiln/modules
find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible | zstd -q -T0 >"$tmp/initrd.img"
cd "$tmp"
lap initramfs

# 6. UKI: sections after the stub's last one, page aligned (ukify, systemd 252).
echo -n "$cmdline roothash=$roothash kiln.init=$init" >cmdline.txt
echo -n "$kver" >uname.txt
offset=0
while read -r size vma; do
  [ $((16#$vma + 16#$size)) -le "$offset" ] || offset=$((16#$vma + 16#$size))
done < <(objdump -h stub.efi | awk '$1 ~ /^[0-9]+$/ { print $3, $4 }')
args=()
for s in osrel:os-release cmdline:cmdline.txt uname:uname.txt initrd:initrd.img linux:vmlinuz; do
  sec=.${s%%:*}
  file=${s#*:}
  offset=$(((offset + 4095) / 4096 * 4096))
  flags=data,readonly
  [ "$sec" != .linux ] || flags=code,readonly
  args+=(--add-section "$sec=$file" --set-section-flags "$sec=$flags" --change-section-vma "$sec=$(printf '0x%x' "$offset")")
  offset=$((offset + $(stat -c %s "$file")))
done
objcopy "${args[@]}" stub.efi uki.efi
lap uki

# 7. ESP: the UKI with kiln's size rule (content + 1/32 + 1 MiB, at least 8 MiB).
uki_size=$(stat -c %s uki.efi)
esp_bytes=$(((uki_size + uki_size / 32 + (1 << 20) + (1 << 20) - 1) / (1 << 20) * (1 << 20)))
[ "$esp_bytes" -ge $((8 << 20)) ] || esp_bytes=$((8 << 20))
truncate -s "$esp_bytes" esp.img
mkfs.vfat -n ESP esp.img >/dev/null
mmd -i esp.img ::EFI ::EFI/BOOT
mcopy -i esp.img uki.efi ::EFI/BOOT/BOOTX64.EFI
lap esp

# 8. GPT disk: 1 MiB aligned partitions, a backup table in the last MiB.
mib() { echo $((($(stat -c %s "$1") + (1 << 20) - 1) >> 20)); }
esp_mib=$(mib esp.img)
root_mib=$(mib root.ext4)
verity_mib=$(mib root.verity)
total_mib=$((1 + esp_mib + root_mib + verity_mib + 1))
uuid() { echo "${1:0:8}-${1:8:4}-${1:12:4}-${1:16:4}-${1:20:12}"; }
rm -f "$image"
truncate -s "${total_mib}M" "$image"
sfdisk --quiet "$image" >/dev/null <<EOF
label: gpt
unit: sectors
start=2048, size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
start=$(((1 + esp_mib) * 2048)), size=$((root_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$(uuid "${roothash:0:32}"), name="root-x86-64", attrs="GUID:60"
start=$(((1 + esp_mib + root_mib) * 2048)), size=$((verity_mib * 2048)), type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5, uuid=$(uuid "${roothash:32:32}"), name="root-x86-64-verity", attrs="GUID:60"
EOF
dd if=esp.img of="$image" bs=1M seek=1 conv=notrunc,sparse status=none
dd if=root.ext4 of="$image" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
dd if=root.verity of="$image" bs=1M seek=$((1 + esp_mib + root_mib)) conv=notrunc,sparse status=none
sync "$image"
lap disk

awk -v a="$t_start" -v b="$(now)" 'BEGIN { printf "total_secs=%.3f\n", (b - a) / 1e9 }'
echo "image=$(realpath "$image")"
echo "root_bytes=$root_bytes"
echo "root_files=$root_files"
echo "roothash=$roothash"
echo "kernel=$kver"
