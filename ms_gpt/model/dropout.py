"""Keyed dropout: masks that are a pure function of (seed, dropout site, call count, element).

MindSpore's ``nn.Dropout`` draws from a random state held inside its kernel, which
``mindspore.get_rng_state``/``set_rng_state`` do not reach, so a resumed run cannot repeat the
masks an uninterrupted run would have used. Here each dropout site keeps its state in a small
int32 ``Parameter`` ``rng_state = [key, calls]``: the checkpoint carries it, and after a resume
every mask is bit-identical to the uninterrupted run.

The mask of call ``c`` at site ``key`` keeps element ``i`` when ``hash(i ^ base(key, c))`` is
above ``p``'s share of the int32 range, where ``hash`` is a multiply / xor-shift / multiply
integer mixer (wrapping int32 arithmetic). Kept elements are scaled by ``1 / (1 - p)``.
"""

from __future__ import annotations

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

_M1 = 0x7FEB352D
_M2 = 0x2C1B3C6D
_GOLDEN = 0x1E3779B9
_MASK31 = 0x7FFFFFFF


def site_key(seed: int, index: int) -> int:
    """A 31-bit key for dropout site ``index`` under ``seed`` (host-side, NumPy-free mixing)."""
    h = (seed * 0x9E3779B1 + index * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
    for mul in (_M1, _M2):
        h ^= h >> 16
        h = (h * mul) & 0xFFFFFFFF
    return (h ^ (h >> 15)) & _MASK31


def _mix(h):
    """int32 -> int32, every output bit depending on every input bit (wrapping arithmetic)."""
    h = h * _M1
    h = ops.bitwise_xor(h, ops.bitwise_right_shift(h, 16))
    return h * _M2


def keep_mask(shape: tuple, p: float, key, calls):
    """[shape] bool: True where an element is kept. ``key``, ``calls``: int32 scalars (tensors)."""
    n = int(np.prod(shape))
    base = _mix(key + calls * _GOLDEN)  # one int32 per call
    h = _mix(ops.bitwise_xor(ops.arange(0, n, dtype=mindspore.int32), base))
    # h is uniform over [-2^31, 2^31): keep the top (1 - p) share of that range
    threshold = int(round(p * 2.0 ** 32)) - 2 ** 31
    return (h >= threshold).reshape(shape)


def numpy_keep_mask(shape: tuple, p: float, key: int, calls: int) -> np.ndarray:
    """Reference implementation of :func:`keep_mask` in NumPy (uint32 arithmetic)."""
    def mix(h):
        h = (h.astype(np.uint64) * _M1) & 0xFFFFFFFF
        signed = h.astype(np.uint32).view(np.int32)
        h = (signed ^ (signed >> 16)).view(np.uint32).astype(np.uint64)  # arithmetic shift, as int32
        return ((h * _M2) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)

    base = mix(np.array([(key + calls * _GOLDEN) & 0xFFFFFFFF], np.uint64))[0]
    idx = np.arange(int(np.prod(shape)), dtype=np.int32)
    h = mix((idx ^ base).view(np.uint32).astype(np.uint64))
    return (h.astype(np.int64) >= int(round(p * 2.0 ** 32)) - 2 ** 31).reshape(shape)


class KeyedDropout(nn.Cell):
    """Drop-in for ``nn.Dropout(p)`` whose masks are reproducible from the checkpoint.

    In training each call uses mask number ``calls`` and then increments it; in eval mode (or with
    ``p == 0``) it is the identity and the state does not move.
    """

    def __init__(self, p: float = 0.5, key: int = 0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.scale = 1.0 / (1.0 - self.p)
        self.rng_state = Parameter(Tensor(np.array([key, 0], np.int32)), name="rng_state", requires_grad=False)
        self._one_call = Tensor(np.array([0, 1], np.int32))

    def set_key(self, key: int) -> None:
        self.rng_state.set_data(Tensor(np.array([key, 0], np.int32)))

    @property
    def active(self) -> bool:
        """Whether a call drops anything (training with p > 0); a constant inside compiled graphs."""
        return self.training and self.p > 0.0

    def multiplier(self, shape: tuple, dtype=mindspore.float32):
        """The next call's mask as multipliers (0 or 1 / (1 - p)) of ``shape``, advancing the call count
        exactly as calling the cell would (for fused kernels that apply the dropout themselves)."""
        state = self.rng_state
        keep = keep_mask(shape, self.p, state[0], state[1])
        ops.assign_add(self.rng_state, self._one_call)
        return keep.astype(dtype) * self.scale

    def construct(self, x):
        if not self.training or self.p == 0.0:
            return x
        return x * self.multiplier(x.shape, x.dtype)


def seed_dropout(cell: nn.Cell, seed: int) -> int:
    """Give every KeyedDropout inside ``cell`` its own key derived from ``seed`` and its position in
    ``cell.cells_and_names()``, with the call count reset; returns how many sites were keyed."""
    sites = [c for _, c in cell.cells_and_names() if isinstance(c, KeyedDropout)]
    for i, site in enumerate(sites):
        site.set_key(site_key(int(seed), i))
    return len(sites)


def is_rng_state(name: str) -> bool:
    """Parameter names that are dropout state rather than weights (skipped by weight conversion)."""
    return name == "rng_state" or name.endswith(".rng_state")
