"""Which device to run on, and how: MindSpore context, seeds and the static-shape policy.

Resolution order for the target: the explicit argument (``--device``) > the ``MS_GPT_DEVICE``
environment variable > auto-detection (Ascend, then GPU, then CPU).

The static-shape policy says whether data must come in a few fixed shapes (pad to a fixed length or
to length buckets) instead of per-batch dynamic padding. It is on for Ascend, whose graph compiler
rejects or recompiles dynamic shapes, and off elsewhere; ``static_shapes=True`` (or
``MS_GPT_STATIC_SHAPES=1``) forces it on anywhere, which is how the tests run the Ascend data path
on CPU.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ms_gpt.errors import MsGptError

TARGETS = ("Ascend", "GPU", "CPU")
# jit: PyNative context, train/eval/decode steps compiled with mindspore.jit (the default);
# pynative: nothing compiled (for debugging, step by step); graph: the whole context in GRAPH_MODE.
MODES = ("jit", "pynative", "graph")
ENV_DEVICE = "MS_GPT_DEVICE"
ENV_STATIC = "MS_GPT_STATIC_SHAPES"

_ALIASES = {
    "ascend": "Ascend",
    "npu": "Ascend",
    "gpu": "GPU",
    "cuda": "GPU",
    "cpu": "CPU",
}

# What to check when a target is requested but not usable, per target.
_HINTS = {
    "Ascend": (
        "check that the CANN toolkit is installed (e.g. /usr/local/Ascend/ascend-toolkit) and that "
        "`source /usr/local/Ascend/ascend-toolkit/set_env.sh` ran in this shell, that the NPU driver "
        "answers `npu-smi info`, and that mindspore is the aarch64 wheel from requirements-ascend.txt"
    ),
    "GPU": (
        "the x86_64 mindspore 2.7.0 wheel has GPU plugins for CUDA 11.1 and 11.6 with cuDNN 8 only: "
        "check `nvidia-smi`, that libcudart.so.11.x and libcudnn.so.8 are on LD_LIBRARY_PATH, and "
        "that CUDA_HOME points to a CUDA 11.6 (or 11.1) install"
    ),
    "CPU": "the CPU backend ships in every mindspore wheel; reinstall mindspore==2.7.0",
}


class DeviceError(MsGptError, ValueError):
    """An unknown or unusable device was asked for."""


@dataclass(frozen=True)
class DeviceSettings:
    """What :func:`setup` applied."""

    target: str
    mode: str
    static_shapes: bool
    seed: int
    source: str  # where the target came from: "argument", "MS_GPT_DEVICE" or "auto"

    @property
    def compiled(self) -> bool:
        """Whether training and evaluation steps run as compiled graphs (``mindspore.jit``)."""
        return self.mode != "pynative"


def normalize_target(name: str) -> str:
    """Map a user spelling (``ascend``, ``NPU``, ``cuda``, ``cpu``…) to MindSpore's target name."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise DeviceError(
            f"unknown device {name!r}; accepted: Ascend (or npu), GPU (or cuda), CPU (case-insensitive)"
        )
    return _ALIASES[key]


def _plugin_error() -> str:
    try:
        from mindspore._c_expression import MSContext

        return MSContext.get_instance().load_plugin_error() or ""
    except Exception:  # pragma: no cover - private API moved
        return ""


def available_targets() -> list[str]:
    """Targets this mindspore build can use here, in preference order (CPU is always last)."""
    from mindspore._c_expression import MSContext

    ctx = MSContext.get_instance()
    found = [t for t in ("Ascend", "GPU") if ctx.is_pkg_support_device(t)]
    return found + ["CPU"]


def resolve_target(
    requested: str | None = None,
    env: Mapping[str, str] | None = None,
    available: Sequence[str] | Callable[[], Sequence[str]] | None = None,
) -> tuple[str, str]:
    """Return ``(target, source)``. ``available`` may be a list or a callable (for tests)."""
    env = os.environ if env is None else env
    if callable(available):
        available = available()
    elif available is None:
        available = available_targets()
    available = list(available)

    if requested not in (None, "", "auto"):
        target, source = normalize_target(requested), "argument"
    elif env.get(ENV_DEVICE, "").strip() not in ("", "auto"):
        target, source = normalize_target(env[ENV_DEVICE]), ENV_DEVICE
    else:
        return next(t for t in TARGETS if t in available), "auto"

    if target not in available:
        where = "--device" if source == "argument" else f"${ENV_DEVICE}"
        detail = _plugin_error().strip().splitlines()
        reason = f" (mindspore: {detail[0]})" if detail and target != "CPU" else ""
        raise DeviceError(
            f"device {target!r} was requested via {where} but is not available here{reason}; "
            f"available: {', '.join(available)}. To use {target}: {_HINTS[target]}."
        )
    return target, source


def static_shapes_policy(target: str, force: bool | None = None, env: Mapping[str, str] | None = None) -> bool:
    """On for Ascend; ``force`` (or ``MS_GPT_STATIC_SHAPES``) overrides in either direction."""
    if force is not None:
        return bool(force)
    env = os.environ if env is None else env
    raw = env.get(ENV_STATIC, "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    if raw:
        raise DeviceError(f"{ENV_STATIC}={raw!r} is not understood; use 1/0, true/false, yes/no or on/off")
    return target == "Ascend"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and MindSpore (parameter init, dropout, dataset shuffles)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DeviceError(f"seed must be a non-negative integer, got {seed!r}")
    import mindspore
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    mindspore.set_seed(seed)
    mindspore.dataset.config.set_seed(seed)


def leave_graph_mode() -> None:
    """Back to PyNative when MindSpore is in graph mode. The mode is process-wide, and under graph mode a direct
    Python call of a cell whose output holds ``None`` fails on the CPU kernels, so a job that ran in graph mode
    hands the process back op by op (a later job, the Python API and a notebook's cells call cells directly)."""
    import mindspore

    if mindspore.get_context("mode") != mindspore.PYNATIVE_MODE:
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)


def setup(
    device: str | None = None,
    mode: str = "jit",
    seed: int = 0,
    static_shapes: bool | None = None,
) -> DeviceSettings:
    """Resolve the target, set MindSpore's context and seeds, and decide the static-shape policy."""
    if mode not in MODES:
        raise DeviceError(f"unknown execution mode {mode!r}; accepted: {', '.join(MODES)}")
    target, source = resolve_target(device)
    import mindspore

    try:
        mindspore.set_device(target)
    except RuntimeError as exc:
        # The runtime started (a kernel ran, e.g. during `import mindnlp`): its device is fixed now.
        current = mindspore.get_context("device_target")
        if current != target:
            raise DeviceError(
                f"MindSpore already runs on {current} in this process, so {target!r} cannot be selected "
                f"({exc}); call ms_gpt.environment.device.setup() before anything runs a kernel, or start a new process"
            ) from exc
    mindspore.set_context(mode=mindspore.GRAPH_MODE if mode == "graph" else mindspore.PYNATIVE_MODE)
    if target == "CPU" and mode != "graph":
        # PyNative's asynchronous launch costs ~4 ms per op on a small CPU; blocking launch was
        # 5x faster for the smoke run's Trainer steps here (1.15 s -> 0.2 s per step).
        mindspore.runtime.launch_blocking()
    seed_everything(seed)
    from ms_gpt import backend

    backend.choose(target)  # the kernels' backend models take by default (MS_GPT_CPU_KERNELS; may build them)
    return DeviceSettings(
        target=target,
        mode=mode,
        static_shapes=static_shapes_policy(target, static_shapes),
        seed=seed,
        source=source,
    )
