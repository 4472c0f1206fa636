#!/bin/sh
# Container start through containerd: `ctr run --rm` of the hello unikernel
# with ukvm-oci, to its first serial line, against the same ctr starting a
# busybox container with runc (to its first line of output), and the same
# unikernel under plain ukvm with no engine (the floor), in the same run.
# Needs root, /dev/kvm, containerd, runc, buildah, busybox-static
# (scripts/setup.sh installs them).
#
#   scripts/oci-bench.sh
#
# Environment:
#   REPS=N   rounds (default 9); each round runs the three in turn, so slow
#            phases of a loaded machine hit them alike. Prints every round
#            (ms to the first line, ms to exit) with the ukvm-oci/runc
#            ratios, then the medians.
#
# A private containerd (root, state, sockets in a temporary directory) is
# started and stopped; images are built locally, no registry. Only
# processes this script started are stopped.
set -eu
cd "$(dirname "$0")/.."
REPS=${REPS:-9}
for b in ukvm ukvm-oci; do
    [ -x "target/x86_64-unknown-linux-gnu/release/$b" ] || cargo build -q --release -p ukvm -p ukvm-oci
done
[ -f tests/guests/build/hello.bin ] || make -s -C tests/guests
ROOT=$(pwd)
W=$(mktemp -d /tmp/ukvm-oci-bench.XXXXXX)
CTD_PID=
cleanup() {
    [ -n "$CTD_PID" ] && kill "$CTD_PID" 2>/dev/null && wait "$CTD_PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM

# Images: the hello unikernel and busybox, FROM scratch.
B="buildah --root $W/bs --runroot $W/brun --storage-driver vfs"
mkdir -p "$W/ctx"
cp tests/guests/build/hello.bin "$W/ctx/"
echo '{"kernel": "/hello.bin", "cmdline": "hello", "mem_mib": 32}' > "$W/ctx/ukvm.json"
cp "$(command -v busybox)" "$W/ctx/busybox"
c=$($B from scratch)
$B copy "$c" "$W/ctx/hello.bin" "$W/ctx/ukvm.json" / >/dev/null
$B commit -q "$c" localhost/ukvm-hello:bench >/dev/null
c=$($B from scratch)
$B copy "$c" "$W/ctx/busybox" / >/dev/null
$B config --entrypoint '["/busybox", "echo", "busybox hello"]' "$c"
$B commit -q "$c" localhost/busybox:bench >/dev/null
$B push -q localhost/ukvm-hello:bench "oci-archive:$W/hello.tar:localhost/ukvm-hello:bench"
$B push -q localhost/busybox:bench "oci-archive:$W/busybox.tar:localhost/busybox:bench"

cat > "$W/config.toml" <<EOF
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/sock"
[ttrpc]
  address = "$W/sock.ttrpc"
EOF
containerd --config "$W/config.toml" >"$W/containerd.log" 2>&1 &
CTD_PID=$!
CTR="ctr --address $W/sock"
i=0
until $CTR version >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 200 ] || { echo "containerd did not start" >&2; exit 1; }
    sleep 0.05
done
$CTR images import "$W/hello.tar" >/dev/null
$CTR images import "$W/busybox.tar" >/dev/null

# "first exit": microseconds to the first line of output and to exit.
now() { date +%s%N; }
measure() {
    t0=$(now)
    "$@" 2>"$W/err" | {
        read -r _ || true
        t1=$(now)
        cat >/dev/null
        echo "$(( (t1 - t0) / 1000 ))"
    } >"$W/first"
    t2=$(now)
    echo "$(cat "$W/first") $(( (t2 - t0) / 1000 ))"
}
OCI="$ROOT/target/x86_64-unknown-linux-gnu/release/ukvm-oci"
ukvm_oci() {
    $CTR run --rm --runc-binary "$OCI" --runc-root "$W/ukvm-oci" --fifo-dir "$W/fifo" \
        localhost/ukvm-hello:bench "uk$1"
}
runc_busybox() {
    $CTR run --rm --runc-root "$W/runc" --fifo-dir "$W/fifo" localhost/busybox:bench "bb$1"
}
plain_ukvm() {
    "$ROOT/target/x86_64-unknown-linux-gnu/release/ukvm" --kernel tests/guests/build/hello.bin --mem 32 --cmdline hello
}
# Warm-up (page cache, first shim start).
measure ukvm_oci w >/dev/null
measure runc_busybox w >/dev/null

printf '%-6s %24s %24s %24s %16s\n' round "ctr+ukvm-oci first/exit" "ctr+runc first/exit" \
    "ukvm alone first/exit" "ratio first/exit"
: >"$W/rows"
r=1
while [ $r -le "$REPS" ]; do
    set -- $(measure ukvm_oci "$r") $(measure runc_busybox "$r") $(measure plain_ukvm)
    echo "$@" >>"$W/rows"
    awk -v r="$r" '{ printf "%-6s %11.1f /%9.1f ms %11.1f /%9.1f ms %11.1f /%9.1f ms %7.2f /%6.2f\n",
        r, $1/1000, $2/1000, $3/1000, $4/1000, $5/1000, $6/1000, $1/$3, $2/$4 }' <<EOF
$*
EOF
    r=$((r + 1))
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' "$W/rows" | median; }
ratio() { awk -v a="$1" -v b="$2" '{ print $a / $b }' "$W/rows" | median; }
printf '%-6s %11.1f /%9.1f ms %11.1f /%9.1f ms %11.1f /%9.1f ms %7.2f /%6.2f\n' median \
    "$(col 1 | awk '{print $1/1000}')" "$(col 2 | awk '{print $1/1000}')" \
    "$(col 3 | awk '{print $1/1000}')" "$(col 4 | awk '{print $1/1000}')" \
    "$(col 5 | awk '{print $1/1000}')" "$(col 6 | awk '{print $1/1000}')" \
    "$(ratio 1 3)" "$(ratio 2 4)"
echo "ratio: ctr+ukvm-oci / ctr+runc (median of the per-round ratios); < 1: the unikernel starts faster"
