"""PPO's rollouts and scoring: a batch of prompts continued by sampling through the KV cache, then the
policy's, the reference's and the value head's numbers for those tokens from one full forward each.

Shapes are fixed for the whole run, so every graph compiles once: prompts are left-padded to ``P`` tokens
(positions count real tokens only, so left padding does not shift them), responses take ``T`` slots
(``<pad>`` after a row's stop token), a rollout batch is ``ids [b, P + T]`` with ``mask [b, T]`` 1 on the
response tokens (the stop token included). Sampling draws from ``softmax(logits + bias)`` at temperature 1
and the losses use the same ``bias`` (``-1e9`` on tokens a text never holds: ``<pad>``, ``<bos>``, ``<unk>``,
``<sep>``), so the ratios PPO takes are between the distributions actually sampled from.
"""

from __future__ import annotations

from dataclasses import dataclass

import mindspore
import numpy as np
from mindspore import Tensor, ops

from ms_gpt.generation import compiled_step
from ms_gpt.model.cache import KVCache
from ms_gpt.ppo import position_entropy

BANNED = -1e9


def logit_bias(vocab_size: int, banned_ids) -> np.ndarray:
    """[vocab] float32: 0, and :data:`BANNED` at ``banned_ids``."""
    bias = np.zeros(vocab_size, np.float32)
    bias[list(banned_ids)] = BANNED
    return bias


@dataclass
class Rollout:
    ids: np.ndarray  # [b, P + T] int32: left-padded prompts, then the responses (<pad> after each stop)
    mask: np.ndarray  # [b, T] float32: 1 on response tokens (the stop token included)
    prompt_len: int  # P

    @property
    def responses(self) -> list:
        """Each row's response token ids (the stop token included)."""
        resp = self.ids[:, self.prompt_len:]
        return [row[: int(m.sum())].tolist() for row, m in zip(resp, self.mask)]


def left_pad(prompts, length: int, pad_id: int) -> np.ndarray:
    """[b, length] int32: each prompt right-aligned, ``pad_id`` before it."""
    out = np.full((len(prompts), length), pad_id, np.int32)
    for row, p in enumerate(prompts):
        if not 0 < len(p) <= length:
            raise ValueError(f"prompt {row} has {len(p)} tokens; expected 1 to {length}")
        out[row, length - len(p):] = p
    return out


def sample(gpt, prompts, prompt_len: int, new_tokens: int, pad_id: int, stop_ids, bias: np.ndarray,
           rng: np.random.Generator) -> Rollout:
    """Continue every prompt (token id lists of at most ``prompt_len``) by sampling up to ``new_tokens``
    tokens each, stopping a row at any of ``stop_ids``. The prompts run through the model once; every new
    token goes through the one compiled decoding step over a cache of ``prompt_len + new_tokens`` slots."""
    config = gpt.config
    size = prompt_len + new_tokens
    if size > config.n_positions:
        raise ValueError(f"prompt length {prompt_len} + {new_tokens} new tokens = {size} exceeds the model's "
                         f"context (n_positions={config.n_positions})")
    was_training = gpt.training
    gpt.set_train(False)
    try:
        ids = left_pad(prompts, prompt_len, pad_id)
        b = ids.shape[0]
        out = gpt(Tensor(ids), KVCache.empty(config, batch=b, size=size))
        cache = out.cache
        logits = out.logits.asnumpy()[:, -1]
        response = np.full((b, new_tokens), pad_id, np.int32)
        mask = np.zeros((b, new_tokens), np.float32)
        done = np.zeros(b, bool)
        stops = np.array(sorted(set(int(s) for s in stop_ids)), np.int64)
        step = compiled_step(gpt)
        for t in range(new_tokens):
            scores = logits.astype(np.float64) + bias
            gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, scores.shape)))
            token = (scores + gumbel).argmax(-1).astype(np.int32)  # a draw from softmax(scores) per row
            token = np.where(done, pad_id, token)
            response[:, t] = token
            mask[:, t] = ~done
            done = done | np.isin(token, stops)
            if done.all() or t == new_tokens - 1:
                break
            logits, fields, _ = step(Tensor(token[:, None]), *cache.as_inputs())
            cache = KVCache(*fields)
            logits = logits.asnumpy()[:, -1]
    finally:
        gpt.set_train(was_training)
    return Rollout(np.concatenate([ids, response], axis=1), mask, prompt_len)


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
    onehot = ops.one_hot(targets, logits.shape[-1], ops.ones((), mindspore.float32), ops.zeros((), mindspore.float32))
    return h, logp_all, (logp_all * onehot).sum(-1)


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
