#!/usr/bin/env bash
# Prepare this machine for `make container-test`, which has no image registry and no Docker engine:
#   1. install podman, runc and debootstrap from the Debian archive if any is missing;
#   2. build a local base image (Debian bookworm minbase + python3 3.11 + python3-venv) with
#      debootstrap, unless an image with the same recipe is already there (the tag is a hash of it).
# Prints the base image tag as the last line of stdout. Users with Docker need none of this: the
# Dockerfile defaults to python:3.11-slim.
set -euo pipefail

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RECIPE="debootstrap --variant=minbase --include=$PACKAGES $SUITE; strip apt cache, lists, docs, man, locales; PATH=$ENV_PATH"
TAG="localhost/digits-base:$SUITE-$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)"

log() { echo "container-host: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if podman image exists "$TAG"; then
    log "base image $TAG is cached"
else
    # The Debian mirror this machine's own apt sources name (deb822 .sources or one-line .list).
    mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
             | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d /var/tmp/digits-base.XXXXXX)
    trap 'as_root rm -rf "$rootfs"' EXIT
    log "building $TAG from $mirror (about a minute)"
    start=$SECONDS
    as_root debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    # What a slim image leaves out: downloaded packages, package lists, documentation, translations.
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    as_root tar -C "$rootfs" -c . | podman import -q --change "ENV=PATH=$ENV_PATH" --change "ENV=LANG=C.UTF-8" \
        --change 'CMD=["python3"]' - "$TAG" >/dev/null
    log "built $TAG in $((SECONDS - start)) s"
fi
echo "$TAG"
