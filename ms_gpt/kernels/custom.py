"""The CPU kernels of ``cpu_kernels.cc`` as MindSpore ``ops.Custom`` primitives, with their backward.

Each function returns a fresh primitive bound to the built library (:func:`ms_gpt.kernels.library`).
Inputs must be float32 and contiguous; :class:`ms_gpt.model.layers.Linear` passes 2-D views.
"""

from __future__ import annotations

import mindspore
from mindspore import ops

from ms_gpt.kernels import library


def _same_dtype(*dtypes):
    return dtypes[0]


def linear_backward():
    """(x [m, k], w [n, k], dy [m, n]) -> (dx [m, k], dw [n, k], db [n])."""
    return ops.Custom(f"{library()}:LinearBackward", out_shape=lambda x, w, dy: (x, w, [w[0]]),
                      out_dtype=lambda x, w, dy: (x, w, x), func_type="aot")


def matmul_nt_backward():
    """(x [m, k], w [n, k], dy [m, n]) -> (dx [m, k], dw [n, k])."""
    return ops.Custom(f"{library()}:MatMulNTBackward", out_shape=lambda x, w, dy: (x, w),
                      out_dtype=lambda x, w, dy: (x, w), func_type="aot")


def linear():
    """y [m, n] = x [m, k] @ w [n, k]^T + b [n], differentiable in all three."""
    backward = linear_backward()

    def bprop(x, w, b, out, dout):
        dx, dw, db = backward(x, w, dout)
        return dx, dw, db

    return ops.Custom(f"{library()}:LinearForward", out_shape=lambda x, w, b: [x[0], w[0]],
                      out_dtype=_same_dtype, func_type="aot", bprop=bprop)


def matmul_nt():
    """y [m, n] = x [m, k] @ w [n, k]^T, differentiable in both."""
    backward = matmul_nt_backward()

    def bprop(x, w, out, dout):
        dx, dw = backward(x, w, dout)
        return dx, dw

    return ops.Custom(f"{library()}:MatMulNT", out_shape=lambda x, w: [x[0], w[0]],
                      out_dtype=_same_dtype, func_type="aot", bprop=bprop)


def adamw_clip_step():
    """(lr [1], step [1] int32, hyper [5], decay [N], *params, *m, *v, *grads) -> global grad norm [1];
    updates params, m and v in place (see ``AdamWClipStep`` in cpu_kernels.cc)."""
    return ops.Custom(f"{library()}:AdamWClipStep", out_shape=lambda *shapes: [1],
                      out_dtype=lambda *dtypes: mindspore.float32, func_type="aot")


def layer_norm(eps: float):
    """(primitive, eps tensor): primitive(x [m, d], w [d], b [d], eps) -> (y [m, d], mean [m], rstd [m]),
    differentiable in x, w and b."""
    eps_t = mindspore.Tensor([eps], mindspore.float32)
    backward = ops.Custom(f"{library()}:LayerNormBackward",
                          out_shape=lambda x, w, mean, rstd, dy: (x, w, w),
                          out_dtype=lambda x, w, mean, rstd, dy: (x, w, w), func_type="aot")

    def bprop(x, w, b, eps_in, out, dout):
        dx, dw, db = backward(x, w, out[1], out[2], dout[0])
        return dx, dw, db, ops.zeros_like(eps_in)

    forward = ops.Custom(f"{library()}:LayerNormForward",
                         out_shape=lambda x, w, b, e: (x, [x[0]], [x[0]]),
                         out_dtype=lambda x, w, b, e: (x, x, x), func_type="aot", bprop=bprop)
    return forward, eps_t


def gelu():
    """Exact GELU (x Phi(x)), elementwise, differentiable."""
    backward = ops.Custom(f"{library()}:GeluBackward", out_shape=lambda x, dy: x, out_dtype=lambda x, dy: x,
                          func_type="aot")

    def bprop(x, out, dout):
        return (backward(x, dout),)

    return ops.Custom(f"{library()}:GeluForward", out_shape=lambda x: x, out_dtype=lambda x: x, func_type="aot",
                      bprop=bprop)


def attention(n_head: int, dropout: bool):
    """Masked multi-head self-attention without the output projection (``AttentionForward``):
    (x [b, l, d], wq, wk, wv [d, d], bq, bk, bv [d], mask [b, l, l] bool[, keep [b, h, l, l]]) ->
    (context [b, l, d], Q, K, V [b, l, d], P [b, h, l, l]); differentiable in x, the weights and biases."""
    suffix = "Dropout" if dropout else ""

    def grads_shape(x, wq, wk, wv, bq, bk, bv, *rest):
        return (x, wq, wk, wv, bq, bk, bv)

    def grads_dtype(x, *rest):
        return (x,) * 7

    backward = ops.Custom(f"{library()}:AttentionBackward{suffix}", out_shape=grads_shape, out_dtype=grads_dtype,
                          func_type="aot")

    if dropout:
        def bprop(x, wq, wk, wv, bq, bk, bv, mask, keep, out, dout):
            grads = backward(x, wq, wk, wv, bq, bk, bv, mask, keep, out[1], out[2], out[3], out[4], *dout)
            return grads + (ops.zeros_like(mask), ops.zeros_like(keep))
    else:
        def bprop(x, wq, wk, wv, bq, bk, bv, mask, out, dout):
            grads = backward(x, wq, wk, wv, bq, bk, bv, mask, out[1], out[2], out[3], out[4], *dout)
            return grads + (ops.zeros_like(mask),)

    def out_shape(x, *rest):
        return (x, x, x, x, [x[0], n_head, x[1], x[1]])

    def out_dtype(x, *rest):
        return (x,) * 5

    return ops.Custom(f"{library()}:AttentionForward{suffix}", out_shape=out_shape, out_dtype=out_dtype,
                      func_type="aot", bprop=bprop)


def cross_entropy():
    """(logits [m, v] float32, labels [m] int32/int64) -> (loss [1], lse [m], count [1]): the mean
    cross-entropy over rows whose label is not IGNORE (-100), differentiable in the logits."""
    from ms_gpt.config import IGNORE

    if IGNORE != -100:  # the kernel skips -100 (cpu_kernels.cc kIgnore)
        raise RuntimeError(f"the CPU cross-entropy kernel skips label -100, but IGNORE is {IGNORE}")
    backward = ops.Custom(f"{library()}:CrossEntropyBackward", out_shape=lambda lg, lb, lse, n, d: lg,
                          out_dtype=lambda lg, lb, lse, n, d: lg, func_type="aot")

    def bprop(logits, labels, out, dout):
        return backward(logits, labels, out[1], out[2], dout[0]), ops.zeros_like(labels)

    return ops.Custom(f"{library()}:CrossEntropyForward", out_shape=lambda lg, lb: ([1], [lg[0]], [1]),
                      out_dtype=lambda lg, lb: (lg, lg, lg), func_type="aot", bprop=bprop)


def decode_layer():
    """One decoder layer of a cached step over n new tokens a row (``DecodeLayer``, inference only): (x [b, n, d],
    ln1 w, b, wq, bq, wk, bk, wv, bv, wo, bo, ln2 w, b, w1, b1, w2, b2, k_buf, v_buf [b, h, T, dk], mask [b, n, T]
    bool, place [T, n] bool, hyper [3]: eps, pre-LN, activation) -> y [b, n, d]; writes the new keys and values
    into ``k_buf`` / ``v_buf`` at the slots ``place`` marks (consecutive), in place."""
    return ops.Custom(f"{library()}:DecodeLayer", out_shape=lambda x, *rest: x, out_dtype=lambda x, *rest: x,
                      func_type="aot")
