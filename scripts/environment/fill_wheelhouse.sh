#!/usr/bin/env bash
# Download every distribution the CPU image installs into docker/wheelhouse/, so the image builds with no
# network: pip 26.3, docker/requirements-x86_64.txt and docker/requirements-notebook.txt, exactly those
# pins (pip download --no-deps; jieba and snownlp come as their sdists, built inside the image).
#   bash scripts/environment/fill_wheelhouse.sh [--python PY] [--dir DIR] [--check]
# --check: only verify that DIR holds exactly the pins (a file for each pinned name and version, nothing else).
# PY (default .venv/bin/python, else python3) must be CPython 3.11 on Linux x86_64 - the image's platform.
# Cached: the folder records the sha256 of what it was filled from; an unchanged lock is not downloaded
# again. A changed lock fills a fresh folder that replaces the old one only when complete.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=""
DIR=docker/wheelhouse
CHECK=0
die() { echo "fill_wheelhouse.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --python) [ $# -ge 2 ] || die "--python needs a value"; PY="$2"; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; DIR="$2"; shift 2 ;;
    --check) CHECK=1; shift ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) die "unknown option '$1' (accepted: --python, --dir, --check)" ;;
  esac
done
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || die "python '$PY' not found (give --python PATH to a CPython 3.11)"
where=$("$PY" -c 'import platform, sys; print(platform.python_implementation(), "%d.%d" % sys.version_info[:2], sys.platform, platform.machine())' 2>/dev/null) \
  || die "'$PY' does not run (give --python PATH to a CPython 3.11)"
[ "$where" = "CPython 3.11 linux x86_64" ] \
  || die "$PY is '$where'; the image needs wheels for 'CPython 3.11 linux x86_64' (give --python PATH)"

LOCKS=(docker/requirements-x86_64.txt docker/requirements-notebook.txt)
PIP_PIN="pip==26.3"
STAMP=$( { cat "${LOCKS[@]}"; echo "$PIP_PIN"; } | sha256sum | cut -d' ' -f1)
# Exactly the pins: one file per pinned name and version, nothing else.
verify() {
  "$PY" - "$1" "$PIP_PIN" "${LOCKS[@]}" <<'PYEOF'
import re, sys
from pathlib import Path
from pip._vendor.packaging.markers import Marker
folder = Path(sys.argv[1])
pins = dict([sys.argv[2].split("==")])  # pip's own pin
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
for lock in sys.argv[3:]:
    for line in Path(lock).read_text().splitlines():
        line, _, marker = line.split("#")[0].partition(";")
        if line.strip() and (not marker.strip() or Marker(marker).evaluate()):  # as pip applies it here
            name, version = line.strip().split("==")
            pins[norm(name.split("[")[0])] = version.strip()
found, odd = {}, []
for f in folder.iterdir():
    if f.name.startswith("."):
        continue
    m = re.match(r"(.+?)-(\d[^-]*?)(-|\.tar\.gz$|\.zip$)", f.name)
    if not m:
        odd.append(f.name)
        continue
    found[norm(m.group(1))] = m.group(2)
missing = sorted(set(pins) - set(found))
wrong = sorted(n for n in pins if n in found and found[n] != pins[n])
extra = sorted(set(found) - set(pins))
if missing or wrong or extra or odd:
    sys.exit(f"fill_wheelhouse.sh: {folder} does not match the pins: missing {missing}, other versions "
             f"{[(n, found[n], pins[n]) for n in wrong]}, not pinned {extra + odd}")
PYEOF
}
if [ "$CHECK" = 1 ]; then
  [ -d "$DIR" ] || die "$DIR is not a folder"
  verify "$DIR" && echo "fill_wheelhouse.sh: $DIR holds exactly the pins"
  exit
fi
if [ -f "$DIR/.lock-sha256" ] && [ "$(cat "$DIR/.lock-sha256")" = "$STAMP" ] && verify "$DIR" 2>/dev/null; then
  echo "fill_wheelhouse.sh: $DIR is up to date ($(find "$DIR" -maxdepth 1 -type f ! -name '.*' | wc -l) files)"
  exit 0
fi

NEW="$DIR.partial"
rm -rf "$NEW"
mkdir -p "$NEW"
t0=$(date +%s)
reqs=()
for f in "${LOCKS[@]}"; do reqs+=(-r "$f"); done
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$NEW" "${reqs[@]}" "$PIP_PIN" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
  || die "pip download failed (PyPI unreachable, or a pin missing there?)"
verify "$NEW" || exit 1
echo "$STAMP" > "$NEW/.lock-sha256"
rm -rf "$DIR"
mv "$NEW" "$DIR"
echo "fill_wheelhouse.sh: $DIR filled in $(( $(date +%s) - t0 )) s ($(find "$DIR" -maxdepth 1 -type f ! -name '.*' | wc -l) files, $(du -sm "$DIR" | cut -f1) MB)"
