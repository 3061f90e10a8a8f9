#!/usr/bin/env bash
# Build a container base image locally, for machines that reach no image registry (the
# project's CI): Debian bookworm with python3 (3.11) and its venv module, imported into podman
# or docker. Elsewhere the Dockerfile's default base (python:3.11-slim-bookworm) is pulled.
#
#   deploy/container/build-base-image.sh [IMAGE] [podman|docker]     # as root; needs mmdebstrap or debootstrap
#
# Skips the work when IMAGE exists. Takes 1-2.5 min on 2 cores (mostly dpkg), image ~124 MB.
set -euo pipefail
IMAGE=${1:-localhost/memtrace-base:bookworm}
ENGINE=${2:-podman}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,ca-certificates
if "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE exists"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if command -v mmdebstrap >/dev/null; then
  # merged-usr hook: without it mmdebstrap installs usrmerge, which pulls in perl (+50 MB)
  TMPDIR=$work mmdebstrap --variant=apt --include=$PACKAGES \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Languages "none"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$work/rootfs.tar" "$MIRROR"
  "$ENGINE" import --change 'CMD ["/bin/bash"]' "$work/rootfs.tar" "$IMAGE"
else
  debootstrap --variant=minbase --include=$PACKAGES bookworm "$work/rootfs" "$MIRROR"
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/info/*
  tar --numeric-owner -C "$work/rootfs" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$IMAGE"
fi
