#!/bin/sh
# Network round trip and UDP echo rate through ukvm and through QEMU
# (virtio-net-pci over TAP, legacy interface), with the same `net` test
# guest, in the same run. Needs root, ping, python3, qemu-system-x86_64.
#
#   scripts/net-bench.sh [GUEST_BIN]     (default: tests/guests/build/net.bin)
#
# Everything happens in a network namespace this script creates and
# deletes; nothing touches the host's interfaces.
set -eu
cd "$(dirname "$0")/.."
GUEST=${1:-tests/guests/build/net.bin}
[ -f "$GUEST" ] || make -s -C tests/guests
UKVM=${UKVM:-target/release/ukvm}
[ -x "$UKVM" ] || cargo build -q --release -p ukvm
NS=ukvm-bench-$$
TAP=ukb$$
OUT=$(mktemp -d)
cleanup() {
    [ -n "${VMPID:-}" ] && kill "$VMPID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add "$TAP" mode tap
ip -n "$NS" addr add 10.9.0.1/24 dev "$TAP"
ip -n "$NS" link set "$TAP" up

cat > "$OUT/udp.py" <<'PY'
import socket, sys, time
addr, size, count, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
msg = bytes(i & 0xff for i in range(size))
# warm up (ARP)
s.sendto(msg, (addr, 7777)); s.recvfrom(65536)
sent = got = 0
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
print(f"udp size={size} window={window}: {got}/{count} echoed, {got/dt:.0f} pkt/s, {got*size*8/dt/1e6:.2f} Mbit/s (each way)")
PY

measure() {
    name=$1
    ip netns exec "$NS" ping -c 200 -i 0.01 -W 2 -q 10.9.0.2 | sed -n "s/^rtt/$name ping rtt (ms)/p"
    for spec in "64 2000 1" "1400 2000 1" "1400 4000 16"; do
        # shellcheck disable=SC2086
        printf '%s ' "$name"; ip netns exec "$NS" python3 "$OUT/udp.py" 10.9.0.2 $spec
    done
}

wait_ready() {
    i=0
    until grep -q '^ready' "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 1200 ] || { echo "guest not ready"; cat "$1"; exit 1; }
        sleep 0.05
    done
}

ip netns exec "$NS" "$UKVM" --kernel "$GUEST" --cmdline ip=10.9.0.2 --net "$TAP" >"$OUT/ukvm.out" 2>&1 &
VMPID=$!
wait_ready "$OUT/ukvm.out"
measure ukvm
kill "$VMPID"; wait "$VMPID" 2>/dev/null || true; VMPID=

ip netns exec "$NS" qemu-system-x86_64 -enable-kvm -M pc -m 64 -display none -no-reboot \
    -serial "file:$OUT/qemu.out" -kernel "$GUEST" -append ip=10.9.0.2 \
    -device virtio-net-pci,netdev=n0,disable-modern=on,romfile= \
    -netdev tap,id=n0,ifname="$TAP",script=no,downscript=no 2>/dev/null &
VMPID=$!
wait_ready "$OUT/qemu.out"
measure qemu
