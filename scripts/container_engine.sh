# shellcheck shell=bash
# Sourced by launch_notebook.sh, build_local_base.sh and container_check.sh: which container engine to
# use and the global flags it needs on this host.
#   engine_select auto|docker|podman   sets ENGINE_NAME and ENGINE (an array: the command prefix to run)
# auto: docker when its daemon answers, else podman when installed; returns 1 (ENGINE_NAME empty) when
# neither is usable. For podman, podman_flags adds what this host needs (each measured on the machines
# this project is built on, where plain `podman run` fails):
#   --runtime runc           cgroups v1/hybrid (crun fails there) and runc is installed
#   --cgroup-manager cgroupfs  no systemd running as init (podman's systemd manager needs it)
#   CONTAINERS_CONF=docker/podman/containers.conf   the open-files hard limit is below 1048576
#                            (see that file), unless CONTAINERS_CONF is already set
ENGINE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# podman_flags CGROUP_FS SYSTEMD(0|1) NOFILE_HARD RUNC(0|1): ENGINE for podman on a host with these facts.
podman_flags() {
  local fs="$1" systemd="$2" nofile="$3" runc="$4"
  ENGINE=()
  if [ -z "${CONTAINERS_CONF:-}" ] && [ "$nofile" != unlimited ] && [ "$nofile" -lt 1048576 ]; then
    ENGINE+=(env "CONTAINERS_CONF=$ENGINE_REPO/docker/podman/containers.conf")
  fi
  ENGINE+=(podman)
  if [ "$fs" != cgroup2fs ] && [ "$runc" = 1 ]; then ENGINE+=(--runtime runc); fi
  if [ "$systemd" = 0 ]; then ENGINE+=(--cgroup-manager cgroupfs); fi
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
