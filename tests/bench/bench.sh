#!/bin/sh
# `make bench`: benchmarks probed against the peers a user would pick instead
# (HAProxy health checks, prometheus-blackbox-exporter driven by a scraper, a shell loop
# of curl) with a local nginx as the target; see tests/bench/bench.py for what is
# measured and how. Not part of `make test`. This wrapper installs the peers' Debian
# packages when missing (as root), raises the open-file limit for 1,000-10,000 targets
# and runs the Python harness under /usr/bin/python3. Results: tests/bench/results.md
# and tests/bench/results.json. Knobs (environment): BUILD (default build),
# BENCH_SECONDS (30), BENCH_N ("10 1000"), BENCH_ROUNDS (3), BENCH_SECTIONS
# ("fleet names status grpc lifecycle memory throttled"), BENCH_PEERS, BENCH_NAMES (10), BENCH_NAMES_TTL (1), BENCH_PROFILE=1 (perf profile of
# probed with 1,000 targets), BENCH_PORT_BASE (20000).
set -e
cd "$(dirname "$0")/../.."

PKGS="nginx haproxy prometheus-blackbox-exporter wrk nghttp2-client curl procps python3 dnsmasq"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "bench: missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
		exit 1
	fi
	echo "bench: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# policy-rc.d may deny starting the packaged services; the harness runs its own.
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 tests/bench/bench.py "$@"
