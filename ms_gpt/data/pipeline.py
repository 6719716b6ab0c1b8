"""Language-modelling samples, batched by :mod:`ms_gpt.data.batching`.

Two sample layouts:
- ``block_dataset``: GPT-1 style contiguous blocks of ``block_size`` tokens cut from the whole token
  stream (every batch has the same shape: static by construction).
- ``sentence_dataset``: one line per sample, truncated to ``max_len``, in the shapes of a
  :class:`~ms_gpt.data.batching.Shapes` (fixed length, length buckets, or dynamic ``padded_batch``).

Columns: ``input_ids`` int32 [b, l] and ``labels`` int32 [b, l] (the next token; ``IGNORE`` where
the position is padding, so the loss skips it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ms_gpt.checks import require_positive_ints
from ms_gpt.data.batching import IGNORE, Shapes, batch_rows

LM_COLUMNS = ("input_ids", "labels")


def lm_pad_values(pad_id: int) -> dict:
    return {"input_ids": pad_id, "labels": IGNORE}


def encode_lines(tokenizer, lines: Sequence[str], add_bos: bool = True, add_eos: bool = True) -> list:
    return [tokenizer.encode(line, add_bos=add_bos, add_eos=add_eos) for line in lines]


def block_dataset(encoded: Sequence[Sequence[int]], block_size: int, batch_size: int, shuffle: bool = True,
                  seed: int = 0, num_shards: int = 1, shard_id: int = 0):
    """Concatenate all lines and cut non-overlapping blocks of ``block_size + 1`` tokens.

    Data parallelism: with ``num_shards`` workers, global batch ``g`` is blocks
    ``[g*B*n, (g+1)*B*n)`` of the one shuffled order (``B = batch_size`` per worker), and worker
    ``shard_id`` takes its ``shard_id``-th slice of ``B`` blocks. So together the workers see, step by
    step, exactly the batches of one process with batch ``B*n``."""
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
    return batch_rows(rows, LM_COLUMNS, lm_pad_values(0), batch_size, Shapes(block_size, static=True), remainder="drop")


def _sentence_rows(encoded, max_len):
    rows = []
    for ids in encoded:
        ids = list(ids)[: max_len + 1]
        if len(ids) < 2:
            continue  # nothing to predict
        rows.append((np.array(ids[:-1], np.int32), np.array(ids[1:], np.int32)))
    return rows


def sentence_dataset(encoded: Sequence[Sequence[int]], shapes: Shapes, batch_size: int, pad_id: int,
                     shuffle: bool = True, remainder: str = "fill"):
    """One line per sample, batched in ``shapes`` (the last partial batch filled by default)."""
    rows = _sentence_rows(encoded, shapes.max_len)
    if not rows:
        raise ValueError("no line has at least 2 tokens: nothing to train on")
    return batch_rows(rows, LM_COLUMNS, lm_pad_values(pad_id), batch_size, shapes, remainder=remainder,
                      shuffle=shuffle)
