"""The course's ``process_dataset`` for IMDb-style (text, label) data, and the bridge that hands its
batches to the Hugging Face Trainer unchanged.

- static shapes (Ascend, or forced), no buckets: ``padding='max_length'`` + ``batch``;
- static with ``buckets``: ``bucket_batch_by_length`` pads each batch to the smallest bucket length;
- dynamic: ``padded_batch`` pads each batch to its own longest row.

mindnlp 0.5.1's Trainer is Hugging Face's: it wants map-style samples, not a MindSpore dataset.
:class:`BatchedDataset` holds the pipeline's batches, the Trainer's loader takes one item at a time
(``per_device_*_batch_size=1``) and :func:`collate_batch` turns it into tensors, so the model sees the
pipeline's shapes and padding exactly.
"""

from __future__ import annotations

import mindspore
import numpy as np

from ms_gpt.checks import require_positive_ints

# IGNORE (-100) labels the filler rows that complete a static batch; the loss and the metrics skip them.
from ms_gpt.data.batching import IGNORE, Shapes, batch_rows, check_buckets
from ms_gpt.environment.device import static_shapes_policy

COLUMNS = ("input_ids", "attention_mask", "labels")


def _rows_of(dataset) -> list:
    """(text, label) pairs from a list of pairs/dicts, a ``datasets.Dataset`` or a MindSpore dataset."""
    if hasattr(dataset, "create_dict_iterator"):
        return [(str(r["text"]), int(r["label"])) for r in dataset.create_dict_iterator(num_epochs=1, output_numpy=True)]
    if hasattr(dataset, "column_names"):
        return list(zip(dataset["text"], dataset["label"]))
    return [(r["text"], r["label"]) if isinstance(r, dict) else tuple(r) for r in dataset]


def encode(tokenizer, text: str, max_seq_len: int, course_tokens: bool = False) -> list:
    """Token ids, truncated to ``max_seq_len``: ``<bos> text <eos>`` or, course style, the text alone."""
    if course_tokens:
        return tokenizer(text, truncation=True, max_length=max_seq_len)["input_ids"]
    body = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_seq_len - 2)["input_ids"]
    return [tokenizer.bos_token_id] + body + [tokenizer.eos_token_id]


def process_dataset(dataset, tokenizer, max_seq_len=512, batch_size=4, shuffle=False, static_shapes=None,
                    buckets=None, *, course_tokens=False, drop_remainder=None, fill_remainder=False, seed=0):
    """Tokenize and batch ``dataset`` (text, label) into a ``mindspore.dataset`` pipeline.

    - static shapes, no buckets: the tokenizer's ``padding='max_length'`` + ``batch``: every batch is
      ``[batch_size, max_seq_len]``;
    - static with ``buckets=(128, 256, 512)``: ``bucket_batch_by_length`` pads each batch to the smallest
      bucket that holds its rows: ``len(buckets)`` shapes;
    - dynamic: ``padded_batch`` pads each batch to its own longest row.

    ``static_shapes``: the flow passes its device's policy; None asks the policy for MindSpore's current
    target (on for Ascend). Columns: ``input_ids``, ``attention_mask``, ``labels`` (int32). A static run
    drops the last partial batch of each shape (``drop_remainder``, the course's choice for training) or,
    with ``fill_remainder=True`` (for evaluation), completes it with all-padding rows labelled -100 that
    the loss and the metrics skip, so no review goes unscored and no new shape appears.
    """
    require_positive_ints(max_seq_len=max_seq_len, batch_size=batch_size)
    if buckets is not None and static_shapes is False:
        raise ValueError("buckets are a static-shape mode; drop static_shapes=False or the buckets")
    if static_shapes is None:
        static_shapes = static_shapes_policy(mindspore.get_context("device_target"))
    shapes = Shapes(max_seq_len, static=bool(static_shapes) or buckets is not None,
                    buckets=check_buckets(buckets, max_seq_len, "max_seq_len") if buckets is not None else None)
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: add one (tokenizer.add_special_tokens({'pad_token': "
                         "'<pad>'})) and resize the model's embeddings")
    if drop_remainder is None:
        drop_remainder = shapes.static and not fill_remainder
    rows = _rows_of(dataset)
    if shuffle:
        rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    samples = []
    for text, label in rows:
        ids = encode(tokenizer, text, max_seq_len, course_tokens)
        if shapes.mode == "fixed":  # the tokenizer pads: fixed-length rows, as the course does on Ascend
            enc = tokenizer.pad({"input_ids": ids}, padding="max_length", max_length=max_seq_len)
            ids, mask = enc["input_ids"], enc["attention_mask"]
        else:
            mask = [1] * len(ids)
        samples.append((np.asarray(ids, np.int32), np.asarray(mask, np.int32), np.int32(label)))
    if not samples:
        raise ValueError("the dataset is empty")
    pad_values = {"input_ids": int(tokenizer.pad_token_id), "attention_mask": 0}
    return batch_rows(samples, COLUMNS, pad_values, batch_size, shapes, remainder="drop" if drop_remainder else "fill")


class BatchedDataset:
    """Map-style view of a batched MindSpore dataset: item ``i`` is batch ``i``, a dict of numpy arrays.

    The Hugging Face Trainer loads it with batch size 1 and :func:`collate_batch`, so every batch reaches
    the model exactly as ``process_dataset`` made it.
    """

    def __init__(self, ms_dataset):
        self.batches = [{k: np.asarray(v) for k, v in b.items()}
                        for b in ms_dataset.create_dict_iterator(num_epochs=1, output_numpy=True)]
        if not self.batches:
            raise ValueError("the pipeline gave no batch (fewer rows than one batch with drop_remainder?)")

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]

    def shapes(self) -> list:
        return sorted({tuple(b["input_ids"].shape) for b in self.batches})

    def token_counts(self) -> dict:
        real = sum(int(b["attention_mask"].sum()) for b in self.batches)
        total = sum(int(b["input_ids"].size) for b in self.batches)
        rows = sum(int((b["labels"] != IGNORE).sum()) for b in self.batches)
        return {"real_tokens": real, "total_tokens": total, "rows": rows, "batches": len(self.batches)}


def collate_batch(items):
    """The Trainer's collator for :class:`BatchedDataset`: one whole batch in, tensors out."""
    import torch  # mindtorch under mindnlp

    if len(items) != 1:
        raise ValueError(f"BatchedDataset items are whole batches: load them with batch size 1, got {len(items)}")
    return {k: torch.tensor(np.asarray(v, dtype=np.int64)) for k, v in items[0].items()}


