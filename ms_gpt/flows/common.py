"""What every flow does the same way: device setup, the run folder's config record, the progress bar,
the loss plot, and the batch shapes its data may take."""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from pathlib import Path

from ms_gpt.config import config_diff, to_dict, upgrade
from ms_gpt.data.batching import Shapes
from ms_gpt.environment import device
from ms_gpt.run_folder import atomic, checkpoint, ownership


def setup(cfg, static_shapes: bool | None = None) -> device.DeviceSettings:
    """``device.setup`` from a flow config's ``device``, ``mode`` and ``seed``: the one place a flow
    decides its target, execution mode and static-shape policy."""
    return device.setup(cfg.device, mode=cfg.mode, seed=cfg.seed, static_shapes=static_shapes)


@contextmanager
def execution(cfg, static_shapes: bool | None = None):
    """:func:`setup` for the length of a job: a job run in graph mode leaves MindSpore in PyNative when it ends
    (``device.leave_graph_mode``), however it ends."""
    settings = setup(cfg, static_shapes)
    try:
        yield settings
    finally:
        if cfg.mode == "graph":
            device.leave_graph_mode()


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


def record_run(out: Path, cfg, free=(), resume: bool = False, write: bool = True) -> dict:
    """Write the fully resolved run configuration into ``out`` (what ``--config`` reloads); with ``resume``
    first check it against the saved one, naming every field that differs (``write=False``: only check)."""
    record = to_dict(cfg)
    saved = checkpoint.read_run_config(out) if resume else None
    saved = upgrade(type(cfg), saved) if saved is not None else None
    if saved is not None:
        diff = config_diff(saved, record, free)
        if diff:
            raise ValueError(f"{out} was trained with other settings (saved, now): {diff}; resume with the same ones "
                             f"(or --config {out / checkpoint.RUN_CONFIG})")
    if write:
        checkpoint.write_run_config(out, record)
    return record


@contextmanager
def run_folder(out, command: str, resume: bool = False, overwrite: bool = False, inputs: dict | None = None,
               writer: bool = True, resumable: bool = False):
    """Own the run folder ``out`` for the job ``command``: a new or empty folder or one of that command's own
    (:mod:`ms_gpt.run_folder.ownership`; never ``/``, home or the current folder, never one of the ``inputs``, flag ->
    path), its lock held (one writer per folder; a second run is refused naming the holder), a checkpoint a
    kill interrupted mid-save finished. Without ``resume``, a folder holding an earlier run is refused unless
    ``overwrite`` (which clears that run's files, and only those; ``resumable``: the job has --resume, so an
    unfinished run's message says to continue it). Once the run is accepted, the leftovers of interrupted
    ms_gpt writes are removed and the folder is marked as ``command``'s. ``writer=False`` (a data-parallel
    worker that writes nothing) only yields."""
    with ownership.claim(out, command, inputs, writer=writer) as out:
        if writer:
            checkpoint.recover(out)
            held = None if resume else checkpoint.describe_run(out)
            if held and not overwrite:
                what, unfinished = held
                hint = "continue it with --resume (same settings), " if unfinished and resumable else ""
                raise ValueError(f"--out {out} already holds {what}; {hint}replace it with --overwrite, "
                                 "or choose another --out")
            if held:
                checkpoint.clear_run(out)
            checkpoint.remove_leftovers(out)
            ownership.write_marker(out, command)
        yield out


def finished(out: Path, until: int) -> dict | None:
    """For a --resume with nothing left to train (the run in ``out`` is at step ``until`` already): its
    metrics.json as it is (re-measuring would record a validation loss 'before' that is the end's and a
    speed of 0); else None."""
    state_file, metrics = Path(out) / checkpoint.TRAIN_STATE, Path(out) / checkpoint.METRICS
    if not state_file.is_file() or not metrics.is_file():
        return None
    state = checkpoint.read_json(state_file)
    step = state.get("step", 0)
    if step < until:
        return None
    checkpoint.check_train_state(out, state)  # the checkpoint is still the one the state was saved with
    print(f"ms-gpt: {out} is at step {step} already; nothing to train (its metrics.json is unchanged)", file=sys.stderr)
    return checkpoint.read_json(metrics)


def say(command: str, message: str) -> None:
    """A phase of a long command on stderr (stdout keeps the result): ``ms-gpt COMMAND: message``."""
    print(f"ms-gpt {command}: {message}", file=sys.stderr, flush=True)


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
    """Yield a ``progress(step, **shown)`` callback (what :func:`ms_gpt.training.run_steps` calls after each step)
    that advances the tqdm bar, the one training progress bar, showing ``shown`` (closed on exit, also on
    errors), or None when ``enabled`` is False."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="step")

    def report(step, **shown):
        bar.update(1)
        bar.set_postfix(**shown)

    try:
        yield report
    finally:
        bar.close()
