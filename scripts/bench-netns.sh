# Sourced by the network benchmarks: a private namespace "$NS" holding
# one TAP "$TAP" with host address "$1" (CIDR), a scratch directory "$OUT",
# and a trap that kills "$VMPID" (the monitor under test, if any) and
# removes all of it however the script ends.
bench_netns() {
    OUT=$(mktemp -d)
    VMPID=
    trap bench_netns_cleanup EXIT INT TERM
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" tuntap add "$TAP" mode tap
    ip -n "$NS" addr add "$1" dev "$TAP"
    ip -n "$NS" link set "$TAP" up
}

bench_netns_cleanup() {
    [ -n "${VMPID:-}" ] && kill "$VMPID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$OUT"
}
