#!/usr/bin/env bash
# The base image of docker/Dockerfile.cpu made without a container registry: a minimal Debian bookworm root
# filesystem from the Debian archive (debootstrap), with Debian's Python 3.11 and its venv module, loaded
# with `docker import`. Needs root, debootstrap and a running Docker engine; nothing is pulled.
#   sudo docker/make-base-image.sh [IMAGE]            # default elm-base:bookworm
#   docker build -f docker/Dockerfile.cpu --build-arg BASE_IMAGE=elm-base:bookworm ...
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), ELM_DOCKER_BUILD (work folder, default
# /tmp/elm-docker-build; the root filesystem is made in it and removed after the import).
set -euo pipefail

IMAGE=${1:-elm-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=${ELM_DOCKER_BUILD:-/tmp/elm-docker-build}/rootfs
# passwd: groupadd/useradd for the image's non-root user (not in minbase). python3-venv: `python3 -m venv`
# with pip, which is how the Dockerfiles install everything. No compilers: every package comes as a wheel.
PACKAGES=ca-certificates,passwd,python3,python3-venv

die() { echo "make-base-image: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "debootstrap needs root: run it as root or with sudo"
command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
docker info >/dev/null 2>&1 || die "no Docker engine answers: start dockerd (or the docker service) first"

rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" "$MIRROR"
# The image needs neither the package cache nor documentation; apt stays (apt-get update works in it).
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*
chroot "$ROOTFS" python3 -c 'import venv, ensurepip' || die "python3 with venv is missing in $ROOTFS"

# LANG as in python:3.11-slim; the Dockerfiles set everything else.
tar --numeric-owner -C "$ROOTFS" -c . \
    | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' \
        -m "debootstrap --variant=minbase bookworm $MIRROR + $PACKAGES" - "$IMAGE"
rm -rf "$ROOTFS"
docker run --rm "$IMAGE" python3 -c 'import sys, venv, ensurepip; print("python", sys.version.split()[0])'
docker image ls "$IMAGE"
