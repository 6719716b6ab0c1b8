"""Data parallelism on MindSpore's own engine: ``msrun`` starts the workers, ``mindspore.communication``
connects them (HCCL on Ascend, NCCL on GPU, MCCL on CPU), and each worker trains on its shard of every
global batch with gradients averaged by an AllReduce (``nn.DistributedGradReducer``).

Launch through ``scripts/run_distributed.sh`` (a wrapper around ``msrun``), which sets the variables
``init()`` reads (``MS_WORKER_NUM``, ``MS_SCHED_HOST``, ``MS_SCHED_PORT``, ``MS_ROLE`` ...).

``MS_GPT_FAULT_INJECT="rank=R,step=S"`` makes worker R raise at step S: the launcher's crash
handling is tested with it, and it is there for anyone who wants to check theirs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ms_gpt.errors import MsGptError


class DistributedError(MsGptError, RuntimeError):
    """The distributed runtime could not start (not launched by msrun, or communication failed)."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    size: int = 1

    @property
    def is_writer(self) -> bool:
        """Only rank 0 writes checkpoints, metrics and plots."""
        return self.rank == 0


def launched_by_msrun(env=None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("MS_WORKER_NUM")) and bool(env.get("MS_SCHED_HOST") or env.get("MS_ROLE"))


def init_data_parallel() -> DistInfo:
    """``mindspore.communication.init()`` + data-parallel context with gradient averaging."""
    import mindspore
    from mindspore.communication import get_group_size, get_rank, init

    if not launched_by_msrun():
        raise DistributedError("--distributed needs the workers msrun starts: launch with "
                               "scripts/run_distributed.sh --workers N -- PRETRAIN_ARGS (or msrun ... ms_gpt/__main__.py "
                               "pretrain --distributed ARGS)")
    try:
        init()
    except Exception as exc:  # the cause is in MindSpore's message (ports, peers, backend)
        raise DistributedError(f"mindspore.communication.init() failed: {exc}") from exc
    info = DistInfo(rank=get_rank(), size=get_group_size())
    mindspore.set_auto_parallel_context(parallel_mode=mindspore.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                        device_num=info.size)
    return info


def grad_reducer(parameters, info: DistInfo):
    """Averages gradients across the workers (None for one process)."""
    if info.size == 1:
        return None
    from mindspore import nn

    return nn.DistributedGradReducer(parameters, mean=True, degree=info.size)


def loss_mean(info: DistInfo):
    """A function averaging a scalar over the workers (identity for one process): the logged loss is the
    global batch's, as one process with the whole batch would report it."""
    if info.size == 1:
        return None
    from mindspore import ops

    all_reduce = ops.AllReduce()
    size = float(info.size)

    def mean(x):
        return all_reduce(x) / size

    return mean


def with_fault_injection(progress, info: DistInfo, env=None):
    """``progress`` (a ``Trainer.fit`` callback, or None) that also raises on rank R after step S when
    ``MS_GPT_FAULT_INJECT="rank=R,step=S"`` is set; ``progress`` itself when it is not."""
    fault = fault_injection(env)
    if fault is None or fault[0] != info.rank:
        return progress

    def report(step, **shown):
        if progress is not None:
            progress(step, **shown)
        if step == fault[1]:
            raise RuntimeError(f"fault injected (MS_GPT_FAULT_INJECT) on rank {info.rank} at step {step}")

    return report


def fault_injection(env=None) -> tuple[int, int] | None:
    """``(rank, step)`` from ``MS_GPT_FAULT_INJECT="rank=R,step=S"``, or None."""
    env = os.environ if env is None else env
    spec = env.get("MS_GPT_FAULT_INJECT", "").strip()
    if not spec:
        return None
    try:
        parts = dict(p.split("=", 1) for p in spec.split(","))
        return int(parts["rank"]), int(parts["step"])
    except (ValueError, KeyError):
        raise ValueError(f"MS_GPT_FAULT_INJECT must look like 'rank=1,step=2', got {spec!r}") from None
