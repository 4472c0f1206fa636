#!/bin/sh
# Network round trip and UDP echo rate through ukvm and through QEMU
# (virtio-net-pci over TAP, legacy interface), with the same `net` test
# guest, in the same run. Needs root, ping, python3, qemu-system-x86_64.
#
#   scripts/net-bench.sh [GUEST_BIN]     (default: tests/guests/build/net.bin)
#
# Environment:
#   REPS=N        rounds (default 3); each round runs every monitor once, in
#                 turn, so slow phases of a loaded machine hit them alike.
#                 The table at the end gives the median of the rounds.
#   UKVM=PATH     the ukvm binary (default target/x86_64-unknown-linux-gnu/release/ukvm)
#   UKVM_B=CMD    a second ukvm to compare (A/B), e.g. another build or
#                 "env VAR=1 target/x86_64-unknown-linux-gnu/release/ukvm"; column "ukvm-b"
#   UKVM_C=CMD    a third one, column "ukvm-c"
#   ARGS_B=.., ARGS_C=..  guest command-line words for those columns only
#                 (e.g. ARGS_B=noiret with UKVM_B=target/x86_64-unknown-linux-gnu/release/ukvm)
#   IRQCHIP_AB=1  adds column "ukvm-kvmirq": the same ukvm with --irqchip kvm
#                 (KVM's in-kernel PIC/IOAPIC/PIT instead of ukvm's own), the
#                 A/B of the interrupt controller in one run
#   QEMU=0        leave QEMU out
#   GUEST_ARGS=.. extra guest command-line words (e.g. "mrg")
#
# Everything happens in a network namespace this script creates and
# deletes; nothing touches the host's interfaces. Only processes this
# script started are killed.
set -eu
cd "$(dirname "$0")/.."
GUEST=${1:-tests/guests/build/net.bin}
[ -f "$GUEST" ] || make -s -C tests/guests
UKVM=${UKVM:-target/x86_64-unknown-linux-gnu/release/ukvm}
[ -x "$UKVM" ] || cargo build -q --release -p ukvm
REPS=${REPS:-3}
UKVM_B=${UKVM_B:-}
UKVM_C=${UKVM_C:-}
QEMU=${QEMU:-1}
IRQCHIP_AB=${IRQCHIP_AB:-0}
GUEST_ARGS=${GUEST_ARGS:-}
ARGS_B=${ARGS_B:-}
ARGS_C=${ARGS_C:-}
NS=ukvm-bench-$$
TAP=ukb$$
. "$(dirname "$0")/bench-netns.sh"
bench_netns 10.9.0.1/24

cat > "$OUT/udp.py" <<'PY'
import os, socket, sys, time
addr, size, count, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pid, vcpu = int(sys.argv[5]), sys.argv[6]
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    """CPU seconds of the monitor process and of its vCPU thread."""
    total = mine = 0.0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        used = (int(f[11]) + int(f[12])) / tick
        total += used
        if comm == vcpu:
            mine += used
    return total, mine
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
msg = bytes(i & 0xff for i in range(size))
# warm up (ARP)
s.sendto(msg, (addr, 7777)); s.recvfrom(65536)
sent = got = 0
c0 = cpu()
t0 = time.perf_counter()
while sent < window:
    s.sendto(msg, (addr, 7777)); sent += 1
while got < count:
    try:
        d, _ = s.recvfrom(65536)
    except socket.timeout:
        break
    got += 1
    if d != msg: sys.exit("echo differs")
    if sent < count:
        s.sendto(msg, (addr, 7777)); sent += 1
dt = time.perf_counter() - t0
c1 = cpu()
us = lambda x: x * 1e6 / max(got, 1)
print(f"udp size={size} window={window}: {got}/{count} echoed, {got/dt:.0f} pkt/s, {got*size*8/dt/1e6:.2f} Mbit/s (each way);"
      f" per echo: {us(dt):.0f} us_wall, {us(c1[1]-c0[1]):.0f} us_vcpu, {us(c1[0]-c0[0]):.0f} us_process CPU")
PY

# Medians per monitor and measure from the "name key value" lines.
cat > "$OUT/median.py" <<'PY'
import sys, statistics
rows, names, keys = {}, [], []
for line in open(sys.argv[1]):
    name, key, value = line.split()
    if name not in names: names.append(name)
    if key not in keys: keys.append(key)
    rows.setdefault((name, key), []).append(float(value))
print("medians of %s rounds" % sys.argv[2])
print("%-34s" % "" + "".join("%12s" % n for n in names))
for k in keys:
    cells = [rows.get((n, k)) for n in names]
    print("%-34s" % k + "".join("%12.3f" % statistics.median(c) if c else "%12s" % "-" for c in cells))
PY

# measure NAME VCPU_THREAD_NAME
measure() {
    name=$1 vcpu=$2
    line=$(ip netns exec "$NS" ping -c 200 -i 0.01 -W 2 -q 10.9.0.2 | grep '^rtt')
    echo "$name ping $line"
    # rtt min/avg/max/mdev = a/b/c/d ms
    echo "$line" | awk -v n="$name" -F'[ /]' '{print n, "ping_rtt_avg_ms", $8; print n, "ping_rtt_min_ms", $7}' >> "$OUT/data"
    for spec in "64 2000 1" "1400 2000 1" "1400 4000 16"; do
        # shellcheck disable=SC2086
        res=$(ip netns exec "$NS" python3 "$OUT/udp.py" 10.9.0.2 $spec "$VMPID" "$vcpu")
        echo "$name $res"
        set -- $spec
        echo "$res" | awk -v n="$name" -v k="udp_${1}B_w${3}" '{for (i = 1; i < NF; i++) { if ($(i+1) == "pkt/s,") print n, k "_pkt_s", $i; if ($(i+1) == "Mbit/s") print n, k "_mbit_s", $i; if ($(i+1) ~ /^us_/) { u = $(i+1); sub(/,$/, "", u); print n, k "_" u, $i } }}' >> "$OUT/data"
    done
}

wait_ready() {
    i=0
    until grep -q '^ready' "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 1200 ] || { echo "guest not ready"; cat "$1"; exit 1; }
        sleep 0.05
    done
}

# run_ukvm NAME GUEST_WORDS UKVM_OPTIONS CMD...: boots the guest under CMD,
# measures, stops it (SIGTERM: ukvm writes --timings, whose interrupt
# latency, raise to injection, goes in the table).
run_ukvm() {
    name=$1 words=$2 opts=$3; shift 3
    # shellcheck disable=SC2086
    ip netns exec "$NS" "$@" --kernel "$GUEST" --cmdline "ip=10.9.0.2 $GUEST_ARGS $words" --net "$TAP" \
        --timings "$OUT/$name.json" $opts >"$OUT/$name.out" 2>&1 &
    VMPID=$!
    wait_ready "$OUT/$name.out"
    eval "last=\${$#}"
    measure "$name" "$(basename "$last" | cut -c1-15)"
    kill "$VMPID"; wait "$VMPID" 2>/dev/null || true; VMPID=
    python3 - "$OUT/$name.json" "$name" >> "$OUT/data" <<'PY' || true
import json, sys
i = json.load(open(sys.argv[1]))["interrupts"]
if i["latency_count"]:
    print(sys.argv[2], "irq_raise_to_inject_mean_us", i["latency_mean_us"])
    print(sys.argv[2], "irq_raise_to_inject_max_us", i["latency_max_us"])
PY
}

run_qemu() {
    : > "$OUT/qemu.out"
    ip netns exec "$NS" qemu-system-x86_64 -enable-kvm -M pc -m 64 -display none -no-reboot -name bench,debug-threads=on \
        -serial "file:$OUT/qemu.out" -kernel "$GUEST" -append "ip=10.9.0.2 noiret $GUEST_ARGS" \
        -device virtio-net-pci,netdev=n0,disable-modern=on,romfile= \
        -netdev tap,id=n0,ifname="$TAP",script=no,downscript=no 2>/dev/null &
    VMPID=$!
    wait_ready "$OUT/qemu.out"
    measure qemu "CPU 0/KVM"
    kill "$VMPID"; wait "$VMPID" 2>/dev/null || true; VMPID=
}

# Each round starts with a different monitor, so none always runs first.
set -- ukvm
[ "$IRQCHIP_AB" = 0 ] || set -- "$@" ukvm-kvmirq
[ -z "$UKVM_B" ] || set -- "$@" ukvm-b
[ -z "$UKVM_C" ] || set -- "$@" ukvm-c
[ "$QEMU" = 0 ] || set -- "$@" qemu
r=1
while [ "$r" -le "$REPS" ]; do
    echo "# round $r"
    for m in "$@"; do
        # shellcheck disable=SC2086
        case $m in
            ukvm) run_ukvm ukvm "" "" "$UKVM" ;;
            ukvm-kvmirq) run_ukvm ukvm-kvmirq "" "--irqchip kvm" "$UKVM" ;;
            ukvm-b) run_ukvm ukvm-b "$ARGS_B" "" $UKVM_B ;;
            ukvm-c) run_ukvm ukvm-c "$ARGS_C" "" $UKVM_C ;;
            qemu) run_qemu ;;
        esac
    done
    first=$1; shift; set -- "$@" "$first"
    r=$((r + 1))
done
python3 "$OUT/median.py" "$OUT/data" "$REPS"
