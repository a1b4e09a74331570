#!/usr/bin/env bash
# Reproduce tokio-cron-scheduler's open "repeated job stops firing" defect (upstream #113,
# PR #114 unmerged) and measure how often its idle scheduler wakes up. This is why sipban's
# daemon drives its cron schedules with croner and a monotonic sleep loop
# (src/daemon/schedule.rs). Stand-alone crate, not part of the sipban build or `cargo test`.
#
#   bash bench/cron_defect.sh          # about 50 s after the build
set -euo pipefail
cd "$(dirname "$0")/cron_defect"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/../../target/cron_defect}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/cron-defect"
echo "== 1 s repeated job and per-second cron job, runtime blocked 1.6 s every 3 s"
"$bin" 15
echo "== idle: one 10-minute cron job, nothing else"
"$bin" idle
