#!/usr/bin/env bash
# The whole test suite on a Debian / Raspberry Pi OS machine. Needs root: firewall tests run
# against the real kernel, each inside a private network namespace, so the host's sets and
# rules are never touched. Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: run as root (sudo): the kernel tests create private network namespaces" >&2
    exit 2
fi
. scripts/ensure-toolchain.sh
# prometheus: for promtool (tests/it/metrics.rs checks the textfile with `promtool check metrics`).
sipban_apt_install build-essential ca-certificates curl ipset iptables nftables iproute2 util-linux procps prometheus
# Service and packaging tests: systemd-analyze, conntrack, dpkg-shlibdeps (for cargo-deb),
# lintian (tests/it/deb.rs: the package has no lintian error), libsqlite3-dev (the package links
# the system SQLite; `cargo build` compiles its own).
# faketime: tests/it/clock_jump.rs runs a sync under a clock a year ahead (libfaketime).
sipban_apt_install systemd conntrack dpkg-dev faketime lintian libsqlite3-dev
# SIP on the wire (tests/it/wire_tools.rs): SIPVicious attacks Kamailio, tcpdump records it.
sipban_apt_install sipvicious kamailio tcpdump
# Journal tests (tests/it/journal.rs): systemd-journal-remote turns Journal Export Format into real journal files.
sipban_apt_install systemd-journal-remote
# CrowdSec's Local API (tests/it/crowdsec.rs, bench/fleet.sh start their own from this package).
# The comment-only online_api_credentials.yaml must exist BEFORE the install: otherwise the
# postinst tries to register with the Central API, fails without the Internet, and leaves the
# package half-configured, which breaks every later apt run.
mkdir -p /etc/crowdsec
[ -e /etc/crowdsec/online_api_credentials.yaml ] ||
    echo '# sipban tests: no Central API (offline install)' >/etc/crowdsec/online_api_credentials.yaml
sipban_apt_install crowdsec
sipban_ensure_rust
# The .deb that tests/it/deb.rs inspects (installing cargo-deb once takes about 3 minutes).
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
cargo deb --locked --fast
# The kernel modules the tests use; on most systems they load on demand anyway.
modprobe -q ip_set_hash_net 2>/dev/null || true
cargo test --locked "$@"
