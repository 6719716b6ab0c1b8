"""The one batcher: rows of token ids -> a ``mindspore.dataset`` of padded batches, in the shapes the
device wants.

Three modes, chosen by :class:`Shapes` (which every flow builds from ``device.setup(...).static_shapes``):

- ``fixed``   (static, no buckets): every row padded to ``max_len``, then ``batch`` -> one shape;
- ``buckets`` (static): ``bucket_batch_by_length`` pads each batch to the smallest bucket that holds
  its rows -> ``len(buckets)`` shapes, far less padding;
- ``dynamic`` (no static policy, no buckets): ``padded_batch`` pads each batch to its own longest row.

Rows are tuples of numpy arrays, one per column; the padded columns have the sequence on their last
axis (``[l]``, or ``[n, l]`` for tasks that read several sequences per example), the others are
scalars (a label). The last partial batch of a shape is dropped (``remainder="drop"``) or completed
with filler rows whose labels are ``IGNORE`` (``remainder="fill"``), so no row goes unused and no new
shape appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mindspore.dataset as ds
import numpy as np

from ms_gpt.checks import check_buckets, require_positive_ints  # noqa: F401  (check_buckets: re-exported)
from ms_gpt.config import IGNORE  # noqa: F401  (re-exported)

REMAINDERS = ("drop", "fill")


class RowSource:
    """Random-access source over a list of row tuples, for ``GeneratorDataset``."""

    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self):
        return len(self.rows)


def default_buckets(max_len: int) -> tuple:
    """max_len / 4, / 2 and max_len (at least 8): three shapes."""
    return tuple(sorted({min(max_len, max(8, max_len // 4)), min(max_len, max(8, max_len // 2)), max_len}))


@dataclass(frozen=True)
class Shapes:
    """The batch shapes a flow may produce: ``static`` comes from the device policy (on for Ascend,
    forced with ``MS_GPT_STATIC_SHAPES=1``), ``buckets`` from the flow's settings."""

    max_len: int
    static: bool = False
    buckets: tuple | None = None

    def __post_init__(self):
        require_positive_ints(max_len=self.max_len)
        if self.buckets is not None:
            object.__setattr__(self, "buckets", check_buckets(self.buckets, self.max_len))

    @property
    def mode(self) -> str:
        if self.buckets is not None and len(self.buckets) > 1:
            return "buckets"
        return "fixed" if self.static or self.buckets is not None else "dynamic"

    def lengths(self) -> tuple:
        """The sequence lengths of the static modes (``()`` for dynamic)."""
        return {"buckets": self.buckets, "fixed": (self.max_len,), "dynamic": ()}[self.mode]


def _length(row, padded: Sequence[int]) -> int:
    return int(row[padded[0]].shape[-1])


def _pad_to(a: np.ndarray, length: int, value) -> np.ndarray:
    widths = [(0, 0)] * (a.ndim - 1) + [(0, length - a.shape[-1])]
    return np.pad(a, widths, constant_values=value)


def _fillers(rows, shapes: Shapes, batch_size: int, pad_values: dict, columns: list) -> list:
    """All-padding rows (labels IGNORE) that complete each static shape's last batch."""
    lengths = shapes.lengths()
    padded = [i for i, c in enumerate(columns) if c in pad_values]
    counts = {b: 0 for b in lengths}
    for row in rows:
        counts[next(b for b in lengths if _length(row, padded) <= b)] += 1
    template = rows[0]
    out = []
    for b, n in counts.items():
        filler = tuple(np.full(template[i].shape[:-1] + (b,), pad_values[c], template[i].dtype) if c in pad_values
                       else np.full(template[i].shape, IGNORE, template[i].dtype) for i, c in enumerate(columns))
        out += [filler] * ((-n) % batch_size)
    return out


def batch_rows(rows: list, columns: Sequence[str], pad_values: dict, batch_size: int, shapes: Shapes,
               remainder: str = "fill", shuffle: bool = False):
    """A ``mindspore.dataset`` of batches of ``rows`` (tuples in ``columns`` order).

    ``pad_values``: column -> value for the padded columns (e.g. ``{"input_ids": pad_id, "labels":
    IGNORE}``). With ``shuffle`` the rows are reshuffled every epoch (MindSpore's dataset seed)."""
    require_positive_ints(batch_size=batch_size)
    if remainder not in REMAINDERS:
        raise ValueError(f"remainder must be one of {', '.join(REMAINDERS)}, got {remainder!r}")
    if not rows:
        raise ValueError("no rows to batch")
    columns = list(columns)
    padded = [i for i, c in enumerate(columns) if c in pad_values]
    longest = max(_length(r, padded) for r in rows)
    if longest > shapes.max_len:
        raise ValueError(f"a row of {longest} tokens is longer than the maximum length {shapes.max_len}")
    mode = shapes.mode
    if mode == "fixed":
        rows = [tuple(_pad_to(a, shapes.max_len, pad_values[c]) if c in pad_values else a
                      for a, c in zip(r, columns)) for r in rows]
    if mode != "dynamic" and remainder == "fill":
        rows = rows + _fillers(rows, shapes, batch_size, pad_values, columns)
    data = ds.GeneratorDataset(RowSource(rows), column_names=columns, shuffle=shuffle)
    drop = remainder == "drop"
    if mode == "fixed":
        return data.batch(batch_size, drop_remainder=drop)
    pad_info = {c: (None, v) for c, v in pad_values.items()}
    if mode == "dynamic":
        return data.padded_batch(batch_size, drop_remainder=drop, pad_info=pad_info)
    # Boundaries are exclusive upper bounds. A pad shape with None on the sequence axis (not None as a
    # whole, which pads to the batch's longest row) pads to boundary - 1, i.e. to the bucket length.
    # Rows are at most max_len long, so the open-ended last bucket stays empty.
    template = rows[0]
    bucket_pad = {c: (list(template[columns.index(c)].shape[:-1]) + [None], v) for c, v in pad_values.items()}
    return data.bucket_batch_by_length(
        [columns[padded[0]]], [b + 1 for b in shapes.buckets], [batch_size] * (len(shapes.buckets) + 1),
        element_length_function=lambda x: x.shape[-1], pad_info=bucket_pad, pad_to_bucket_boundary=True,
        drop_remainder=drop)

