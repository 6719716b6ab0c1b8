"""The key/value cache of incremental decoding: fixed-size buffers plus the filled length.

A ``KVCache`` goes into ``GPT(input_ids, cache)`` and an updated one comes back. A compiled decoding step may
instead write the new keys and values into the buffers it was given (:mod:`ms_gpt.model.decode_step`), so a cache
passed to a step is not to be used again: the one it gives back is. Its buffers hold
``size`` slots (default: the model's ``n_positions``) whatever the length decoded so far, so every
decoding step has the same shapes and runs in one compiled graph. It is a ``NamedTuple``: MindSpore's
graph compiler builds and reads it like a tuple of tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import mindspore
import numpy as np
from mindspore import Tensor, ops


class KVCache(NamedTuple):
    keys: tuple  # n_layer x [b, h, size, d_k]
    values: tuple  # n_layer x [b, h, size, d_k]
    pad: Tensor  # [b, size] bool: True where a slot holds padding (never attended to)
    length: Tensor  # int32 scalar: slots filled so far = the slot of the next token

    @classmethod
    def empty(cls, config, batch: int, size: int | None = None) -> "KVCache":
        """Zeroed buffers for ``batch`` rows and ``size`` slots (default ``config.n_positions``)."""
        size = config.n_positions if size is None else size
        if not isinstance(size, int) or not 0 < size <= config.n_positions:
            raise ValueError(f"cache size must be an integer in [1, n_positions={config.n_positions}], got {size!r}")
        shape = (batch, config.n_head, size, config.d_k)
        zeros = lambda: Tensor(np.zeros(shape, np.float32))  # noqa: E731
        return cls(tuple(zeros() for _ in range(config.n_layer)), tuple(zeros() for _ in range(config.n_layer)),
                   Tensor(np.zeros((batch, size), np.bool_)), Tensor(0, mindspore.int32))

    @property
    def size(self) -> int:
        return self.pad.shape[1]

    def filled(self) -> int:
        """How many slots are filled (a host sync)."""
        return int(self.length.asnumpy())

    def reorder(self, rows) -> "KVCache":
        """The cache of rows ``rows`` (e.g. the beams that survived a beam-search step)."""
        idx = Tensor(np.asarray(rows, np.int32))
        take = lambda bufs: tuple(ops.gather(t, idx, 0) for t in bufs)  # noqa: E731
        return KVCache(take(self.keys), take(self.values), ops.gather(self.pad, idx, 0), self.length)

    def updated(self, fields) -> "KVCache":
        """The cache after a compiled decoding step that returned ``fields`` (keys, values, pad, length): a step
        that wrote the new keys and values into this cache's own buffers (the CPU kernels' step) returns empty
        tuples for them, and the buffers are this cache's."""
        keys, values, pad, length = fields
        return KVCache(tuple(keys) or self.keys, tuple(values) or self.values, pad, length)

    def as_inputs(self) -> tuple:
        """The cache as ``mindspore.mutable`` graph inputs (a new length does not recompile)."""
        return (mindspore.mutable(self.keys), mindspore.mutable(self.values), self.pad, self.length)
