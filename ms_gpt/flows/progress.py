"""The progress bar every training flow shows, fed by ``Trainer.fit``'s ``progress`` callback."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def step_bar(enabled: bool, total: int, desc: str, initial: int = 0):
    """Yield a ``progress(step, loss, lr, tokens_per_s)`` callback that advances a tqdm bar (closed on
    exit, also on errors), or None when ``enabled`` is False."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="step")

    def report(step, loss, lr, tps):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:.0f}")

    try:
        yield report
    finally:
        bar.close()
