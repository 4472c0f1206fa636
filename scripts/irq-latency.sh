#!/bin/sh
# Interrupt latency of a virtio-blk completion, ukvm's userspace 8259A
# against KVM's in-kernel irqchip (--irqchip kvm), in the same run: the
# blk test guest (mode=irqlat) times with its TSC, for each of COUNT reads,
# from just before its queue notify to its interrupt handler's first
# instruction: the I/O thread's preadv, its raise of the line, the kick,
# the vCPU's wake from hlt and the injection. Medians over every request of
# every round; rounds alternate the order of the two.
#
#   scripts/irq-latency.sh            (REPS=5 rounds, COUNT=20 reads each)
#
# Environment: REPS, COUNT, UKVM (default target/x86_64-unknown-linux-gnu/release/ukvm).
set -eu
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
COUNT=${COUNT:-20}
UKVM=${UKVM:-target/x86_64-unknown-linux-gnu/release/ukvm}
GUEST=tests/guests/build/blk.bin
[ -f "$GUEST" ] || make -s -C tests/guests
[ -x "$UKVM" ] || cargo build -q --release -p ukvm
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT INT TERM
truncate -s 4096 "$OUT/disk.img"

run() { # NAME [UKVM OPTIONS]
    name=$1; shift
    "$UKVM" --kernel "$GUEST" --cmdline "mode=irqlat count=$COUNT" \
        --disk "$OUT/disk.img" "$@" >> "$OUT/$name.out"
}

r=1
while [ "$r" -le "$REPS" ]; do
    if [ $((r % 2)) = 1 ]; then run ukvm; run ukvm-kvmirq --irqchip kvm
    else run ukvm-kvmirq --irqchip kvm; run ukvm; fi
    r=$((r + 1))
done

python3 - "$OUT" "$REPS" "$COUNT" <<'PY'
import statistics, sys
out, reps, count = sys.argv[1:4]
print(f"virtio-blk completion, notify -> handler (us), {reps} rounds x {count} reads")
print("%-14s %10s %10s %10s %10s" % ("", "min", "median", "p90", "max"))
for name in ("ukvm", "ukvm-kvmirq"):
    khz, lat = None, []
    for line in open(f"{out}/{name}.out"):
        if line.startswith("blk0: tsc_khz="):
            khz = int(line.split("=")[1])
        elif line.startswith("blk0: irqlat tsc="):
            lat.append(int(line.split("=")[1], 16) * 1000 / khz)
    lat.sort()
    print("%-14s %10.0f %10.0f %10.0f %10.0f" % (name, lat[0], statistics.median(lat),
          lat[int(len(lat) * 0.9)], lat[-1]))
PY
