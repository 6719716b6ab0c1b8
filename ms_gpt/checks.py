"""Argument checks shared by the config dataclasses and pipelines, with one wording for each error."""

from __future__ import annotations


def require_positive_ints(prefix: str = "", **values) -> None:
    """Raise ``ValueError("<prefix><name> must be a positive integer, got <value>")`` for the first
    value that is not an ``int`` > 0 (``bool`` is refused too)."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{prefix}{name} must be a positive integer, got {v!r}")


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
