#!/bin/bash
# Network latency and rate of one Solo5 hvt guest (Solo5 v0.12.1's own
# test_net.hvt from ../shared/solo5, unmodified) under three monitors, in
# the same run:
#
#   ukvm-ring   ukvm, the guest takes the network ring (Solo5 >= 0.11)
#   ukvm-hc     ukvm --no-hvt-ring: the net hypercalls (older Solo5)
#   solo5-hvt   Solo5's own tender (../shared/solo5/solo5-hvt), which
#               offers the same ring
#
# ICMP only: test_net answers ARP and ICMP echo; no Solo5 test guest
# answers UDP. Per monitor and round: the mean round trip of 200 pings
# 10 ms apart, and the rate of a 2000-ping flood (ping -f: one request in
# flight, the next sent as the reply arrives). The monitors alternate
# within each round, so a loaded machine hits them alike; the table gives
# medians over the rounds and the median of the per-round ratios.
#
#   scripts/hvt-net-bench.sh        (root; needs ping, target/x86_64-unknown-linux-gnu/release/ukvm)
#
# Environment: REPS=N rounds (default 5), PINGS=N flood size (2000),
# UKVM=PATH (target/x86_64-unknown-linux-gnu/release/ukvm), SOLO5=DIR (../shared/solo5).
#
# Everything happens in a network namespace this script creates and
# deletes; only processes it started are killed.
set -eu
cd "$(dirname "$0")/.."
UKVM=${UKVM:-target/x86_64-unknown-linux-gnu/release/ukvm}
SOLO5=${SOLO5:-../shared/solo5}
REPS=${REPS:-5}
PINGS=${PINGS:-2000}
[ -x "$UKVM" ] || cargo build -q --release -p ukvm --bin ukvm
for f in "$SOLO5/solo5-hvt" "$SOLO5/test_net.hvt"; do
    [ -e "$f" ] || { echo "hvt-net-bench: $f missing (see shared/solo5/README.txt)" >&2; exit 2; }
done
NS=ukvm-hvtbench-$$
TAP=ukh$$
. "$(dirname "$0")/bench-netns.sh"
bench_netns 10.0.0.1/24

MONITORS="ukvm-ring ukvm-hc solo5-hvt"
command_for() {
    case $1 in
        ukvm-ring) echo "$UKVM --mem 64 --net service0=$TAP --kernel $SOLO5/test_net.hvt" ;;
        ukvm-hc) echo "$UKVM --mem 64 --no-hvt-ring --net service0=$TAP --kernel $SOLO5/test_net.hvt" ;;
        solo5-hvt) echo "$SOLO5/solo5-hvt --mem=64 --net:service0=$TAP -- $SOLO5/test_net.hvt" ;;
    esac
}

# One monitor, one round: prints "RTT_MS RATE_PPS".
measure() {
    # shellcheck disable=SC2046
    ip netns exec "$NS" $(command_for "$1") > "$OUT/guest.log" 2>&1 &
    VMPID=$!
    for _ in $(seq 1500); do
        grep -q "Serving ping on 10.0.0.2" "$OUT/guest.log" && break
        sleep 0.02
    done
    if ! grep -q "Serving ping on 10.0.0.2" "$OUT/guest.log"; then
        # Seen here under load: the round is reported as "-", not lost.
        echo "hvt-net-bench: $1 did not start within 30 s:" "$(cat "$OUT/guest.log")" >&2
        kill "$VMPID" 2>/dev/null || true
        wait "$VMPID" 2>/dev/null || true
        VMPID=
        echo "- -"
        return
    fi
    rtt=$(ip netns exec "$NS" ping -q -c 200 -i 0.01 -W 2 10.0.0.2 |
        sed -n 's|.* = [0-9.]*/\([0-9.]*\)/.*|\1|p')
    flood=$(ip netns exec "$NS" ping -f -q -c "$PINGS" -w 60 10.0.0.2)
    got=$(echo "$flood" | sed -n 's/.* transmitted, \([0-9]*\) received.*/\1/p')
    ms=$(echo "$flood" | sed -n 's/.* time \([0-9]*\)ms.*/\1/p')
    kill "$VMPID" 2>/dev/null || true
    wait "$VMPID" 2>/dev/null || true
    VMPID=
    echo "$rtt $(awk -v n="$got" -v ms="$ms" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')"
}

echo "hvt network: test_net.hvt (Solo5 v0.12.1), $REPS rounds, flood of $PINGS pings; $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
printf "%-6s %-11s %10s %12s\n" round monitor "rtt ms" "flood pps"
for r in $(seq "$REPS"); do
    for m in $MONITORS; do
        set -- $(measure "$m")
        printf "%-6s %-11s %10s %12s\n" "$r" "$m" "$1" "$2"
        echo "$r $m $1 $2" >> "$OUT/results"
    done
done

median() { grep -v -- - | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
printf "%-11s %14s %16s %22s %22s\n" monitor "median rtt ms" "median flood pps" "rtt ring/this (rounds)" "rate ring/this (rounds)"
for m in $MONITORS; do
    rtt=$(awk -v m="$m" '$2 == m { print $3 }' "$OUT/results" | median)
    pps=$(awk -v m="$m" '$2 == m { print $4 }' "$OUT/results" | median)
    rr=$(awk -v m="$m" '$2 == "ukvm-ring" { a[$1] = $3 } $2 == m { b[$1] = $3 }
        END { for (r in a) if (a[r] != "-" && b[r] > 0) print a[r] / b[r] }' "$OUT/results" | median)
    pr=$(awk -v m="$m" '$2 == "ukvm-ring" { a[$1] = $4 } $2 == m { b[$1] = $4 }
        END { for (r in a) if (a[r] != "-" && b[r] > 0) print a[r] / b[r] }' "$OUT/results" | median)
    printf "%-11s %14s %16s %22.3f %22.3f\n" "$m" "$rtt" "$pps" "$rr" "$pr"
done
