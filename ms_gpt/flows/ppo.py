"""``ms-gpt ppo``: the policy tuned against a reward model with PPO (the last step of the ChatGPT recipe).

One step: ``--batch-size`` prompts are drawn (seeded by ``--seed`` and the step number, so a resumed run
draws the same ones) and continued by the one sampler (:func:`ms_gpt.generation.sample`); the reward
model scores each text; the per-token reward is ``-β (log π - log π_ref)`` plus that score at the last
token (π_ref: the starting policy, frozen); generalised advantage estimation over the value head's
estimates gives the advantages (whitened over the batch) and the returns; then ``--ppo-epochs`` passes of
the clipped policy loss plus ``--vf-coef`` x the clipped value loss, one compiled step each; the adaptive
controller moves β toward ``--kl-target`` nats per response. The pieces are the :mod:`ms_gpt.rl` package.

The output folder is a language-model checkpoint (``ms-gpt generate``/``chat`` use it as they would the
policy: the tokenizer, ``sft.json`` and the prompt style are carried over) plus ``value_head.ckpt``,
``metrics.json`` (``steps``: one record per step), ``ppo.png`` and ``ppo.json``. Checkpoints are the
training state's commit protocol (:func:`ms_gpt.run_folder.checkpoint.save_train_state`); ``--resume`` continues.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np

from ms_gpt import recipes
from ms_gpt.config import GenerationConfig
from ms_gpt.data.prompts import load_prompts
from ms_gpt.flows import common
from ms_gpt.flows.configs import PPOConfig
from ms_gpt.generation import sample
from ms_gpt.model import count_parameters
from ms_gpt.prompting import Prompter, score_input
from ms_gpt.rl.reward import RewardScorer
from ms_gpt.rl.trainer import CKPT_EVERY, PPOTrainer, Prompts, encode_prompts, plot
from ms_gpt.run_folder import atomic, checkpoint


def ppo(cfg: PPOConfig) -> dict:
    cfg.validate()
    with common.execution(cfg) as settings:
        # Every input is read before --out is touched: a bad one stops the run with the old folder intact.
        policy_dir = Path(cfg.policy)
        if not (policy_dir / checkpoint.TOKENIZER).is_dir():
            raise FileNotFoundError(f"--policy {policy_dir}: not a folder written by ms-gpt pretrain or sft (no "
                                    f"{checkpoint.TOKENIZER}/)")
        gpt, tok = checkpoint.load_for_tuning(policy_dir, need_sep=False, seed=cfg.seed)
        ref, _ = checkpoint.load_for_tuning(policy_dir, need_sep=False, seed=cfg.seed)
        reward_model, reward_tok, meta = checkpoint.load_reward(cfg.reward)
        prompter = Prompter.of(policy_dir, tok)
        if cfg.max_new_tokens is None:
            cfg = dataclasses.replace(cfg, max_new_tokens=recipes.ppo_new_tokens(gpt.config.n_positions))
        prompts = encode_prompts(load_prompts(cfg.prompts, seed=cfg.seed), prompter, cfg.max_new_tokens,
                                 gpt.config.n_positions, cfg.prompts, drop_long=cfg.prompts.startswith("builtin:"))
        check_reward_reads(cfg, gpt, prompter, prompts, reward_tok)
        scorer = RewardScorer(reward_model, reward_tok, meta, score_input(cfg.score_input, meta), settings.compiled)
        inputs = {"--policy": cfg.policy, "--reward": cfg.reward, "--prompts": cfg.prompts}
        with common.run_folder(cfg.out, "ppo", resume=cfg.resume, overwrite=cfg.overwrite, inputs=inputs,
                               resumable=True) as out:
            return _ppo(cfg, settings, out, gpt, ref, prompter, prompts, scorer)


def check_reward_reads(cfg: PPOConfig, gpt, prompter: Prompter, prompts: Prompts, reward_tok) -> float:
    """The share of ``<unk>`` in what the reward model would read of the starting policy's text (the first
    :data:`recipes.PPO_UNK_SAMPLES` prompts, each continued once by sampling); over
    :data:`recipes.PPO_UNK_MAX` an error (``--allow-unk``: a warning)."""
    n = min(recipes.PPO_UNK_SAMPLES, len(prompts.ids))
    gen = prompter.generation(GenerationConfig(strategy="sample", max_new_tokens=cfg.max_new_tokens, seed=cfg.seed))
    drawn = sample(gpt, prompts.ids[:n], gen, pad_id=prompter.tok.pad_id).responses
    texts = prompts.texts[:n] + [prompter.answer(r) for r in drawn]
    specials = [i for i in (reward_tok.pad_id, reward_tok.bos_id, reward_tok.eos_id) if i is not None]
    share = recipes.unk_share((reward_tok.encode(t) for t in texts), reward_tok.unk_id, specials)
    if share > recipes.PPO_UNK_MAX:
        what = (f"--reward {cfg.reward} reads {share:.0%} of the policy's text as <unk> (its {n} first prompts and "
                f"a sample of its replies): its tokenizer was built on other text, so its scores say nothing about "
                f"these responses")
        if not cfg.allow_unk:
            raise ValueError(f"{what}; train a reward model from the policy's own checkpoint (ms-gpt reward --init "
                             f"{cfg.policy}), or give --allow-unk to train anyway")
        print(f"ms-gpt ppo: WARNING: {what} (--allow-unk: training anyway)", file=sys.stderr, flush=True)
    return share


def _ppo(cfg: PPOConfig, settings, out: Path, gpt, ref, prompter: Prompter, prompts: Prompts,
         scorer: RewardScorer) -> dict:
    tok, chat = prompter.tok, prompter.dialogue
    lr = cfg.train.learning_rate or recipes.ppo_learning_rate(count_parameters(gpt))
    train = dataclasses.replace(cfg.train, learning_rate=lr, ckpt_every=cfg.train.ckpt_every or CKPT_EVERY)
    run = dataclasses.replace(cfg, train=train, kl_horizon=cfg.kl_horizon or 10 * cfg.batch_size,
                              score_input=scorer.score_input)
    until = min(cfg.until or train.steps, train.steps)
    done = common.finished(out, until) if cfg.resume else None
    common.record_run(out, run, free=cfg.RESUME_FREE, resume=cfg.resume, write=done is None)
    if done is not None:
        return done
    if not cfg.resume:
        checkpoint.save_tokenizer(tok, out)
        checkpoint.save_prompt_form(out, prompter.form)  # the policy's: the tuned model is prompted as it was
        if chat:
            shutil.copyfile(Path(cfg.policy) / checkpoint.SFT, out / checkpoint.SFT)
        atomic.write_json(out / checkpoint.PPO, {
            "policy": str(cfg.policy), "reward": str(cfg.reward), "prompts": str(cfg.prompts),
            "boundaries": "newline" if prompter.form == "lines" else "eos", "chat": chat,
            "score_input": scorer.score_input, "prompt_len": prompts.length})
    print(f"ms-gpt ppo: {len(prompts.ids)} prompts (up to {prompts.length} tokens), {run.batch_size} rollouts a "
          f"step of up to {run.max_new_tokens} tokens, learning rate {lr:g}, "
          + (f"β {run.init_kl_coef:g} fixed" if run.kl_target is None else
             f"β {run.init_kl_coef:g} -> KL target {run.kl_target:g}")
          + f" ({run.kl_penalty} penalty), reward input: {scorer.score_input}")
    job = PPOTrainer(run, out, gpt, ref, prompter, prompts, scorer, settings.compiled)
    if cfg.resume:
        job.resume()
    with common.step_bar(cfg.progress, until, "ppo", initial=job.step) as report:
        history = job.fit(cfg.until, report)
    metrics = {"policy": str(cfg.policy), "reward_model": str(cfg.reward), "prompts": str(cfg.prompts),
               "n_prompts": len(prompts.ids), "learning_rate": lr, "score_input": scorer.score_input,
               "score_transform": cfg.score_transform, "score_offset": job.score_offset,
               "device": settings.target, "steps_done": job.step, "steps": history,
               "reward": _first_last(history, "reward"), "kl": _first_last(history, "kl"),
               "samples": job.samples}
    checkpoint.write_metrics(out, metrics)
    plot(history, out / checkpoint.PPO_PLOT)
    return metrics


def _first_last(history, key: str, n: int = 5) -> dict:
    """The first step's value and the mean of the last ``n`` steps'."""
    if not history:
        return {}
    return {"first": history[0][key], "last": float(np.mean([h[key] for h in history[-n:]]))}
