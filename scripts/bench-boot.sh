#!/usr/bin/env bash
# The boot-test part of kiln's benchmark: `kiln test` of an image, start to
# verdict, against the physical floor under the same accelerator, a direct
# `-kernel/-initrd` boot (QEMU's own firmware, no OVMF, no UKI) of the same
# kernel, initramfs and command line, taken out of the image's UKI, with
# the same machine, memory, vCPUs, disk and network, to the same ready line
# (the recipe's last console pattern). Prints, per run and as medians:
# kiln's wall time, the verdict's phases, the floor, and their ratio with
# the targets (verdict <= 10 s, ratio <= 2.5), never asserted.
#
#   scripts/bench-boot.sh [--runs N]                      builds hello itself
#   scripts/bench-boot.sh --kiln K --image I --store S [--runs N] [--rows FILE]
#
# With --rows it appends scripts/bench.sh's secondary-table rows (label,
# kiln, reference, ratio, note; tab-separated) to FILE instead of printing a
# table. Needs qemu-system-x86, ovmf, mtools, binutils and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3 kiln="" image="" store="" rows=""
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --kiln) kiln=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    *) echo "bench-boot: unknown argument $1" >&2; exit 2 ;;
  esac
done
for t in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils mcopy:mtools objcopy:binutils python3:python3; do
  command -v "${t%%:*}" >/dev/null || { echo "bench-boot: ${t%%:*} not found: install the Debian package ${t#*:}" >&2; exit 3; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-boot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [ -z "$image" ]; then
  kiln=$(bash scripts/build-kiln.sh)
  store="$tmp/store"
  echo "bench-boot: building hello" >&2
  "$kiln" build recipes/hello.toml -o "$tmp/out" --store "$store" --quiet
  image="$tmp/out/hello-1.0.raw"
fi
manifest="${image%.raw}.manifest.json"
[ -f "$manifest" ] || { echo "bench-boot: $manifest not found (kiln test needs it too)" >&2; exit 2; }

# The UKI's kernel, initramfs and command line, out of the image's ESP.
read -r esp_offset memory ready <<<"$(python3 - "$manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
esp = next(p for p in m["disk"]["partitions"] if p["name"] == "esp")
print(esp["offset"], m["test"]["memory_mib"], json.dumps(m["test"]["console"][-1][0]))
PY
)"
mcopy -n -i "$image@@$esp_offset" ::/EFI/BOOT/BOOTX64.EFI "$tmp/uki.efi"
objcopy -O binary --only-section=.linux "$tmp/uki.efi" "$tmp/vmlinuz"
objcopy -O binary --only-section=.initrd "$tmp/uki.efi" "$tmp/initrd"
objcopy -O binary --only-section=.cmdline "$tmp/uki.efi" "$tmp/cmdline"
cmdline=$(tr -d '\0' <"$tmp/cmdline")
accel=${KILN_ACCEL:-tcg}
# The vCPUs kiln gives a guest under this accelerator (vm::qemu::cpus).
cpus=1
[ "$accel" = kvm ] && cpus=2

# floor: seconds from QEMU's start to the ready line, direct kernel boot.
floor() {
  rm -f "$tmp/ov.qcow2" "$tmp/floor.log"
  qemu-img create -q -f qcow2 -F raw -b "$(realpath "$image")" "$tmp/ov.qcow2"
  python3 - "$tmp/floor.log" "$ready" qemu-system-x86_64 -machine q35 -accel "$accel" \
    -m "$memory" -smp "$cpus" -nodefaults -no-reboot -display none \
    -drive "if=virtio,format=qcow2,file=$tmp/ov.qcow2" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    -serial "file:$tmp/floor.log" -monitor none \
    -kernel "$tmp/vmlinuz" -initrd "$tmp/initrd" -append "$cmdline" <<'PY'
import json, re, subprocess, sys, time
log, pattern, argv = sys.argv[1], re.compile(json.loads(sys.argv[2])), sys.argv[3:]
t0 = time.monotonic()
q = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while time.monotonic() - t0 < 120 and q.poll() is None:
        try:
            if pattern.search(open(log, errors="replace").read()):
                print("%.3f" % (time.monotonic() - t0))
                sys.exit(0)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    sys.exit("the direct boot never reached its ready line")
finally:
    q.kill()
    q.wait()
PY
}

printf 'run\tverdict_s\tfirmware\tkernel\tinit\tready\tfloor_s\tratio\tload\n' >"$tmp/runs.tsv"
for ((i = 1; i <= runs; i++)); do
  echo "bench-boot: run $i of $runs: kiln test, then the direct boot" >&2
  t0=$(date +%s%N)
  "$kiln" test "$image" --store "$store" --json >"$tmp/test.json" ||
    { echo "bench-boot: kiln test failed: $(cat "$tmp/test.json")" >&2; exit 1; }
  wall=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  f=$(floor)
  python3 - "$tmp/test.json" "$i" "$wall" "$f" "$(cut -d' ' -f1 /proc/loadavg)" >>"$tmp/runs.tsv" <<'PY'
import json, sys
r, (i, wall, floor, load) = json.load(open(sys.argv[1])), sys.argv[2:]
ph = [("%.1f" % r["phases"][k]) if r["phases"][k] is not None else "-" for k in ("firmware", "kernel", "init", "ready")]
print("\t".join([i, wall, *ph, floor, "%.2f" % (float(wall) / float(floor)), load]))
PY
done

python3 - "$tmp/runs.tsv" "$accel" "${rows:-}" <<'PY'
import statistics, sys
lines = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
head, runs = lines[0], lines[1:]
med = lambda k: statistics.median(float(r[head.index(k)]) for r in runs)
v, f = med("verdict_s"), med("floor_s")
ratio = v / f
ok = lambda b: "met" if b else "NOT met"
note = "%s; %d runs, load %s" % (sys.argv[2], len(runs), ", ".join(r[-1] for r in runs))
out = [
    ("hello: kiln test, start to verdict (median)", "%.2f" % v, "10", "%.2f" % (v / 10),
     "%s (target <= 10 s); %s" % (ok(v <= 10), note)),
    ("hello: direct -kernel/-initrd boot to ready (floor, median)", "%.2f" % f, "-", "-",
     "same kernel, initramfs, cmdline, machine, memory, vCPUs"),
    ("hello: kiln test / direct-boot floor", "%.2f" % v, "%.2f" % f, "%.2f" % ratio,
     "%s (target <= 2.5)" % ok(ratio <= 2.5)),
    ("hello: boot phases, median (s since QEMU start)", "-", "-", "-",
     ", ".join("%s %.1f" % (k, med(k)) for k in ("firmware", "kernel", "init", "ready"))),
]
if sys.argv[3]:
    with open(sys.argv[3], "a") as rows:
        for o in out:
            rows.write("\t".join(o) + "\n")
else:
    print("\t".join(head))
    for r in runs:
        print("\t".join(r))
    for label, a, b, c, n in out:
        print("%-62s %8s %8s %6s  %s" % (label, a, b, c, n))
PY
