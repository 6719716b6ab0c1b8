"""The one seam for kernels: the functions the model, the optimizer and the trainer compute with.

A backend makes seven kinds of cells, each a function of tensors only (weights come in as arguments):

- ``linear(bias, compute_dtype)``: ``(x [m, k], w [n, k], b [n] or None) -> x w^T + b [m, n]``
- ``layer_norm(eps)``: ``(x [m, d], w [d], b [d]) -> y [m, d]`` (float32)
- ``gelu(approximate)``: elementwise GELU (exact, or the tanh approximation)
- ``attention(n_head, compute_dtype)``: multi-head attention from the inputs to the heads' merged context,
  cached and uncached alike (see :class:`Attention`)
- ``lm_loss()``: ``(logits [..., v], labels [...]) -> mean cross-entropy`` over labels that are not ``IGNORE``
- ``adamw_step(...)``: clip by the global norm, then AdamW, in place (see :class:`AdamWStep`)
- ``decode_layer(config)``: a whole decoder layer of one cached step (decoding, or a chunk of a prompt), the cache
  written in place; or None where the backend has no such cell (decoding then runs the layers' own cells)

Two backends exist. ``mindspore`` is MindSpore's own ops: the readable default, and what Ascend and GPU
run. ``cpu-kernels`` is the C++ CPU kernels of :mod:`ms_gpt.kernels` (OpenBLAS GEMMs, one kernel for a
whole training attention, one for the whole optimizer step, one for a decoder layer of a decoding step) behind the
same signatures; where a kernel has no case (float16 compute, a prompt's cached attention) it uses the MindSpore
cells itself.

The choice is made once per model, like Hugging Face's ``config._attn_implementation``: ``GPT(config,
backend=NAME)`` records it as ``model.backend``, and the model's layers, its optimizer and its loss use that
one. Without a name a model takes the process's default, which is ``mindspore`` until
:func:`ms_gpt.environment.device.setup` calls :func:`choose` (``MS_GPT_CPU_KERNELS=auto|on|off``; ``auto`` picks the CPU
kernels when the target is CPU and they build). So building a model never starts a compiler.
"""

from __future__ import annotations

import math

import mindspore
from mindspore import nn, ops

from ms_gpt.config import IGNORE

NAMES = ("mindspore", "cpu-kernels")
DTYPES = {"float32": mindspore.float32, "float16": mindspore.float16, "bfloat16": mindspore.bfloat16}
# Added to masked attention scores. Large enough that exp() underflows to exactly 0 in float32,
# small enough not to overflow float16/bfloat16 after the fp32 softmax cast.
MASK_VALUE = -1e9


# --- MindSpore ops: the readable default ---------------------------------------------------------------

class Linear(nn.Cell):
    """y = x W^T (+ b): a 2-D GEMM with W transposed inside the kernel (on CPU about 3.5x faster than
    ``ops.matmul`` of a [b, l, d] tensor with W.T), in ``compute_dtype``."""

    def __init__(self, compute_dtype: str = "float32"):
        super().__init__()
        self.compute_dtype = DTYPES[compute_dtype]
        self.matmul_t = ops.MatMul(transpose_b=True)

    def construct(self, x, w, b=None):
        cd = self.compute_dtype
        y = self.matmul_t(x.astype(cd), w.astype(cd))
        if b is not None:
            y = y + b.astype(cd)
        return y


class LayerNorm(nn.Cell):
    def __init__(self, eps: float):
        super().__init__()
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)

    def construct(self, x, w, b):
        return self.norm(x, w, b)[0]


_BMM_T = ops.BatchMatMul(transpose_b=True)  # q k^T without materialising k^T; made once, not per call


def scaled_dot_product_attention(q, k, v, attn_mask, keep=None, compute_dtype=mindspore.float32):
    """softmax(q k^T / sqrt(d_k) + mask) v with the softmax in float32; q [b, h, l_q, d_k], k and v
    [b, h, l_k, d_k], ``attn_mask`` [b, 1 or h, l_q, l_k] bool (True = may not attend), ``keep``: the
    attention dropout's multipliers [b, h, l_q, l_k] or None. Returns (context [b, h, l_q, d_k], weights)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = _BMM_T(q.astype(compute_dtype), k.astype(compute_dtype))
    scores = ops.masked_fill(scores.astype(mindspore.float32) * scale, attn_mask, MASK_VALUE)
    weights = ops.softmax(scores, axis=-1)
    dropped = weights if keep is None else weights * keep
    context = ops.matmul(dropped.astype(compute_dtype), v.astype(compute_dtype))
    return context.astype(q.dtype), weights


def write_slots(buffer, new, place):
    """``buffer`` [b, h, T, d_k] with ``new`` [b, h, n, d_k] written at the slots ``place`` marks.

    ``place`` [T, n] bool has one True per column: new position i goes to the slot where column i is
    True. One new position (decoding) is a broadcast select; several (a prompt) place them with a
    one-hot [T, n] x [n, d_k] product. Shapes never change, so one compiled graph serves every step.
    """
    written = place.any(axis=1).reshape(1, 1, -1, 1)  # [1, 1, T, 1]
    if new.shape[2] == 1:
        return ops.where(written, new, buffer)  # new broadcasts along T
    placed = ops.matmul(place.astype(new.dtype), new)  # [T, n] @ [b, h, n, d_k] -> [b, h, T, d_k]
    return ops.where(written, placed, buffer)


class Attention(nn.Cell):
    """Multi-head attention up to the output projection, in MindSpore ops.

    ``construct(Q, K, V, wq, bq, wk, bk, wv, bv, attn_mask, keep, kv_cache, place, self_attention)``:
    Q, K, V [b, l, d] are projected to h heads; ``attn_mask`` [b, l_q, l_k] bool; ``keep`` the attention
    dropout's multipliers or None. With ``kv_cache = (k_buf, v_buf)`` ([b, h, T, d_k] each) the new keys and
    values are written into the slots ``place`` ([T, l] bool) marks and attention runs over all T slots.
    ``self_attention`` (a constant): Q, K and V are the same tensor (a kernel may then project once).
    Returns (context [b, l_q, d], weights [b, h, l_q, l_k], (keys, values) attended over).
    """

    def __init__(self, n_head: int, compute_dtype: str = "float32", linear: nn.Cell | None = None):
        super().__init__()
        self.n_head = n_head
        self.compute_dtype = DTYPES[compute_dtype]
        self.linear = Linear(compute_dtype) if linear is None else linear

    def heads(self, x):
        b, l, d = x.shape
        return x.reshape(b, l, self.n_head, d // self.n_head).swapaxes(1, 2)  # [b, h, l, d_k]

    def project(self, x, w, b):
        return self.heads(self.linear(x.reshape(-1, x.shape[-1]), w, b).reshape(x.shape[:-1] + (w.shape[0],)))

    def construct(self, Q, K, V, wq, bq, wk, bk, wv, bv, attn_mask, keep=None, kv_cache=None, place=None,
                  self_attention=False):
        q, k, v = self.project(Q, wq, bq), self.project(K, wk, bk), self.project(V, wv, bv)
        if kv_cache is not None:
            k = write_slots(kv_cache[0], k, place)
            v = write_slots(kv_cache[1], v, place)
        context, weights = scaled_dot_product_attention(q, k, v, attn_mask.expand_dims(1), keep,
                                                        self.compute_dtype)
        b, _, l_q, _ = q.shape
        return context.swapaxes(1, 2).reshape(b, l_q, -1), weights, (k, v)


class LMLoss(nn.Cell):
    def construct(self, logits, labels):
        flat = logits.reshape(-1, logits.shape[-1]).astype(mindspore.float32)
        return ops.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE)


class AdamWStep(nn.Cell):
    """Clip the gradients to a global norm, then AdamW with decoupled weight decay, in place.

    ``construct(lr [1], step [1] int32, params, m, v, grads) -> the global norm before clipping [1]``.
    ``decays``: each parameter's weight decay; ``bias_correction``: PyTorch's AdamW (True) or MindSpore's
    ``nn.AdamWeightDecay`` update (False). ``max_norm <= 0``: no clipping.
    """

    def __init__(self, decays, b1: float, b2: float, eps: float, max_norm: float, bias_correction: bool):
        super().__init__()
        self.decays = tuple(decays)
        self.b1, self.b2, self.eps, self.max_norm, self.bias_correction = b1, b2, eps, max_norm, bias_correction

    def construct(self, lr, step, params, m, v, grads):
        norm = ops.sqrt(ops.addn([ops.square(g.astype(mindspore.float32)).sum() for g in grads])).reshape(1)
        clip = ops.ones_like(norm)
        if self.max_norm > 0:
            clip = ops.where(norm > self.max_norm, self.max_norm / (norm + 1e-6), clip)
        if self.bias_correction:
            t = (step + 1).astype(mindspore.float32)
            step_size = lr / (1.0 - ops.pow(self.b1, t))
            bc2_sqrt = ops.sqrt(1.0 - ops.pow(self.b2, t))
        else:
            step_size = lr
            bc2_sqrt = ops.ones_like(lr)
        for p, m_, v_, g, wd in zip(params, m, v, grads, self.decays):
            g = g * clip
            m_new = self.b1 * m_ + (1.0 - self.b1) * g
            v_new = self.b2 * v_ + (1.0 - self.b2) * g * g
            ops.assign(m_, m_new)
            ops.assign(v_, v_new)
            ops.assign(p, p * (1.0 - lr * wd) - step_size * m_new / (ops.sqrt(v_new) / bc2_sqrt + self.eps))
        return norm


class MindSporeOps:
    """MindSpore's own ops (any device, graph and PyNative)."""

    name = "mindspore"

    def linear(self, bias: bool = True, compute_dtype: str = "float32") -> nn.Cell:
        if compute_dtype == "bfloat16" and mindspore.get_context("device_target") == "CPU":
            raise ValueError("compute_dtype='bfloat16' needs Ascend (MindSpore's CPU MatMul has no bfloat16 "
                             "kernel); on CPU use 'float32' or 'float16'")
        return Linear(compute_dtype)

    def layer_norm(self, eps: float) -> nn.Cell:
        return LayerNorm(eps)

    def gelu(self, approximate: bool = False) -> nn.Cell:
        return nn.GELU(approximate=approximate)

    def attention(self, n_head: int, compute_dtype: str = "float32") -> nn.Cell:
        return Attention(n_head, compute_dtype)

    def lm_loss(self) -> nn.Cell:
        return LMLoss()

    def adamw_step(self, decays, b1, b2, eps, max_norm, bias_correction) -> nn.Cell:
        return AdamWStep(decays, b1, b2, eps, max_norm, bias_correction)

    def decode_layer(self, config):
        """A cell computing one whole decoder layer of a cached step, or None: here None, so decoding runs the
        layers' own cells (:func:`ms_gpt.model.decode_step.decode_step`)."""
        return None

    def __repr__(self):
        return f"<backend {self.name}>"


# --- the CPU kernels behind the same signatures --------------------------------------------------------

class KernelLinear(nn.Cell):
    def __init__(self, bias: bool):
        super().__init__()
        from ms_gpt.kernels import custom

        self.gemm = custom.linear() if bias else custom.matmul_nt()

    def construct(self, x, w, b=None):
        if b is None:
            return self.gemm(x, w)
        return self.gemm(x, w, b)


class KernelLayerNorm(nn.Cell):
    def __init__(self, eps: float):
        super().__init__()
        from ms_gpt.kernels import custom

        self.norm, self.eps = custom.layer_norm(eps)

    def construct(self, x, w, b):
        return self.norm(x, w, b, self.eps)[0]


class KernelAttention(nn.Cell):
    """Self-attention without a cache as one kernel each way (projections, masked softmax, dropout: about 30
    MindSpore ops otherwise); anything else through :class:`Attention` with the kernel GEMMs."""

    def __init__(self, n_head: int):
        super().__init__()
        from ms_gpt.kernels import custom

        self.n_head = n_head
        self.plain = custom.attention(n_head, False)
        self.dropped = custom.attention(n_head, True)
        self.general = Attention(n_head, "float32", KernelLinear(bias=True))

    def construct(self, Q, K, V, wq, bq, wk, bk, wv, bv, attn_mask, keep=None, kv_cache=None, place=None,
                  self_attention=False):
        if not self_attention or kv_cache is not None:
            return self.general(Q, K, V, wq, bq, wk, bk, wv, bv, attn_mask, keep, kv_cache, place, self_attention)
        if keep is None:
            context, _, k, v, p = self.plain(Q, wq, wk, wv, bq, bk, bv, attn_mask)
        else:
            context, _, k, v, p = self.dropped(Q, wq, wk, wv, bq, bk, bv, attn_mask, keep)
        return context, p, (self.general.heads(k), self.general.heads(v))


class KernelLMLoss(nn.Cell):
    def __init__(self):
        super().__init__()
        from ms_gpt.kernels import custom

        self.cross_entropy = custom.cross_entropy()

    def construct(self, logits, labels):
        flat = logits.reshape(-1, logits.shape[-1]).astype(mindspore.float32)
        return self.cross_entropy(flat, labels.reshape(-1))[0].reshape(())


class KernelAdamWStep(nn.Cell):
    """:class:`AdamWStep` as one kernel over every parameter (``AdamWClipStep``)."""

    def __init__(self, decays, b1, b2, eps, max_norm, bias_correction):
        super().__init__()
        import numpy as np

        from ms_gpt.kernels import custom

        self.step_all = custom.adamw_clip_step()
        self.hyper = mindspore.Tensor(np.array([b1, b2, eps, max_norm, float(bias_correction)], np.float32))
        self.decays = mindspore.Tensor(np.array(tuple(decays), np.float32))

    def construct(self, lr, step, params, m, v, grads):
        return self.step_all(lr, step, self.hyper, self.decays, *params, *m, *v, *grads)


class KernelDecodeLayer(nn.Cell):
    """One decoder layer of a cached step over n new tokens a row (inference: no dropout) as one kernel
    (``DecodeLayer``): ``construct(x [b, n, d], weights, k_buf, v_buf [b, h, T, d_k], mask [b, n, T] bool, place
    [T, n] bool) -> y``, the new keys and values written into ``k_buf`` / ``v_buf`` at the slots ``place`` marks (as
    for :class:`Attention`), in place (no copy of the cache).
    ``weights``: ln_1 (w, b), W_Q, W_K, W_V, the output projection (w, b each), ln_2 (w, b), fc1, fc2 (w, b)."""

    ACTIVATIONS = {"gelu": 0.0, "gelu_tanh": 1.0, "relu": 2.0}

    def __init__(self, config):
        super().__init__()
        import numpy as np

        from ms_gpt.kernels import custom

        self.step = custom.decode_layer()
        self.hyper = mindspore.Tensor(np.array([config.layer_norm_eps, float(config.norm == "pre"),
                                                self.ACTIVATIONS[config.activation]], np.float32))

    def construct(self, x, weights, k_buf, v_buf, mask, place):
        return self.step(x, *weights, k_buf, v_buf, mask, place, self.hyper)


class CPUKernels(MindSporeOps):
    """The C++ CPU kernels of :mod:`ms_gpt.kernels` (float32; other dtypes fall back to MindSpore's ops)."""

    name = "cpu-kernels"

    def __init__(self):
        from ms_gpt import kernels

        kernels.library()  # built (or found in the cache) and loaded now, so a model's construction is cheap

    def linear(self, bias: bool = True, compute_dtype: str = "float32") -> nn.Cell:
        return KernelLinear(bias) if compute_dtype == "float32" else super().linear(bias, compute_dtype)

    def layer_norm(self, eps: float) -> nn.Cell:
        return KernelLayerNorm(eps)

    def gelu(self, approximate: bool = False) -> nn.Cell:
        if approximate:
            return nn.GELU(approximate=True)
        from ms_gpt.kernels import custom

        return custom.gelu()

    def attention(self, n_head: int, compute_dtype: str = "float32") -> nn.Cell:
        return KernelAttention(n_head) if compute_dtype == "float32" else Attention(n_head, compute_dtype)

    def lm_loss(self) -> nn.Cell:
        return KernelLMLoss()

    def adamw_step(self, decays, b1, b2, eps, max_norm, bias_correction) -> nn.Cell:
        return KernelAdamWStep(decays, b1, b2, eps, max_norm, bias_correction)

    def decode_layer(self, config):
        return KernelDecodeLayer(config) if config.compute_dtype == "float32" else None


# --- the choice ------------------------------------------------------------------------------------------

_MINDSPORE = MindSporeOps()
_default: MindSporeOps = _MINDSPORE


def get(backend=None) -> MindSporeOps:
    """The backend named ``backend`` (one of :data:`NAMES`), the process default for None, or ``backend``
    itself when it is one already. ``cpu-kernels`` raises :class:`ms_gpt.kernels.KernelUnavailable` (one
    line: why they cannot be built here) when it cannot be used."""
    if backend is None:
        return _default
    if isinstance(backend, MindSporeOps):
        return backend
    if backend == "mindspore":
        return _MINDSPORE
    if backend == "cpu-kernels":
        return _cpu_kernels()
    raise ValueError(f"backend {backend!r} is not known; use one of {', '.join(NAMES)}")


def _cpu_kernels() -> CPUKernels:
    global _CPU
    if _CPU is None:
        _CPU = CPUKernels()
    return _CPU


_CPU: CPUKernels | None = None


def choose(target: str) -> MindSporeOps:
    """Make the process default the backend ``MS_GPT_CPU_KERNELS`` asks for on ``target`` and return it:
    ``off`` -> mindspore; ``on`` -> cpu-kernels, or :class:`ms_gpt.kernels.KernelUnavailable` saying why not;
    ``auto`` -> cpu-kernels when the target is CPU and they build, else mindspore."""
    from ms_gpt import kernels

    global _default
    _default = get("cpu-kernels") if kernels.enabled(target) else _MINDSPORE
    return _default
