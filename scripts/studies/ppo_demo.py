"""The ChatGPT recipe's last two steps on real data, end to end: steer a review writer toward positive reviews.

The settings are run files (scripts/studies/ppo_demo/: pretrain.json, reward.json, ppo.json, read by the commands'
own --config; docs/rlhf.md, "The sentiment demo"):
  1. ms-gpt pretrain  a small character-level GPT on the training texts of builtin:reviews-zh (no labels)
  2. ms-gpt reward    a reward model on builtin:reviews-zh-pairs (a positive review preferred over a negative
                      one; pairs from the train split), initialised from (1)
  3. ms-gpt ppo       per seed: (1) tuned against (2) from builtin:reviews-zh-prompts with ms-gpt ppo's
                      defaults, which are this demo's recipe: 400 steps, 4 prompts a step continued 4 times each
                      and scored against each other (leave-one-out), the exact KL to (1) as a loss term at a
                      fixed β 0.3, one pass a step at lr 5e-5
  4. judged by a classifier that is NOT the reward model: TF-IDF over character 1-3 grams + logistic regression
     (scikit-learn), trained on the labelled train split of builtin:reviews-zh

This driver adds the plumbing only (the pretraining text, the folders, the seeds) and the judging: for each seed
the same held-out prompts are continued by the policy before and after PPO (sampling at temperature 1, as the
policy would be used, up to the PPO run's own response length), and the table reports the share judged
positive, the mean reward, the mean per-sequence KL to the reference (the sampled estimate: the sum of
log π - log π_ref over the response) and the reference model's perplexity of the responses. Each run's results
are read from its metrics.json; its command is printed, so each step can be re-run alone.

  python scripts/studies/ppo_demo.py [--out runs/ppo-demo] [--seeds 0 1 2] [--runs scripts/studies/ppo_demo]

Prints one JSON object; writes OUT/ppo_demo.json and OUT/ppo_demo.md (the table and samples in docs/rlhf.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from study import ROOT, read_run_files, run_job

RUNS = ROOT / "scripts" / "studies" / "ppo_demo"
TARGETS = {"reward_accuracy": 0.90, "positive_after": 0.90, "kl_max": 6.0, "ppl_increase_max": 0.10}


class Judge:
    """TF-IDF (character 1-3 grams) + logistic regression on the labelled train split; C chosen on valid."""

    def __init__(self, seed: int = 0, train_limit: int | None = None):
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        from ms_gpt.data.tasks import reviews_zh_splits

        splits = reviews_zh_splits(0)
        train = splits["train"][:train_limit] if train_limit else splits["train"]
        self.vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        x = self.vec.fit_transform([r["text"] for r in train])
        y = np.array([r["label"] for r in train])
        best = None
        for c in (1.0, 3.0, 10.0):
            clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)
            acc = self.accuracy(splits["valid"], clf)
            if best is None or acc > best[0]:
                best = (acc, c, clf)
        self.valid_accuracy, self.C, self.clf = best
        self.test_accuracy = self.accuracy(splits["test"], self.clf)

    def accuracy(self, rows, clf=None) -> float:
        clf = clf or self.clf
        pred = clf.predict(self.vec.transform([r["text"] for r in rows]))
        return float((pred == [r["label"] for r in rows]).mean())

    def positive_share(self, texts) -> float:
        return float(self.clf.predict(self.vec.transform(texts)).mean())


def held_out_setup(pre: Path, rm: Path, n_prompts: int, new_tokens: int):
    """The device, the reference ``pre`` (the pretrained model), the reward model ``rm``'s scorer, and the
    held-out prompts every evaluation continues (``n_prompts`` of builtin:reviews-zh-prompts, drawn with a
    fixed seed, encoded as ms-gpt ppo prompts them) with the stop tokens: ``(ref, tok, scorer, prompts,
    stops)``."""
    import numpy as np

    from ms_gpt.data.prompts import load_prompts
    from ms_gpt.environment import device
    from ms_gpt.prompting import Prompter, score_input
    from ms_gpt.rl.reward import RewardScorer
    from ms_gpt.rl.trainer import encode_prompts
    from ms_gpt.run_folder import checkpoint

    device.setup("CPU" if not os.environ.get("MS_GPT_DEVICE") else None, mode="jit", seed=0)
    ref, tok = checkpoint.load_for_tuning(pre, need_sep=False)
    ref.set_train(False)
    reward_model, reward_tok, meta = checkpoint.load_reward(rm)
    scorer = RewardScorer(reward_model, reward_tok, meta, score_input("auto", meta), jit=True)
    all_prompts = load_prompts("builtin:reviews-zh-prompts")
    rng = np.random.default_rng(12345)
    chosen = [all_prompts[i] for i in rng.choice(len(all_prompts), n_prompts, replace=False)]
    prompter = Prompter.of(pre, tok)  # as ms-gpt ppo prompts it
    stops = prompter.stops()
    prompts = encode_prompts(chosen, prompter, new_tokens, ref.config.n_positions, "eval", False)
    return ref, tok, scorer, prompts, stops


def evaluate(policy_dir: Path, ref, tok, prompts, scorer, judge, seed: int, new_tokens: int, stops) -> dict:
    """Continue ``prompts`` with the policy in ``policy_dir``; the judged positive share, mean reward, KL to
    ``ref`` and ``ref``'s perplexity of the responses, and a few samples."""
    import mindspore
    import numpy as np

    from ms_gpt import generation
    from ms_gpt.prompting import join_text, suppressed_ids
    from ms_gpt.rl import rollouts
    from ms_gpt.run_folder import checkpoint

    gpt, _ = checkpoint.load_for_tuning(policy_dir, need_sep=False)
    bias = rollouts.logit_bias(gpt.config.vocab_size, suppressed_ids(tok))
    roll = generation.sample(gpt, prompts.ids, strategy="sample", max_new_tokens=new_tokens, stop_ids=tuple(stops),
                             suppress_ids=tuple(suppressed_ids(tok)), prompt_len=prompts.length, pad_id=tok.pad_id,
                             rng=np.random.default_rng([seed, 10**6]), cache_size=prompts.length + new_tokens)
    ids, b = mindspore.Tensor(roll.ids), mindspore.Tensor(bias)
    logp = rollouts.token_stats(gpt, None, ids, prompts.length, b)[0].asnumpy().astype(np.float64)
    ref_logp = rollouts.token_stats(ref, None, ids, prompts.length, b)[0].asnumpy().astype(np.float64)
    mask = roll.mask.astype(np.float64)
    responses = [tok.decode([t for t in r if t not in stops]) for r in roll.responses]
    texts = [join_text(tok, p, r) for p, r in zip(prompts.texts, responses)]
    return {"positive_share": judge.positive_share(texts),
            "reward": float(scorer(prompts.texts, responses).mean()),
            "kl": float((((logp - ref_logp) * mask).sum(1)).mean()),
            "ref_ppl": float(np.exp(-(ref_logp * mask).sum() / mask.sum())),
            "response_chars": float(np.mean([len(r) for r in responses])),
            "samples": texts[:6]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/ppo-demo", help="the demo's folder (default: runs/ppo-demo)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="one PPO run per seed, from the same pretrained and reward models (default: 0 1 2)")
    p.add_argument("--runs", default=str(RUNS),
                   help="the folder of run files: pretrain.json, reward.json and ppo.json, the ms-gpt commands' "
                        f"--config (default: {RUNS.relative_to(ROOT)}); to change a setting, edit a copy")
    p.add_argument("--eval-prompts", type=int, default=128,
                   help="held-out prompts the policies are judged on before and after (default: 128)")
    p.add_argument("--reuse", action="store_true", help="keep OUT's finished pretrained model and reward model "
                                                        "(try other PPO run files without retraining them; default: "
                                                        "train both)")
    args = p.parse_args()
    if args.eval_prompts < 1:
        p.error(f"--eval-prompts must be >= 1, got {args.eval_prompts}")
    from ms_gpt.flows.configs import PPOConfig, PretrainConfig, RewardConfig  # pure Python: no MindSpore yet

    folder = Path(args.runs)
    run_files = read_run_files("ppo_demo.py", folder, {
        "pretrain": (PretrainConfig, {"out": "-", "corpus": "-"}), "reward": (RewardConfig, {"init": "-", "out": "-"}),
        "ppo": (PPOConfig, {"policy": "-", "reward": "-", "out": "-"})})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    from ms_gpt.data.tasks import reviews_zh_splits

    corpus = out / "reviews-train.txt"
    corpus.write_text("\n".join(r["text"].replace("\n", " ") for r in reviews_zh_splits(0)["train"]) + "\n",
                      encoding="utf-8")
    pre, rm = out / "pretrained", out / "reward"
    results = {"pretrain": run_job("pretrain", folder / "pretrain.json", pre, out / "pretrain.log", "--corpus", corpus,
                                   reuse=args.reuse),
               "reward": run_job("reward", folder / "reward.json", rm, out / "reward.log", "--init", pre,
                                 reuse=args.reuse)}
    fits = {seed: run_job("ppo", folder / "ppo.json", out / f"ppo_seed{seed}", out / f"ppo_seed{seed}.log",
                          "--policy", pre, "--reward", rm, "--seed", seed) for seed in args.seeds}
    # judged up to the PPO runs' own response length (their run_config.json: the default fills it in)
    new_tokens = json.loads((out / f"ppo_seed{args.seeds[0]}" / "run_config.json").read_text())["max_new_tokens"]
    judge = Judge()
    ref, tok, scorer, prompts, stops = held_out_setup(pre, rm, args.eval_prompts, new_tokens)
    runs = []
    for seed, fit in fits.items():
        before = evaluate(pre, ref, tok, prompts, scorer, judge, seed, new_tokens, stops)
        after = evaluate(out / f"ppo_seed{seed}", ref, tok, prompts, scorer, judge, seed, new_tokens, stops)
        after["ppl_increase"] = after["ref_ppl"] / before["ref_ppl"] - 1.0
        met = {"positive_after": after["positive_share"] >= TARGETS["positive_after"],
               "kl": after["kl"] <= TARGETS["kl_max"], "ppl": after["ppl_increase"] <= TARGETS["ppl_increase_max"]}
        runs.append({"seed": seed, "before": before, "after": after, "met": met,
                     "ppo_wall_s": fit["wall_s"], "reward_last_steps": fit["reward"]})
    reward_acc = results["reward"]["accuracy"]
    report = {
        "reward_model": {"pairwise_accuracy": reward_acc, "valid": results["reward"].get("valid_accuracy"),
                         "wall_s": results["reward"].get("wall_s"),
                         "target": TARGETS["reward_accuracy"], "met": reward_acc >= TARGETS["reward_accuracy"]},
        "judge": {"test_accuracy": judge.test_accuracy, "valid_accuracy": judge.valid_accuracy, "C": judge.C},
        "pretrain": {k: results["pretrain"].get(k) for k in ("parameters", "val_ppl", "wall_s")},
        "runs": runs, "targets": TARGETS,
        "all_met": reward_acc >= TARGETS["reward_accuracy"] and all(all(r["met"].values()) for r in runs),
        "wall_s": round(time.perf_counter() - t0, 1), "args": vars(args), "run_files": run_files,
        "new_tokens": new_tokens}
    (out / "ppo_demo.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "ppo_demo.md").write_text(markdown(report), encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"} | {"runs": [
        {"seed": r["seed"], "met": r["met"], **{f"{w}_{k}": round(r[w][k], 4) for w in ("before", "after")
                                                for k in ("positive_share", "reward", "kl", "ref_ppl")}}
        for r in runs]}, ensure_ascii=False))
    return 0


def markdown(report: dict) -> str:
    lines = [f"Reward model, test pairwise accuracy: **{report['reward_model']['pairwise_accuracy']:.3f}** "
             f"(target ≥ {TARGETS['reward_accuracy']}); judge (TF-IDF char 1-3 grams + LR) test accuracy "
             f"{report['judge']['test_accuracy']:.3f}; total {report['wall_s'] / 60:.1f} min.", "",
             "| seed | judged positive before → after | mean reward before → after | KL after (nats) | "
             "reference ppl before → after |", "|---|---|---|---|---|"]
    for r in report["runs"]:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['seed']} | {b['positive_share']:.3f} → {a['positive_share']:.3f} | {b['reward']:.2f} → "
                     f"{a['reward']:.2f} | {a['kl']:.2f} | {b['ref_ppl']:.1f} → {a['ref_ppl']:.1f} "
                     f"({a['ppl_increase'] * 100:+.0f} %) |")
    lines += ["", "Samples after PPO (seed {}):".format(report["runs"][0]["seed"]), ""]
    lines += [f"- {s}" for s in report["runs"][0]["after"]["samples"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
