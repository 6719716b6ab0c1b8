#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set up .venv (seconds when the lock is unchanged), prove the
# Ascend pins install on aarch64 (pip --dry-run against PyPI), install podman where it can (for the
# container check), then run pytest.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Real PyTorch + transformers for the parity tests, in its own venv (mindnlp owns `import torch` in .venv).
bash scripts/setup.sh --venv .venv-ref --lock docker/requirements-torch-ref.txt --no-project
echo "== Ascend pins: installability on manylinux aarch64 (cp310, cp311; + the image's notebook layer on 3.11)"
.venv/bin/python scripts/environment/check_ascend_pins.py --requirements requirements-ascend.txt \
  --requirements docker/requirements-notebook.txt --python-version 3.11.14 > .venv/ascend-image-pins.json \
  || { cat .venv/ascend-image-pins.json; exit 1; }
.venv/bin/python scripts/environment/check_ascend_pins.py > .venv/ascend-pins.json || { cat .venv/ascend-pins.json; exit 1; }
.venv/bin/python -c "import json; r=json.load(open('.venv/ascend-pins.json')); print('   ok:', ', '.join('cp%s %d pins, %s' % (x['python'].replace('.', ''), x['packages'], x['mindspore_file']) for x in r['results']))"
# A container engine for tests/test_containers.py's end-to-end check (scripts/environment/container_check.sh): podman
# from Debian's packages when neither podman nor a Docker daemon is here (root with apt-get only; about
# 10 s). MS_GPT_CONTAINERS=0 skips the install (the check is then skipped, with its reason).
source scripts/environment/container_engine.sh
if [ "${MS_GPT_CONTAINERS:-1}" = 1 ] && ! command -v podman >/dev/null 2>&1 && ! docker_usable; then
  echo "== podman, debootstrap, runc (apt-get) for the container check"
  install_podman .venv/apt-podman.log \
    || echo "   podman not installed (not root with apt-get, or see .venv/apt-podman.log): the container check will be skipped"
fi
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
