#!/bin/sh
# The image test (make image-test, part of make test): builds the images with
# deploy/image.sh (make image), then runs tests/image/test_image.py against them with
# podman. Skipped, with a message, unless run as root with podman installed: podman on
# these machines runs as root (README.md "Container image").
# Arguments: test names passed to test_image.py (default: all).
BUILD=${BUILD:-build}
IMAGE=${IMAGE:-probed}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case $BUILD in /*) b=$BUILD ;; *) b=$root/$BUILD ;; esac
if [ "$(id -u)" != 0 ]; then
        echo "image-test: SKIPPED: needs root (podman runs the images as root here)"
        exit 0
fi
if ! command -v podman >/dev/null 2>&1; then
        echo "image-test: SKIPPED: podman is not installed (make deps installs it)"
        exit 0
fi
start=$(date +%s)
# The test needs podman's pods and kube play: build with podman even where docker runs.
PROBED_IMAGE_ENGINE=podman sh "$root/deploy/image.sh" "$b/image" "$IMAGE" || exit 1
built=$(date +%s)
CONTAINERS_CONF=$b/image/containers.conf
TOOLS=${TOOLS:-$b/tests}
export CONTAINERS_CONF TOOLS IMAGE
echo "== test_image.py (make image: $((built - start)) s)"
/usr/bin/python3 -u "$here/test_image.py" "$@"
rc=$?
echo "image-test: $(($(date +%s) - start)) s in all"
exit $rc
