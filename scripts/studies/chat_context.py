"""Does a chat model read its context? On builtin:chitchat-pairs' test pairs, per kind of rejected reply, the
share of pairs in which the real reply wins:

- ``pmi``: the model's log-probability of the reply after its line minus after an empty context (pointwise
  mutual information): a model that reads the line prefers the real reply to another conversation's;
- ``logp``: the log-probability after the line alone;
- ``judge``: chat-eval's on-topic judge (:class:`ms_gpt.reply_quality.OnTopicJudge`), for comparison.

  python scripts/studies/chat_context.py --ckpt runs/chat [--pairs 1000] [--seed 0]

Prints one JSON object. docs/chat.md has the figures for the recipe's model.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

BATCH = 50


def reply_log_probs(model, prompter, lines, replies) -> list:
    """Σ log p of each reply (and its closing <eos>) after its line, in fixed [BATCH, 2 x half] shapes."""
    import mindspore
    import numpy as np

    from ms_gpt.generation import left_pad
    from ms_gpt.prompting import suppressed_ids
    from ms_gpt.rl.rollouts import logit_bias, response_log_probs

    tok, half = prompter.tok, model.config.n_positions // 2
    bias = mindspore.Tensor(logit_bias(model.config.vocab_size, suppressed_ids(tok)))
    rows = [(prompter.conversation([line], half), (tok.encode(r) + [tok.eos_id])[:half]) for line, r in
            zip(lines, replies)]
    out = []
    for start in range(0, len(rows), BATCH):
        part = rows[start:start + BATCH]
        ids = np.full((BATCH, 2 * half), tok.pad_id, np.int32)
        ids[:len(part), :half] = left_pad([p for p, _ in part], half, tok.pad_id)
        mask = np.zeros((BATCH, half))
        for i, (_, r) in enumerate(part):
            ids[i, half:half + len(r)] = r
            mask[i, :len(r)] = 1
        _, _, logp = response_log_probs(model, mindspore.Tensor(ids), half, bias)
        out += list((logp.asnumpy().astype(np.float64) * mask).sum(1)[:len(part)])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="a dialogue model: a folder written by ms-gpt sft (or ppo) (required)")
    p.add_argument("--pairs", type=int, default=1000, help="test pairs sampled (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="the pairs' split and sample (default: 0)")
    args = p.parse_args()
    if args.pairs < 1:
        p.error(f"--pairs must be >= 1, got {args.pairs}")

    import numpy as np

    from ms_gpt.data.dialogue import chitchat_splits, exchanges
    from ms_gpt.data.preferences import chitchat_pairs
    from ms_gpt.environment import device
    from ms_gpt.prompting import open_checkpoint
    from ms_gpt.reply_quality import OnTopicJudge

    device.setup("CPU", mode="jit", seed=args.seed)
    model, prompter = open_checkpoint(Path(args.ckpt))
    if not prompter.dialogue:
        p.error(f"--ckpt {args.ckpt} is not a dialogue model (written by ms-gpt sft)")
    test = chitchat_pairs(args.seed)["test"]
    pairs = random.Random(args.seed + 1).sample(test, min(args.pairs, len(test)))
    lines = [r["prompt"] for r in pairs]
    chosen, rejected = [r["chosen"] for r in pairs], [r["rejected"] for r in pairs]
    scores = {}
    for name, replies in (("chosen", chosen), ("rejected", rejected)):
        after_line = np.array(reply_log_probs(model, prompter, lines, replies))
        alone = np.array(reply_log_probs(model, prompter, [""] * len(pairs), replies))
        scores[name] = {"logp": after_line, "pmi": after_line - alone}
    judge = OnTopicJudge(exchanges(chitchat_splits(args.seed)["train"]), seed=args.seed)
    contexts = [[line] for line in lines]
    for name, replies in (("chosen", chosen), ("rejected", rejected)):
        scores[name]["judge"] = judge.probability(contexts, replies)
    result = {"ckpt": args.ckpt, "pairs": len(pairs), "seed": args.seed}
    for kind in ("all", "other", "loop"):
        idx = [i for i, r in enumerate(pairs) if kind == "all" or r["kind"] == kind]
        result[kind] = {"pairs": len(idx), **{m: round(float(np.mean(scores["chosen"][m][idx] >
                                                                      scores["rejected"][m][idx])), 3)
                                             for m in ("pmi", "logp", "judge")}}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
