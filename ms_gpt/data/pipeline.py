"""``mindspore.dataset`` pipelines for language modelling.

Two sample layouts:
- ``block_dataset``: GPT-1 style contiguous blocks of ``block_size`` tokens cut from the whole token
  stream (every batch has the same shape: static by construction).
- ``sentence_dataset``: one line per sample, truncated to ``max_len``. With the static-shape policy
  (Ascend, or forced) every batch is padded to ``max_len`` (or to the smallest of a few ``buckets``);
  otherwise ``padded_batch`` pads each batch only to its own longest line.

Columns: ``input_ids`` int32 [b, l] and ``labels`` int32 [b, l] (the next token; ``IGNORE`` where
the position is padding, so the loss skips it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ms_gpt.checks import require_positive_ints

IGNORE = -100  # label value the loss ignores (mindspore.ops.cross_entropy's default ignore_index)


class _Rows:
    """Random-access source over a list of row tuples (e.g. (input_ids, labels) numpy rows)."""

    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self):
        return len(self.rows)


def encode_lines(tokenizer, lines: Sequence[str], add_bos: bool = True, add_eos: bool = True) -> list:
    return [tokenizer.encode(line, add_bos=add_bos, add_eos=add_eos) for line in lines]


def block_dataset(encoded: Sequence[Sequence[int]], block_size: int, batch_size: int, shuffle: bool = True,
                  seed: int = 0, num_shards: int = 1, shard_id: int = 0):
    """Concatenate all lines and cut non-overlapping blocks of ``block_size + 1`` tokens.

    Data parallelism: with ``num_shards`` workers, global batch ``g`` is blocks
    ``[g*B*n, (g+1)*B*n)`` of the one shuffled order (``B = batch_size`` per worker), and worker
    ``shard_id`` takes its ``shard_id``-th slice of ``B`` blocks. So together the workers see, step by
    step, exactly the batches of one process with batch ``B*n``."""
    import mindspore.dataset as ds

    require_positive_ints(block_size=block_size, batch_size=batch_size, num_shards=num_shards)
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
    stream = np.fromiter((t for line in encoded for t in line), dtype=np.int32)
    n_blocks = (len(stream) - 1) // block_size
    global_batch = batch_size * num_shards
    if n_blocks < global_batch:
        raise ValueError(f"the corpus has {len(stream)} tokens: {n_blocks} blocks of {block_size}, fewer than one "
                         f"batch of {global_batch}; use a smaller block_size/batch_size or a larger corpus")
    starts = np.arange(n_blocks) * block_size
    if shuffle:
        np.random.default_rng(seed).shuffle(starts)
    if num_shards > 1:
        starts = np.concatenate([starts[g * global_batch + shard_id * batch_size:][:batch_size]
                                 for g in range(n_blocks // global_batch)])
    rows = [(stream[s:s + block_size], stream[s + 1:s + block_size + 1]) for s in starts]
    data = ds.GeneratorDataset(_Rows(rows), column_names=["input_ids", "labels"], shuffle=False)
    return data.batch(batch_size, drop_remainder=True)


def _sentence_rows(encoded, max_len):
    rows = []
    for ids in encoded:
        ids = list(ids)[: max_len + 1]
        if len(ids) < 2:
            continue  # nothing to predict
        rows.append((np.array(ids[:-1], np.int32), np.array(ids[1:], np.int32)))
    return rows


def sentence_dataset(encoded: Sequence[Sequence[int]], max_len: int, batch_size: int, pad_id: int,
                     static_shapes: bool, buckets: Sequence[int] | None = None, shuffle: bool = True,
                     seed: int = 0, drop_remainder: bool = False):
    """One line per sample; static shapes pad to ``max_len`` (or bucket boundaries), dynamic pad per batch."""
    import mindspore.dataset as ds

    require_positive_ints(max_len=max_len, batch_size=batch_size)
    rows = _sentence_rows(encoded, max_len)
    if not rows:
        raise ValueError("no line has at least 2 tokens: nothing to train on")
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(rows))
        rows = [rows[i] for i in order]
    if not static_shapes:
        data = ds.GeneratorDataset(_Rows(rows), column_names=["input_ids", "labels"], shuffle=False)
        pad_info = {"input_ids": (None, pad_id), "labels": (None, IGNORE)}
        return data.padded_batch(batch_size, drop_remainder=drop_remainder, pad_info=pad_info)
    buckets = sorted(set(int(b) for b in (buckets or [max_len])))
    if buckets[0] <= 0 or buckets[-1] != max_len:
        raise ValueError(f"buckets must be positive and end at max_len={max_len}, got {buckets}")
    return ds.GeneratorDataset(_Rows(_static_batches(rows, buckets, batch_size, pad_id, drop_remainder)),
                               column_names=["input_ids", "labels"], shuffle=False)


def _static_batches(rows, buckets, batch_size, pad_id, drop_remainder):
    """Batches whose shapes are exactly (batch_size, b) for b in ``buckets``.

    Each row is padded to the smallest bucket that holds it; rows of one bucket are batched together.
    A last, partial batch is dropped (``drop_remainder``) or filled with all-padding rows whose labels
    are ignored, so no data is lost and no new shape appears.
    """
    by_bucket = {b: [] for b in buckets}
    for ids, labels in rows:
        b = next(x for x in buckets if len(ids) <= x)
        n = b - len(ids)
        by_bucket[b].append((np.pad(ids, (0, n), constant_values=pad_id),
                             np.pad(labels, (0, n), constant_values=IGNORE)))
    batches = []
    for b in buckets:
        bucket = by_bucket[b]
        for i in range(0, len(bucket), batch_size):
            chunk = bucket[i:i + batch_size]
            if len(chunk) < batch_size:
                if drop_remainder:
                    continue
                filler = (np.full(b, pad_id, np.int32), np.full(b, IGNORE, np.int32))
                chunk = chunk + [filler] * (batch_size - len(chunk))
            batches.append((np.stack([r[0] for r in chunk]).astype(np.int32),
                            np.stack([r[1] for r in chunk]).astype(np.int32)))
    return batches
