"""Gaps in mindnlp 0.5.1's ``mindtorch`` that stop the Hugging Face Trainer on CPU and GPU, and the
import order mindnlp needs.

Under mindnlp 0.5.x, ``import torch`` resolves to mindnlp's bundled ``mindtorch``. Two of its
CPU/GPU kernels are missing or incomplete in 0.5.1:

* ``addcdiv`` has no CPU/GPU implementation, so ``torch.optim.AdamW.step()`` fails with
  ``No implementation for function: addcdiv on cpu``. MindSpore's own CPU ``Addcdiv`` kernel returns
  nan/inf for Adam's ``eps=1e-8``, so it is built here from ``div`` + ``add`` instead.
* ``linalg_vector_norm`` forwards ``dim=None`` to ``LpNorm``, so gradient clipping
  (``clip_grad_norm_``) fails with ``the type of 'axis' should be one of int, tuple, list, but got
  NoneType``. The patch reduces over every axis when ``dim`` is None.
* ``torch.optim.Optimizer.zero_grad()`` enters ``torch.autograd.profiler.record_function``, but
  mindtorch has no ``autograd.profiler`` (``module 'mindtorch.autograd' has no attribute
  'profiler'``): any hand-written loop that calls ``optimizer.zero_grad()`` fails. The patch points
  it at mindtorch's own ``profiler`` module, whose ``record_function`` is a no-op context manager.
* ``dropout`` on CPU/GPU ignores the seed and offset that ``torch.nn.functional.dropout`` takes from
  the seeded generator (it builds MindSpore's ``Dropout`` with seeds 0, 0, i.e. fresh entropy), so
  two runs with the same ``torch.manual_seed`` train differently. The patch draws the keep mask from
  NumPy's generator keyed by that (seed, offset), so runs repeat exactly.

* ``safetensors.safe_open`` is replaced by mindnlp's ``fast_safe_open``, which takes no ``backend``
  argument (nor ``get_tensors()``), but safetensors 0.8's ``safetensors.torch.load_file`` uses both: the Trainer's
  ``load_best_model_at_end`` fails with ``fast_safe_open.__init__() got an unexpected keyword argument
  'backend'``. The patch accepts and ignores it (the file is read the same way either way).
* ``mindtorch.serialization`` has no ``safe_globals`` (PyTorch 2.6+), which the Trainer enters to read
  ``rng_state.pth`` when it resumes from a checkpoint (``module 'mindtorch.serialization' has no
  attribute 'safe_globals'``). mindtorch's ``load`` does not restrict unpickling, so the patch is a
  context manager that allows what it is given and changes nothing else.

Each patch is applied only where the gap is really there (probed, not assumed), and applying twice
changes nothing. Call :func:`import_mindnlp` instead of ``import mindnlp``.
"""

from __future__ import annotations

import importlib
import math
import sys
from types import ModuleType

from ms_gpt.errors import MsGptError

_PATCH_MARK = "_ms_gpt_patched"
# mindtorch's per-device API modules that run on MindSpore's CPU/GPU kernels (npu has its own ops).
_API_MODULES = ("mindtorch._apis.cpu", "mindtorch._apis.gpu")


class ImportOrderError(MsGptError, RuntimeError):
    """Real PyTorch was imported before mindnlp, so ``transformers`` is bound to the wrong torch."""


def is_real_torch(module: ModuleType | None) -> bool:
    """True when ``module`` is PyTorch itself, not mindnlp's ``mindtorch`` standing in for it."""
    if module is None:
        return False
    name = getattr(module, "__name__", "")
    path = str(getattr(module, "__file__", "") or "")
    return name == "torch" and "mindtorch" not in path


def check_import_order(modules: dict | None = None) -> None:
    """Raise :class:`ImportOrderError` when real torch is loaded and mindnlp is not yet."""
    modules = sys.modules if modules is None else modules
    if "mindnlp" in modules:
        return
    if is_real_torch(modules.get("torch")):
        raise ImportOrderError(
            "real PyTorch (torch from %s) was imported before mindnlp; mindnlp 0.5.x maps "
            "`import torch` to its bundled mindtorch and transformers then fails (e.g. in "
            "flex_attention). Fix: `import mindnlp` (or call ms_gpt.environment.compat.import_mindnlp()) before "
            "anything imports torch, or run the PyTorch part in a separate process."
            % getattr(modules["torch"], "__file__", "?")
        )


def import_mindnlp() -> ModuleType:
    """Import mindnlp in the right order and apply the mindtorch patches. Returns the module."""
    check_import_order()
    mindnlp = importlib.import_module("mindnlp")
    apply_mindtorch_patches()
    return mindnlp


def _addcdiv(api: ModuleType):
    def addcdiv(input, tensor1, tensor2, value=1):
        # input + value * tensor1 / tensor2, from kernels that are exact for tiny denominators.
        return api.add(input, api.div(tensor1, tensor2), alpha=value)

    setattr(addcdiv, _PATCH_MARK, True)
    return addcdiv


def _vector_norm(api: ModuleType, original):
    def linalg_vector_norm(x, ord=2, dim=None, keepdim=False, dtype=None):
        if dim is None:
            if x.ndim == 0:
                x = api.reshape(x, (1,))
            dim = tuple(range(x.ndim))
        if math.isinf(float(ord)):
            # LpNorm takes an integer p; the inf-norm is the largest magnitude.
            return api.reduce_max(api.abs(x), dim, keepdim)
        return original(x, ord, dim, keepdim, dtype)

    setattr(linalg_vector_norm, _PATCH_MARK, True)
    setattr(linalg_vector_norm, "__wrapped__", original)
    return linalg_vector_norm


def _dropout(api: ModuleType):
    import mindspore
    import numpy as np

    def dropout(input, p, seed, offset):
        # Same contract as mindtorch's kernel: (output, mask), output = input * mask / (1 - p).
        key = [int(np.asarray(seed.asnumpy() if hasattr(seed, "asnumpy") else seed).reshape(-1)[0]),
               int(np.asarray(offset.asnumpy() if hasattr(offset, "asnumpy") else offset).reshape(-1)[0])]
        keep = np.random.default_rng([abs(k) for k in key]).random(tuple(input.shape)) >= p
        mask = mindspore.Tensor(keep.astype(np.float32)).astype(input.dtype)
        return api.mul(input, api.mul(mask, 1.0 / (1.0 - p))), mask

    setattr(dropout, _PATCH_MARK, True)
    return dropout


def _dropout_needs_patch(api: ModuleType) -> bool:
    """True when two calls with the same seed and offset give different masks."""
    fn = getattr(api, "dropout", None)
    if fn is None or getattr(fn, _PATCH_MARK, False):
        return False
    import mindspore

    x = mindspore.ops.ones((64,), mindspore.float32)
    seed, offset = mindspore.Tensor([7], mindspore.int64), mindspore.Tensor([0], mindspore.int64)
    try:
        a = fn(x, 0.5, seed, offset)[0].asnumpy()
        b = fn(x, 0.5, seed, offset)[0].asnumpy()
    except Exception:
        return False  # not callable this way on this backend: leave it alone
    return bool((a != b).any())


def _vector_norm_needs_patch(api: ModuleType) -> bool:
    fn = getattr(api, "linalg_vector_norm", None)
    if fn is None or getattr(fn, _PATCH_MARK, False):
        return False
    import mindspore

    probe = mindspore.Tensor([[3.0, 0.0], [0.0, 4.0]], mindspore.float32)
    try:
        fn(probe, 2, None, False, None)
    except (TypeError, ValueError, RuntimeError):
        return True
    return False


def apply_mindtorch_patches() -> list[str]:
    """Fill the mindtorch gaps listed in the module docstring. Returns what was patched this call."""
    patched = []
    for name in _API_MODULES:
        try:
            api = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(api, "addcdiv", None) is None:
            api.addcdiv = _addcdiv(api)
            patched.append(f"{name}.addcdiv")
        if _vector_norm_needs_patch(api):
            api.linalg_vector_norm = _vector_norm(api, api.linalg_vector_norm)
            patched.append(f"{name}.linalg_vector_norm")
        if name.endswith(".cpu") and _dropout_needs_patch(api):
            api.dropout = _dropout(api)
            patched.append(f"{name}.dropout")
    try:
        autograd = importlib.import_module("mindtorch.autograd")
        profiler = importlib.import_module("mindtorch.profiler")
    except ImportError:
        return patched
    patched += _patch_safe_open()
    serialization = importlib.import_module("mindtorch.serialization")
    if not hasattr(serialization, "safe_globals"):
        serialization.safe_globals = _safe_globals
        patched.append("mindtorch.serialization.safe_globals")
    if not hasattr(autograd, "profiler") and hasattr(profiler, "record_function"):
        autograd.profiler = profiler
        sys.modules.setdefault("mindtorch.autograd.profiler", profiler)
        patched.append("mindtorch.autograd.profiler")
    return patched


class _safe_globals:
    """``torch.serialization.safe_globals(allowlist)`` for a ``load`` that already unpickles freely."""

    def __init__(self, allowlist=()):
        self.allowlist = list(allowlist)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _safe_open_needs_patch(opener) -> bool:
    import inspect

    if opener is None or getattr(opener, _PATCH_MARK, False) or not isinstance(opener, type):
        return False
    try:
        params = inspect.signature(opener.__init__).parameters
    except (TypeError, ValueError):
        return False
    return "backend" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values())


def _patch_safe_open() -> list[str]:
    """Let mindnlp's ``fast_safe_open`` take the ``backend=`` keyword safetensors 0.8 passes."""
    try:
        safetensors = importlib.import_module("safetensors")
        st_torch = importlib.import_module("safetensors.torch")
    except ImportError:
        return []
    patched = []
    for module in (safetensors, st_torch):
        opener = getattr(module, "safe_open", None)
        if not _safe_open_needs_patch(opener):
            continue

        class SafeOpen(opener):
            def __init__(self, filename, framework=None, device="cpu", backend=None):
                super().__init__(filename, framework=framework, device=device)

            if not hasattr(opener, "get_tensors"):
                def get_tensors(self):
                    return {name: self.get_tensor(name) for name in self.keys()}

        SafeOpen.__name__ = SafeOpen.__qualname__ = opener.__name__
        setattr(SafeOpen, _PATCH_MARK, True)
        module.safe_open = SafeOpen
        patched.append(f"{module.__name__}.safe_open")
    return patched
