"""AdamW with clipping by the global gradient norm, as one cell: ``optimizer(grads) -> norm``.

Decoupled weight decay ``p <- p (1 - lr wd)``. ``bias_correction=True`` is PyTorch's AdamW;
``False`` (the default) is MindSpore's ``nn.AdamWeightDecay``, which this project's defaults were
tuned with: without bias correction the early updates are several times larger (m / sqrt(v) starts at
(1 - beta1) / sqrt(1 - beta2) = 3.2 for a constant gradient). The learning rate is a per-step table
indexed by the optimizer's own ``global_step``, so a resumed run continues its schedule exactly.

On CPU the whole step - the global norm, the clip factor and the update of every parameter - is one
kernel (``AdamWClipStep`` in ``ms_gpt/kernels/cpu_kernels.cc``) instead of about eight MindSpore
kernels per parameter; elsewhere (or with ``MS_GPT_CPU_KERNELS=off``) the same arithmetic runs as
MindSpore ops. Parameter names match ``nn.AdamWeightDecay``'s (``adam_m.*``, ``adam_v.*``,
``global_step``, ``learning_rate``), so ``optimizer.ckpt`` files keep loading.
"""

from __future__ import annotations

import mindspore
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops


class AdamW(nn.Cell):
    def __init__(self, params, learning_rates, weight_decay: float = 0.01, betas=(0.9, 0.999), eps: float = 1e-8,
                 max_norm: float = 1.0, bias_correction: bool = False, fused: bool | None = None):
        """``params``: the trainable parameters (matrices are decayed, vectors - biases, LayerNorm - not);
        ``learning_rates``: the rate of each step (the last one is kept after the table ends);
        ``max_norm``: clip the gradients' global norm to this (<= 0: no clipping);
        ``bias_correction``: PyTorch's AdamW (True) or MindSpore's AdamWeightDecay update (False);
        ``fused``: use the CPU kernel (default: when :func:`ms_gpt.kernels.enabled`)."""
        super().__init__()
        b1, b2 = (float(b) for b in betas)
        for name, value, ok in (("beta1", b1, 0.0 <= b1 < 1.0), ("beta2", b2, 0.0 <= b2 < 1.0),
                                ("eps", eps, eps > 0), ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:
                raise ValueError(f"AdamW {name} must be in its valid range (betas in [0, 1), eps > 0, "
                                 f"weight_decay >= 0), got {value!r}")
        lrs = np.asarray(learning_rates, np.float32).reshape(-1)
        if lrs.size == 0:
            raise ValueError("AdamW needs at least one learning rate")
        self.parameters = ParameterTuple(params)
        self.moment1 = self.parameters.clone(prefix="adam_m", init="zeros")
        self.moment2 = self.parameters.clone(prefix="adam_v", init="zeros")
        self.global_step = Parameter(Tensor(np.zeros(1, np.int32)), name="global_step", requires_grad=False)
        self.learning_rate = Parameter(Tensor(lrs), name="learning_rate", requires_grad=False)
        self.last = int(lrs.size - 1)
        self.decays = tuple(float(weight_decay) if p.ndim >= 2 else 0.0 for p in self.parameters)
        self.b1, self.b2, self.eps, self.max_norm = b1, b2, float(eps), float(max_norm)
        self.bias_correction = bool(bias_correction)
        self.decay_table = Tensor(np.array(self.decays, np.float32))
        self.hyper = Tensor(np.array([b1, b2, eps, max_norm, float(self.bias_correction)], np.float32))
        if fused is None:
            from ms_gpt import kernels

            fused = kernels.enabled()
        if fused:
            from ms_gpt.kernels import custom

            self.fused = custom.adamw_clip_step()
        else:
            self.fused = None
        self._one = Tensor(np.ones(1, np.int32))

    def current_lr(self):
        return ops.gather(self.learning_rate, ops.minimum(self.global_step, self.last), 0)  # [1]

    def construct(self, grads):
        lr = self.current_lr()
        if self.fused is not None:
            norm = self.fused(lr, self.global_step, self.hyper, self.decay_table, *self.parameters, *self.moment1,
                              *self.moment2, *grads)
        else:
            norm = self._step(lr, grads)
        # The kernel's writes are invisible to MindSpore: the step count's update depends on its output so
        # that a caller who drops the norm cannot get the kernel pruned as dead code.
        ops.assign_add(self.global_step, ops.depend(self._one, norm))
        return norm

    def _step(self, lr, grads):
        """The same update as ``AdamWClipStep``, in MindSpore ops (any device, PyNative too)."""
        norm = ops.sqrt(ops.addn([ops.square(g.astype(mindspore.float32)).sum() for g in grads])).reshape(1)
        clip = ops.ones_like(norm)
        if self.max_norm > 0:
            clip = ops.where(norm > self.max_norm, self.max_norm / (norm + 1e-6), clip)
        if self.bias_correction:
            t = (self.global_step + 1).astype(mindspore.float32)
            step_size = lr / (1.0 - ops.pow(self.b1, t))
            bc2_sqrt = ops.sqrt(1.0 - ops.pow(self.b2, t))
        else:
            step_size = lr
            bc2_sqrt = ops.ones_like(lr)
        for p, m, v, g, wd in zip(self.parameters, self.moment1, self.moment2, grads, self.decays):
            g = g * clip
            m_new = self.b1 * m + (1.0 - self.b1) * g
            v_new = self.b2 * v + (1.0 - self.b2) * g * g
            p_new = p * (1.0 - lr * wd) - step_size * m_new / (ops.sqrt(v_new) / bc2_sqrt + self.eps)
            ops.assign(m, m_new)
            ops.assign(v, v_new)
            ops.assign(p, p_new)
        return norm
