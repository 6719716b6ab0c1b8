#!/usr/bin/env bash
# Create .venv with Python 3.11 (3.10 accepted) and install the pinned x86_64 closure + ms_gpt (editable),
# plus the notebook layer (docker/requirements-notebook.txt) and the test tools (docker/requirements-dev.txt).
#   bash scripts/setup.sh [--python PYTHON] [--lock FILE] [--venv DIR] [--no-project] [--force]
# (--venv .venv-ref --lock docker/requirements-torch-ref.txt --no-project: the parity tests' PyTorch side)
# A second run with the same lock, pyproject.toml and Python only checks a stamp and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=docker/requirements-x86_64.txt
VENV=.venv
PROJECT=1
PY="${MS_GPT_PYTHON:-}"
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --lock) LOCK="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --no-project) PROJECT=0; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (accepted: --python PYTHON, --lock FILE, --venv DIR, --no-project, --force)" >&2; exit 2 ;;
  esac
done
SUPPORTED="3.11 3.10"

pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

if [ -z "$PY" ]; then
  for cand in python3.11 python3.10 "$HOME"/.pyenv/versions/3.11*/bin/python "$HOME"/.pyenv/versions/3.10*/bin/python python3; do
    if command -v "$cand" >/dev/null 2>&1 || [ -x "$cand" ]; then
      v=$(pyver "$cand" || true)
      case " $SUPPORTED " in *" $v "*) PY="$cand"; break ;; esac
    fi
  done
  if [ -z "$PY" ]; then
    echo "setup.sh: no supported Python found. ms_gpt needs Python 3.11 or 3.10 (mindspore 2.7.0 + mindnlp 0.5.1);" >&2
    echo "  install one (e.g. pyenv install 3.11) or pass --python /path/to/python3.11" >&2
    exit 2
  fi
fi
v=$(pyver "$PY" || true)
case " $SUPPORTED " in
  *" $v "*) ;;
  *) echo "setup.sh: $PY is Python ${v:-?}; supported versions are 3.11 and 3.10 (mindspore 2.7.0 + mindnlp 0.5.1)" >&2; exit 2 ;;
esac
[ -f "$LOCK" ] || { echo "setup.sh: lock file '$LOCK' not found" >&2; exit 2; }
# The project venv also gets the notebook layer and the test tools (each pinned, installed without resolution).
EXTRAS=()
[ "$PROJECT" = 1 ] && EXTRAS=(docker/requirements-notebook.txt docker/requirements-dev.txt)

stamp_of() { cat "$LOCK" "${EXTRAS[@]}" pyproject.toml | sha256sum | cut -c1-16; }
STAMP="py$v-p$PROJECT-$(stamp_of)"
if [ "$FORCE" = 0 ] && [ -x "$VENV"/bin/python ] && [ "$(cat "$VENV"/.ms_gpt_stamp 2>/dev/null)" = "$STAMP" ] \
   && [ "$(pyver "$VENV"/bin/python)" = "$v" ]; then
  echo "setup.sh: $VENV is up to date (Python $v, $LOCK unchanged)"
  exit 0
fi

if [ -x "$VENV"/bin/python ] && [ "$(pyver "$VENV"/bin/python || true)" != "$v" ]; then
  echo "setup.sh: $VENV has another Python; recreating it with Python $v"
  rm -rf "$VENV"
fi
[ -x "$VENV"/bin/python ] || "$PY" -m venv "$VENV"
rm -f "$VENV"/.ms_gpt_stamp
PIP=("$VENV"/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q "pip==26.3"
# setuptools first: the two sdists (jieba, snownlp) and the editable install build with it, offline.
"${PIP[@]}" install -q --no-deps "$(grep -E '^setuptools==' "$LOCK")"
echo "setup.sh: installing $(grep -v '^#' "$LOCK" | grep -c '==') pinned packages from $LOCK (no dependency resolution)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -r "$LOCK"
for extra in "${EXTRAS[@]}"; do
  echo "setup.sh: installing $(grep -v '^#' "$extra" | grep -c '==') pinned packages from $extra"
  "${PIP[@]}" install -q --no-deps -r "$extra"
done
if [ "$PROJECT" = 1 ]; then
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e .
fi
# Only the two known, harmless lines may remain (accelerate/peft declare torch; mindnlp brings mindtorch).
unexpected=$("${PIP[@]}" check 2>&1 | grep -v -E '^(peft|accelerate) [0-9.]+ requires torch, which is not installed\.$' | grep -v '^No broken requirements' || true)
if [ -n "$unexpected" ]; then
  echo "setup.sh: pip check found unexpected problems:" >&2; echo "$unexpected" >&2; exit 1
fi
echo "$STAMP" > "$VENV"/.ms_gpt_stamp
echo "setup.sh: $VENV ready (Python $v)"
