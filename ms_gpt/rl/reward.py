"""A reward model's score of (prompt, response) texts, in the form it was trained on."""

from __future__ import annotations

import mindspore
import numpy as np
from mindspore import Tensor

from ms_gpt.data import tasks
from ms_gpt.prompting import join_text
from ms_gpt.run_folder import checkpoint


class RewardScorer:
    """The reward model's score of (prompt, response) texts: ``<bos> prompt <sep> response <eos>`` (``pair``)
    or ``<bos> <sep> prompt+response <eos>`` (``text``), right-padded to the length it was trained with, so
    one compiled graph serves every batch."""

    def __init__(self, model, tok, meta: dict, score_input: str, jit: bool):
        self.model, self.tok, self.score_input = model, tok, score_input
        self.max_len = checkpoint.trained_max_len(meta, model.config.n_positions)

        def run(ids):
            return model(ids)[0]

        self._run = mindspore.jit(run) if jit else run

    def rows(self, prompts, responses) -> np.ndarray:
        out = np.full((len(prompts), self.max_len), self.tok.pad_id, np.int32)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            if self.score_input == "text":
                row = {"context": "", "choices": [join_text(self.tok, p, r)]}
            else:
                row = {"context": p, "choices": [r]}
            seq = tasks.transform(self.tok, "multiple-choice", row, self.max_len)[0]
            out[i, :len(seq)] = seq
        return out

    def __call__(self, prompts, responses) -> np.ndarray:
        return self._run(Tensor(self.rows(prompts, responses))).asnumpy()[:, 0].astype(np.float64)


def pairwise_accuracy(scorer: RewardScorer, pairs, batch: int = 64) -> dict:
    """The share of preference ``pairs`` (``{"prompt", "chosen", "rejected"}`` rows) with r(chosen) > r(rejected),
    scored as ``ms-gpt ppo`` scores its rollouts: ``{"all": share, "pairs": n}``, and per ``kind`` when rows
    say which kind of rejected reply they hold (``{"kinds": {kind: {"accuracy", "pairs"}}}``)."""
    if not pairs:
        raise ValueError("no pairs to score")
    won = []
    for start in range(0, len(pairs), batch):
        part = pairs[start:start + batch]
        prompts = [r["prompt"] for r in part]
        won += list(scorer(prompts, [r["chosen"] for r in part]) > scorer(prompts, [r["rejected"] for r in part]))
    out = {"all": round(float(np.mean(won)), 4), "pairs": len(won)}
    kinds = sorted({r["kind"] for r in pairs if r.get("kind")})
    if kinds:
        out["kinds"] = {k: {"accuracy": round(float(np.mean([w for w, r in zip(won, pairs) if r.get("kind") == k])),
                                              4),
                            "pairs": sum(r.get("kind") == k for r in pairs)} for k in kinds}
    return out
