"""Dialogue data for supervised tuning and chat: each example is the turns so far and the next turn.

In tokens an exchange is ``<bos> turn1 <sep> turn2 <sep> ... <sep> response <eos>``: ``<sep>`` marks each
change of speaker, the loss falls on the response and its ``<eos>`` only. A prompt/response pair is the
one-turn case (``<bos> prompt <sep> response <eos>``, the template ``ms-gpt sft`` has always used), and
``ms-gpt chat`` builds its input the same way from the conversation so far.

Sources: ``builtin:chitchat`` (the ~7k English conversations of the ``chitchat-dataset`` package, split
into train/valid by conversation with a seed) or a JSONL file of ``{"prompt": ..., "response": ...}``
(optionally ``"context": [earlier turns]``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ms_gpt.data.batching import IGNORE
from ms_gpt.data.tasks import DataError, iter_jsonl

DIALOGUE_BUILTINS = ("chitchat",)
MAX_CONTEXT_TURNS = 4  # earlier turns kept as context (the length budget may keep fewer)


@dataclass(frozen=True)
class Exchange:
    context: tuple  # earlier turns, oldest first (at least one)
    response: str


def exchanges(conversations, max_context_turns: int = MAX_CONTEXT_TURNS) -> list[Exchange]:
    """Every turn after the first of every conversation, as the response to up to ``max_context_turns``
    turns before it."""
    out = []
    for turns in conversations:
        for i in range(1, len(turns)):
            out.append(Exchange(tuple(turns[max(0, i - max_context_turns):i]), turns[i]))
    return out


def split_conversations(conversations: list, valid_fraction: float = 0.05, seed: int = 0) -> tuple[list, list]:
    """(train, valid) conversations: a seeded shuffle, the last ``valid_fraction`` (at least one) held out,
    so no conversation has turns on both sides."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, int(round(valid_fraction * len(order))))
    return [conversations[i] for i in order[:-n_valid]], [conversations[i] for i in order[-n_valid:]]


def chitchat_splits(seed: int = 0) -> dict:
    """``builtin:chitchat``'s conversations in three parts: ``train`` (what ``ms-gpt sft`` trains on and the
    chat preferences' train split come from) and the held-out conversations halved into ``valid`` (the
    preferences' valid split, PPO's built-in prompts) and ``test`` (the preferences' test split and
    ``ms-gpt chat-eval``'s contexts), each conversation in one part only."""
    from ms_gpt.data.corpus import chitchat_conversations

    train, held = split_conversations(chitchat_conversations(), seed=seed)
    return {"train": train, "valid": held[:len(held) // 2], "test": held[len(held) // 2:]}


def read_pairs(path: str | Path) -> list[Exchange]:
    """Rows with string ``prompt`` and non-empty ``response`` (and an optional list ``context`` of earlier
    turns); errors name ``path:line``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; dialogue data is one JSONL file of {{\"prompt\": ..., \"response\": ...}} "
                        f"rows or builtin:{' / builtin:'.join(DIALOGUE_BUILTINS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (expected a JSONL file of {{\"prompt\": ..., \"response\": ...}} "
                                f"or builtin:{' / builtin:'.join(DIALOGUE_BUILTINS)})")
    rows = []
    for n, row in iter_jsonl(path):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("prompt", "response")):
            shown = json.dumps(row, ensure_ascii=False)[:80]
            raise DataError(f"{path}:{n}: a row needs string fields 'prompt' and 'response', got {shown}")
        if not row["response"].strip():
            raise DataError(f"{path}:{n}: empty 'response' (nothing to learn)")
        context = row.get("context", [])
        if not isinstance(context, list) or not all(isinstance(t, str) for t in context):
            raise DataError(f"{path}:{n}: 'context' must be a list of earlier turns (strings)")
        rows.append(Exchange(tuple(context) + (row["prompt"],), row["response"]))
    if not rows:
        raise DataError(f"{path}: no prompt/response rows")
    return rows


def load_dialogue(src: str, seed: int = 0) -> tuple[list[Exchange], list[Exchange]]:
    """(training, held-out) exchanges of ``src``: ``builtin:chitchat`` split by conversation, or a JSONL
    file (no held-out part: its rows are all for training)."""
    if src.startswith("builtin:"):
        name = src[len("builtin:"):]
        if name not in DIALOGUE_BUILTINS:
            raise ValueError(f"unknown dialogue corpus {src!r}; built in: "
                             f"{', '.join('builtin:' + b for b in DIALOGUE_BUILTINS)}, or a JSONL file")
        from ms_gpt.data.corpus import chitchat_conversations

        train, valid = split_conversations(chitchat_conversations(), seed=seed)
        return exchanges(train), exchanges(valid)
    return read_pairs(src), []


def encode_exchange(tok, context, response: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, labels) of one exchange in at most ``max_len`` inputs. The response keeps its start
    (at most ``max_len - 2`` tokens); the context keeps its newest turns, the oldest one kept losing its
    start if needed. Labels are the next tokens, ``IGNORE`` while they are still context or ``<sep>``, and for
    the closing ``<eos>`` of a response that was cut to fit (it did not end there: teaching ``<eos>`` at the
    cut taught a character model to stop mid-word at the end of its position table)."""
    if max_len < 4:
        raise ValueError(f"max_len must be >= 4 (<bos>, a context token, <sep>, a response token), got {max_len}")
    whole = tok.encode(response)
    r = whole[: max(1, max_len - 2)]
    budget = max_len - 2 - len(r)  # <bos> and the last <sep> are always there
    kept: list = []
    for turn in reversed(list(context)):
        ids = tok.encode(turn)
        room = budget - len(kept) - (1 if kept else 0)  # a <sep> joins this turn to the newer ones
        if room <= 0:
            break
        kept = ids[-room:] + ([tok.sep_id] if kept else []) + kept
        if len(ids) > room:
            break
    seq = [tok.bos_id] + kept + [tok.sep_id] + r + [tok.eos_id]  # max_len + 1 tokens at most
    ids, labels = np.array(seq[:-1], np.int32), np.array(seq[1:], np.int32)
    labels[: len(kept) + 1] = IGNORE  # positions bos..last context token predict context tokens / <sep>
    if len(r) < len(whole):  # a cut response: no <eos> to learn
        labels[-1] = IGNORE
    return ids, labels


def context_ids(tok, turns, max_len: int) -> list[int]:
    """The input that asks for the next turn after ``turns`` (oldest first): ``<bos> t1 <sep> ... tn <sep>``,
    the oldest turns dropped (or cut from their start) to leave room for an answer within ``max_len``."""
    ids, _ = encode_exchange(tok, turns, "", max_len)  # the response slot holds <eos> only...
    return [int(t) for t in ids]  # ... and seq[:-1] ends right after the last <sep>
