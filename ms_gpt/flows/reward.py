"""``ms-gpt reward``: a reward model from preference pairs (the third step of the ChatGPT recipe).

The trunk of ``--init`` plus a scalar head read at the last token of ``<bos> prompt <sep> response <eos>``
(``--pool mean``: on the average of the tokens' states),
trained on ``-log σ(r(chosen) - r(rejected))``: fine-tuning's two-choice head with the chosen response as
the gold choice, which is the same loss (:mod:`ms_gpt.data.preferences`). Early stopping, the best
checkpoint (``OUT/best``, loaded by :func:`ms_gpt.checkpoint.load_reward`), the ``<unk>`` guard and the
defaults by model size are ``ms-gpt finetune``'s. ``metrics.json`` has the held-out pairwise accuracy
(``accuracy``: the share of test pairs with r(chosen) > r(rejected)) and the reward margin
(``test_margin``). The head's ``classifier.json`` also records what it reads (``score_input``): ``text`` when
every training prompt was empty (the response is the whole text, as in ``builtin:reviews-zh-pairs``), else
``pair``; ``ms-gpt ppo`` scores its rollouts the same way.
"""

from __future__ import annotations

from ms_gpt.data.preferences import as_choice_task, load_preferences
from ms_gpt.flows import finetune
from ms_gpt.flows.configs import RewardConfig


def reward(cfg: RewardConfig) -> dict:
    cfg.validate()
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
    meta = {**RewardConfig.CLASSIFIER_META, "score": RewardConfig.SCORES[cfg.pool],
            "score_input": "text" if empty else "pair", "pairs": cfg.pairs}
    return finetune.finetune(cfg, data_set=data_set, meta=meta)
