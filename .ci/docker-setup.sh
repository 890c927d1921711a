#!/usr/bin/env bash
# Make a Docker engine answer and build Pygent's test images offline (idempotent).
#
# Run as root on Debian 12 (CI or a fresh machine), no stdin needed:
#   .ci/docker-setup.sh
# What it does:
#   1. if `docker info` fails: install Debian's docker.io when dockerd is missing,
#      start dockerd in the background (log: $PYGENT_DOCKERD_LOG) and wait for it;
#   2. pygent-test:bookworm  : Debian bookworm minbase + python3, built with debootstrap
#      from the configured Debian mirror; the rootfs tarball is cached in
#      $PYGENT_CACHE_DIR (default /var/cache/pygent) so later runs take seconds;
#   3. pygent-busybox:latest : a 2 MB busybox-static image (no bash, no python) for the
#      "image without bash" path.
# No registry is needed: images are created with `docker import`.
set -euo pipefail

CACHE_DIR="${PYGENT_CACHE_DIR:-/var/cache/pygent}"
DOCKERD_LOG="${PYGENT_DOCKERD_LOG:-/var/log/pygent-dockerd.log}"
TEST_IMAGE="${PYGENT_TEST_IMAGE:-pygent-test:bookworm}"
BUSYBOX_IMAGE="${PYGENT_BUSYBOX_IMAGE:-pygent-busybox:latest}"
export DEBIAN_FRONTEND=noninteractive

say() { printf '[docker-setup] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
    say "installing $* from Debian"
    as_root apt-get update -qq </dev/null
    as_root apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

ensure_engine() {
    if docker info >/dev/null 2>&1; then
        say "engine answers: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        apt_install docker.io
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        say "starting dockerd (log: $DOCKERD_LOG)"
        as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
        # setsid + nohup: the daemon must outlive this script and its CI step.
        as_root setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then
            say "engine answers: $(docker version --format '{{.Server.Version}}')"
            return
        fi
        sleep 1
    done
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer within 60 s (see $DOCKERD_LOG)"
}

# The Debian mirror this machine already uses (deb822 .sources first, then sources.list).
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # A stanza whose Suites list bookworm itself (not only bookworm-security).
        uri=$(awk '
            /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u = ""; s = 0; next }
            /^URIs:/ { u = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") s = 1 }
            END { if (u != "" && s) print u }
        ' "$f" | head -n 1)
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; exit } }' "$f" | head -n 1)
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
    echo "http://deb.debian.org/debian"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

build_bookworm() {
    if image_exists "$TEST_IMAGE"; then
        say "$TEST_IMAGE present"
        return
    fi
    local tarball="$CACHE_DIR/bookworm-rootfs.tar"
    as_root mkdir -p "$CACHE_DIR"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
        local mirror root
        mirror=$(debian_mirror)
        root=$(mktemp -d /var/tmp/pygent-rootfs.XXXXXX)
        # shellcheck disable=SC2064
        trap "as_root rm -rf '$root'" EXIT
        say "debootstrap bookworm (minbase + python3) from $mirror (about a minute)"
        as_root debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror" \
            >"$CACHE_DIR/debootstrap.log" 2>&1 \
            || { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
        as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        # A tmpfs mounted on /tmp takes the image directory's mode: it must be 1777 here.
        as_root chmod 1777 "$root/tmp"
        as_root tar --numeric-owner -C "$root" -cf "$tarball.part" .
        as_root mv "$tarball.part" "$tarball"
        as_root rm -rf "$root"
        trap - EXIT
    else
        say "reusing cached rootfs $tarball"
    fi
    say "importing $TEST_IMAGE"
    docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' "$tarball" "$TEST_IMAGE" >/dev/null
}

build_busybox() {
    if image_exists "$BUSYBOX_IMAGE"; then
        say "$BUSYBOX_IMAGE present"
        return
    fi
    # Only busybox-static runs in an image with no libc; the dynamic build would not.
    dpkg -s busybox-static >/dev/null 2>&1 || apt_install busybox-static
    local bb=/bin/busybox
    local root
    root=$(mktemp -d /var/tmp/pygent-busybox.XXXXXX)
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/workspace"
    cp "$bb" "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    chmod 1777 "$root/tmp"
    say "importing $BUSYBOX_IMAGE"
    tar --numeric-owner -C "$root" -c . \
        | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$BUSYBOX_IMAGE" >/dev/null
    rm -rf "$root"
}

ensure_engine
build_bookworm
build_busybox
say "ready: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(${TEST_IMAGE%%:*}|${BUSYBOX_IMAGE%%:*}):" | tr '\n' ' ')"
