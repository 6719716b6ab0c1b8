# shellcheck shell=bash
# Sourced by launch_notebook.sh, build_local_base.sh and container_check.sh: which container engine to
# use and the global flags it needs on this host.
#   engine_select auto|docker|podman   sets ENGINE_NAME, ENGINE (an array: the command prefix to run),
#                                      ENGINE_BUILD_FLAGS and ENGINE_RUN_FLAGS (what `build`/`run` add)
#   install_podman LOG                 apt-get install podman, debootstrap and runc (root with apt-get only)
# auto: docker when its daemon answers, else podman when installed; returns 1 (ENGINE_NAME empty) when
# neither is usable. For podman, podman_flags adds what this host needs (each measured on the machines
# this project is built on, where plain `podman run` fails):
#   --runtime runc           cgroups v1/hybrid (crun fails there) and runc is installed
#   --cgroup-manager cgroupfs  no systemd running as init (podman's systemd manager needs it)
#   CONTAINERS_CONF=docker/podman/containers.conf   the open-files hard limit is below 1048576
#                            (see that file), unless CONTAINERS_CONF is already set
#   build --format docker    podman's default OCI format drops HEALTHCHECK
#   run --health-interval disable   no systemd (podman's health timers are systemd units; the check
#                            itself stays: `podman healthcheck run NAME`)
ENGINE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# podman_flags CGROUP_FS SYSTEMD(0|1) NOFILE_HARD RUNC(0|1): ENGINE and its build/run flags for podman on a
# host with these facts.
podman_flags() {
  local fs="$1" systemd="$2" nofile="$3" runc="$4"
  ENGINE=()
  ENGINE_BUILD_FLAGS=(--format docker)
  ENGINE_RUN_FLAGS=()
  if [ -z "${CONTAINERS_CONF:-}" ] && [ "$nofile" != unlimited ] && [ "$nofile" -lt 1048576 ]; then
    ENGINE+=(env "CONTAINERS_CONF=$ENGINE_REPO/docker/podman/containers.conf")
  fi
  ENGINE+=(podman)
  if [ "$fs" != cgroup2fs ] && [ "$runc" = 1 ]; then ENGINE+=(--runtime runc); fi
  if [ "$systemd" = 0 ]; then ENGINE+=(--cgroup-manager cgroupfs); ENGINE_RUN_FLAGS+=(--health-interval disable); fi
}

podman_host_flags() {
  local fs systemd=0 runc=0
  fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo unknown)
  [ -d /run/systemd/system ] && systemd=1
  command -v runc >/dev/null 2>&1 && runc=1
  podman_flags "$fs" "$systemd" "$(ulimit -Hn)" "$runc"
}

docker_usable() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

engine_select() {
  local want="${1:-auto}"
  ENGINE_NAME=""
  ENGINE=()
  ENGINE_BUILD_FLAGS=()
  ENGINE_RUN_FLAGS=()
  case "$want" in
    auto)
      if docker_usable; then want=docker
      elif command -v podman >/dev/null 2>&1; then want=podman
      else return 1; fi ;;
    docker|podman) ;;
    *) echo "unknown engine '$want' (accepted: auto, docker, podman)" >&2; return 2 ;;
  esac
  ENGINE_NAME="$want"
  if [ "$want" = podman ]; then podman_host_flags; else ENGINE=(docker); fi
}

# Root on a Debian-family machine only (returns 1 elsewhere, installing nothing); the output goes to LOG.
install_podman() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap runc; } > "$1" 2>&1
}
