"""Training loop for the from-scratch GPT: a jit-compiled step, AdamW, schedules, clipping,
validation, atomic checkpoints with resume, a NaN/inf guard.

The step is ``mindspore.value_and_grad`` of the LM loss (padding labels ignored) under
``mindspore.jit``; AdamW decays only matrices (not biases or LayerNorm); the learning rate follows
warmup then linear or cosine decay, as a per-step table the optimizer indexes with its own
``global_step`` (so a resumed run continues the schedule exactly).
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict
from pathlib import Path

import mindspore
import numpy as np
from mindspore import ops
from mindspore.amp import DynamicLossScaler, all_finite

from ms_gpt import backend as backends
from ms_gpt.config import IGNORE, RESUMABLE, SCHEDULES, TrainConfig, config_diff  # noqa: F401  (this module's API)
from ms_gpt.environment import distributed
from ms_gpt.errors import MsGptError
from ms_gpt.optim import AdamW
from ms_gpt.run_folder import checkpoint, interrupt


class TrainingDiverged(MsGptError, RuntimeError):
    """The loss became NaN or infinite or grew far past its start (or AMP overflowed at loss scale 1);
    nothing is saved, the run folder keeps its last checkpoint, whose weights are finite (the message names
    its step, or says there is none)."""


# The loss guard: a run whose mean loss over the last BLOWUP_WINDOW steps exceeds BLOWUP x its first step's
# loss has diverged as surely as a NaN (--learning-rate 30 on a tiny model: validation loss 4.5 -> 4,455).
BLOWUP, BLOWUP_WINDOW = 10.0, 5


def lr_schedule(cfg: TrainConfig) -> np.ndarray:
    """Learning rate for each step 0..steps-1: linear warmup, then linear/cosine decay to min_lr."""
    steps = np.arange(cfg.steps, dtype=np.float64)
    peak, floor = cfg.learning_rate, cfg.learning_rate * cfg.min_lr_ratio
    warm = (steps + 1) / max(cfg.warmup_steps, 1)
    progress = np.clip((steps - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps - 1, 1), 0.0, 1.0)
    if cfg.schedule == "cosine":
        decay = floor + 0.5 * (peak - floor) * (1 + np.cos(math.pi * progress))
    elif cfg.schedule == "linear":
        decay = peak - (peak - floor) * progress
    else:
        decay = np.full_like(steps, peak)
    return np.where(steps < cfg.warmup_steps, peak * warm, decay).astype(np.float32)


def rate_table(cfg: TrainConfig, updates_per_step: int = 1) -> np.ndarray:
    """The optimizer's learning-rate table: each step's :func:`lr_schedule` rate held for ``updates_per_step``
    updates (PPO's passes over one batch), indexed by the update count."""
    return np.repeat(lr_schedule(cfg), updates_per_step)


def lm_loss(logits, labels):
    """Mean next-token cross-entropy over positions whose label is not ``IGNORE``, in MindSpore ops (a
    model's own :meth:`GPT.lm_loss` computes it with the model's backend)."""
    return backends.LMLoss()(logits, labels)


def lm_objective(model, ids, labels):
    """The pretraining objective: ``model(ids)`` are LM logits, scored against ``labels``."""
    return model.lm_loss(model(ids), labels)


def make_optimizer(model, cfg: TrainConfig, params=None, updates_per_step: int = 1) -> AdamW:
    """AdamW over ``params`` (default: the model's trainable weights; matrices decayed) at :func:`lr_schedule`'s
    rates, each held for ``updates_per_step`` updates (PPO's passes over one batch), clipping to ``cfg.grad_clip``
    inside."""
    params = model.trainable_params() if params is None else params
    return AdamW(params, rate_table(cfg, updates_per_step), weight_decay=cfg.weight_decay,
                 betas=(cfg.beta1, cfg.beta2), eps=1e-8, max_norm=cfg.grad_clip, bias_correction=cfg.bias_correction,
                 backend=model.backend)


class Trainer:
    """Holds the model, optimizer and compiled step; ``fit`` runs, checkpoints and resumes.

    ``objective(model, *batch) -> loss`` is what is minimised over the dataset's columns (default
    :func:`lm_objective` on ``(input_ids, labels)``; fine-tuning passes its own)."""

    def __init__(self, model, cfg: TrainConfig, out_dir: str | Path, jit: bool = True, objective=None, dist=None,
                 resumable: bool = True):
        """``dist``: a :class:`ms_gpt.environment.distributed.DistInfo` for data-parallel training (gradients and the
        logged loss averaged over the workers; only rank 0 writes checkpoints). ``resumable``: the job offers
        ``--resume`` (what a stop on a signal tells the user)."""
        cfg.validate()
        self.dist = dist or distributed.DistInfo()
        if cfg.amp and model.config.compute_dtype == "float32":
            raise ValueError("amp=True needs a model built with compute_dtype='float16' (or 'bfloat16' on "
                             "Ascend); this one computes in float32")
        self.model, self.cfg, self.out, self.resumable = model, cfg, Path(out_dir), resumable
        self.model.validate_inputs = False  # data pipelines produce checked ids; no host sync per step
        self.optimizer = make_optimizer(model, cfg)
        self.lrs = lr_schedule(cfg)
        self.scaler = DynamicLossScaler(cfg.loss_scale, 2, cfg.loss_scale_window) if cfg.amp else None
        self.skipped = 0
        self.changes: list = []  # settings changed at a --resume: [{"step": s, "learning_rate": [old, new]}]
        self._first_loss: float | None = None  # the loss guard's reference (see _check_blowup)

        objective = self.objective = lm_objective if objective is None else objective

        def forward(*batch):
            return objective(self.model, *batch)

        reducer = distributed.grad_reducer(self.optimizer.parameters, self.dist)
        mean = distributed.loss_mean(self.dist)
        if self.scaler is None:
            grad_fn = mindspore.value_and_grad(forward, None, self.optimizer.parameters)

            def train_step(*batch):
                loss, grads = grad_fn(*batch)
                if reducer is not None:  # data parallel: the average over the workers' shards
                    grads = reducer(grads)
                    loss = mean(loss)
                self.optimizer(grads)  # clips to cfg.grad_clip, then AdamW
                return loss, ops.isfinite(loss)
        else:
            scaler = self.scaler

            def scaled_forward(*batch):
                loss = forward(*batch)
                return scaler.scale(loss), loss

            grad_fn = mindspore.value_and_grad(scaled_forward, None, self.optimizer.parameters, has_aux=True)

            def train_step(*batch):
                (_, loss), grads = grad_fn(*batch)
                if reducer is not None:
                    grads = reducer(grads)
                    loss = mean(loss)
                grads = scaler.unscale(grads)
                finite = all_finite(grads)
                scaler.adjust(finite)
                if finite:  # an overflowing step is skipped; the scale has been lowered for the next one
                    self.optimizer(grads)
                return loss, finite

        def eval_step(*batch):
            return forward(*batch)

        self._train_step = mindspore.jit(train_step) if jit else train_step
        self._eval_step = mindspore.jit(eval_step) if jit else eval_step
        self.step = 0
        self.history: list = []
        self.shapes_seen: set = set()  # distinct input shapes trained on (each one a compile)

    # ------------------------------------------------------------------ checkpoints (through save_job/resume_job)
    extra_cells: dict = {}  # nothing saved beside the model and the optimizer

    @property
    def checkpoint_kind(self) -> str:
        return "lm" if self.objective is lm_objective else "training"  # e.g. a fine-tune's trunk + head

    def state(self) -> dict:
        """This trainer's part of ``train_state.json``."""
        state = {"step": self.step, "train_config": asdict(self.cfg), "history": self.history,
                 "skipped": self.skipped, "changes": self.changes}
        if self.scaler is not None:
            state["loss_scale"] = {"value": float(self.scaler.scale_value.asnumpy()),
                                   "counter": int(self.scaler.counter.asnumpy())}
        return state

    def save(self, extra: dict | None = None) -> Path:
        """The model, the optimizer and ``train_state.json`` (:func:`save_job`). In a data-parallel run only
        rank 0 writes (the workers hold the same weights)."""
        if not self.dist.is_writer:
            try:  # every worker holds rank 0's weights: all stop where rank 0 refuses the save
                checkpoint.require_finite([self.model], self.step)
            except checkpoint.NonFiniteWeights as exc:
                raise TrainingDiverged(f"{exc}: {self._kept()}") from None
            return self.out
        save_job(self, extra)
        return self.out

    def resume(self) -> int:
        """Continue the run saved in ``out_dir`` (:func:`resume_job`): the same settings (the data order and the
        step count depend on them), except the learning rate and schedule (:data:`RESUMABLE`), whose change is
        recorded."""
        return resume_job(self)

    def check_resume(self, saved: dict) -> None:
        """Refuse a resume with other settings, before any weights are read (the optimizer's tables would not
        even fit)."""
        diff = config_diff(saved.get("train_config", {}), asdict(self.cfg), free=RESUMABLE)
        if diff:
            raise ValueError(f"{self.out} was trained with other settings (saved, now): {diff}; "
                             "resume with the same ones")

    def restore(self, state: dict) -> None:
        saved, now = state["train_config"], asdict(self.cfg)
        self.step, self.history, self.skipped = state["step"], state["history"], state.get("skipped", 0)
        self.changes = state.get("changes", [])
        changed = {k: [saved.get(k), now[k]] for k in RESUMABLE if saved.get(k, now[k]) != now[k]}
        if changed:
            self.changes.append({"step": self.step, **changed})
        self._first_loss = None
        # the optimizer's table came back from optimizer.ckpt: from here on it reads this run's schedule (it is
        # indexed by the global step, so an unchanged schedule continues exactly)
        self.optimizer.learning_rate.set_data(mindspore.Tensor(self.lrs))
        if self.scaler is not None and "loss_scale" in state:
            self.scaler.scale_value.set_data(mindspore.Tensor(state["loss_scale"]["value"], mindspore.float32))
            self.scaler.counter.set_data(mindspore.Tensor(state["loss_scale"]["counter"], mindspore.int32))

    def input_shapes(self) -> list:
        """The distinct shapes of the first input this trainer's steps were given, sorted (this process)."""
        return [list(s) for s in sorted(self.shapes_seen)]

    # ------------------------------------------------------------------ loop
    def evaluate(self, dataset) -> dict:
        self.model.set_train(False)
        total, n = 0.0, 0
        for ids, labels in dataset.create_tuple_iterator(num_epochs=1):
            count = int((labels.asnumpy() != IGNORE).sum())
            if count:
                total += float(self._eval_step(ids, labels).asnumpy()) * count
                n += count
        self.model.set_train(True)
        loss = total / max(n, 1)
        return {"val_loss": loss, "val_ppl": float(math.exp(min(loss, 50.0)))}

    def _overflow(self, loss: float, lr: float, scale: float) -> None:
        """A skipped AMP step: fine while the loss scale can still come down; at scale 1 it is divergence."""
        self.skipped += 1
        if scale <= 1.0:
            raise TrainingDiverged(
                f"gradients overflow at step {self.step} even with loss scale 1 (loss {loss}, learning rate "
                f"{lr:.3g}); stopped without saving: {self._kept()}")

    def _kept(self) -> str:
        """What the run folder still holds, for the divergence message."""
        if not self.dist.is_writer:
            return "rank 0 names the checkpoint it keeps"
        return checkpoint.kept_checkpoint(self.out, self.resumable)

    def _check_blowup(self, loss: float, lr: float) -> None:
        """The loss guard (:data:`BLOWUP`): stop, without saving, once the recent mean loss is far past the start
        (of the run, or of its last --resume that changed the learning rate: that one starts where the kept
        checkpoint's loss is)."""
        if self._first_loss is None:  # found once (AMP's skipped steps overflowed: not a start)
            since = self.changes[-1]["step"] if self.changes else 0
            self._first_loss = next((h["loss"] for h in self.history if h["step"] > since and not h.get("skipped")),
                                    None)
        first = self._first_loss
        recent = [h["loss"] for h in self.history[-BLOWUP_WINDOW:] if not h.get("skipped")]
        if first and first > 0 and recent and sum(recent) / len(recent) > BLOWUP * first:
            raise TrainingDiverged(
                f"loss is {loss:.4g} at step {self.step} (learning rate {lr:.3g}), over {BLOWUP:g}x its first value "
                f"{first:.4g} for the last {len(recent)} steps: the run diverged; stopped without saving: "
                f"{self._kept()}")

    def fit(self, train_ds, val_ds=None, until: int | None = None, progress=None) -> dict:
        """Train up to step ``until`` (default: cfg.steps), cycling the dataset; returns the last metrics.

        The loop is :func:`run_steps` (signals, checkpoint cadence, progress); this trainer's step is
        :meth:`advance`: one batch, the compiled step, the record, the NaN and blow-up guards, validation every
        ``eval_every`` steps. ``progress(step, **shown)``: called after each step (a ``common.step_bar``)."""
        until = self.cfg.steps if until is None else min(until, self.cfg.steps)
        self.model.set_train(True)
        self._feed, self._val_ds, self._last = self._batches(train_ds), val_ds, {}
        self._t0, self._tokens = time.perf_counter(), 0
        self._scale_before = float(self.scaler.scale_value.asnumpy()) if self.scaler is not None else 1.0
        run_steps(self, until, progress)
        last = self._last
        last["tokens_per_s"] = self._tokens / max(time.perf_counter() - self._t0, 1e-9)
        return last

    @property
    def ckpt_every(self) -> int:
        return self.cfg.ckpt_every

    def _batches(self, train_ds):
        """The dataset's batches, epoch after epoch, from where the run stands (a resumed run continues
        mid-epoch where it stopped)."""
        skip = self.step % train_ds.get_dataset_size()
        while True:
            for i, batch in enumerate(train_ds.create_tuple_iterator(num_epochs=1)):
                if i >= skip:
                    yield batch
            skip = 0

    def advance(self, stop) -> dict:
        """One training step (see :meth:`fit`); returns what the progress bar shows."""
        batch = next(self._feed)
        self.shapes_seen.add(tuple(batch[0].shape))
        loss, finite = self._train_step(*batch)
        stop.rearm()  # the compiled step installed MindSpore's SIGINT handler again
        loss, finite = float(loss.asnumpy()), bool(finite.asnumpy())
        lr = float(self.lrs[self.step])
        record = {"step": self.step + 1, "loss": loss, "lr": lr}
        if self.scaler is not None:
            record["loss_scale"] = self._scale_before
            self._scale_before = float(self.scaler.scale_value.asnumpy())
            if not finite:
                self._overflow(loss, lr, record["loss_scale"])
                record["skipped"] = True
        elif not finite:
            raise TrainingDiverged(
                f"loss is {loss} at step {self.step} (learning rate {lr:.3g}); stopped without saving: "
                f"{self._kept()}")
        self.step += 1
        self._tokens += int(np.prod(batch[0].shape))
        self.history.append(record)
        self._check_blowup(loss, lr)
        if self._val_ds is not None and (self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps):
            self._last = self.evaluate(self._val_ds)
            self.history[-1].update(self._last)
        tps = self._tokens / (time.perf_counter() - self._t0)
        return {"loss": f"{loss:.3f}", "lr": f"{lr:.2e}", "tok_s": f"{tps:.0f}"}


def save_job(job, extra: dict | None = None) -> None:
    """A job's checkpoint of its current step: ``job.model``, ``job.optimizer``, ``job.extra_cells`` (file name ->
    cell, e.g. PPO's value head) and ``train_state.json`` = ``job.state()`` plus ``extra``, written through the
    run folder's commit protocol (:func:`ms_gpt.run_folder.checkpoint.save_train_state`). Weights that are not
    finite are not saved: :class:`TrainingDiverged`, naming the checkpoint the folder keeps."""
    try:
        checkpoint.save_train_state(job.out, job.model, job.optimizer, {**job.state(), **(extra or {})},
                                    kind=job.checkpoint_kind, extra=job.extra_cells)
    except checkpoint.NonFiniteWeights as exc:
        raise TrainingDiverged(f"{exc}: {checkpoint.kept_checkpoint(job.out, job.resumable)}") from None


def resume_job(job) -> int:
    """Continue a job from its run folder: a save that a kill interrupted after its commit is finished first,
    ``job.check_resume(saved_state)`` may refuse before any weights are read, the model, the optimizer and the
    extra cells are loaded, and ``job.restore(state)`` puts the job's own state back. Returns the step."""
    checkpoint.recover(job.out)
    state_file = job.out / checkpoint.TRAIN_STATE
    if state_file.is_file():
        job.check_resume(checkpoint.read_json(state_file))
    job.restore(checkpoint.load_train_state(job.out, job.model, job.optimizer, extra=job.extra_cells))
    return job.step


def run_steps(job, until: int, progress=None) -> None:
    """The one training loop, which knows nothing of the model: every job (language model, classifier, reward
    model, PPO) plugs in its step. ``job`` has ``step`` (steps done), ``advance(stop) -> dict`` (one step: it
    moves ``step`` on and returns what the progress bar shows), ``save(extra=None)`` (a checkpoint of that
    step, normally :func:`save_job`), ``ckpt_every``, ``out`` and ``resumable``; :func:`save_job` and
    :func:`resume_job` read ``model``, ``optimizer``, ``extra_cells``, ``checkpoint_kind``, ``state()``,
    ``check_resume(saved)`` and ``restore(state)``.

    Runs ``advance`` until step ``until``, reports each step to ``progress(step, **shown)``, saves every
    ``ckpt_every`` steps and at ``until``. SIGINT (Ctrl-C) or SIGTERM: the step under way finishes, a checkpoint
    is saved, then :class:`~ms_gpt.run_folder.interrupt.Interrupted` is raised (a second signal exits at once). A
    ``KeyboardInterrupt`` raised inside the loop (no handler installed: not the main thread) also saves."""
    with interrupt.StopRequests() as stop:
        try:
            while job.step < until:
                shown = job.advance(stop)
                if progress is not None:
                    progress(job.step, **shown)
                if stop.signum is not None:
                    job.save({"interrupted": signal.Signals(stop.signum).name})
                    raise interrupt.Interrupted(stop.signum, job.step, job.out, job.resumable)
                if job.step % job.ckpt_every == 0 or job.step == until:
                    job.save()
        except KeyboardInterrupt:
            job.save({"interrupted": "KeyboardInterrupt"})
            raise
