"""PPO's value head: a scalar estimate of the return from each position, read by one linear layer from
the GPT's last hidden states (the head shares the policy's trunk, as in Ziegler et al. 2019 and trl; with
``ms-gpt ppo --value-trunk detached`` it reads them without a gradient into the trunk).

It is a cell of its own, not a child of the GPT: the GPT's weight names stay those of any ms_gpt language
model (a PPO run folder generates like any checkpoint), and the head is saved beside it as
``value_head.ckpt`` (names ``value_head.weight``, ``value_head.bias``). The weights start at zero, so the
first value estimates are 0.
"""

from __future__ import annotations

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops


class ValueHead(nn.Cell):
    def __init__(self, d_model: int):
        super().__init__()
        self.weight = Parameter(Tensor(np.zeros((d_model, 1), np.float32)), name="value_head.weight")
        self.bias = Parameter(Tensor(np.zeros((1,), np.float32)), name="value_head.bias")

    def construct(self, hidden):
        """hidden [b, n, d] -> values [b, n] (float32)."""
        b, n, d = hidden.shape
        v = ops.matmul(hidden.reshape(b * n, d).astype(mindspore.float32), self.weight) + self.bias
        return v.reshape(b, n)
