"""PPO's scoring of rollouts: the policy's, the reference's and the value head's numbers for sampled tokens,
from one full forward each.

A rollout is what :func:`ms_gpt.generation.sample` draws (the one sampler): prompts left-padded to ``P``
tokens, responses in ``T`` slots (``<pad>`` after a row's stop token), ``ids [b, P + T]`` with ``mask [b, T]``
1 on the response tokens (the stop token included). Shapes are fixed for the whole run, so every graph
compiles once. Sampling never draws the suppressed tokens (``<pad>``, ``<bos>``, ``<unk>``, ``<sep>``) and
the losses add the same ``bias`` (``-1e9`` there), so the ratios PPO takes are between the distributions
actually sampled from.
"""

from __future__ import annotations

import mindspore
import numpy as np
from mindspore import ops

from ms_gpt.rl.ppo import position_entropy

BANNED = -1e9


def logit_bias(vocab_size: int, banned_ids) -> np.ndarray:
    """[vocab] float32: 0, and :data:`BANNED` at ``banned_ids``."""
    bias = np.zeros(vocab_size, np.float32)
    bias[list(banned_ids)] = BANNED
    return bias


def response_log_probs(gpt, ids, prompt_len: int, bias):
    """One full forward (a graph function of MindSpore tensors): the states ``h`` [b, T, d] at the positions
    that predict the response tokens (``prompt_len - 1`` .. ``L - 2``), the log-probabilities there of
    every token, ``logp_all`` [b, T, vocab] (``bias`` added to the logits first), and of the response's own,
    ``logp`` [b, T]."""
    hidden, _ = gpt.decoder(ids)  # [b, L, d]
    length = ids.shape[1]
    h = hidden[:, prompt_len - 1:length - 1]  # [b, T, d]: the states that predict response token t
    logits = gpt.lm_logits(h).astype(mindspore.float32) + bias  # [b, T, vocab]
    logp_all = ops.log_softmax(logits, -1)
    targets = ids[:, prompt_len:]  # [b, T]
    return h, logp_all, ops.gather_elements(logp_all, 2, targets.expand_dims(-1)).squeeze(-1)


def token_stats(gpt, head, ids, prompt_len: int, bias, detach_values: bool = False):
    """The numbers a rollout needs from one full forward (a graph function of MindSpore tensors):
    ``logp`` [b, T] of each response token, ``values`` [b, T] (None without a ``head``) and the
    policy's ``entropy`` [b, T] at each response position, all read at the positions that predict
    the response tokens (``prompt_len - 1`` .. ``L - 2``). ``detach_values``: the head reads the states
    without a gradient back into the trunk."""
    h, logp_all, logp = response_log_probs(gpt, ids, prompt_len, bias)
    entropy = position_entropy(logp_all)
    values = None
    if head is not None:
        values = head(ops.stop_gradient(h) if detach_values else h)
    return logp, values, entropy
