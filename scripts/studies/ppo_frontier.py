"""How much KL a reward model needs, at best, to steer the demo's reviews positive: the frontier of the
KL-regularised optimum, against which a PPO run can be read.

PPO with a KL penalty β aims at ``π*(y|x) ∝ π_ref(y|x) exp(r(x, y) / β)`` (the optimum of E[r] - β KL).
This script estimates that optimum without training: it samples ``--samples`` K responses per held-out prompt
from the reference (the pretrained model), scores them with the reward model and with the demo's independent
judge, and reweights them by ``exp(r / β)`` within each prompt (self-normalised importance sampling). For each
β it reports the share the judge calls positive under π* and KL(π* || π_ref), estimated as
``Σ_k w_k log(K w_k)`` (at most log K: the estimate is trustworthy well below that). The same with the judge's
own log-odds as the reward gives the frontier of a perfect reward model (for this judge).

If π* reaches the judged share at a KL well below PPO's, the gap is PPO's optimisation; if not, the reward
model (where it disagrees with the judge) is the limit.

  python scripts/studies/ppo_frontier.py --demo runs/ppo-demo [--samples 64] [--eval-prompts 128] [--new-tokens 32]

Prints one JSON object; writes DEMO/frontier.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "studies"))

BETAS = (8.0, 4.0, 2.0, 1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08, 0.05)


def tilt(rewards: np.ndarray, positive: np.ndarray, beta: float) -> dict:
    """``rewards``/``positive`` [n_prompts, K]: the judged share and KL of π_ref reweighted by exp(r / β)."""
    z = rewards / beta
    z = z - z.max(axis=1, keepdims=True)
    w = np.exp(z)
    w = w / w.sum(axis=1, keepdims=True)
    k = rewards.shape[1]
    kl = (w * np.log(np.maximum(w * k, 1e-300))).sum(axis=1)
    return {"beta": beta, "positive_share": float((w * positive).sum(axis=1).mean()), "kl": float(kl.mean()),
            "reward": float((w * rewards).sum(axis=1).mean())}


def kl_to_reach(curve: list, share: float) -> float | None:
    """The smallest KL on ``curve`` at which the judged share is at least ``share`` (None if never)."""
    reached = [c["kl"] for c in curve if c["positive_share"] >= share]
    return min(reached) if reached else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demo", default="runs/ppo-demo",
                   help="a folder written by scripts/studies/ppo_demo.py (default: runs/ppo-demo)")
    p.add_argument("--samples", type=int, default=64, help="reference responses per prompt (K; default: 64)")
    p.add_argument("--eval-prompts", type=int, default=128, help="held-out prompts (default: 128)")
    p.add_argument("--new-tokens", type=int, default=32, help="the longest response in characters (default: 32)")
    p.add_argument("--share", type=float, default=0.90,
                   help="the judged share whose KL cost is reported (default: 0.90)")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (default: 0)")
    args = p.parse_args()
    if args.samples < 2 or args.eval_prompts < 1:
        p.error(f"--samples must be >= 2 and --eval-prompts >= 1, got {args.samples} and {args.eval_prompts}")
    demo = Path(args.demo)
    pre, rm = demo / "pretrained", demo / "reward"
    for folder in (pre, rm):
        if not (folder / "metrics.json").is_file():
            p.error(f"{folder}: no finished run (metrics.json); run scripts/studies/ppo_demo.py --out {demo} first")

    from ppo_demo import Judge, held_out_setup

    from ms_gpt import generation
    from ms_gpt.prompting import join_text, suppressed_ids

    t0 = time.perf_counter()
    ref, tok, scorer, prompts, stops = held_out_setup(pre, rm, args.eval_prompts, args.new_tokens)
    judge = Judge()
    n = len(prompts.ids)
    rewards, positive, log_odds, lengths = (np.zeros((n, args.samples)) for _ in range(4))
    draw = np.random.default_rng([args.seed, 7])
    for k in range(args.samples):
        roll = generation.sample(ref, prompts.ids, strategy="sample", max_new_tokens=args.new_tokens,
                                 stop_ids=tuple(stops), suppress_ids=tuple(suppressed_ids(tok)),
                                 prompt_len=prompts.length, pad_id=tok.pad_id, rng=draw,
                                 cache_size=prompts.length + args.new_tokens)
        responses = [tok.decode([t for t in r if t not in stops]) for r in roll.responses]
        texts = [join_text(tok, q, r) for q, r in zip(prompts.texts, responses)]
        rewards[:, k] = scorer(prompts.texts, responses)
        x = judge.vec.transform(texts)
        positive[:, k] = judge.clf.predict(x)
        log_odds[:, k] = judge.clf.decision_function(x)
        lengths[:, k] = [len(r) for r in responses]
    curve = [tilt(rewards, positive, b) for b in BETAS]
    oracle = [tilt(log_odds, positive, b) for b in BETAS]
    report = {"demo": str(demo), "samples": args.samples, "prompts": n, "kl_estimate_cap": float(np.log(args.samples)),
              "reference": {"positive_share": float(positive.mean()), "reward": float(rewards.mean()),
                            "response_chars": float(lengths.mean()),
                            "reward_judge_agreement": float(((rewards > np.median(rewards)) ==
                                                             (positive > 0)).mean())},
              "share": args.share, "reward_model_kl_to_share": kl_to_reach(curve, args.share),
              "judge_kl_to_share": kl_to_reach(oracle, args.share),
              "reward_model": curve, "judge_as_reward": oracle, "wall_s": round(time.perf_counter() - t0, 1)}
    (demo / "frontier.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
