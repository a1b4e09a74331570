#!/usr/bin/env bash
# The main job on a fresh Debian / Raspberry Pi OS machine: build sipban and print the plan
# for config.example.yaml. Works offline once built (the example feed is a local file) and
# needs no root: without root the plan is diffed against the saved state, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
sipban_apt_install build-essential ca-certificates curl
sipban_ensure_rust
# The first build takes minutes on a Pi: let cargo show its progress.
echo "building sipban (release); the first build takes a few minutes..." >&2
cargo build --release --locked
exec ./target/release/sipban sync --dry-run --config config.example.yaml "$@"
