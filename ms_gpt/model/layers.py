"""The tutorial's building blocks as MindSpore cells: masks, positions, attention and the FFN.

Shapes use b = batch, l = sequence length, h = heads, d = d_model, d_k = d / h.
Masks are boolean with True = "may not attend" (the tutorial's convention).
"""

from __future__ import annotations

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer

from ms_gpt import backend as backends
from ms_gpt.backend import MASK_VALUE, write_slots  # noqa: F401  (re-exported: the model's names)
from ms_gpt.config import GPTConfig
from ms_gpt.model.dropout import KeyedDropout


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
    """y = x W^T + b with W [out, in] stored in float32 and the matmul in ``compute_dtype``
    (computed by the model's backend, :mod:`ms_gpt.backend`)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True, std: float = 0.02, compute_dtype: str = "float32",
                 backend=None):
        super().__init__()
        self.weight = Parameter(initializer(Normal(std), (d_out, d_in), mindspore.float32), name="weight")
        self.bias = Parameter(initializer(Zero(), (d_out,), mindspore.float32), name="bias") if bias else None
        self.d_out = d_out
        self.matmul = backends.get(backend).linear(bias, compute_dtype)  # (x [m, d_in], W, b) -> [m, d_out]

    def construct(self, x):
        lead = x.shape[:-1]
        y = self.matmul(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return y.reshape(lead + (self.d_out,)).astype(x.dtype)


class LayerNorm(nn.Cell):
    """LayerNorm over the last axis, always computed in float32."""

    def __init__(self, d: int, eps: float, backend=None):
        super().__init__()
        self.weight = Parameter(initializer("ones", (d,), mindspore.float32), name="weight")
        self.bias = Parameter(initializer("zeros", (d,), mindspore.float32), name="bias")
        self.eps = eps
        self.norm = backends.get(backend).layer_norm(eps)  # (x [m, d], weight, bias) -> [m, d]

    def construct(self, x):
        y = self.norm(x.astype(mindspore.float32).reshape(-1, x.shape[-1]), self.weight, self.bias)
        return y.reshape(x.shape).astype(x.dtype)


class ScaledDotProductAttention(nn.Cell):
    """softmax(Q K^T / sqrt(d_k) + mask) V, softmax in float32, with dropout on the attention weights."""

    def __init__(self, d_k: int, attn_dropout: float = 0.0, compute_dtype: str = "float32"):
        super().__init__()
        self.d_k = d_k
        self.dropout = KeyedDropout(p=attn_dropout)
        self.compute_dtype = backends.DTYPES[compute_dtype]

    def keep(self, weights_shape):
        """The dropout's multipliers for attention weights of this shape, or None when it drops nothing."""
        return self.dropout.multiplier(weights_shape) if self.dropout.active else None

    def construct(self, Q, K, V, attn_mask):
        # Q, K, V: [b, h, l, d_k]; attn_mask: [b, 1 or h, l_q, l_k] bool
        keep = self.keep(Q.shape[:3] + (K.shape[2],))
        return backends.scaled_dot_product_attention(Q, K, V, attn_mask, keep, self.compute_dtype)


class MultiHeadAttention(nn.Cell):
    """Project to h heads, attend, concatenate, project back (no residual/norm: DecoderLayer adds them).

    The projections and the attention are computed by the model's backend (:mod:`ms_gpt.backend`): in
    MindSpore ops, ``W_Q``/``W_K``/``W_V`` then :func:`ms_gpt.backend.scaled_dot_product_attention`.
    """

    def __init__(self, config: GPTConfig, backend=None):
        super().__init__()
        backend = backends.get(backend)
        d, std, cd = config.d_model, config.initializer_range, config.compute_dtype
        self.n_head, self.d_k = config.n_head, config.d_k
        self.W_Q = Linear(d, d, std=std, compute_dtype=cd, backend=backend)
        self.W_K = Linear(d, d, std=std, compute_dtype=cd, backend=backend)
        self.W_V = Linear(d, d, std=std, compute_dtype=cd, backend=backend)
        self.linear = Linear(d, d, std=std, compute_dtype=cd, backend=backend)
        self.attention = ScaledDotProductAttention(config.d_k, config.attn_dropout, cd)  # holds its dropout
        self.dropout = KeyedDropout(p=config.resid_dropout)
        self.attend = backend.attention(self.n_head, cd)

    def construct(self, Q, K, V, attn_mask, kv_cache=None, place=None, self_attention=False):
        """Q, K, V: [b, l, d]; attn_mask: [b, l_q, l_k] bool (True = may not attend).

        With ``kv_cache = (k_buf, v_buf)`` ([b, h, T, d_k] each) the new keys/values are written into
        the slots ``place`` ([T, l] bool, one True per new position) and attention runs over all T
        slots (``attn_mask`` is then [b, l_q, T]). ``self_attention``: Q, K and V are the same tensor.
        Returns the output [b, l_q, d], the attention weights [b, h, l_q, l_k] and the keys/values
        attended over (the updated buffers when cached).
        """
        b, l_q, _ = Q.shape
        keep = self.attention.keep((b, self.n_head, l_q, attn_mask.shape[-1]))
        context, weights, kv = self.attend(Q, K, V, self.W_Q.weight, self.W_Q.bias, self.W_K.weight, self.W_K.bias,
                                           self.W_V.weight, self.W_V.bias, attn_mask, keep, kv_cache, place,
                                           self_attention)
        return self.dropout(self.linear(context)), weights, kv

    def self_attention(self, x, attn_mask, kv_cache=None, place=None):
        """``construct(x, x, x, ...)``: what the decoder layers call."""
        return self.construct(x, x, x, attn_mask, kv_cache, place, True)


class PoswiseFeedForwardNet(nn.Cell):
    """fc2(act(fc1(x))), applied to each position independently."""

    def __init__(self, config: GPTConfig, backend=None):
        super().__init__()
        backend = backends.get(backend)
        std, cd = config.initializer_range, config.compute_dtype
        self.fc1 = Linear(config.d_model, config.d_ff, std=std, compute_dtype=cd, backend=backend)
        self.fc2 = Linear(config.d_ff, config.d_model, std=std, compute_dtype=cd, backend=backend)
        if config.activation == "relu":
            self.act = nn.ReLU()
        else:
            self.act = backend.gelu(approximate=config.activation == "gelu_tanh")
        self.dropout = KeyedDropout(p=config.resid_dropout)

    def construct(self, x):
        h = self.act(self.fc1(x).astype(mindspore.float32)).astype(x.dtype)
        return self.dropout(self.fc2(h))
