#!/usr/bin/env bash
# Build the CPU image's base locally: Debian 12 (bookworm, minbase) + python3.11 in a venv at /opt/venv
# (first on PATH, so `python` and `pip` are 3.11's, as in the official python image) + libgomp1 and g++,
# made with debootstrap from a Debian mirror and imported into the engine. For machines that reach
# Debian's packages but no image registry; needs root and debootstrap (apt-get install debootstrap).
#   bash scripts/environment/build_local_base.sh [--engine auto|docker|podman] [--image NAME] [--mirror URL] [--force]
# Idempotent: when NAME exists and carries this recipe's label (a hash of this script and the mirror),
# nothing is rebuilt. The image name is the last line printed. Mirror: --mirror, else $MS_GPT_DEBIAN_MIRROR,
# else the first Debian archive in this machine's apt sources, else http://deb.debian.org/debian.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/environment/container_engine.sh
source scripts/environment/container_engine.sh

WANT=auto
IMAGE=localhost/ms-gpt-base:bookworm-py3.11
MIRROR="${MS_GPT_DEBIAN_MIRROR:-}"
FORCE=0
# python3-distutils: python3.11-venv needs it (as the virtual python3.11-distutils, which debootstrap does
# not resolve by itself).
PACKAGES=python3.11,python3-distutils,python3.11-venv,libgomp1,g++
die() { echo "build_local_base.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) [ $# -ge 2 ] || die "--engine needs a value (auto, docker or podman)"; WANT="$2"; shift 2 ;;
    --image) [ $# -ge 2 ] || die "--image needs a value"; IMAGE="$2"; shift 2 ;;
    --mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; MIRROR="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) die "unknown option '$1' (accepted: --engine, --image, --mirror, --force)" ;;
  esac
done
case "$WANT" in auto|docker|podman) ;; *) die "unknown engine '$WANT' (accepted: auto, docker, podman)" ;; esac

apt_mirror() {
  # The first Debian archive URI in the apt sources (deb822 .sources files, then one-line .list files).
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  echo http://deb.debian.org/debian
}
[ -n "$MIRROR" ] || MIRROR=$(apt_mirror)
case "$MIRROR" in http://*|https://*|file://*) ;; *) die "--mirror must be an http(s):// or file:// URL, got '$MIRROR'" ;; esac

engine_select "$WANT" || die "no container engine: install podman (apt-get install -y podman runc) or start Docker"
RECIPE=$( { cat "$0"; echo "$MIRROR"; } | sha256sum | cut -c1-16)
if [ "$FORCE" = 0 ]; then
  have=$("${ENGINE[@]}" image inspect --format '{{ index .Config.Labels "ms_gpt.base.recipe" }}' "$IMAGE" 2>/dev/null || true)
  if [ "$have" = "$RECIPE" ]; then
    echo "build_local_base.sh: $IMAGE is up to date (recipe $RECIPE)"
    echo "$IMAGE"
    exit 0
  fi
fi

[ "$(id -u)" = 0 ] || die "debootstrap needs root: run this script as root (or give the CPU image another base with --build-arg BASE_IMAGE)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found: apt-get install -y debootstrap"

ROOTFS=$(mktemp -d /var/tmp/ms-gpt-base.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
t0=$(date +%s)
echo "build_local_base.sh: debootstrap bookworm from $MIRROR (+ $PACKAGES)"
if ! debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" "$MIRROR" > "$ROOTFS.log" 2>&1; then
  tail -20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; die "debootstrap failed (log above)"
fi
rm -f "$ROOTFS.log"
# What the image does not need: the downloaded .debs and the package lists (as the official images do).
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
chroot "$ROOTFS" /usr/bin/python3.11 -m venv /opt/venv
tar -C "$ROOTFS" -c . | "${ENGINE[@]}" import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL ms_gpt.base.recipe=$RECIPE" \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
size=$("${ENGINE[@]}" image inspect --format '{{ .Size }}' "$IMAGE")
echo "build_local_base.sh: built $IMAGE in $(( $(date +%s) - t0 )) s ($(( size / 1000000 )) MB, recipe $RECIPE)"
echo "$IMAGE"
