#!/usr/bin/env bash
# Installs what building and testing ukvm needs on a Debian machine:
# the C toolchain for the test unikernels, the fixtures (ISO tools, real
# kernels), QEMU for the side-by-side benchmarks, and Rust if missing.
# Idempotent: apt runs only when a package is missing.
set -euo pipefail

packages=(
  build-essential   # gcc/as/ld/make for the test guests; libc.a for static ukvm
  python3           # tests/guests/check_guests.py
  genisoimage       # ISO 9660 fixtures for virtio-blk tests
  grub-invaders     # a real Multiboot kernel from Debian
  qemu-system-x86   # benchmark comparator
  iproute2          # ip netns / ip tuntap for network tests
  iputils-ping      # ping through the TAP in network tests
  lz4               # Debian's kernel payload is LZ4: extracting vmlinux
  busybox-static    # initramfs of the Linux boot test
  cpio              # packing that initramfs
  gdb               # --gdb and --dumpcore tests drive Debian's gdb
  util-linux        # unshare, setpriv
  runc              # ukvm-oci hands non-unikernel bundles to runc
  containerd        # engine end-to-end tests: containerd + ctr,
  containernetworking-plugins  # CNI for ctr --cni and Podman,
  podman            # Podman,
  docker.io         # Docker (dockerd 20.10, /usr/bin/docker),
  buildah           # and local image builds (no registry)
  iptables          # CNI portmap: Podman's published ports
  ca-certificates
  curl
  xz-utils
  zstd
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ctr --cni looks for the CNI plugins in /opt/cni/bin only; Debian puts
# them in /usr/lib/cni.
if [ ! -e /opt/cni/bin ] && [ -d /usr/lib/cni ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo mkdir -p /opt/cni
  $sudo ln -s /usr/lib/cni /opt/cni/bin
fi

if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "setup: installing Rust with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal -c rustfmt,clippy
fi

# Real-kernel fixtures (Debian's Linux kernel) for the loader tests; only
# the test command needs them (`setup.sh --fixtures`).
if [ "${1:-}" = "--fixtures" ]; then
  "$(dirname "$0")/../tests/fixtures/fetch-linux.sh"
fi
