"""What every flow does the same way: device setup, the run folder's config record, the progress bar,
the loss plot, and the batch shapes its data may take."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

from ms_gpt import atomic, checkpoint, device, run_lock
from ms_gpt.config import config_diff, to_dict
from ms_gpt.data.batching import Shapes


def setup(cfg, static_shapes: bool | None = None) -> device.DeviceSettings:
    """``device.setup`` from a flow config's ``device``, ``mode`` and ``seed``: the one place a flow
    decides its target, execution mode and static-shape policy."""
    return device.setup(cfg.device, mode=cfg.mode, seed=cfg.seed, static_shapes=static_shapes)


def shapes_for(data, settings: device.DeviceSettings, max_len: int, default_buckets=None) -> Shapes:
    """The batch shapes of a flow: the device's static-shape policy (``data.static_shapes`` forces it)
    and ``data.buckets`` (else ``default_buckets``)."""
    static = settings.static_shapes if data.static_shapes is None else bool(data.static_shapes)
    buckets = data.buckets if data.buckets is not None else default_buckets  # () = no buckets
    return Shapes(max_len, static=static, buckets=buckets or None)


def resolved(cfg, train, shapes: Shapes):
    """``cfg`` with what the flow decided filled in: the training schedule and the batch shapes."""
    batching = dataclasses.replace(cfg.batching, max_len=shapes.max_len, buckets=shapes.buckets,
                                   static_shapes=shapes.static)
    return dataclasses.replace(cfg, train=train, batching=batching)


def epoch_schedule(train, epochs: int, per_epoch: int, warmup_fraction: float, ckpt_every: int | None):
    """``train`` for ``epochs`` passes of ``per_epoch`` steps: linear warmup over ``warmup_fraction`` of
    them, validation by the flow after each epoch, a checkpoint every ``ckpt_every`` steps (None: at the end)."""
    steps = per_epoch * epochs
    return dataclasses.replace(train, steps=steps, warmup_steps=min(int(round(warmup_fraction * steps)), steps - 1),
                               eval_every=steps, ckpt_every=ckpt_every or steps, amp=bool(train.amp))


def record_run(out: Path, cfg, free=(), resume: bool = False) -> dict:
    """Write the fully resolved run configuration into ``out`` (what ``--config`` reloads); with ``resume``
    first check it against the saved one, naming every field that differs."""
    record = to_dict(cfg)
    saved = checkpoint.read_run_config(out) if resume else None
    if saved is not None:
        diff = config_diff(saved, record, free)
        if diff:
            raise ValueError(f"{out} was trained with other settings (saved, now): {diff}; resume with the same ones "
                             f"(or --config {out / checkpoint.RUN_CONFIG})")
    checkpoint.write_run_config(out, record)
    return record


@contextmanager
def run_folder(out, resume: bool = False, overwrite: bool = False, init=None, writer: bool = True,
               resumable: bool = False):
    """Own the run folder ``out`` for the job: its lock held (one writer per folder; a second run is
    refused naming the holder), a checkpoint a kill interrupted mid-save finished, leftovers of interrupted
    writes removed. Without ``resume``, a folder holding an earlier run is refused unless ``overwrite``
    (which clears that run's files first; ``resumable``: the job has --resume, so an unfinished run's
    message says to continue it); ``out`` may not be ``init``, the model a tuning job starts from.
    ``writer=False`` (a data-parallel worker that writes nothing) only yields."""
    out = Path(out)
    if init is not None and out.exists() and Path(init).exists() and out.resolve() == Path(init).resolve():
        raise ValueError(f"--out {out} is the --init folder: tuning would overwrite the model it starts from; "
                         "choose another --out")
    with run_lock.hold(out, enabled=writer):
        if writer:
            checkpoint.recover(out, clean=True)
            held = None if resume else checkpoint.describe_run(out)
            if held and not overwrite:
                what, unfinished = held
                hint = "continue it with --resume (same settings), " if unfinished and resumable else ""
                raise ValueError(f"--out {out} already holds {what}; {hint}replace it with --overwrite, "
                                 "or choose another --out")
            if held:
                checkpoint.clear_run(out)
        yield out


def plot_losses(history, path: Path) -> None:
    """Training loss per step (and validation loss where measured) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train")
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def finish(out: Path, metrics: dict, history=None) -> dict:
    """metrics.json (and loss.png when there is a history) into ``out``."""
    checkpoint.write_metrics(out, metrics)
    if history:
        plot_losses(history, Path(out) / checkpoint.LOSS_PLOT)
    return metrics


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
