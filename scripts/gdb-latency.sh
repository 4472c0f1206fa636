#!/usr/bin/env bash
# Measures how long each gdb command takes against ukvm's --gdb, as gdb
# itself sees it (Python's perf_counter around gdb.execute), on the
# debugme test guest: connect, break, continue to it, print, registers,
# memory, stepi, a watchpoint hit. Prints one line per command, median of
# ROUNDS runs (default 5). Guest-side time (the run to a breakpoint) is in
# the "continue" lines; every other line is monitor + protocol cost.
#
#   scripts/gdb-latency.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build -q --release -p ukvm
make -s -C tests/guests OUT="$PWD/target/gdb-latency" >/dev/null
kernel=$PWD/target/gdb-latency/debugme.bin
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/measure.py" <<'PY'
import gdb, time
def t(cmd, label=None):
    s = time.perf_counter()
    gdb.execute(cmd, to_string=True)
    print("@%s\t%.3f" % (label or cmd, (time.perf_counter() - s) * 1000))
gdb.execute("set pagination off")
gdb.execute("set confirm off")
t("target remote " + gdb.parameter("args"), "target remote (connect)")
for cmd in ["break bump", "continue:continue (to bump)", "print counter",
            "info registers", "print $cr0", "x/16xw $esp", "x/8i $pc",
            "stepi", "delete", "watch counter",
            "continue:continue (watchpoint hit)", "delete",
            "continue:continue (to the exit)"]:
    t(*cmd.split(":"))
PY
for i in $(seq "$rounds"); do
  target/x86_64-unknown-linux-gnu/release/ukvm --kernel "$kernel" --gdb "unix:$dir/sock" >/dev/null 2>&1 &
  pid=$!
  while [ ! -S "$dir/sock" ]; do sleep 0.01; done
  gdb -batch -nx -ex "set args $dir/sock" -x "$dir/measure.py" "$kernel" 2>/dev/null
  wait "$pid" || true
done | python3 -c '
import sys, statistics
rows = {}
for line in sys.stdin:
    if line.startswith("@"):
        cmd, ms = line[1:].rstrip("\n").split("\t")
        rows.setdefault(cmd, []).append(float(ms))
for cmd, v in rows.items():
    print("%-26s median %7.2f ms  max %7.2f ms  (%d runs)" % (cmd, statistics.median(v), max(v), len(v)))
'
