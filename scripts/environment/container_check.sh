#!/usr/bin/env bash
# Build and run the CPU container end to end, on this machine, with no image registry:
#   1. engine     podman or Docker (installs podman, debootstrap and runc with apt-get when neither
#                 engine is here and this is root on Debian; --no-install to refuse)
#   2. base       scripts/environment/build_local_base.sh (Debian bookworm + python3.11 by debootstrap; cached by recipe)
#   3. wheelhouse scripts/environment/fill_wheelhouse.sh (the lock's wheels, on the host; cached by the lock's sha256)
#   4. build      docker/Dockerfile.cpu on that base with --network=none (the layer cache makes a rebuild
#                 with an unchanged lock take seconds)
#   5. doctor     `ms-gpt doctor --json` in the container must say ok
#   6. notebook   the tutorial notebook executed inside the container in tiny mode (scripts/notebook/run_notebook.py),
#                 then on the host (.venv, set up by scripts/setup.sh); the two summaries must agree (losses to 1e-5, texts and
#                 accuracies exactly)
#   7. jupyter    launch_notebook.sh --target cpu on a free port: the server answers /api/status with
#                 its token and refuses (403) without it and with a wrong one; the image's health check
#                 (ms-gpt doctor) passes; then the container is stopped
# Everything it starts is stopped on exit. Prints each step's seconds, then a JSON line
# `CONTAINER-CHECK {...}`; exits 1 naming the step that failed.
#   bash scripts/environment/container_check.sh [--engine auto|docker|podman] [--no-install] [--base-image NAME]
#                                   [--skip-host-notebook] [--json FILE]
# --base-image: build on NAME instead of the debootstrap base (e.g. python:3.11.14-slim-bookworm where a
# registry is reachable).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
# shellcheck source=scripts/environment/container_engine.sh
source scripts/environment/container_engine.sh

WANT=auto
INSTALL=1
BASE_IMAGE=""
HOST_NOTEBOOK=1
JSON_OUT=""
IMAGE=localhost/ms-gpt:cpu
die() { echo "container_check.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) [ $# -ge 2 ] || die "--engine needs a value (auto, docker or podman)"; WANT="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --base-image) [ $# -ge 2 ] || die "--base-image needs a value"; BASE_IMAGE="$2"; shift 2 ;;
    --skip-host-notebook) HOST_NOTEBOOK=0; shift ;;
    --json) [ $# -ge 2 ] || die "--json needs a file name"; JSON_OUT="$2"; shift 2 ;;
    -h|--help) sed -n 2,23p "$0"; exit 0 ;;
    *) die "unknown option '$1' (accepted: --engine, --no-install, --base-image, --skip-host-notebook, --json)" ;;
  esac
done
case "$WANT" in auto|docker|podman) ;; *) die "unknown engine '$WANT' (accepted: auto, docker, podman)" ;; esac

STEP=start
T_STEP=$(date +%s)
TIMES=()
WORK=$(mktemp -d /tmp/ms-gpt-container-check.XXXXXX)
CONTAINER=""
LAUNCHER_PID=""
cleanup() {
  if [ -n "$CONTAINER" ]; then "${ENGINE[@]}" rm -f "$CONTAINER" >/dev/null 2>&1 || true; fi
  if [ -n "$LAUNCHER_PID" ]; then kill "$LAUNCHER_PID" 2>/dev/null || true; wait "$LAUNCHER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "container_check.sh: FAILED at step \"$STEP\" (line $LINENO)" >&2' ERR
fail() { echo "container_check.sh: FAILED at step \"$STEP\": $*" >&2; exit 1; }
step() {  # close the previous step's timer, open the next
  if [ "$STEP" != start ]; then TIMES+=("\"$STEP\": $(( $(date +%s) - T_STEP ))"); echo "   $STEP: $(( $(date +%s) - T_STEP )) s"; fi
  STEP="$1"; T_STEP=$(date +%s); echo "== $STEP"
}

step engine
if ! engine_select "$WANT" || { [ -z "$BASE_IMAGE" ] && ! command -v debootstrap >/dev/null 2>&1; }; then
  [ "$INSTALL" = 1 ] || fail "no container engine (Docker daemon or podman) or no debootstrap; install them (apt-get install -y podman runc debootstrap)"
  echo "   apt-get install podman debootstrap runc"
  install_podman "$WORK/apt.log" || { tail -20 "$WORK/apt.log" >&2 2>/dev/null; fail "could not install podman, debootstrap and runc (needs root and apt-get; or give --base-image)"; }
  engine_select "$WANT" || fail "no usable engine after installing podman"
fi
"${ENGINE[@]}" info >/dev/null 2>&1 || fail "'${ENGINE[*]} info' failed"
echo "   engine: ${ENGINE[*]}"

step base
if [ -z "$BASE_IMAGE" ]; then
  bash scripts/environment/build_local_base.sh --engine "$ENGINE_NAME" > "$WORK/base.out" 2>&1 \
    || { tail -20 "$WORK/base.out" >&2; fail "build_local_base.sh failed"; }
  grep '^build_local_base.sh: ' "$WORK/base.out" | sed 's/^/   /'
  BASE_IMAGE=$(tail -1 "$WORK/base.out")
fi
echo "   base: $BASE_IMAGE"

step wheelhouse
bash scripts/environment/fill_wheelhouse.sh || fail "fill_wheelhouse.sh failed"

step build
BUILD=("${ENGINE[@]}" build --network=none "${ENGINE_BUILD_FLAGS[@]}")
"${BUILD[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" -f docker/Dockerfile.cpu -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; fail "the image build failed (its log's end above)"; }
SIZE_MB=$(( $("${ENGINE[@]}" image inspect --format '{{ .Size }}' "$IMAGE") / 1000000 ))
echo "   $IMAGE: $SIZE_MB MB"
RUN=("${ENGINE[@]}" run --rm --network=none "${ENGINE_RUN_FLAGS[@]}")

step doctor
"${RUN[@]}" "$IMAGE" ms-gpt doctor --json > "$WORK/doctor.json" 2> "$WORK/doctor.err" \
  || { cat "$WORK/doctor.json" "$WORK/doctor.err" >&2; fail "ms-gpt doctor failed in the container"; }
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("   python", r["python"], "| mindspore", r["versions"]["mindspore"], "| ok", r["ok"]); sys.exit(0 if r["ok"] else 1)' \
  "$WORK/doctor.json" || { cat "$WORK/doctor.json" >&2; fail "ms-gpt doctor --json is not ok in the container"; }

step notebook
"${RUN[@]}" "$IMAGE" python /opt/ms_gpt/scripts/notebook/run_notebook.py --mode tiny --out /tmp/notebook \
  > "$WORK/nb-container.log" 2>&1 || { tail -40 "$WORK/nb-container.log" >&2; fail "the notebook failed inside the container"; }
grep -a '^NOTEBOOK-SUMMARY ' "$WORK/nb-container.log" | tail -1 | cut -d' ' -f2- > "$WORK/nb-container.json"
[ -s "$WORK/nb-container.json" ] || fail "the notebook printed no summary inside the container"
echo "   inside:  $(cat "$WORK/nb-container.json")"
if [ "$HOST_NOTEBOOK" = 1 ]; then
  bash scripts/setup.sh > "$WORK/setup.log" 2>&1 || { tail -20 "$WORK/setup.log" >&2; fail "scripts/setup.sh failed (the host side of the comparison needs .venv)"; }
  .venv/bin/python scripts/notebook/run_notebook.py --mode tiny --out "$WORK/notebook" --summary "$WORK/nb-host.json" \
    > "$WORK/nb-host.log" 2>&1 || { tail -40 "$WORK/nb-host.log" >&2; fail "the notebook failed on the host"; }
  echo "   outside: $(cat "$WORK/nb-host.json" | tr -d '\n')"
  python3 - "$WORK/nb-container.json" "$WORK/nb-host.json" <<'PYEOF' || fail "the notebook's figures differ inside and outside the container"
import json, math, sys
inside, outside = (json.load(open(p)) for p in sys.argv[1:])
def same(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - {"seconds"}
        return all(same(a.get(k), b.get(k), f"{path}.{k}") for k in sorted(keys))
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
    else:
        ok = a == b
    if not ok:
        print(f"   differs at {path}: inside {a!r}, outside {b!r}", file=sys.stderr)
    return ok
sys.exit(0 if same(inside, outside, "summary") else 1)
PYEOF
  echo "   the same figures inside and outside the container"
fi

step jupyter
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
CONTAINER="ms-gpt-check-$PORT"
bash scripts/launch_notebook.sh --engine "$ENGINE_NAME" --target cpu --image "$IMAGE" --port "$PORT" \
  --token "$TOKEN" --name "$CONTAINER" < /dev/null > "$WORK/jupyter.log" 2>&1 &
LAUNCHER_PID=$!
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" || true; }
status=""
for _ in $(seq 1 120); do
  status=$(code "http://127.0.0.1:$PORT/api/status?token=$TOKEN")
  [ "$status" = 200 ] && break
  kill -0 "$LAUNCHER_PID" 2>/dev/null || { tail -30 "$WORK/jupyter.log" >&2; fail "launch_notebook.sh exited before Jupyter answered"; }
  sleep 1
done
[ "$status" = 200 ] || { tail -30 "$WORK/jupyter.log" >&2; fail "Jupyter did not answer on 127.0.0.1:$PORT with its token within 120 s (last HTTP $status)"; }
no_token=$(code "http://127.0.0.1:$PORT/api/status")
bad_token=$(code "http://127.0.0.1:$PORT/api/status?token=wrong$TOKEN")
echo "   127.0.0.1:$PORT /api/status: with the token $status, without $no_token, with a wrong one $bad_token"
[ "$no_token" = 403 ] && [ "$bad_token" = 403 ] || fail "Jupyter answered without its token (HTTP $no_token / $bad_token, expected 403)"
curl -s --max-time 5 "http://127.0.0.1:$PORT/api/contents/notebooks?token=$TOKEN" | grep -q '"ms_gpt_tutorial.ipynb"' \
  || fail "the server does not list notebooks/ms_gpt_tutorial.ipynb"
if [ "$ENGINE_NAME" = podman ]; then
  HEALTH=("${ENGINE[@]}" healthcheck run "$CONTAINER")  # the image's HEALTHCHECK, run now
else
  HEALTH=("${ENGINE[@]}" exec "$CONTAINER" ms-gpt doctor)  # Docker has no "run it now": the same command
fi
"${HEALTH[@]}" > "$WORK/health.log" 2>&1 || { cat "$WORK/health.log" >&2; fail "the image's health check (ms-gpt doctor) failed"; }
echo "   health check (ms-gpt doctor) in the running container: healthy"
"${ENGINE[@]}" stop -t 20 "$CONTAINER" >/dev/null 2>&1 || fail "could not stop $CONTAINER"
wait "$LAUNCHER_PID" 2>/dev/null || true
LAUNCHER_PID=""
if "${ENGINE[@]}" ps -a --format '{{.Names}}' | grep -qx "$CONTAINER"; then fail "$CONTAINER still exists after stop (--rm)"; fi
CONTAINER=""

step done
NB_SECONDS=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seconds"])' "$WORK/nb-container.json")
REPORT="{\"ok\": true, \"engine\": \"$ENGINE_NAME\", \"base_image\": \"$BASE_IMAGE\", \"image\": \"$IMAGE\", \"image_mb\": $SIZE_MB, \"notebook_seconds_in_container\": $NB_SECONDS, \"seconds\": {$(IFS=,; echo "${TIMES[*]}")}}"
if [ -n "$JSON_OUT" ]; then echo "$REPORT" > "$JSON_OUT.tmp" && mv "$JSON_OUT.tmp" "$JSON_OUT"; fi
echo "CONTAINER-CHECK $REPORT"
