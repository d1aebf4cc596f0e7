#!/bin/sh
# Cross-compiles the library's tests for aarch64 (Apple M-series, Graviton) and runs the
# kernel tests under qemu-user emulation: on aarch64 the portable path runs (no AVX), so
# this checks that it builds and that the portable kernels pass there.
#
# Needs (Debian): apt-get install -y gcc-aarch64-linux-gnu qemu-user
#        (rustup): rustup target add aarch64-unknown-linux-gnu
# Usage: scripts/test-aarch64.sh [TEST FILTER, default kernels::]
set -eu
cd "$(dirname "$0")/.."
filter="${1:-kernels::}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo test --release --target aarch64-unknown-linux-gnu --lib "$filter"
