"""The tutorial's building blocks as MindSpore cells: masks, positions, attention and the FFN.

Shapes use b = batch, l = sequence length, h = heads, d = d_model, d_k = d / h.
Masks are boolean with True = "may not attend" (the tutorial's convention).
"""

from __future__ import annotations

import math

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer

from ms_gpt.config import GPTConfig
from ms_gpt.model.dropout import KeyedDropout

_DTYPES = {"float32": mindspore.float32, "float16": mindspore.float16, "bfloat16": mindspore.bfloat16}
# Added to masked attention scores. Large enough that exp() underflows to exactly 0 in float32,
# small enough not to overflow float16/bfloat16 after the fp32 softmax cast.
MASK_VALUE = -1e9


def get_sin_enc_table(n_position: int, d_model: int) -> np.ndarray:
    """Sinusoidal position table [n_position, d_model] (Vaswani et al.), vectorised.

    table[pos, 2i] = sin(pos / 10000^(2i/d)), table[pos, 2i+1] = cos(pos / 10000^(2i/d)).
    """
    if n_position <= 0 or d_model <= 0:
        raise ValueError(f"n_position and d_model must be positive, got {n_position}, {d_model}")
    pos = np.arange(n_position, dtype=np.float64)[:, None]  # [n, 1]
    two_i = (np.arange(d_model) // 2 * 2).astype(np.float64)[None, :]  # [1, d]: 0,0,2,2,4,4...
    angle = pos / np.power(10000.0, two_i / d_model)  # [n, d]
    table = np.where(np.arange(d_model) % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32)


def get_attn_pad_mask(seq_q: Tensor, seq_k: Tensor, pad_id: int) -> Tensor:
    """[b, l_q, l_k] bool: True where the key is a padding token."""
    b, l_q = seq_q.shape
    l_k = seq_k.shape[1]
    pad_k = ops.equal(seq_k, pad_id).reshape(b, 1, l_k)  # [b, 1, l_k]
    return ops.broadcast_to(pad_k, (b, l_q, l_k))


def get_attn_subsequent_mask(seq: Tensor) -> Tensor:
    """[b, l, l] bool: True above the diagonal (a position may not see later ones)."""
    b, l = seq.shape
    upper = ops.triu(ops.ones((l, l), mindspore.int32), diagonal=1).astype(mindspore.bool_)
    return ops.broadcast_to(upper.reshape(1, l, l), (b, l, l))


class Linear(nn.Cell):
    """y = x W^T + b with W [out, in] stored in float32 and the matmul in ``compute_dtype``."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True, std: float = 0.02, compute_dtype: str = "float32"):
        super().__init__()
        self.weight = Parameter(initializer(Normal(std), (d_out, d_in), mindspore.float32), name="weight")
        self.bias = Parameter(initializer(Zero(), (d_out,), mindspore.float32), name="bias") if bias else None
        self.compute_dtype = _DTYPES[compute_dtype]
        self.d_out = d_out
        # A 2-D GEMM with W transposed inside the kernel: on CPU about 3.5x faster than ops.matmul of
        # a [b, l, d] tensor with W.T (a broadcast batch matmul plus a materialised transpose).
        self.matmul_t = ops.MatMul(transpose_b=True)
        # On CPU in float32: OpenBLAS's sgemm with the bias add and its gradient fused (ms_gpt.kernels)
        self.fused = cpu_linear(bias) if compute_dtype == "float32" else None

    def construct(self, x):
        out_dtype = x.dtype
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])  # [b*l, d_in]
        if self.fused is not None:
            y = self.fused(x2, self.weight, self.bias) if self.bias is not None else self.fused(x2, self.weight)
            return y.reshape(lead + (self.d_out,))
        y = self.matmul_t(x2.astype(self.compute_dtype), self.weight.astype(self.compute_dtype))
        if self.bias is not None:
            y = y + self.bias.astype(self.compute_dtype)
        return y.reshape(lead + (self.d_out,)).astype(out_dtype)


def cpu_kernel(name: str, *args):
    """``ms_gpt.kernels.custom.<name>(*args)`` when the CPU kernels are enabled here, else None."""
    from ms_gpt import kernels

    if not kernels.enabled():
        return None
    from ms_gpt.kernels import custom

    return getattr(custom, name)(*args)


def cpu_linear(bias: bool = True):
    """The fused CPU GEMM primitive for y = x W^T (+ b) when ms_gpt.kernels are enabled here, else None."""
    return cpu_kernel("linear" if bias else "matmul_nt")


class LayerNorm(nn.Cell):
    """LayerNorm over the last axis, always computed in float32."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = Parameter(initializer("ones", (d,), mindspore.float32), name="weight")
        self.bias = Parameter(initializer("zeros", (d,), mindspore.float32), name="bias")
        self.eps = eps
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
        self.fused, self.eps_tensor = cpu_kernel("layer_norm", eps) or (None, None)

    def construct(self, x):
        x32 = x.astype(mindspore.float32)
        if self.fused is not None:
            y = self.fused(x32.reshape(-1, x.shape[-1]), self.weight, self.bias, self.eps_tensor)[0]
            return y.reshape(x.shape).astype(x.dtype)
        y, _, _ = self.norm(x32, self.weight, self.bias)
        return y.astype(x.dtype)


class ScaledDotProductAttention(nn.Cell):
    """softmax(Q K^T / sqrt(d_k) + mask) V, softmax in float32."""

    def __init__(self, d_k: int, attn_dropout: float = 0.0, compute_dtype: str = "float32"):
        super().__init__()
        self.scale = 1.0 / math.sqrt(d_k)
        self.bmm_t = ops.BatchMatMul(transpose_b=True)
        self.dropout = KeyedDropout(p=attn_dropout)
        self.compute_dtype = _DTYPES[compute_dtype]

    def construct(self, Q, K, V, attn_mask):
        # Q, K, V: [b, h, l, d_k]; attn_mask: [b, 1 or h, l_q, l_k] bool
        cd = self.compute_dtype
        scores = self.bmm_t(Q.astype(cd), K.astype(cd)).astype(mindspore.float32) * self.scale
        scores = ops.masked_fill(scores, attn_mask, MASK_VALUE)  # [b, h, l_q, l_k]
        weights = ops.softmax(scores, axis=-1)
        context = ops.matmul(self.dropout(weights).astype(cd), V.astype(cd))  # [b, h, l_q, d_k]
        return context.astype(Q.dtype), weights


class MultiHeadAttention(nn.Cell):
    """Project to h heads, attend, concatenate, project back (no residual/norm: DecoderLayer adds them)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        d, std, cd = config.d_model, config.initializer_range, config.compute_dtype
        self.n_head, self.d_k = config.n_head, config.d_k
        self.W_Q = Linear(d, d, std=std, compute_dtype=cd)
        self.W_K = Linear(d, d, std=std, compute_dtype=cd)
        self.W_V = Linear(d, d, std=std, compute_dtype=cd)
        self.linear = Linear(d, d, std=std, compute_dtype=cd)
        self.attention = ScaledDotProductAttention(config.d_k, config.attn_dropout, cd)
        self.dropout = KeyedDropout(p=config.resid_dropout)
        # With the CPU kernels (ms_gpt.kernels), attention without a cache - projections, masked softmax
        # and its dropout - is one kernel (and one for its backward) instead of about 30 MindSpore ops
        self.fused_attention = self.fused_attention_dropout = None
        if cd == "float32":
            self.fused_attention = cpu_kernel("attention", self.n_head, False)
            self.fused_attention_dropout = cpu_kernel("attention", self.n_head, True)

    def _heads(self, x):
        b, l, _ = x.shape
        return x.reshape(b, l, self.n_head, self.d_k).swapaxes(1, 2)  # [b, h, l, d_k]

    def construct(self, Q, K, V, attn_mask, kv_cache=None, place=None):
        """Q, K, V: [b, l, d]; attn_mask: [b, l_q, l_k] bool (True = may not attend).

        With ``kv_cache = (k_buf, v_buf)`` ([b, h, T, d_k] each) the new keys/values are written into
        the slots ``place`` ([T, l] bool, one True per new position) and attention runs over all T
        slots (``attn_mask`` is then [b, l_q, T]). Returns the output [b, l_q, d], the attention
        weights [b, h, l_q, l_k] and the keys/values attended over (the updated buffers when cached).
        """
        q, k, v = self._heads(self.W_Q(Q)), self._heads(self.W_K(K)), self._heads(self.W_V(V))
        return self._attend(q, k, v, attn_mask, kv_cache, place)

    def self_attention(self, x, attn_mask, kv_cache=None, place=None):
        """``construct(x, x, x, ...)``, through the fused CPU kernel when there is one and no cache."""
        if self.fused_attention is not None and kv_cache is None:
            return self._fused_self_attention(x, attn_mask)
        return self.construct(x, x, x, attn_mask, kv_cache, place)

    def _fused_self_attention(self, x, attn_mask):
        """Projections, masked softmax attention and its dropout in one CPU kernel (ms_gpt.kernels)."""
        b, l, d = x.shape
        weights = (x, self.W_Q.weight, self.W_K.weight, self.W_V.weight, self.W_Q.bias, self.W_K.bias, self.W_V.bias,
                   attn_mask)
        dropout = self.attention.dropout
        if dropout.active:
            keep = dropout.multiplier((b, self.n_head, l, l))
            context, _, k, v, p = self.fused_attention_dropout(*weights, keep)
        else:
            context, _, k, v, p = self.fused_attention(*weights)
        out = self.dropout(self.linear(context))
        return out, p, (self._heads(k), self._heads(v))

    def _attend(self, q, k, v, attn_mask, kv_cache, place):
        b, _, l_q, _ = q.shape
        if kv_cache is not None:
            k = write_slots(kv_cache[0], k, place)
            v = write_slots(kv_cache[1], v, place)
        context, weights = self.attention(q, k, v, attn_mask.expand_dims(1))  # [b, h, l_q, d_k]
        context = context.swapaxes(1, 2).reshape(b, l_q, self.n_head * self.d_k)  # [b, l_q, d]
        return self.dropout(self.linear(context)), weights, (k, v)


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


class PoswiseFeedForwardNet(nn.Cell):
    """fc2(act(fc1(x))), applied to each position independently."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        std, cd = config.initializer_range, config.compute_dtype
        self.fc1 = Linear(config.d_model, config.d_ff, std=std, compute_dtype=cd)
        self.fc2 = Linear(config.d_ff, config.d_model, std=std, compute_dtype=cd)
        # exact GELU fused with its gradient on CPU (MindSpore's runs as erf + 5 ops)
        fused_gelu = cpu_kernel("gelu") if config.activation == "gelu" else None
        if config.activation == "relu":
            self.act = nn.ReLU()
        elif fused_gelu is not None:
            self.act = fused_gelu
        else:
            self.act = nn.GELU(approximate=config.activation == "gelu_tanh")
        self.dropout = KeyedDropout(p=config.resid_dropout)

    def construct(self, x):
        h = self.act(self.fc1(x).astype(mindspore.float32)).astype(x.dtype)
        return self.dropout(self.fc2(h))
