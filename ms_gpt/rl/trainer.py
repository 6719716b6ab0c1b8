"""PPO's prompts and its trainer: rollouts through the one sampler, scored by the reward model, then the
clipped policy and value losses, one compiled step each (formulas: :mod:`ms_gpt.rl.ppo`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import mindspore
import numpy as np
from mindspore import Tensor, ops

from ms_gpt import generation
from ms_gpt.config import GenerationConfig
from ms_gpt.prompting import Prompter, join_text, suppressed_ids
from ms_gpt.rl import ppo as rl
from ms_gpt.rl import rollouts
from ms_gpt.rl.value_head import ValueHead
from ms_gpt.run_folder import atomic, checkpoint
from ms_gpt.training import make_optimizer, rate_table, resume_job, run_steps, save_job

if TYPE_CHECKING:  # the command's settings (ms_gpt.flows.configs); not imported at run time
    from ms_gpt.flows.configs import PPOConfig

CKPT_EVERY = 10
SAMPLES_SHOWN = 4


@dataclasses.dataclass
class Prompts:
    texts: list  # the prompts as text
    ids: list  # and as the policy's input token ids
    length: int  # P: the longest, which every prompt is left-padded to


def encode_prompts(texts, prompter: Prompter, max_new_tokens: int, n_positions: int, source: str,
                   drop_long: bool) -> Prompts:
    """The prompts as the policy's input; one that leaves no room for ``max_new_tokens`` in the context is
    an error naming it (``drop_long``: a built-in set, whose long ones are left out instead)."""
    room = n_positions - max_new_tokens
    if room < 2:
        raise ValueError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the policy's context "
                         f"(n_positions={n_positions}); lower it")
    kept_texts, kept_ids = [], []
    for n, text in enumerate(texts, 1):
        ids = prompter.encode(text)
        if len(ids) > room:
            if drop_long:
                continue
            raise ValueError(f"{source}: prompt {n} ({text[:40]!r}) is {len(ids)} tokens; with --max-new-tokens "
                             f"{max_new_tokens} the policy's context (n_positions={n_positions}) leaves room for "
                             f"{room}: shorten the prompt or lower --max-new-tokens")
        kept_texts.append(text)
        kept_ids.append(ids)
    if not kept_ids:
        raise ValueError(f"{source}: no prompt fits the policy's context with --max-new-tokens {max_new_tokens} "
                         f"(room for {room} tokens)")
    return Prompts(kept_texts, kept_ids, max(len(i) for i in kept_ids))


class PPOTrainer:
    """The models, the optimizer and the compiled steps of one PPO run. ``scorer(prompts, responses)`` gives
    one reward per text (a :class:`RewardScorer`, or any function of the texts: a test's toy reward)."""

    def __init__(self, cfg: PPOConfig, out: Path, gpt, ref, prompter: Prompter, prompts: Prompts, scorer, jit: bool):
        tok = prompter.tok
        self.cfg, self.out, self.gpt, self.ref, self.tok = cfg, out, gpt, ref, tok
        self.prompts, self.scorer = prompts, scorer
        for model in (gpt, ref):
            model.set_train(False)  # no dropout: the ratios PPO takes must compare the same distributions
        ref.set_grad(False)
        self.head = ValueHead(gpt.config.d_model)
        self.optimizer = make_optimizer(gpt, cfg.train, gpt.trainable_params() + self.head.trainable_params(),
                                        updates_per_step=cfg.ppo_epochs)
        self.controller = rl.AdaptiveKLController(cfg.init_kl_coef, cfg.kl_target, cfg.kl_horizon) \
            if cfg.kl_target is not None else None
        self.beta = cfg.init_kl_coef
        self.stops = prompter.stops()
        self.bias_np = rollouts.logit_bias(gpt.config.vocab_size, suppressed_ids(tok))
        self.sampling = GenerationConfig(strategy="sample", max_new_tokens=cfg.max_new_tokens, stop_ids=self.stops,
                                         suppress_ids=tuple(suppressed_ids(tok)))
        bias = Tensor(self.bias_np)
        length, head = prompts.length, self.head
        clip, value_clip, vf_coef, ent_coef = cfg.clip_range, cfg.value_clip, cfg.vf_coef, cfg.entropy_coef
        detach, in_loss = cfg.value_trunk == "detached", cfg.kl_penalty == "loss"

        def policy_stats(ids):
            return rollouts.token_stats(gpt, head, ids, length, bias)

        def ref_logp(ids):
            _, logp_all, logp = rollouts.response_log_probs(ref, ids, length, bias)
            return (logp, logp_all) if in_loss else logp

        def objective(ids, mask, old_logp, old_values, advantages, returns, *kl_inputs):
            h, logp_all, logp = rollouts.response_log_probs(gpt, ids, length, bias)
            values = head(ops.stop_gradient(h) if detach else h)
            pg = rl.clipped_policy_loss(logp, old_logp, advantages, mask, clip)
            vf = rl.clipped_value_loss(values, old_values, returns, mask, value_clip)
            loss = pg + vf_coef * vf
            if in_loss:  # kl_inputs: the reference's log-probabilities [b, T, vocab] and β / std(advantages)
                ref_logp_all, kl_coef = kl_inputs
                loss = loss + kl_coef * rl.kl_loss(logp_all, ref_logp_all, mask)
            if ent_coef:
                loss = loss - ent_coef * rl.mean_entropy(logp_all, mask)
            return loss, pg, vf, logp

        grad_fn = mindspore.value_and_grad(objective, None, self.optimizer.parameters, has_aux=True)
        optimizer = self.optimizer

        def train_step(*batch):
            (loss, pg, vf, logp), grads = grad_fn(*batch)
            norm = optimizer(grads)
            return pg, vf, logp, norm

        wrap = mindspore.jit if jit else (lambda f: f)
        self._stats, self._ref, self._train = wrap(policy_stats), wrap(ref_logp), wrap(train_step)
        self.step, self.history, self.samples = 0, [], []
        self.score_offset = cfg.score_offset  # measured before the first step when logsigmoid needs it

    # ------------------------------------------------------------------ checkpoints (training.save_job/resume_job)
    checkpoint_kind = "lm"  # the folder generates like any language model's

    @property
    def model(self):
        return self.gpt

    @property
    def extra_cells(self) -> dict:
        return {checkpoint.VALUE_HEAD: self.head}

    def state(self) -> dict:
        return {"step": self.step, "history": self.history, "beta": self.beta, "samples": self.samples,
                "score_offset": self.score_offset, "train_config": {"steps": self.cfg.train.steps}}

    def save(self, extra: dict | None = None) -> None:
        save_job(self, extra)

    def resume(self) -> int:
        return resume_job(self)

    def check_resume(self, saved: dict) -> None:
        """Nothing to add: the command compared the run's settings with the folder's (``record_run``)."""

    def restore(self, state: dict) -> None:
        # the rate table came back from optimizer.ckpt: from here on it reads this run's --learning-rate and
        # --schedule (indexed by the update count, so an unchanged schedule continues exactly)
        self.optimizer.learning_rate.set_data(Tensor(rate_table(self.cfg.train, self.cfg.ppo_epochs)))
        self.step, self.history = state["step"], state["history"]
        self.beta, self.samples = state["beta"], state.get("samples", [])
        self.score_offset = state.get("score_offset", self.score_offset)
        if self.controller is not None:
            self.controller.beta = self.beta

    # ------------------------------------------------------------------ loop
    resumable = True

    @property
    def ckpt_every(self) -> int:
        return self.cfg.train.ckpt_every

    def fit(self, until: int | None, progress=None) -> list:
        """PPO steps up to ``until`` (default: cfg.train.steps) through the one training loop
        (:func:`ms_gpt.training.run_steps`: signals, checkpoints, ``progress``); returns the history."""
        until = self.cfg.train.steps if until is None else min(until, self.cfg.train.steps)
        if self.cfg.score_transform == "logsigmoid" and self.score_offset is None:
            self.score_offset = self.calibrate()
        run_steps(self, until, progress)
        return self.history

    def advance(self, stop) -> dict:
        """One PPO step (rollouts, scores, advantages, ``ppo_epochs`` updates); returns what the bar shows."""
        record = self.one_step(stop)
        self.history.append(record)
        self.step += 1
        return {"reward": f"{record['reward']:.3f}", "kl": f"{record['kl']:.2f}", "beta": f"{record['beta']:.3f}"}

    def calibrate(self, batches: int = 4) -> float:
        """The mean reward-model score of the starting policy's responses to ``batches`` x --batch-size
        prompts (drawn apart from the steps' own): the centre of the logsigmoid transform, so a response
        earns about log 1/2 for being as good as the reference's typical one."""
        scores = []
        for n in range(batches):
            roll, prompt_texts, responses = self.rollout(n, stream=1)
            scores.append(self.scorer(prompt_texts, responses))
        offset = float(np.concatenate(scores).mean())
        print(f"ms-gpt ppo: score offset {offset:.4f} (the starting policy's mean score over "
              f"{batches * self.cfg.batch_size} responses)")
        return offset

    def rollout(self, step: int, stream: int | None = None):
        cfg, prompts = self.cfg, self.prompts
        rng = np.random.default_rng([cfg.seed, step] + ([] if stream is None else [stream]))
        n = len(prompts.ids)
        k = cfg.batch_size // cfg.group_size  # prompts this step, each continued group_size times
        pick = np.repeat(rng.choice(n, size=k, replace=n < k), cfg.group_size)
        roll = generation.sample(self.gpt, [prompts.ids[i] for i in pick], self.sampling, prompt_len=prompts.length,
                                 pad_id=self.tok.pad_id, rng=rng, cache_size=prompts.length + cfg.max_new_tokens)
        texts = [self.tok.decode([t for t in r if t not in self.stops]) for r in roll.responses]
        return roll, [prompts.texts[i] for i in pick], texts

    def one_step(self, stop) -> dict:
        t0 = time.perf_counter()
        cfg = self.cfg
        roll, prompt_texts, responses = self.rollout(self.step)
        t_rollout = time.perf_counter()
        ids = Tensor(roll.ids)
        logp, values, entropy = (x.asnumpy().astype(np.float64) for x in self._stats(ids))
        in_loss = cfg.kl_penalty == "loss"
        ref_logp, ref_logp_all = self._ref(ids) if in_loss else (self._ref(ids), None)
        ref_logp = ref_logp.asnumpy().astype(np.float64)
        t_forwards = time.perf_counter()
        scores = self.scorer(prompt_texts, responses)
        t_scoring = time.perf_counter()
        mask = roll.mask.astype(np.float64)
        values = values * mask  # 0 after each response's end
        beta = self.beta
        shaped = rl.transform_scores(scores, cfg.score_transform, self.score_offset or 0.0)
        # the KL penalty: in the per-token reward, or (kl_penalty loss) a loss term, the reward the score alone
        relative = rl.leave_one_out(shaped, cfg.group_size)  # (the scores themselves when group_size is 1)
        rewards = rl.shaped_rewards(relative, logp, ref_logp, mask, 0.0 if in_loss else beta)
        advantages, returns = rl.gae(rewards, values, mask, cfg.gamma, cfg.lam)
        # whitening divides the score's part of the objective by the advantages' std: the KL term alike
        # (equal scores carry no signal to balance: then β alone)
        sigma = rl.masked_std(advantages, mask)
        kl_coef = (beta / sigma if sigma > 1e-6 else beta) if in_loss else 0.0
        advantages = rl.whiten(advantages, mask)
        f32 = lambda a: Tensor(np.asarray(a, np.float32))  # noqa: E731
        batch = (ids, f32(mask), f32(logp), f32(values), f32(advantages), f32(returns))
        if in_loss:
            batch += (ref_logp_all, f32(kl_coef))
        updates, t_update = [], time.perf_counter()
        for _ in range(cfg.ppo_epochs):
            pg, vf, new_logp, norm = self._train(*batch)
            stop.rearm()  # the compiled step installed MindSpore's SIGINT handler again
            updates.append({"policy_loss": float(pg.asnumpy()), "value_loss": float(vf.asnumpy()),
                            "grad_norm": float(np.asarray(norm.asnumpy()).reshape(-1)[0]),
                            **rl.policy_stats(new_logp.asnumpy(), logp, mask, cfg.clip_range)})
        t_updated = time.perf_counter()
        kl = float(rl.sequence_kl(logp, ref_logp, mask).mean())
        if self.controller is not None:
            self.beta = self.controller.update(kl, cfg.batch_size)
        self.samples = [join_text(self.tok, p, r) for p, r in zip(prompt_texts[:SAMPLES_SHOWN],
                                                                   responses[:SAMPLES_SHOWN])]
        n_tokens = mask.sum()
        return {"step": self.step + 1, "reward": float(scores.mean()), "reward_std": float(scores.std()),
                "score": float(shaped.mean()), "kl": kl, "beta": beta, "kl_coef": kl_coef,
                "objective": float(shaped.mean() - beta * kl),
                "entropy": float((entropy * mask).sum() / n_tokens),
                "response_length": float(mask.sum(axis=1).mean()),
                **{k: float(np.mean([u[k] for u in updates])) for k in updates[0]},
                "seconds": time.perf_counter() - t0,
                # where the step's time went: sampling the responses; the policy's and the reference's forwards;
                # the reward model; the --ppo-epochs updates (the rest is the advantages' numpy)
                "rollout_s": t_rollout - t0, "forwards_s": t_forwards - t_rollout, "scoring_s": t_scoring - t_forwards,
                "update_s": t_updated - t_update}


def plot(history, path: Path) -> None:
    """Reward, KL, entropy and β per step as one PNG, written atomically."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    steps = [h["step"] for h in history]
    for ax, key, label in zip(axes, ("reward", "kl", "entropy", "beta"),
                              ("mean reward", "KL to the reference (nats)", "entropy (nats/token)", "β")):
        ax.plot(steps, [h[key] for h in history])
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
