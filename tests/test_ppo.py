"""PPO's pieces against NumPy references written out step by step: GAE, the KL-shaped reward (its sign),
the adaptive KL controller (its direction), whitening, the clipped policy and value losses and their
gradients."""
import mindspore
import numpy as np
import pytest
from mindspore import Tensor, ops

from ms_gpt.rl import ppo


def batch(seed=0, b=4, t=7):
    rng = np.random.default_rng(seed)
    lengths = np.array([7, 3, 5, 1])[:b]
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float64)
    return rng, mask, lengths


def test_gae_equals_a_step_by_step_reference():
    rng, mask, lengths = batch()
    rewards, values = rng.normal(size=mask.shape), rng.normal(size=mask.shape)
    gamma, lam = 0.99, 0.9
    adv, ret = ppo.gae(rewards, values, mask, gamma, lam)
    for i, n in enumerate(lengths):
        a_next = 0.0
        for t in reversed(range(n)):
            v_next = values[i, t + 1] if t + 1 < n else 0.0
            a_next = rewards[i, t] + gamma * v_next - values[i, t] + gamma * lam * a_next
            assert adv[i, t] == pytest.approx(a_next, abs=1e-12)
            assert ret[i, t] == pytest.approx(a_next + values[i, t], abs=1e-12)
        assert not adv[i, n:].any() and not ret[i, n:].any()
    # γ = λ = 1: the advantage is the sum of the rewards to go minus the value
    adv1, _ = ppo.gae(rewards, values, mask, 1.0, 1.0)
    assert adv1[0, 0] == pytest.approx(rewards[0].sum() - values[0, 0])


def test_the_kl_penalty_lowers_the_reward_of_a_policy_that_drifts():
    _, mask, lengths = batch()
    ref = np.log(np.full(mask.shape, 0.2))
    score = np.array([1.0, -0.5, 2.0, 0.3])
    same = ppo.shaped_rewards(score, ref, ref, mask, beta=0.1)
    np.testing.assert_allclose(same.sum(axis=1), score)  # no drift: the score alone, at the last token
    assert same[1, lengths[1] - 1] == score[1] and not same[1, :lengths[1] - 1].any()
    drift = ppo.shaped_rewards(score, ref + 0.5, ref, mask, beta=0.1)  # the policy makes its tokens likelier
    np.testing.assert_allclose(drift.sum(axis=1), score - 0.1 * 0.5 * lengths)
    assert (drift.sum(axis=1) < same.sum(axis=1)).all()
    np.testing.assert_allclose(ppo.sequence_kl(ref + 0.5, ref, mask), 0.5 * lengths)
    with pytest.raises(ValueError, match=r"at least one response token"):
        ppo.shaped_rewards(score, ref, ref, mask * np.array([[1], [1], [1], [0]]), beta=0.1)


def test_the_adaptive_controller_moves_beta_toward_the_target():
    c = ppo.AdaptiveKLController(init_beta=0.1, target=6.0, horizon=100)
    assert c.update(kl=12.0, n=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # above: up (error clipped)
    up = c.beta
    assert c.update(kl=3.0, n=10) == pytest.approx(up * (1 - 0.2 * 10 / 100))  # below: down
    down = c.beta
    assert c.update(kl=6.0, n=10) == pytest.approx(down)  # at the target: unchanged
    assert c.update(kl=6.6, n=100) == pytest.approx(down * 1.1)  # 10 % above, a full horizon: +10 %
    with pytest.raises(ValueError, match=r"must be > 0"):
        ppo.AdaptiveKLController(init_beta=0.0)


def test_the_logsigmoid_score_is_the_log_probability_of_beating_the_offset():
    scores = np.array([-1000.0, -3.0, 0.5, 2.0, 40.0, 1000.0])
    assert (ppo.transform_scores(scores, "raw") == scores).all()
    out = ppo.transform_scores(scores, "logsigmoid", offset=0.5)
    expected = [np.log(1.0 / (1.0 + np.exp(-(s - 0.5)))) for s in scores[1:4]]  # where the naive form is exact
    assert np.allclose(out[1:4], expected, rtol=1e-12, atol=0)
    assert -1e-16 < out[4] < 0  # exp(-39.5): below float64's step at 1, kept rather than rounded to 0
    assert out[2] == pytest.approx(np.log(0.5))  # as good as the offset: even odds
    assert out[0] == pytest.approx(-1000.5) and out[-1] == 0.0 and (out <= 0).all()  # finite, bounded above
    # saturation: +1 score is worth ~0.95 nats below the offset, ~0 far above it
    below = ppo.transform_scores([-3.0, -2.0], "logsigmoid")
    above = ppo.transform_scores([8.0, 9.0], "logsigmoid")
    assert below[1] - below[0] > 0.9 and above[1] - above[0] < 3e-4
    with pytest.raises(ValueError, match="raw or logsigmoid, got 'sigmoid'"):
        ppo.transform_scores(scores, "sigmoid")


@pytest.mark.parametrize("settings, message", [
    ({"score_transform": "sigmoid"}, "score_transform must be one of raw, logsigmoid, got 'sigmoid'"),
    ({"score_transform": "logsigmoid", "score_offset": float("inf")}, "score_offset must be a finite number, got inf"),
    ({"group_size": 3}, r"batch_size \(16\) must be a multiple of group_size \(3\)"),
    ({"group_size": 0}, "group_size must be a positive integer"),
    ({"kl_penalty": "both"}, "kl_penalty must be one of reward, loss, got 'both'"),
    ({"value_trunk": "frozen"}, "value_trunk must be one of shared, detached, got 'frozen'"),
    ({"entropy_coef": -0.01}, "entropy_coef must be >= 0, got -0.01"),
    ({"score_offset": 1.5}, r"score_offset \(1.5\) is the centre of --score-transform logsigmoid; with "
                            "--score-transform raw it would be ignored")])
def test_the_score_settings_are_checked(settings, message):
    from ms_gpt.flows.configs import PPOConfig

    cfg = PPOConfig(policy="p", reward="r", prompts="x", out="o", **settings)
    with pytest.raises(ValueError, match=message):
        cfg.validate()
    PPOConfig(policy="p", reward="r", prompts="x", out="o", score_transform="logsigmoid", score_offset=1.5).validate()


def test_whiten_over_the_real_entries():
    rng, mask, _ = batch(1)
    x = rng.normal(3.0, 2.0, mask.shape)
    w = ppo.whiten(x, mask)
    real = w[mask > 0]
    assert real.mean() == pytest.approx(0.0, abs=1e-9) and real.std() == pytest.approx(1.0, abs=1e-6)
    assert not w[mask == 0].any()
    kept = ppo.whiten(x, mask, shift_mean=False)[mask > 0]
    assert kept.mean() == pytest.approx(x[mask > 0].mean(), abs=1e-9)


def reference_policy_loss(logp, old, adv, mask, clip):
    ratio = np.exp(logp - old)
    per = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip, 1 + clip))
    return (per * mask).sum() / mask.sum()


def test_the_clipped_losses_equal_numpy_and_clipped_tokens_get_no_gradient():
    rng, mask, _ = batch(2)
    old = np.log(rng.uniform(0.05, 0.9, mask.shape))
    logp = old + rng.normal(0, 0.4, mask.shape)  # some ratios far outside [0.8, 1.2]
    adv = rng.normal(size=mask.shape)
    f32 = lambda a: Tensor(np.asarray(a, np.float32))  # noqa: E731
    loss = ppo.clipped_policy_loss(f32(logp), f32(old), f32(adv), f32(mask), 0.2)
    assert float(loss.asnumpy()) == pytest.approx(reference_policy_loss(logp, old, adv, mask, 0.2), abs=1e-5)
    grad = mindspore.grad(lambda lp: ppo.clipped_policy_loss(lp, f32(old), f32(adv), f32(mask), 0.2))(f32(logp))
    grad = grad.asnumpy()
    ratio = np.exp(logp - old)
    frozen = ((adv > 0) & (ratio > 1.2)) | ((adv < 0) & (ratio < 0.8)) | (mask == 0)
    assert frozen.any() and (~frozen).any()
    assert not grad[frozen].any() and (grad[~frozen] != 0).all()
    values, old_v, ret = rng.normal(size=(3,) + mask.shape)
    v_loss = ppo.clipped_value_loss(f32(values), f32(old_v), f32(ret), f32(mask), 0.2)
    v_clip = old_v + np.clip(values - old_v, -0.2, 0.2)
    ref = 0.5 * (np.maximum((values - ret) ** 2, (v_clip - ret) ** 2) * mask).sum() / mask.sum()
    assert float(v_loss.asnumpy()) == pytest.approx(ref, abs=1e-5)


def test_policy_stats():
    mask = np.ones((1, 4))
    old = np.zeros((1, 4))
    logp = np.log(np.array([[1.0, 1.1, 1.3, 0.7]]))
    stats = ppo.policy_stats(logp, old, mask, clip=0.2)
    assert stats["clip_fraction"] == pytest.approx(0.5)
    r = np.array([1.0, 1.1, 1.3, 0.7])
    assert stats["approx_kl"] == pytest.approx(np.mean((r - 1) - np.log(r))) and stats["approx_kl"] > 0


def test_the_exact_kl_term_equals_numpy_and_pulls_toward_the_reference():
    rng = np.random.default_rng(3)
    logits, ref_logits = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))
    logits[..., 4] = ref_logits[..., 4] = -1e9  # a banned token: probability 0 in both, no contribution
    log_softmax = lambda z: z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - \
        z.max(-1, keepdims=True)  # noqa: E731
    p, q = log_softmax(logits), log_softmax(ref_logits)
    expected = (np.exp(p) * (p - q)).sum(-1)  # [2, 3]
    assert (expected > 0).all()
    got = ppo.position_kl(Tensor(p, mindspore.float32), Tensor(q, mindspore.float32)).asnumpy()
    assert np.allclose(got, expected, atol=1e-5)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    loss = ppo.kl_loss(Tensor(p, mindspore.float32), Tensor(q, mindspore.float32), Tensor(mask))
    assert float(loss.asnumpy()) == pytest.approx((expected * mask).sum() / 3, abs=1e-5)
    # its gradient moves the logits toward the reference's: one small step lowers the KL
    grad = mindspore.grad(lambda z: ppo.kl_loss(ops.log_softmax(z, -1), Tensor(q, mindspore.float32),
                                                Tensor(mask)))(Tensor(logits, mindspore.float32)).asnumpy()
    stepped = log_softmax(logits - 0.5 * grad)
    assert ((np.exp(stepped) * (stepped - q)).sum(-1) * mask).sum() < (expected * mask).sum()
    assert np.allclose(grad[1, 1:], 0) and np.allclose(grad[0, 2], 0)  # padded positions get no gradient
    assert ppo.masked_std([[1.0, 3.0, 100.0]], [[1, 1, 0]]) == pytest.approx(1.0)


def test_the_entropy_bonus_equals_numpy_and_its_step_raises_the_entropy():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 3, 6)) * 2.0
    logits[..., 5] = -1e9  # a banned token: no share of the entropy
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    p = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - \
        logits.max(-1, keepdims=True)
    entropy = -(np.exp(p) * p).sum(-1)  # [2, 3]
    got = float(ppo.mean_entropy(Tensor(p, mindspore.float32), Tensor(mask)).asnumpy())
    assert got == pytest.approx((entropy * mask).sum() / 5, abs=1e-5)
    # the loss subtracts it: a step down the loss's gradient spreads the distributions
    grad = mindspore.grad(lambda z: -ppo.mean_entropy(ops.log_softmax(z, -1), Tensor(mask)))(
        Tensor(logits, mindspore.float32)).asnumpy()
    stepped = logits - 0.5 * grad
    q = stepped - np.log(np.exp(stepped - stepped.max(-1, keepdims=True)).sum(-1, keepdims=True)) - \
        stepped.max(-1, keepdims=True)
    assert ((-(np.exp(q) * q).sum(-1)) * mask).sum() > (entropy * mask).sum()
    assert np.allclose(grad[1, 2], 0)  # a padded position gets no gradient


def test_the_frontier_reweights_reference_samples_by_exp_reward_over_beta():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ppo_frontier", Path(__file__).parent.parent / "scripts" /
                                                  "studies" / "ppo_frontier.py")
    frontier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frontier)
    rewards = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    positive = np.array([[1, 0, 0, 0], [1, 0, 0, 0]], float)
    flat = frontier.tilt(np.zeros((2, 4)), positive, 1.0)  # equal rewards: the reference itself
    assert flat["kl"] == pytest.approx(0.0, abs=1e-12) and flat["positive_share"] == pytest.approx(0.25)
    one = frontier.tilt(rewards, positive, 1.0)
    w = np.exp([1.0, 0, 0, 0]) / (np.e + 3)  # prompt 2's weights; prompt 1 stays uniform
    assert one["positive_share"] == pytest.approx((0.25 + w[0]) / 2)
    assert one["kl"] == pytest.approx((w * np.log(4 * w)).sum() / 2)
    sharp = frontier.tilt(rewards, positive, 1e-3)  # β -> 0: all weight on the best sample, KL -> log K
    assert sharp["positive_share"] == pytest.approx(0.625) and sharp["kl"] == pytest.approx(np.log(4) / 2)
    curve = [frontier.tilt(rewards, positive, b) for b in (4.0, 1.0, 0.25)]
    assert frontier.kl_to_reach(curve, 0.55) == pytest.approx(curve[2]["kl"])
    assert frontier.kl_to_reach(curve, 0.99) is None


def test_leave_one_out_compares_each_response_with_the_others_to_its_prompt():
    scores = np.array([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    got = ppo.leave_one_out(scores, 3)
    expected = [1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0]
    assert np.allclose(got, expected)
    assert np.allclose(got.reshape(2, 3).sum(axis=1), 0)  # each prompt's group sums to 0
    assert np.allclose(ppo.leave_one_out(scores + 10.0, 3), got)  # a prompt-wide shift cancels
    assert np.array_equal(ppo.leave_one_out(scores, 1), scores)
    with pytest.raises(ValueError, match="6 scores do not split into groups of 4"):
        ppo.leave_one_out(scores, 4)
