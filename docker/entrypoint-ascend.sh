#!/usr/bin/env bash
# Source CANN's environment (library paths, ASCEND_* variables) before anything imports mindspore, then
# run the command. Without it mindspore cannot find the Ascend runtime and `ms-gpt doctor` shows no Ascend.
set -eo pipefail
for f in /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/nnal/atb/set_env.sh; do
  # shellcheck disable=SC1090
  [ -f "$f" ] && source "$f"
done
if [ ! -f /usr/local/Ascend/ascend-toolkit/set_env.sh ]; then
  echo "ms-gpt-entrypoint: /usr/local/Ascend/ascend-toolkit/set_env.sh not found: is this a CANN 8.2 base image?" >&2
fi
exec "$@"
