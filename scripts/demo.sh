#!/usr/bin/env bash
# Fresh Debian machine -> the demo unikernel booted under ukvm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ukvm
exec ./target/x86_64-unknown-linux-gnu/release/ukvm demo --cmdline "${1:-hello from the ukvm demo}"
