"""PPO's pieces for tuning a language model against a reward model (the last step of the ChatGPT recipe):
the KL-shaped per-token reward, generalised advantage estimation, whitening, the clipped policy and value
losses, and the adaptive KL controller (Ziegler et al. 2019, "Fine-Tuning Language Models from Human
Preferences", section 2.2).

Shapes: a rollout batch is ``[b, T]`` over the response tokens (``mask`` 1 on real tokens, 0 after the
response ended). Rewards, advantages and returns are NumPy (computed once per rollout, outside the graph);
the two losses are MindSpore functions (differentiated in the train step).

Signs, because they are easy to get wrong (and have been, elsewhere): the KL penalty is *subtracted* from
the reward, ``r_t = -β (log π(a_t) - log π_ref(a_t))`` plus the reward model's score at the last token, so
a policy that drifts from the reference earns less; the controller raises β when the measured KL is above
its target and lowers it below.
"""

from __future__ import annotations

import numpy as np
from mindspore import ops


def shaped_rewards(score, logp, ref_logp, mask, beta: float) -> np.ndarray:
    """[b, T] per-token rewards: ``-beta * (logp - ref_logp)`` on the response tokens, plus ``score`` [b]
    (the reward model's) on each row's last real token."""
    logp, ref_logp, mask = (np.asarray(a, np.float64) for a in (logp, ref_logp, mask))
    score = np.asarray(score, np.float64)
    if logp.shape != ref_logp.shape or logp.shape != mask.shape or score.shape != logp.shape[:1]:
        raise ValueError(f"shapes differ: logp {logp.shape}, ref_logp {ref_logp.shape}, mask {mask.shape}, "
                         f"score {score.shape} (expected [b, T] x3 and [b])")
    rewards = -beta * (logp - ref_logp) * mask
    lengths = mask.sum(axis=1).astype(int)
    if (lengths < 1).any():
        raise ValueError("every row needs at least one response token (mask all zero in a row)")
    rewards[np.arange(len(score)), lengths - 1] += score
    return rewards


def transform_scores(scores, kind: str, offset: float = 0.0) -> np.ndarray:
    """The reward-model scores PPO maximises. ``raw``: the scores themselves. ``logsigmoid``: ``log σ(score -
    offset)``: a pairwise reward model reads ``r_a - r_b`` as the logit of a beating b, so this is the
    log-probability that the response beats one scored ``offset``. It is bounded above by 0: past a clear win
    more score earns (almost) nothing, and the KL penalty, not the score, decides how far the policy moves;
    with β = 1 the KL-penalised optimum is the reference reweighted by that probability."""
    scores = np.asarray(scores, np.float64)
    if kind == "raw":
        return scores
    if kind == "logsigmoid":
        return -np.logaddexp(0.0, -(scores - offset))
    raise ValueError(f"score transform must be raw or logsigmoid, got {kind!r}")


def leave_one_out(scores, group_size: int) -> np.ndarray:
    """[b] each score minus the mean of the other ``group_size - 1`` scores of its group (consecutive rows
    ``group_size`` at a time: the responses to one prompt); ``group_size`` 1 returns the scores unchanged."""
    scores = np.asarray(scores, np.float64)
    if group_size == 1:
        return scores
    if group_size < 1 or scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} scores do not split into groups of {group_size}")
    groups = scores.reshape(-1, group_size)
    others = (groups.sum(axis=1, keepdims=True) - groups) / (group_size - 1)
    return (groups - others).reshape(-1)


def sequence_kl(logp, ref_logp, mask) -> np.ndarray:
    """[b] the sampled estimate of KL(π || π_ref) of each response: the sum of ``logp - ref_logp``."""
    return ((np.asarray(logp, np.float64) - np.asarray(ref_logp, np.float64)) * np.asarray(mask)).sum(axis=1)


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over each row's real tokens (the value after the last one is 0):
    ``δ_t = r_t + γ V_{t+1} - V_t``, ``A_t = δ_t + γλ A_{t+1}``; returns ``(advantages, returns = A + V)``,
    both [b, T] and 0 where ``mask`` is 0."""
    rewards, values, mask = (np.asarray(a, np.float64) for a in (rewards, values, mask))
    b, t_len = rewards.shape
    adv = np.zeros((b, t_len))
    last = np.zeros(b)
    for t in reversed(range(t_len)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < t_len else np.zeros(b)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < t_len else 0.0)) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def _masked_moments(x, mask) -> tuple[float, float]:
    """The mean and variance of ``x`` over the entries where ``mask`` is 1 (0, 0 when there are none)."""
    n = max(mask.sum(), 1.0)
    mean = (x * mask).sum() / n
    return mean, (((x - mean) * mask) ** 2).sum() / n


def masked_std(x, mask) -> float:
    """The standard deviation of ``x`` over the entries where ``mask`` is 1 (NumPy)."""
    return float(np.sqrt(_masked_moments(np.asarray(x, np.float64), np.asarray(mask, np.float64))[1]))


def whiten(x, mask, shift_mean: bool = True) -> np.ndarray:
    """``x`` scaled to unit variance (and zero mean, unless ``shift_mean`` is False) over the masked entries."""
    x, mask = np.asarray(x, np.float64), np.asarray(mask, np.float64)
    n = mask.sum()
    if n < 2:
        raise ValueError(f"whitening needs at least 2 real entries, got {int(n)}")
    mean, var = _masked_moments(x, mask)
    out = (x - mean) / np.sqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def masked_mean(x, mask):
    """The mean of ``x`` over the real tokens, where ``mask`` is 1 (MindSpore tensors [b, T]; 0 when there
    are none): how every loss here averages over a rollout batch."""
    return (x * mask).sum() / ops.maximum(mask.sum(), 1.0)


def clipped_policy_loss(logp, old_logp, advantages, mask, clip: float = 0.2):
    """PPO-clip: the mean over real tokens of ``max(-A ratio, -A clip(ratio, 1-ε, 1+ε))``, ratio = π/π_old
    (MindSpore tensors [b, T]; differentiable in ``logp``)."""
    ratio = ops.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ops.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return masked_mean(ops.maximum(unclipped, clipped), mask)


def clipped_value_loss(values, old_values, returns, mask, clip: float = 0.2):
    """The value head's loss: half the mean over real tokens of ``max((V - R)^2, (V_clip - R)^2)``, with
    ``V_clip`` = ``old_values`` moved at most ``clip`` toward ``values``."""
    v_clip = old_values + ops.clamp(values - old_values, -clip, clip)
    worst = ops.maximum((values - returns) ** 2, (v_clip - returns) ** 2)
    return 0.5 * masked_mean(worst, mask)


def position_kl(logp_all, ref_logp_all):
    """[b, T] the exact KL(π(·|s_t) || π_ref(·|s_t)) at each position, summed over the vocabulary (MindSpore
    tensors [b, T, vocab] of log-probabilities; differentiable in ``logp_all``)."""
    return (ops.exp(logp_all) * (logp_all - ref_logp_all)).sum(-1)


def position_entropy(logp_all):
    """[b, T] the entropy ``-sum_v π log π`` of the policy at each position (MindSpore tensors [b, T, vocab]
    of log-probabilities; differentiable)."""
    return -(ops.exp(logp_all) * logp_all).sum(-1)


def kl_loss(logp_all, ref_logp_all, mask):
    """The KL penalty as a loss term (``ms-gpt ppo --kl-penalty loss``): the mean over real tokens of
    :func:`position_kl`. Its gradient pulls every visited position's whole distribution toward the
    reference's, where the penalty in the reward (:func:`shaped_rewards`) reaches the policy only through
    the sampled tokens' log-ratios, a noisy signal."""
    return masked_mean(position_kl(logp_all, ref_logp_all), mask)


def mean_entropy(logp_all, mask):
    """The policy's mean :func:`position_entropy` over real tokens (``logp_all`` [b, T, vocab], ``mask``
    [b, T]; differentiable): ``ms-gpt ppo --entropy-coef`` subtracts it, times the coefficient, from the loss,
    so an update that only sharpens the policy's distributions costs something."""
    return masked_mean(position_entropy(logp_all), mask)


def policy_stats(logp, old_logp, mask, clip: float = 0.2) -> dict:
    """NumPy diagnostics of an update: the share of real tokens whose ratio left [1-ε, 1+ε] (clip fraction)
    and the approximate KL(π_old || π) = mean of ((ratio - 1) - log ratio) (a non-negative estimator)."""
    logp, old_logp, mask = (np.asarray(a, np.float64) for a in (logp, old_logp, mask))
    log_ratio = (logp - old_logp) * mask
    ratio = np.exp(log_ratio)
    n = max(mask.sum(), 1.0)
    return {"clip_fraction": float(((np.abs(ratio - 1.0) > clip) * mask).sum() / n),
            "approx_kl": float((((ratio - 1.0) - log_ratio) * mask).sum() / n)}


class AdaptiveKLController:
    """β that steers the measured KL toward ``target``: ``β ← β (1 + clip(KL/target - 1, -0.2, 0.2) n/horizon)``
    after ``n`` more rollouts, so it rises while KL is above the target and falls below it."""

    def __init__(self, init_beta: float = 0.1, target: float = 6.0, horizon: int = 10000):
        if not init_beta > 0 or not target > 0 or not horizon > 0:
            raise ValueError(f"init_beta, target and horizon must be > 0, got {init_beta}, {target}, {horizon}")
        self.beta, self.target, self.horizon = float(init_beta), float(target), int(horizon)

    def update(self, kl: float, n: int) -> float:
        error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
        self.beta *= 1.0 + error * n / self.horizon
        return self.beta

    def state(self) -> dict:
        return {"beta": self.beta, "target": self.target, "horizon": self.horizon}
