#!/usr/bin/env bash
# Launch the ms_gpt tutorial notebook (docker/notebooks/) in JupyterLab.
#   bash scripts/launch_notebook.sh --target cpu|gpu|ascend [--engine auto|docker|podman] [--dry-run]
#        [--port 8888] [--token T] [--devices 0,1] [--image NAME] [--base-image NAME] [--name NAME] [--rebuild]
#   bash scripts/launch_notebook.sh --local [--dry-run] [--port 8888] [--token T]
# --target builds docker/Dockerfile.TARGET when the image is missing (or with --rebuild) and runs it with
# the device flags that target needs, the repository mounted at /home/msgpt/work/ms_gpt, and Jupyter
# published on 127.0.0.1 only, behind a token. The CPU image builds offline from docker/wheelhouse/
# (filled first by scripts/environment/fill_wheelhouse.sh); --base-image gives it another base (e.g. the one
# scripts/environment/build_local_base.sh makes where no registry is reachable). --engine: Docker or podman (auto:
# Docker when its daemon answers, else podman, with the flags this host needs - scripts/environment/container_engine.sh).
# --name: the container's name (default ms-gpt-TARGET-PORT), for `ENGINE stop NAME`.
# --local runs JupyterLab from the project's .venv instead. --dry-run prints the exact commands and runs
# nothing. --devices: the Ascend cards (/dev/davinciN).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

TARGET=""
LOCAL=0
DRY=0
PORT=8888
TOKEN="${JUPYTER_TOKEN:-}"
DEVICES=0
IMAGE=""
BASE_IMAGE=""
NAME=""
WANT_ENGINE=auto
REBUILD=0
die() { echo "launch_notebook.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --target) [ $# -ge 2 ] || die "--target needs a value (cpu, gpu or ascend)"; TARGET="$2"; shift 2 ;;
    --local) LOCAL=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --port) [ $# -ge 2 ] || die "--port needs a value"; PORT="$2"; shift 2 ;;
    --token) [ $# -ge 2 ] || die "--token needs a value"; TOKEN="$2"; shift 2 ;;
    --devices) [ $# -ge 2 ] || die "--devices needs a value like 0 or 0,1"; DEVICES="$2"; shift 2 ;;
    --image) [ $# -ge 2 ] || die "--image needs a value"; IMAGE="$2"; shift 2 ;;
    --base-image) [ $# -ge 2 ] || die "--base-image needs a value"; BASE_IMAGE="$2"; shift 2 ;;
    --name) [ $# -ge 2 ] || die "--name needs a value"; NAME="$2"; shift 2 ;;
    --engine) [ $# -ge 2 ] || die "--engine needs a value (auto, docker or podman)"; WANT_ENGINE="$2"; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) die "unknown option '$1' (accepted: --target cpu|gpu|ascend, --local, --engine, --dry-run, --port, --token, --devices, --image, --base-image, --name, --rebuild)" ;;
  esac
done

if [ "$LOCAL" = 1 ] && [ -n "$TARGET" ]; then die "--local runs without Docker: give either --local or --target"; fi
if [ "$LOCAL" = 0 ]; then
  case "$TARGET" in
    cpu|gpu|ascend) ;;
    "") die "give --target cpu|gpu|ascend (a container) or --local (the project's .venv)" ;;
    *) die "unknown target '$TARGET' (accepted: cpu, gpu, ascend)" ;;
  esac
fi
case "$PORT" in ''|*[!0-9]*) die "--port must be a number in 1..65535, got '$PORT'" ;; esac
[ "${#PORT}" -le 5 ] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "--port must be in 1..65535, got '$PORT'"
case "$WANT_ENGINE" in auto|docker|podman) ;; *) die "unknown engine '$WANT_ENGINE' (accepted: auto, docker, podman)" ;; esac
if [ -n "$BASE_IMAGE" ] && [ "$TARGET" != cpu ]; then die "--base-image applies to --target cpu only (the GPU and Ascend images need their vendor bases)"; fi
[[ "$DEVICES" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--devices must be card numbers like 0 or 0,1, got '$DEVICES'"
if [ -z "$TOKEN" ]; then
  TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
fi

show() { printf '%q ' "$@" | sed 's/ $//'; echo; }
run() {
  if [ "$DRY" = 1 ]; then show "$@"; else "$@"; fi
}

URL="http://127.0.0.1:$PORT/lab?token=$TOKEN"

if [ "$LOCAL" = 1 ]; then
  [ "$DRY" = 1 ] || [ -x .venv/bin/jupyter ] || die ".venv/bin/jupyter not found: run 'bash scripts/setup.sh' first"
  echo "launch_notebook.sh: JupyterLab from .venv at $URL"
  run env JUPYTER_TOKEN="$TOKEN" .venv/bin/jupyter lab --ip=127.0.0.1 --port="$PORT" --no-browser \
    --ServerApp.root_dir="$REPO/docker/notebooks"
  exit 0
fi

IMAGE="${IMAGE:-ms-gpt:$TARGET}"
DOCKERFILE="docker/Dockerfile.$TARGET"
FLAGS=()
case "$TARGET" in
  gpu) FLAGS+=(--gpus all) ;;
  ascend)
    IFS=, read -r -a cards <<< "$DEVICES"
    for n in "${cards[@]}"; do FLAGS+=(--device "/dev/davinci$n"); done
    FLAGS+=(--device /dev/davinci_manager --device /dev/devmm_svm --device /dev/hisi_hdc
            -v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro
            -v /usr/local/dcmi:/usr/local/dcmi:ro
            -v /usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro
            -v /etc/ascend_install.info:/etc/ascend_install.info:ro
            -e "ASCEND_RT_VISIBLE_DEVICES=$DEVICES") ;;
esac

# shellcheck source=scripts/environment/container_engine.sh
source scripts/environment/container_engine.sh
if ! engine_select "$WANT_ENGINE"; then
  [ "$DRY" = 1 ] || die "no container engine: install Docker (and start its daemon) or podman, or use --local (JupyterLab from .venv) or --dry-run"
  engine_select docker  # a dry run shows Docker's commands when neither engine is here
fi
if [ "$DRY" = 0 ]; then
  case "$ENGINE_NAME" in
    docker) docker_usable || die "the Docker daemon is not reachable ('docker info' failed): start it, use --engine podman, --local or --dry-run" ;;
    podman) "${ENGINE[@]}" info >/dev/null 2>&1 || die "'podman info' failed: check the podman install, or use --local or --dry-run" ;;
  esac
fi
BUILD=("${ENGINE[@]}" build "${ENGINE_BUILD_FLAGS[@]}")
if [ "$ENGINE_NAME" = podman ] && [ "$TARGET" = gpu ]; then
  # podman has no --gpus: the NVIDIA toolkit's CDI name instead (`nvidia-ctk cdi generate` on the host).
  FLAGS=(--device nvidia.com/gpu=all)
fi
if [ -n "$BASE_IMAGE" ]; then BUILD+=(--build-arg "BASE_IMAGE=$BASE_IMAGE"); fi
BUILD+=(-f "$DOCKERFILE" -t "$IMAGE" .)
NAME="${NAME:-ms-gpt-$TARGET-$PORT}"
TTY=()
[ -t 0 ] && [ -t 1 ] && TTY=(-it)

build() {
  if [ "$TARGET" = cpu ]; then run bash scripts/environment/fill_wheelhouse.sh; fi  # the CPU image builds offline from it
  run "${BUILD[@]}"
}
if [ "$DRY" = 1 ]; then
  echo "# build (runs only when $IMAGE is missing, or with --rebuild):"
  build
elif [ "$REBUILD" = 1 ] || ! "${ENGINE[@]}" image inspect "$IMAGE" >/dev/null 2>&1; then
  build
fi
echo "launch_notebook.sh: $TARGET container '$NAME' ($ENGINE_NAME), Jupyter at $URL (notebook: notebooks/ms_gpt_tutorial.ipynb)"
run "${ENGINE[@]}" run --rm "${TTY[@]}" --name "$NAME" "${ENGINE_RUN_FLAGS[@]}" -p "127.0.0.1:$PORT:8888" -e "JUPYTER_TOKEN=$TOKEN" \
  -v "$REPO:/home/msgpt/work/ms_gpt" "${FLAGS[@]}" "$IMAGE"
