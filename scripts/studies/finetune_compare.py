"""Does pretraining help? GPT-1's fine-tuning on real Chinese reviews, three ways, the same split, several seeds.

  (a) a GPT pretrained on unlabelled text, then fine-tuned on builtin:reviews-zh (ms-gpt finetune)
  (b) the same architecture and tokenizer fine-tuned from random weights (ms-gpt finetune --reinit)
  (c) TF-IDF over jieba words (unigrams + bigrams) + logistic regression (scikit-learn), C chosen on
      the validation split

The settings are run files (scripts/studies/finetune_compare/: pretrain.json, finetune.json, read by the commands'
own --config); this driver adds the plumbing only: the split (deduplicated, stratified, 80/10/10, drawn once with
--split-seed and written to OUT/data, so every seed trains and tests on the same rows), the pretraining text (the
review *training* texts, never valid/test, plus People's Daily: GPT-1's levers, in-domain unlabelled text), the
output folders and the fine-tuning seeds. The model is pretrained once. Each run's results are read from its
metrics.json; its command is printed, so each step can be re-run alone.

  python scripts/studies/finetune_compare.py [--out runs/compare] [--seeds 0 1 2] [--runs scripts/studies/finetune_compare]

Prints one JSON object; writes OUT/compare.json and OUT/compare.md (the table in docs/results.md): the mean ± std over
the seeds of each, each seed's figures, and whether (a) >= (c) + 1 point on the mean and (a) > (b) in every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from study import ROOT, read_run_files, run_job

RUNS = ROOT / "scripts" / "studies" / "finetune_compare"


def tfidf_baseline(splits: dict, train_limit: int | None, seed: int) -> dict:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from ms_gpt.text import JiebaTokenizer

    t0 = time.perf_counter()
    words = JiebaTokenizer(["<pad>", "<bos>", "<eos>", "<unk>"]).split
    train = splits["train"][:train_limit] if train_limit else splits["train"]
    xs = {s: [r["text"] for r in rows] for s, rows in (("train", train), ("valid", splits["valid"]),
                                                       ("test", splits["test"]))}
    ys = {s: np.array([r["label"] for r in rows]) for s, rows in (("train", train), ("valid", splits["valid"]),
                                                                  ("test", splits["test"]))}
    vec = TfidfVectorizer(tokenizer=words, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                          sublinear_tf=True, min_df=1)
    train_x = vec.fit_transform(xs["train"])
    best = None
    for c in (0.3, 1.0, 3.0, 10.0, 30.0):
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(train_x, ys["train"])
        acc = float((clf.predict(vec.transform(xs["valid"])) == ys["valid"]).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc, c, clf = best
    test = float((clf.predict(vec.transform(xs["test"])) == ys["test"]).mean())
    return {"valid_accuracy": acc, "accuracy": test, "C": c, "features": len(vec.vocabulary_),
            "train_examples": len(train), "wall_s": round(time.perf_counter() - t0, 1)}


def write_split(splits: dict, folder: Path, train_limit: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        rows = rows[:train_limit] if name == "train" and train_limit else rows
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n" for r in rows),
            encoding="utf-8")


def mean_std(values) -> dict:
    import numpy as np

    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if v.size > 1 else 0.0, 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/compare", help="the study's folder (default: runs/compare)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds (default 0 1 2)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="the one train/valid/test split every seed uses (default: 0)")
    p.add_argument("--device", default=None,
                   help="Ascend, GPU or CPU (default: $MS_GPT_DEVICE, else the best available)")
    p.add_argument("--runs", default=str(RUNS),
                   help="the folder of run files: pretrain.json and finetune.json, the ms-gpt commands' --config "
                        f"(default: {RUNS.relative_to(ROOT)})")
    p.add_argument("--pretrain-text", default="reviews+peoples-daily",
                   choices=("reviews+peoples-daily", "peoples-daily"),
                   help="unlabelled pretraining text: the review training texts plus People's Daily, or People's "
                        "Daily alone (default: reviews+peoples-daily)")
    p.add_argument("--train-limit", type=int, default=None, help="first N training rows for all three (default: all)")
    args = p.parse_args()
    from ms_gpt.flows.configs import FinetuneConfig, PretrainConfig  # pure Python: no MindSpore yet

    runs = read_run_files("finetune_compare.py", Path(args.runs), {
        "pretrain": (PretrainConfig, {"out": "-", "corpus": "-"}),
        "finetune": (FinetuneConfig, {"init": "-", "data": "-", "out": "-"})})

    from ms_gpt.data.corpus import peoples_daily
    from ms_gpt.data.tasks import reviews_zh_splits
    from ms_gpt.run_folder import atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits = reviews_zh_splits(args.split_seed)
    write_split(splits, out / "data", args.train_limit)
    train = splits["train"][:args.train_limit] if args.train_limit else splits["train"]
    corpus = out / "pretrain-text"
    corpus.mkdir(exist_ok=True)
    (corpus / "peoples-daily.txt").write_text("\n".join(peoples_daily()) + "\n", encoding="utf-8")
    reviews = corpus / "reviews-train.txt"
    if args.pretrain_text == "reviews+peoples-daily":
        reviews.write_text("".join(" ".join(r["text"].split()) + "\n" for r in train), encoding="utf-8")
    elif reviews.exists():
        reviews.unlink()
    dev = ["--device", args.device] if args.device else []
    pre = out / "pretrained"
    results = {"pretrain": run_job("pretrain", Path(args.runs) / "pretrain.json", pre, out / "pretrain.log",
                                   "--corpus", corpus, *dev)}

    def finetune(seed: int, name: str, *flags) -> dict:
        return run_job("finetune", Path(args.runs) / "finetune.json", out / name, out / f"{name}.log", "--init", pre,
                       "--data", out / "data", "--seed", seed, *dev, *flags)

    per_seed = []
    c = tfidf_baseline(splits, args.train_limit, args.split_seed)
    for seed in args.seeds:
        a = finetune(seed, f"a_pretrained_seed{seed}")
        b = finetune(seed, f"b_scratch_seed{seed}", "--reinit")
        per_seed.append({"seed": seed, "a": a, "b": b})
        print(f"seed {seed}: (a) {a['accuracy']:.4f}  (b) {b['accuracy']:.4f}  (c) {c['accuracy']:.4f}",
              file=sys.stderr, flush=True)
    acc = {"a_pretrained_finetuned": [r["a"]["accuracy"] for r in per_seed],
           "b_random_init_finetuned": [r["b"]["accuracy"] for r in per_seed],
           "c_tfidf_logreg": [c["accuracy"]] * len(per_seed)}
    stats = {k: mean_std(v) for k, v in acc.items()}
    a_mean, c_mean = stats["a_pretrained_finetuned"]["mean"], stats["c_tfidf_logreg"]["mean"]
    keep = ("accuracy", "valid_accuracy", "best_epoch", "steps", "of_steps", "stopped_early", "defaults", "unk_share",
            "train_examples", "wall_s", "reinit", "lm_weight")
    summary = {
        "settings": {**vars(args), "run_files": runs}, "test_examples": per_seed[0]["a"]["test_examples"],
        "train_examples": per_seed[0]["a"]["train_examples"], "seeds": args.seeds,
        "accuracy": acc, "mean_std": stats,
        "targets": {"a_ge_c_plus_1pt": a_mean >= c_mean + 0.01,
                    "a_gt_b_every_seed": all(r["a"]["accuracy"] > r["b"]["accuracy"] for r in per_seed)},
        "pretrain": {k: results["pretrain"][k] for k in ("val_ppl_before", "val_ppl", "steps", "parameters", "wall_s",
                                                         "tokenizer", "vocab_size")},
        "c_tfidf": c, "runs": [{"seed": r["seed"], "a": {k: r["a"].get(k) for k in keep},
                                "b": {k: r["b"].get(k) for k in keep}} for r in per_seed],
        "wall_s": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(),
    }
    names = {"a_pretrained_finetuned": "(a) GPT pretrained on review texts + People's Daily, fine-tuned",
             "b_random_init_finetuned": "(b) same GPT from random weights, fine-tuned",
             "c_tfidf_logreg": "(c) TF-IDF (jieba 1-2 grams) + logistic regression"}
    if args.pretrain_text == "peoples-daily":
        names["a_pretrained_finetuned"] = "(a) GPT pretrained on People's Daily, fine-tuned"
    header = "| model | test acc, mean ± std | " + " | ".join(f"seed {s}" for s in args.seeds) + " |\n"
    table = header + "|---|---|" + "---|" * len(args.seeds) + "\n" + "".join(
        f"| {names[k]} | {stats[k]['mean']:.4f} ± {stats[k]['std']:.4f} | "
        + " | ".join(f"{v:.4f}" for v in acc[k]) + " |\n" for k in acc)
    atomic.write_text(out / "compare.md", table)
    atomic.write_text(out / "compare.json", json.dumps(summary, indent=2, ensure_ascii=False))
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
