#!/usr/bin/env bash
# Fresh Debian machine -> every check CI runs: formatting, lints, and the
# whole test suite (which builds the test unikernels from source and boots
# them under ukvm; needs /dev/kvm and root for the network tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --fixtures
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo test --workspace
