"""Optional CPU kernels (``cpu_kernels.cc``) run as MindSpore ``Custom`` "aot" operators.

On CPU, MindSpore's own kernels were the bottleneck of a small GPT's train step (profiled in the
README): its GEMM reaches well under OpenBLAS's rate on this machine, each small elementwise kernel
costs 0.1-0.5 ms, and the optimizer step ran as ~8 kernels per parameter. ``cpu_kernels.cc`` holds,
each with its backward (the primitives are in :mod:`ms_gpt.kernels.custom`):
- ``LinearForward`` / ``MatMulNT``: y = x W^T (+ b) through OpenBLAS's sgemm (the ``scipy-openblas32``
  wheel), the bias and its gradient fused;
- ``AttentionForward``: masked multi-head self-attention of a training step (projections, softmax,
  attention dropout) as one kernel;
- ``LayerNormForward``, ``GeluForward`` (exact), ``CrossEntropyForward`` (the LM loss);
- ``AdamWClipStep``: global-norm clipping plus AdamW over every parameter, in place, as one kernel.

The library is compiled once per machine (g++, about a second) into ``$XDG_CACHE_HOME/ms_gpt/kernels``
(default ``~/.cache``). ``MS_GPT_CPU_KERNELS`` chooses: ``auto`` (the default: used when the target
is CPU and the library builds), ``on`` (required: an error says why it cannot be used), ``off``
(MindSpore's native kernels everywhere). Ascend and GPU always use MindSpore's native kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ms_gpt.errors import MsGptError

ENV = "MS_GPT_CPU_KERNELS"
CHOICES = ("auto", "on", "off")
SOURCE = Path(__file__).with_name("cpu_kernels.cc")


class KernelUnavailable(MsGptError, RuntimeError):
    """The CPU kernels were required (``MS_GPT_CPU_KERNELS=on``) but cannot be built or loaded."""


def choice(env=None) -> str:
    env = os.environ if env is None else env
    raw = env.get(ENV, "auto").strip().lower() or "auto"
    if raw not in CHOICES:
        raise ValueError(f"{ENV}={raw!r} is not understood; use one of {', '.join(CHOICES)}")
    return raw


def _openblas():
    """(include dir, lib dir, library file) of the scipy-openblas32 wheel."""
    try:
        import scipy_openblas32 as ob
    except ImportError as exc:
        raise KernelUnavailable("the scipy-openblas32 package is not installed (pip install "
                                "scipy-openblas32; it is in the project's lock)") from exc
    lib_dir = Path(ob.get_lib_dir())
    return Path(ob.get_include_dir()), lib_dir, lib_dir / ob.get_library(fullname=True)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ms_gpt" / "kernels"


@lru_cache(maxsize=None)
def build() -> Path:
    """Compile ``cpu_kernels.cc`` (once per source, compiler and OpenBLAS; cached) and return the .so."""
    include, lib_dir, lib_file = _openblas()
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise KernelUnavailable("no C++ compiler (g++) found to build the CPU kernels; install g++ or set "
                                f"{ENV}=off")
    cmd = [compiler, "-O3", "-march=x86-64-v2", "-shared", "-fPIC", f"-I{include}",
           "-o", "{out}", str(SOURCE), f"-L{lib_dir}", f"-l:{lib_file.name}", f"-Wl,-rpath,{lib_dir}"]
    key = hashlib.sha256("\n".join([SOURCE.read_text(), *cmd]).encode()).hexdigest()[:16]
    target = cache_dir() / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([tmp if c == "{out}" else c for c in cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelUnavailable(f"compiling {SOURCE.name} failed: {proc.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent build or a crash never leaves a half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@lru_cache(maxsize=None)
def library() -> str:
    """Path of the built library, loaded once; its kernels split large products over this process's
    CPUs (``MS_GPT_KERNEL_THREADS`` overrides) with OpenBLAS itself kept at one thread: OpenBLAS's
    worker threads busy-wait between calls and took the CPU from MindSpore's own kernels (a small GPT's
    step was 1.5-1.75x slower with OpenBLAS at 2 threads than at 1 on this 2-core machine)."""
    path = build()
    _, _, lib_file = _openblas()
    ctypes.CDLL(str(lib_file)).scipy_openblas_set_num_threads(1)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    raw = os.environ.get("MS_GPT_KERNEL_THREADS", str(threads))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"MS_GPT_KERNEL_THREADS={raw!r} must be a positive integer")
    ctypes.CDLL(str(path)).SetThreads(int(raw))  # loading fails here, with the loader's message, not in a graph
    return str(path)


def enabled(target: str | None = None) -> bool:
    """Whether the CPU kernels are used in this process (see the module docstring)."""
    mode = choice()
    if mode == "off":
        return False
    if target is None:
        import mindspore

        target = mindspore.get_context("device_target")
    if target != "CPU":
        if mode == "on":
            raise KernelUnavailable(f"{ENV}=on, but the CPU kernels run on CPU only (the target is {target})")
        return False
    try:
        library()
    except (KernelUnavailable, OSError) as exc:
        if mode == "on":
            raise KernelUnavailable(f"{ENV}=on, but {exc}") from exc
        return False
    return True


def describe() -> str:
    """One line for ``ms-gpt doctor``: whether the kernels build here (mindspore not needed)."""
    try:
        mode = choice()
    except ValueError as exc:
        return f"error: {exc}"
    if mode == "off":
        return f"off ({ENV}=off: MindSpore's native kernels)"
    try:
        return f"{mode}: built ({build()}); used when the target is CPU"
    except (KernelUnavailable, OSError) as exc:
        return f"{mode}: unavailable, MindSpore's native kernels are used ({exc})"


def status() -> dict:
    """For ``doctor`` and the benchmarks: whether the kernels are used here, and if not why."""
    try:
        used = enabled()
        return {"cpu_kernels": used, "choice": choice(), "library": library() if used else None}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"cpu_kernels": False, "choice": os.environ.get(ENV, "auto"), "error": str(exc)}
