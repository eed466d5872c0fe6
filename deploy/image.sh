#!/bin/sh
# Builds the probed images from deploy/Dockerfile: IMAGE:latest (target runtime: FROM
# scratch, no shell) and IMAGE:exec (target exec: debian:12-slim, for exec probes), and
# tags IMAGE:build (the build stages: the layer cache of the next run). Images older
# sources left behind are removed.
# Called by `make image`; see README.md "Container image".
#
#   sh deploy/image.sh DIR [IMAGE]      DIR: state and cache (make passes $(BUILD)/image)
#
# Engine: $PROBED_IMAGE_ENGINE if set, else docker when its daemon answers, else podman. For podman it writes
# DIR/containers.conf (runc, ulimits within the host's hard limits) and uses it through
# CONTAINERS_CONF; /etc is never changed. Base images: used when present; else pulled;
# else (no registry answers) made with debootstrap, imported as debian:12 and
# debian:12-slim (the Dockerfile's FROM lines), and cached as DIR/debian-12*.tar so
# that the next run imports them in seconds instead.
# Prints "engine=NAME" and, for podman, "CONTAINERS_CONF=PATH" on its last lines.
set -eu
DIR=${1:?usage: deploy/image.sh DIR [IMAGE]}
IMAGE=${2:-probed}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

if [ -n "${PROBED_IMAGE_ENGINE:-}" ]; then
        ENGINE=$PROBED_IMAGE_ENGINE
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
elif command -v podman >/dev/null 2>&1; then
        ENGINE=podman
else
        echo "image: neither a docker daemon nor podman (apt-get install podman runc catatonit)" >&2
        exit 1
fi

if [ "$ENGINE" = podman ]; then
        # crun refuses hybrid cgroups; podman asks for nofile=1048576 by default, which
        # root without CAP_SYS_RESOURCE cannot set past the host's hard limit.
        nofile=$(ulimit -Hn)
        nproc=$(ulimit -Hp 2>/dev/null || ulimit -Hu)
        [ "$nofile" = unlimited ] && nofile=1048576
        if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
        cat > "$DIR/containers.conf.new" <<EOF
# Written by deploy/image.sh: podman settings for this machine, used through
# CONTAINERS_CONF (the image test uses the same file).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
        mv "$DIR/containers.conf.new" "$DIR/containers.conf"
        CONTAINERS_CONF=$DIR/containers.conf
        export CONTAINERS_CONF
fi

has_image() {
        $ENGINE image inspect "$1" >/dev/null 2>&1
}

# The official image's apt settings (Debian's docker images, debuerreotype): no .deb
# cache, no pkgcache.bin, compressed lists, no translations. Without them an
# `apt-get install` layer keeps tens of MB of cache.
apt_settings() {
        d=$1/etc/apt/apt.conf.d
        mkdir -p "$d"
        cat > "$d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
        echo 'Acquire::GzipIndexes "true";' > "$d/docker-gzip-indexes"
        echo 'Acquire::Languages "none";' > "$d/docker-no-languages"
        echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$d/docker-autoremove-suggests"
}

# debian:12 and debian:12-slim as tarballs in DIR, from one debootstrap run.
make_bases() {
        # Outside DIR: the Makefile reads every *.d under the build directory, and a
        # root filesystem is full of them (etc/rc2.d, ...).
        work=$(mktemp -d "${TMPDIR:-/var/tmp}/probed-rootfs.XXXXXX")
        trap 'rm -rf "$work"' EXIT
        trap 'exit 1' INT TERM
        rootfs=$work/debian-12
        echo "image: debootstrap bookworm from $MIRROR (no registry answered)"
        debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 || {
                tail -n 20 "$DIR/debootstrap.log" >&2
                exit 1
        }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
                "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
        rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
        printf '%s\n' "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
                "deb ${MIRROR%/debian}/debian-security bookworm-security main" \
                > "$rootfs/etc/apt/sources.list"
        apt_settings "$rootfs"
        cp -a "$rootfs" "$rootfs-slim"
        s=$rootfs-slim
        mkdir -p "$s/etc/dpkg/dpkg.cfg.d"
        cat > "$s/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# The "slim" variant: files containers do not need are excluded, and stay excluded.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
        find "$s/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        find "$s/usr/share/doc" -mindepth 1 -type d -empty -delete
        rm -rf "$s"/usr/share/groff/* "$s"/usr/share/info/* "$s"/usr/share/man/* \
                "$s"/usr/share/lintian/* "$s"/usr/share/linda/*
        find "$s/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
                -exec rm -rf {} +
        tar -C "$rootfs" --numeric-owner --exclude='./dev/*' -cf "$DIR/debian-12.tar.new" .
        tar -C "$s" --numeric-owner --exclude='./dev/*' -cf "$DIR/debian-12-slim.tar.new" .
        mv "$DIR/debian-12.tar.new" "$DIR/debian-12.tar"
        mv "$DIR/debian-12-slim.tar.new" "$DIR/debian-12-slim.tar"
        rm -rf "$work"
}

base() {
        ref=docker.io/library/debian:$1
        has_image "$ref" && return 0
        if [ ! -f "$DIR/debian-$1.tar" ]; then
                if timeout 60 $ENGINE pull -q "$ref" >/dev/null 2>&1; then
                        echo "image: pulled $ref"
                        return 0
                fi
                make_bases
        fi
        echo "image: importing $ref from $DIR/debian-$1.tar"
        $ENGINE import --change 'CMD ["bash"]' "$DIR/debian-$1.tar" "$ref" >"$DIR/import.log" 2>&1 || {
                cat "$DIR/import.log" >&2
                exit 1
        }
}

base 12
base 12-slim

if [ "$ENGINE" = podman ]; then
        # --format docker keeps the HEALTHCHECK (the OCI format drops it).
        set -- --format docker
else
        set --
fi
cd "$ROOT"
# IMAGE:build names the rootfs stage (and so the build stage under it): the layer cache
# of the next build, which a dangling image would not stay safely.
tags="$IMAGE:latest $IMAGE:exec $IMAGE:build"
old=$(for t in $tags; do $ENGINE image inspect --format '{{.Id}}' "$t" 2>/dev/null || true; done)
for t in runtime:latest exec:exec rootfs:build; do
        echo "image: building $IMAGE:${t#*:} (target ${t%%:*})"
        log=$DIR/build-${t%%:*}.log
        $ENGINE build "$@" --network host -f deploy/Dockerfile --target "${t%%:*}" \
                -t "$IMAGE:${t#*:}" . >"$log" 2>&1 || {
                tail -n 30 "$log" >&2
                echo "image: $ENGINE build failed (whole log: $log)" >&2
                exit 1
        }
done
# What earlier sources left: the images these tags named before, with their untagged
# parents (the old build stage's layers). The current layer cache and the base images stay.
new=$(for t in $tags; do $ENGINE image inspect --format '{{.Id}}' "$t"; done)
for id in $old; do
        case " $(echo $new) " in *" $id "*) continue ;; esac
        $ENGINE rmi "$id" >/dev/null 2>&1 || true
done
$ENGINE image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "/$IMAGE:[le]\|^$IMAGE:[le]" || true
echo "engine=$ENGINE"
[ "$ENGINE" = podman ] && echo "CONTAINERS_CONF=$CONTAINERS_CONF"
exit 0
