"""``ms-gpt finetune`` and ``ms-gpt reward``: GPT-1 style supervised fine-tuning of a pretrained (or random) GPT,
and a reward model trained the same way on preference pairs (:func:`reward`). The library is
:mod:`ms_gpt.finetuning`.

The objective is GPT-1's L3 = L2 + λ·L1: cross-entropy of the task head on the extract token plus λ
times the language-modelling loss on the same inputs (0 turns it off and skips the vocabulary
projection). The learning rate, λ, warmup and epochs default by model size (``ms_gpt.recipes``: GPT-1's
recipe for GPT-1-size models, larger steps and no LM term for small ones); the length defaults to the
model's position table. Schedule: linear warmup, then linear decay to zero. The validation split is
scored after each epoch, the best epoch's model is kept in ``OUT/best`` (model.ckpt, gpt_config.json,
classifier.json, tokenizer/) and the run stops early after ``patience`` epochs without a better one; the
test split is scored with the kept model. Before training, the share of ``<unk>`` tokens of every split
is measured: a tokenizer that cannot spell the task's words makes the task impossible, so above
``max_unk`` the run stops (``allow_unk`` overrides).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

from ms_gpt import recipes
from ms_gpt.data import tasks
from ms_gpt.data.batching import default_buckets
from ms_gpt.data.preferences import as_choice_task, load_preferences
from ms_gpt.finetuning import (
    Predictor,
    better,
    build_classifier,
    check_unknown,
    choice_margin,
    classification_report,
    make_objective,
    mean_cross_entropy,
    resolve_defaults,
    resolve_epochs,
    stop_now,
    unknown_shares,
)
from ms_gpt.flows import common
from ms_gpt.flows.configs import FinetuneConfig, RewardConfig
from ms_gpt.rl.reward import RewardScorer, pairwise_accuracy
from ms_gpt.run_folder import checkpoint
from ms_gpt.training import Trainer

BEST = checkpoint.BEST


def finetune(cfg: FinetuneConfig) -> dict:
    """Fine-tune ``cfg.init`` (an ms_gpt or Hugging Face openai-gpt folder) on ``cfg.data`` for ``cfg.task``."""
    cfg.validate()
    with common.execution(cfg) as settings:
        data_set = tasks.load_task_data(cfg.data, cfg.task, seed=cfg.seed)  # inputs first: --out untouched on error
        return _tune(cfg, settings, data_set, meta={}, zero_head=False, all_pairs=False)


def pass_plan(cfg: RewardConfig, n_train: int) -> RewardConfig:
    """``cfg`` with a long preference set cut to one pass over its first :data:`recipes.REWARD_PASS_STEPS`
    batches (when neither ``train_limit`` nor ``epochs`` is given)."""
    steps = math.ceil(n_train / cfg.batching.batch_size)
    if cfg.train_limit is not None or cfg.epochs is not None or steps <= recipes.REWARD_PASS_STEPS:
        return cfg
    limit = recipes.REWARD_PASS_STEPS * cfg.batching.batch_size
    common.say("reward", f"{n_train:,} training pairs ({steps:,} batches a pass): one pass over the first {limit:,} "
                         "(--train-limit and --epochs change it)")
    return dataclasses.replace(cfg, train_limit=limit, epochs=1)


def reward(cfg: RewardConfig) -> dict:
    """``ms-gpt reward``: a reward model from preference pairs (the third step of the ChatGPT recipe).

    The trunk of ``--init`` plus a scalar head read at the last token of ``<bos> prompt <sep> response <eos>``
    (``--pool mean``: on the average of the tokens' states), trained on ``-log σ(r(chosen) - r(rejected))``:
    fine-tuning's two-choice head with the chosen response as the gold choice, which is the same loss
    (:mod:`ms_gpt.data.preferences`); the head starts at 0. Early stopping, the best checkpoint (``OUT/best``,
    loaded by :func:`ms_gpt.run_folder.checkpoint.load_reward`), the ``<unk>`` guard and the defaults by model size are
    ``finetune``'s. ``metrics.json`` has the held-out pairwise accuracy (``accuracy``: the share of test pairs
    with r(chosen) > r(rejected)) and the reward margin (``test_margin``); when the pairs name a ``kind`` of
    rejected reply, ``test_pairwise`` has the kept model's accuracy through ``ms-gpt ppo``'s scorer, per kind.
    The head's ``classifier.json`` also records what it reads (``score_input``): ``text`` when every training
    prompt was empty (the response is the whole text, as in ``builtin:reviews-zh-pairs``), else ``pair``;
    ``ms-gpt ppo`` scores its rollouts the same way."""
    cfg.validate()
    with common.execution(cfg) as settings:
        pairs = load_preferences(cfg.data, seed=cfg.seed)
        data_set = as_choice_task(pairs, cfg.data)
        empty = all(not row["prompt"].strip() for row in pairs["train"])
        if cfg.pairs == "all":
            prompts = {row["prompt"] for row in pairs["train"]}
            if len(prompts) > 1:
                shown = ", ".join(repr(p[:30]) for p in sorted(prompts)[:3])
                raise ValueError(f"--pairs all compares responses across pairs, so every training pair needs the same "
                                 f"prompt; {cfg.data} has {len(prompts)} different prompts ({shown}, ...): "
                                 f"use --pairs given")
        cfg = pass_plan(cfg, len(pairs["train"]))
        meta = {**RewardConfig.CLASSIFIER_META, "score": RewardConfig.SCORES[cfg.pool],
                "score_input": "text" if empty else "pair", "pairs": cfg.pairs}

        def by_kind(best: Path) -> dict:  # the kept model through ms-gpt ppo's scorer, per kind of rejected reply
            model, tok, head = checkpoint.load_reward(best)
            scorer = RewardScorer(model, tok, head, head["score_input"], settings.compiled)
            return {"test_pairwise": pairwise_accuracy(scorer, pairs["test"])}

        return _tune(cfg, settings, data_set, meta, zero_head=True, all_pairs=cfg.pairs == "all",
                     more_metrics=by_kind if any(r.get("kind") for r in pairs["test"]) else None)


def _tune(cfg: FinetuneConfig, settings, data_set, meta: dict, zero_head: bool, all_pairs: bool,
          more_metrics=None) -> dict:
    """Load ``cfg.init``, claim ``--out`` and train the head on ``data_set`` (``meta``: more entries for the head's
    classifier.json; ``zero_head``, ``all_pairs``: a reward model's head and loss, see ms_gpt.finetuning;
    ``more_metrics``: a function of the kept model's folder giving more metrics)."""
    gpt, tok = checkpoint.load_for_tuning(cfg.init, need_sep=cfg.task != "classification", seed=cfg.seed)
    with common.run_folder(cfg.out, cfg.COMMAND, overwrite=cfg.overwrite,
                           inputs={"--init": cfg.init, "--data": cfg.data}) as out:
        return _finetune(cfg, settings, out, data_set, gpt, tok, meta, zero_head, all_pairs, more_metrics)


def _finetune(cfg: FinetuneConfig, settings, out: Path, data_set, gpt, tok, extra_meta: dict, zero_head: bool,
              all_pairs: bool, more_metrics=None) -> dict:
    cfg, chosen = resolve_defaults(cfg, gpt)
    max_len = cfg.batching.max_len
    shapes = common.shapes_for(cfg.batching, settings, max_len, default_buckets(max_len))
    encoded = {s: tasks.encode_split(tok, data_set, s, max_len, cfg.train_limit if s == "train" else None)
               for s in tasks.SPLITS}
    unk = unknown_shares(tok, encoded)
    batch = cfg.batching.batch_size
    train_ds = tasks.task_dataset(encoded["train"], batch, tok.pad_id, shapes, shuffle=True)
    eval_ds = {s: tasks.task_dataset(encoded[s], batch, tok.pad_id, shapes, shuffle=False) for s in ("valid", "test")}
    per_epoch = train_ds.get_dataset_size()
    cfg, chosen = resolve_epochs(cfg, chosen, per_epoch)
    print(f"finetune: {chosen['parameters'] / 1e6:.2f}M-parameter model, {chosen['size']}-model defaults for "
          f"{', '.join(chosen['by_size']) or 'nothing (all given)'}: learning rate {chosen['learning_rate']:g}, "
          f"λ {chosen['lm_weight']:g}, up to {cfg.epochs} epochs of {per_epoch} steps (patience {cfg.patience}), "
          f"max_len {max_len}, pool {cfg.pool}; "
          f"<unk> share {', '.join(f'{s} {v:.1%}' for s, v in unk.items())}", file=sys.stderr)
    check_unknown(unk, cfg, tok)
    train_cfg = common.epoch_schedule(cfg.train, cfg.epochs, per_epoch, cfg.warmup_fraction, ckpt_every=per_epoch)
    run = common.resolved(cfg, train_cfg, shapes)
    out.mkdir(parents=True, exist_ok=True)
    record = common.record_run(out, run)
    clf = build_classifier(gpt, cfg.task, data_set.num_labels, cfg, cfg.seed, zero_head=zero_head)
    trainer = Trainer(clf, train_cfg, out, jit=settings.compiled, objective=make_objective(cfg.lm_weight, all_pairs),
                      resumable=False)
    predict = Predictor(clf, jit=settings.compiled)
    names = [str(c) for c in data_set.classes] or [f"choice {i}" for i in range(data_set.num_labels)]
    meta = {"classes": data_set.classes, "init": str(cfg.init), "data": cfg.data, "run_config": record,
            **extra_meta}
    epochs, best, stopped_early = [], None, False
    with common.step_bar(cfg.progress, train_cfg.steps, "finetune") as report:
        for epoch in range(1, cfg.epochs + 1):
            fit = trainer.fit(train_ds, None, until=epoch * per_epoch, progress=report)
            logits, gold = predict.logits(eval_ds["valid"])
            valid = classification_report(logits.argmax(-1), gold, data_set.num_labels, names)
            losses = [h["loss"] for h in trainer.history[-per_epoch:]]
            epochs.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "valid_accuracy": valid["accuracy"],
                           "valid_loss": mean_cross_entropy(logits, gold), "valid_macro_f1": valid["macro_f1"],
                           "tokens_per_s": round(fit["tokens_per_s"], 1)})
            if best is None or better(epochs[-1], best):
                best = epochs[-1]
                checkpoint.save_classifier(clf, tok, {**meta, "epoch": epoch, "valid_accuracy": valid["accuracy"]},
                                           out / BEST)
            if stop_now(epochs, cfg.patience) and epoch < cfg.epochs:
                stopped_early = True
                break
    best_clf, _, _ = checkpoint.load_classifier(out / BEST)  # a fresh model + compile: the kept checkpoint is scored
    test_logits, test_gold = Predictor(best_clf, jit=settings.compiled).logits(eval_ds["test"])
    test = classification_report(test_logits.argmax(-1), test_gold, data_set.num_labels, names)
    metrics = {
        "task": cfg.task, **{k: meta[k] for k in ("role", "pairs") if k in meta},
        "data": cfg.data, "init": str(cfg.init), "reinit": cfg.reinit, "device": settings.target,
        "static_shapes": shapes.static, "shape_mode": shapes.mode, "train_shapes": trainer.input_shapes(),
        "train_examples": len(encoded["train"]), "valid_examples": len(encoded["valid"]),
        "test_examples": len(encoded["test"]), "num_labels": data_set.num_labels, "classes": data_set.classes,
        "defaults": chosen, "unk_share": unk, "steps": trainer.step, "of_steps": train_cfg.steps,
        "stopped_early": stopped_early, "lm_weight": cfg.lm_weight, "best_epoch": best["epoch"],
        "valid_accuracy": best["valid_accuracy"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
        "per_class": test["per_class"], "epochs": epochs,
        **({"test_margin": choice_margin(test_logits, test_gold)} if cfg.task == "multiple-choice" else {}),
        "train_loss": {"first": trainer.history[0]["loss"],
                       "last": float(np.mean([h["loss"] for h in trainer.history[-10:]]))},
        **(more_metrics(out / BEST) if more_metrics else {}),
    }
    return common.finish(out, metrics, trainer.history)
