"""Argument checks shared by the config dataclasses and pipelines, with one wording for each error."""

from __future__ import annotations


def require_positive_ints(prefix: str = "", **values) -> None:
    """Raise ``ValueError("<prefix><name> must be a positive integer, got <value>")`` for the first
    value that is not an ``int`` > 0 (``bool`` is refused too)."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{prefix}{name} must be a positive integer, got {v!r}")


def require_fractions(**values) -> None:
    """Raise ``ValueError("<name> must be in [0, 1), got <value>")`` for the first value outside [0, 1)."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"{name} must be in [0, 1), got {v!r}")


def require_choices(**values) -> None:
    """Raise ``ValueError("<name> must be one of <a>, <b>, got <value>")`` for the first ``name=(value,
    allowed)`` whose value is not in ``allowed``."""
    for name, (v, allowed) in values.items():
        if v not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {v!r}")


def check_buckets(buckets, max_len: int, what: str = "max_len") -> tuple:
    """Strictly increasing positive lengths whose last is ``max_len`` (called ``what`` in the error)."""
    try:
        b = tuple(int(x) for x in buckets)
    except (TypeError, ValueError):
        raise ValueError(f"buckets must be integers, got {buckets!r}") from None
    if not b or any(x <= 0 for x in b) or list(b) != sorted(set(b)):
        raise ValueError(f"buckets must be strictly increasing positive lengths, got {buckets!r}")
    if b[-1] != max_len:
        raise ValueError(f"the largest bucket must equal {what}={max_len}, got buckets {b}")
    return b
