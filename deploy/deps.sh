#!/bin/sh
# Installs the Debian 12 packages that building, running and testing probed need,
# only those missing. Called by `make run` and `make test`; safe to run again.
set -e
PKGS="gcc make pkg-config libcurl4-openssl-dev libmicrohttpd-dev libcjson-dev check libssl-dev
curl valgrind prometheus python3 python3-websockets python3-grpcio python3-yaml procps iproute2 groff man-db openssl python3-h2 tini
libc-ares-dev dnsmasq redis-server nginx libnghttp2-dev nghttp2-client golang-go golang-google-grpc-dev
podman runc catatonit debootstrap"
missing=""
for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
        exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
