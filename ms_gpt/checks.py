"""Argument checks shared by the config dataclasses and pipelines, with one wording for each error."""

from __future__ import annotations


def require_positive_ints(prefix: str = "", **values) -> None:
    """Raise ``ValueError("<prefix><name> must be a positive integer, got <value>")`` for the first
    value that is not an ``int`` > 0 (``bool`` is refused too)."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{prefix}{name} must be a positive integer, got {v!r}")
